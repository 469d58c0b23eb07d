"""Memory budgets and session caps (docs/security.md "Memory budgets" and "Sessions per peer", protocol 11.1):
what a hostile or clumsy engine can make the server hold, and how quickly a vanished engine's slots come back."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zstandard
from helpers.serverkit import ALBEDO_SPEC, SIZE, albedo_only, served

from bridge import Server
from bridge.client import Client, RemoteError
from bridge.protocol import Buffer, BufferSpec, Error, Frame, header_map
from bridge.security import client_curve_options, generate_keys
from bridge.server import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SESSIONS_PER_PEER,
    DEFAULT_MAX_TOTAL_BYTES,
    frame_budget,
)

#: The issue's hostile HELLO: 32 buffers at 2048 x 2048 (512 MiB per frame even at 4 bytes per pixel).
BIG = (2048, 2048)
BIG_SPECS = [BufferSpec("albedo", "rgba8_srgb")] + [BufferSpec(f"x_pad{i:02d}", "rgba8") for i in range(31)]


@pytest.fixture
def server() -> Iterator[Server]:
    with Server(port=0, renderer="passthrough") as srv:
        yield srv


def _rss_peak_bytes(pid: int) -> int:
    """The process's peak resident set (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def test_a_hello_of_32_buffers_at_2048_squared_is_refused_and_the_server_keeps_serving(server: Server) -> None:
    with Client(server.endpoint or "", timeout=10) as c:
        with pytest.raises(RemoteError) as refused:
            c.hello(BIG, BIG_SPECS)
        assert refused.value.error.name == "LIMIT_EXCEEDED"
        assert "--max-frame-bytes" in refused.value.error.message
        assert refused.value.error.session is None and refused.value.error.frame is None  # a refusal (5.8)
        assert not server.sessions  # nothing was opened, nothing reserved
        c.hello(SIZE, ALBEDO_SPEC)
        assert c.render(albedo_only()).status == "ok"
        c.bye()


def test_welcome_announces_the_memory_budgets_and_session_caps(server: Server) -> None:
    with Client(server.endpoint or "", timeout=10) as c:
        welcome = c.hello(SIZE, ALBEDO_SPEC)
        limits = welcome.limits
        assert limits is not None
        assert limits.message_bytes == DEFAULT_MAX_FRAME_BYTES and limits.total_bytes == DEFAULT_MAX_TOTAL_BYTES
        assert limits.max_pixels == DEFAULT_MAX_PIXELS == 3840 * 2160
        assert limits.sessions == 16 and limits.sessions_per_peer == DEFAULT_MAX_SESSIONS_PER_PEER
        w, h = SIZE
        assert limits.frame_bytes == h * 512 + 65536  # 96 px x 4 B = 384 B rows, counted as 512 (256-aligned)
        assert limits.session_bytes == 2 * limits.frame_bytes + 16 * w * h
        c.bye()


def test_render_sizes_beyond_the_default_max_pixels_are_refused(server: Server) -> None:
    with Client(server.endpoint or "", timeout=10) as c:
        with pytest.raises(RemoteError, match="max-pixels") as refused:
            c.hello((4096, 4096), ALBEDO_SPEC)
        assert refused.value.error.name == "LIMIT_EXCEEDED"


def test_the_total_budget_refuses_a_session_as_overloaded_until_another_ends() -> None:
    one = frame_budget(_hello_like(SIZE, ALBEDO_SPEC))
    held = 2 * one + 16 * SIZE[0] * SIZE[1]
    with Server(port=0, renderer="passthrough", max_total_bytes=held * 2 + 1) as srv:
        a, b, c = (Client(srv.endpoint or "", timeout=10) for _ in range(3))
        try:
            a.hello(SIZE, ALBEDO_SPEC)
            b.hello(SIZE, ALBEDO_SPEC)
            with pytest.raises(RemoteError, match="max-total-bytes") as refused:
                c.hello(SIZE, ALBEDO_SPEC)
            assert refused.value.error.name == "OVERLOADED"  # passes when a session ends (protocol 5.8)
            a.bye()
            _hello_within(c, SIZE, ALBEDO_SPEC, seconds=5)
        finally:
            for x in (a, b, c):
                x.close()


def _hello_like(size: tuple[int, int], specs: list[BufferSpec]) -> object:
    from bridge.protocol import Hello

    return Hello("t", "0", "t", [], size, size, specs)


