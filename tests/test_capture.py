"""Capture files: round trip, and survival of truncation and corruption anywhere."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from bridge.capture import CaptureError, CaptureReader, CaptureWriter, Kind
from bridge.protocol import Buffer, Event, Frame, Hello, OutputSpec, Result, Target, Timing, Welcome, encode


def frame_wire(i: int) -> list[bytes]:
    rng = np.random.default_rng(i)
    albedo = rng.integers(0, 255, (8 + i % 3, 12, 4), dtype=np.uint8)
    ids = np.full(albedo.shape[:2], i, np.uint16)
    events = [Event("hit", {"n": i}, Target("object", (i,)))] if i % 2 else []
    msg = Frame(7, i, i * 16_000_000, 0.016, 50.0,
                [Buffer.from_array("albedo", "rgba8_srgb", albedo), Buffer.from_array("object_id", "r16u", ids)],
                events)
    return [bytes(f) for f in encode(msg)]


def write_capture(path: Path, n: int = 12, close: bool = True) -> list[list[bytes]]:
    frames = [frame_wire(i) for i in range(1, n + 1)]
    w = CaptureWriter(path)
    hello = encode(Hello("test", "1", "nrb-py", [], (12, 8), (12, 8), []))[0]
    welcome = encode(Welcome(7, "x/1", [], [], [], OutputSpec("rgba8", 12, 8), 2, ["identity"]))[0]
    w.session_start(7, hello, welcome, "x/1")
    w.hooks("h.py", "# hooks\n", "v1")
    for i, wire in enumerate(frames, 1):
        w.frame(7, i, wire, 0)
        out = Buffer.from_array("output", "rgba8", np.full((8, 12, 4), i, np.uint8))
        w.result(7, i, "ok", [bytes(f) for f in encode(Result(7, i, "ok", Timing(), out))], bytes(16), {})
    if close:
        w.close()
    else:
        w._f.close()  # simulate a crash: no index, no trailer
    return frames


def test_complete_capture_reads_back_every_frame_result_and_hooks(tmp_path: Path) -> None:
    path = tmp_path / "c.nrbcap"
    frames = write_capture(path)
    with CaptureReader(path) as r:
        assert not r.recovered and r.damaged == 0
        got = r.frames(7)
        assert [g.wire for g in got] == frames
        assert all(g.result is not None and g.result.status == "ok" for g in got)
        assert got[2].decode().events == [Event("hit", {"n": 3}, Target("object", (3,)))]
        assert 7 in r.sessions()
        assert [p["source"] for ref, p in r.records() if ref.kind == Kind.HOOKS] == ["# hooks\n"]


def test_capture_of_a_crashed_recorder_still_opens_with_every_frame(tmp_path: Path) -> None:
    path = tmp_path / "c.nrbcap"
    frames = write_capture(path, close=False)
    with CaptureReader(path) as r:
        assert r.recovered
        assert [g.wire for g in r.frames()] == frames


def test_capture_truncated_at_random_offsets_opens_with_every_complete_frame_intact(tmp_path: Path) -> None:
    full = tmp_path / "full.nrbcap"
    frames = write_capture(full, n=10)
    data = full.read_bytes()
    with CaptureReader(full) as r:
        frame_ends = [c.end for c in r.chunks if c.kind == Kind.FRAME]
        boundaries = [c.end for c in r.chunks]
    rng = random.Random(1234)
    cuts = sorted({*rng.sample(range(16, len(data)), 60), *boundaries, *(b - 1 for b in boundaries), len(data) - 3})
    cut_path = tmp_path / "cut.nrbcap"
    for cut in cuts:
        cut_path.write_bytes(data[:cut])
        with CaptureReader(cut_path) as r:
            got = r.frames()
            expected = [f for f, end in zip(frames, frame_ends) if end <= cut]
            assert [g.wire for g in got] == expected, f"cut at {cut}"
            for g in got:
                assert g.decode().frame == g.frame


def test_a_corrupted_chunk_loses_only_that_frame(tmp_path: Path) -> None:
    path = tmp_path / "c.nrbcap"
    frames = write_capture(path, n=8)
    with CaptureReader(path) as r:
        victim = [c for c in r.chunks if c.kind == Kind.FRAME][3]
    data = bytearray(path.read_bytes())
    data[victim.offset + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    with CaptureReader(path) as r:  # indexed: the damaged payload fails its CRC
        assert [g.frame for g in r.frames()] == [1, 2, 3, 5, 6, 7, 8]
    path.write_bytes(bytes(data[:-16]))  # no trailer: scanning re-synchronises after the damaged chunk
    with CaptureReader(path) as r:
        assert r.recovered and r.damaged > 0
        assert [g.wire for g in r.frames()] == frames[:3] + frames[4:]


def test_a_file_that_is_not_a_capture_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.nrbcap"
    path.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(CaptureError, match="not an nrb capture"):
        CaptureReader(path)
    path.write_bytes(b"NRB")
    with pytest.raises(CaptureError, match="too short"):
        CaptureReader(path)
