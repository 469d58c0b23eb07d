"""Python NRB/1 codec behaviour a user relies on: round trips, zero-copy views, and no crash on any input."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import protocol as p

CORPUS = Path(__file__).parent / "fuzz_corpus" / "fuzz_decode"
VECTORS = Path(__file__).parent / "vectors"


def split_frames(data: bytes) -> list[bytes]:
    """The fuzz input layout shared with cpp/fuzz/fuzz_decode.cpp: (u32 length, bytes)*, remainder = last frame."""
    frames, i = [], 0
    while i + 4 <= len(data):
        (n,) = struct.unpack_from("<I", data, i)
        if i + 4 + n > len(data):
            break
        frames.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    if i < len(data):
        frames.append(data[i:])
    return frames


def seeds() -> list[bytes]:
    files = sorted(VECTORS.glob("*.bin")) + (sorted(CORPUS.glob("*")) if CORPUS.exists() else [])
    return [f.read_bytes() for f in files if f.is_file() and f.stat().st_size < 70000] or [b""]


def test_frame_round_trip_keeps_pixels_events_and_camera() -> None:
    depth = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    albedo = np.arange(48, dtype=np.uint8).reshape(3, 4, 4)
    frame = p.Frame(
        session=3, frame=10, time_ns=1, dt=1 / 60, deadline_ms=40.0,
        buffers=[p.Buffer.from_array("depth", "r32f", depth, depth_reversed=True),
                 p.Buffer.from_array("albedo", "rgba8", albedo, compression="zstd")],
        events=[p.Event("boss_phase", {"phase": 2}, p.Target())],
        styles=[p.StyleCommand("golden", 1.0, 0.5, p.Target("object", (7,)))],
        camera=p.Camera(near=0.1, far=100.0, fov_y=1.0, render_size=(4, 3)),
    )
    back = p.decode(p.encode(frame))
    assert isinstance(back, p.Frame)
    assert back.events == frame.events and back.styles == frame.styles and back.camera == frame.camera
    np.testing.assert_array_equal(back.buffer("depth").array()[:, :, 0], depth)  # type: ignore[union-attr]
    np.testing.assert_array_equal(back.buffer("albedo").array(), albedo)  # type: ignore[union-attr]


def test_decoded_raw_buffer_is_a_view_of_the_received_frame_not_a_copy() -> None:
    albedo = np.zeros((2, 2, 4), np.uint8)
    frames = [bytes(f) for f in p.encode(p.Frame(1, 1, 0, 0.0, 10.0, [p.Buffer.from_array("albedo", "rgba8", albedo)]))]
    payload = bytearray(frames[1])
    msg = p.decode([frames[0], payload])
    assert isinstance(msg, p.Frame)
    payload[0] = 200  # writing the received bytes shows through the decoded array
    assert msg.buffers[0].array()[0, 0, 0] == 200


def test_strided_buffer_views_skip_row_padding() -> None:
    rows = bytearray(2 * 16)
    rows[16:20] = b"\x01\x02\x03\x04"
    buf = p.Buffer("albedo", "rgba8", 3, 2, 16, bytes(rows))
    assert buf.array().shape == (2, 3, 4)
    assert list(buf.array()[1, 0]) == [1, 2, 3, 4]


def test_protocol_error_becomes_an_error_message_with_the_same_code() -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.decode([b"\x93\x01\x02\x03"])
    err = p.error_message(info.value, session=5, frame=9)
    back = p.decode(p.encode(err))
    assert isinstance(back, p.Error)
    assert (back.code, back.name, back.session, back.frame) == (1, "MALFORMED", 5, 9)


@settings(max_examples=int(os.environ.get("NRB_FUZZ_EXAMPLES", 400)), deadline=None,  # make fuzz: more
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(seeds()), st.data())
def test_decoder_never_fails_other_than_with_a_protocol_error(seed: bytes, data: st.DataObject) -> None:
    """Mutated vectors and random bytes either decode or raise ProtocolError; nothing else escapes."""
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(0, 8))):
        if raw and data.draw(st.booleans()):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        else:
            pos = data.draw(st.integers(0, len(raw)))
            raw[pos:pos] = data.draw(st.binary(max_size=8))
    pool = p.ShmPool("/nrb-fuzz", 4, 4096)
    try:
        p.decode(split_frames(bytes(raw)), shm_pool=pool)
    except p.ProtocolError:
        pass


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 40), st.integers(1, 40), st.sampled_from(sorted(p.FORMATS)), st.integers(0, 3),
    st.lists(st.tuples(st.text(min_size=1, max_size=10), st.dictionaries(st.text(max_size=5),
             st.one_of(st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False), st.text(max_size=5),
                       st.booleans(), st.none()), max_size=4)), max_size=5),
)
def test_any_valid_frame_survives_encode_then_decode(w: int, h: int, fmt: str, pad: int,
                                                     events: list[tuple[str, dict[str, object]]]) -> None:
    info = p.FORMATS[fmt]
    stride = w * info.bytes_per_pixel + pad
    data = bytes(range(256)) * (stride * h // 256 + 1)
    frame = p.Frame(1, 2, 3, 0.5, 16.0, [p.Buffer("x_any", fmt, w, h, stride, data[: stride * h])],
                    [p.Event(n.encode()[:64].decode(errors="ignore") or "e", prm) for n, prm in events])
    back = p.decode(p.encode(frame))
    assert p.header_map(back) == p.header_map(frame)
    assert bytes(back.buffers[0].data or b"") == data[: stride * h]  # type: ignore[union-attr]


STREAMING = (*p.COMPRESSIONS, p.CHUNKED, p.STREAMED_OUTPUT)


def test_part_round_trip_keeps_its_ids_and_its_chunk_as_it_travels() -> None:
    chunk = b"\x04\x22\x4d\x18not decompressed here"
    wire = p.encode(p.Part(7, 2**40, "output", 255, chunk))
    assert len(wire) == 2 and bytes(wire[1]) == chunk
    assert list(p.parse_header(wire[0])) == ["nrb", "type", "session", "frame", "buffer", "index"]
    back = p.decode(wire, compression=STREAMING)
    assert isinstance(back, p.Part) and (back.session, back.frame, back.buffer, back.index) == (7, 2**40, "output", 255)
    assert bytes(back.data) == chunk and p.payload_data(back) == [back.data]


@pytest.mark.parametrize("change, payloads, compression, code", [
    ({"index": 256}, None, (), p.ErrorCode.LIMIT_EXCEEDED),  # index is checked before negotiation
    ({"buffer": "sparkles"}, None, STREAMING, p.ErrorCode.BAD_VALUE),
    ({"buffer": "depth"}, None, STREAMING, p.ErrorCode.BAD_VALUE),
    ({"buffer": 3}, None, STREAMING, p.ErrorCode.WRONG_TYPE),
    ({"index": -1}, None, STREAMING, p.ErrorCode.WRONG_TYPE),
    ({}, None, (), p.ErrorCode.BAD_VALUE),  # not negotiated
    ({}, [], (), p.ErrorCode.BAD_VALUE),  # not negotiated comes before the payload count
    ({}, [], STREAMING, p.ErrorCode.MALFORMED),
    ({}, [b"a", b"b"], STREAMING, p.ErrorCode.MALFORMED),
    ({}, [b""], STREAMING, p.ErrorCode.BAD_VALUE),
])
def test_part_checks_come_in_the_order_of_section_9_1(change: dict[str, object], payloads: list[bytes] | None,
                                                     compression: tuple[str, ...], code: p.ErrorCode) -> None:
    header = {"nrb": 1, "type": "PART", "session": 1, "frame": 1, "buffer": "output", "index": 0, **change}
    with pytest.raises(p.ProtocolError) as err:
        p.message_from_header(header, [b"x"] if payloads is None else payloads, compression=compression)
    assert err.value.code == code, err.value.message


def _streamed_output(**change: object) -> dict[str, object]:
    return {"name": "output", "format": "rgba8", "width": 4, "height": 4, "stride": 16, "compression": "lz4",
            "chunks": [30], "chunk_bytes": 64, "streamed": True, **change}


@pytest.mark.parametrize("output, compression, code", [
    (_streamed_output(streamed=1), STREAMING, p.ErrorCode.WRONG_TYPE),
    (_streamed_output(streamed=None), STREAMING, p.ErrorCode.WRONG_TYPE),
    (_streamed_output(), (*p.COMPRESSIONS, p.CHUNKED), p.ErrorCode.BAD_VALUE),
    ({k: v for k, v in _streamed_output().items() if k not in ("chunks", "chunk_bytes")}, STREAMING,
     p.ErrorCode.BAD_VALUE),
    (_streamed_output(shm={"slot": 0, "offset": 0}), STREAMING, p.ErrorCode.BAD_VALUE),
])
def test_streamed_checks(output: dict[str, object], compression: tuple[str, ...], code: p.ErrorCode) -> None:
    header = {"nrb": 1, "type": "RESULT", "session": 1, "frame": 1, "status": "ok", "output": output,
              "timing": {k: 0.0 for k in p.TIMING_KEYS}}
    with pytest.raises(p.ProtocolError) as err:
        p.message_from_header(header, [], compression=compression)
    assert err.value.code == code, err.value.message


def test_streamed_false_is_not_streamed_and_is_not_written() -> None:
    header = {"nrb": 1, "type": "RESULT", "session": 1, "frame": 1, "status": "ok",
              "output": _streamed_output(streamed=False), "timing": {k: 0.0 for k in p.TIMING_KEYS}}
    msg = p.message_from_header(header, [bytes(64)], compression=STREAMING, raw_payloads=True)
    assert isinstance(msg, p.Result) and msg.output is not None and not msg.output.streamed
    assert "streamed" not in p.header_map(msg)["output"]