def _hello_within(c: Client, size: tuple[int, int], specs: list[BufferSpec], seconds: float) -> None:
    """HELLO again and again (an engine's backoff) until WELCOME; fail after ``seconds`` (a correctness bound)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            c.hello(size, specs)
            return
        except RemoteError as exc:
            assert exc.error.name == "OVERLOADED", exc.error.message
            assert time.monotonic() < deadline, f"still refused after {seconds} s: {exc.error.message}"
            time.sleep(0.05)


def test_a_frame_beyond_its_sessions_budget_is_refused_before_decompressing_and_rss_stays_bounded(
        tmp_path: Path) -> None:
    """A session that offered one 2048² buffer sends frames of 32 zstd buffers that decompress to 1 GiB: each is
    LIMIT_EXCEEDED before decompressing, the session goes on rendering, and the server's peak RSS stays far below
    what decompressing would take (< 1 GB is a correctness bound, not a performance figure)."""
    with served(tmp_path, "--renderer", "passthrough") as srv:
        with Client(srv.endpoint, timeout=20) as c:
            with pytest.raises(RemoteError, match="LIMIT_EXCEEDED"):
                c.hello(BIG, BIG_SPECS, capabilities=["zstd"])
            welcome = c.hello(BIG, ALBEDO_SPEC, capabilities=["zstd"])
            assert "zstd" in welcome.capabilities and welcome.limits is not None
            zeros = np.zeros((BIG[1], BIG[0], 4), np.float16)  # 32 MiB each, a few KiB compressed
            packed = zstandard.ZstdCompressor(write_content_size=True).compress(zeros.tobytes())
            bufs = [Buffer.from_array("albedo", "rgba16f", zeros)] + [
                Buffer.from_array(f"x_pad{i:02d}", "rgba16f", zeros) for i in range(31)]
            for fid in (1, 2, 3):
                header = msgpack.packb(header_map(Frame(
                    c.session or 0, fid, fid * 1000, 0.016, 5000.0,
                    [Buffer(b.name, b.format, b.width, b.height, b.stride, compression="zstd") for b in bufs])))
                c.send_raw([header] + [packed] * len(bufs))
                answer = c.recv()
                assert isinstance(answer, Error) and answer.name == "LIMIT_EXCEEDED", answer
                assert answer.frame == fid and "limits.frame_bytes" in answer.message
            ok = c.render([Buffer.from_array("albedo", "rgba8_srgb", np.full((BIG[1], BIG[0], 4), 7, np.uint8))],
                          frame=4)
            assert ok.status == "ok"
            c.bye()
        assert _rss_peak_bytes(srv.proc.pid) < 1 << 30


def test_one_peer_cannot_take_every_session_slot() -> None:
    with Server(port=0, renderer="passthrough", max_sessions=16) as srv:
        hog, other = Client(srv.endpoint or "", timeout=10), Client(srv.endpoint or "", timeout=10)
        try:
            for _ in range(DEFAULT_MAX_SESSIONS_PER_PEER):
                hog.hello(SIZE, ALBEDO_SPEC)
            with pytest.raises(RemoteError, match="max-sessions-per-peer") as refused:
                hog.hello(SIZE, ALBEDO_SPEC)
            assert refused.value.error.name == "OVERLOADED"
            assert len(srv.sessions) == DEFAULT_MAX_SESSIONS_PER_PEER < 16
            other.hello(SIZE, ALBEDO_SPEC)
            assert other.render(albedo_only()).status == "ok"
        finally:
            hog.close()
            other.close()


def test_one_client_key_cannot_take_more_sessions_over_several_connections(tmp_path: Path) -> None:
    """With CurveZMQ the cap is per key too: new connections with the same key do not get around it."""
    paths = {who: generate_keys(tmp_path / who, who) for who in ("server", "alice", "bob")}
    allow = tmp_path / "allowed"
    allow.mkdir()
    for who in ("alice", "bob"):
        shutil.copy(paths[who][0], allow)
    with Server(port=0, renderer="passthrough", curve_secret=str(paths["server"][1]), allow_dir=str(allow),
                max_sessions_per_peer=2) as srv:
        def client(who: str) -> Client:
            return Client(srv.endpoint or "", timeout=10,
                          **client_curve_options(paths["server"][0], paths[who][1]))

        a1, a2, a3, b = client("alice"), client("alice"), client("alice"), client("bob")
        try:
            a1.hello(SIZE, ALBEDO_SPEC)
            a2.hello(SIZE, ALBEDO_SPEC)
            with pytest.raises(RemoteError, match="client key") as refused:
                a3.hello(SIZE, ALBEDO_SPEC)
            assert refused.value.error.name == "OVERLOADED"
            b.hello(SIZE, ALBEDO_SPEC)
            assert b.render(albedo_only()).status == "ok"
        finally:
            for x in (a1, a2, a3, b):
                x.close()


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_a_peer_that_disconnects_frees_its_sessions_at_once(tmp_path: Path, transport: str) -> None:
    """Slots come back when the engine's connection closes, not after the 30 s idle timeout: a new engine gets in
    within a few seconds (polled; the bound is far below the idle timeout, not a speed target)."""
    endpoint = {"tcp": None, "ipc": f"ipc://{tmp_path}/nrb.sock"}[transport]
    with Server(port=0, renderer="passthrough", endpoint=endpoint, max_sessions=2, idle_timeout=30.0) as srv:
        gone, waiting = Client(srv.endpoint or "", timeout=10), Client(srv.endpoint or "", timeout=10)
        try:
            gone.hello(SIZE, ALBEDO_SPEC)
            gone.hello(SIZE, ALBEDO_SPEC)
            with pytest.raises(RemoteError, match="OVERLOADED"):
                waiting.hello(SIZE, ALBEDO_SPEC)
            gone.close()  # no BYE: the engine crashed or its network went away
            _hello_within(waiting, SIZE, ALBEDO_SPEC, seconds=5)
            assert waiting.render(albedo_only()).status == "ok"
            assert srv.snapshot()["counts"].get("peer_disconnected") == 2
        finally:
            waiting.close()
