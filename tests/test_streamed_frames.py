"""Streamed frames (docs/protocol.md sections 5.12 and 6.3.5): a FRAME's compressed chunked buffers sent as PART
messages, one per chunk, ahead of the FRAME.

What a user would check: the sender's stream yields each buffer's chunks as PARTs and fills in the tables; the codec
takes a PART of a FRAME buffer and ``streamed: true`` on a FRAME buffer only where ``"streamed_frames"`` was
negotiated (and a PART of ``output`` only where ``"streamed_output"`` was); the receiver's matching refuses missing,
repeated, wrong-length and unexpected PARTs with ``PAYLOAD_MISMATCH``, and uses chunks decompressed ahead only when
they hold exactly what the table says. ``nrb serve`` accepts it only from an engine that offers it with
``"chunked"`` (not with ``--no-streamed-frames``), renders a streamed frame exactly as the same frame sent whole,
answers each fault of steps 3-4 as documented and goes on serving; its held PARTs keep to the limits of step 5.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.serverkit import RunningServer, served, tiled_image

from bridge.client import Client, RemoteError
from bridge.protocol import (
    CHUNKED,
    MAX_HELD_FRAME_PARTS,
    PART_SLACK_BYTES,
    SHUFFLE,
    STREAMED_FRAMES,
    STREAMED_OUTPUT,
    Buffer,
    BufferSpec,
    EarlyChunk,
    Error,
    ErrorCode,
    Frame,
    Message,
    Part,
    ProtocolError,
    Result,
    attach_frame_parts,
    decode,
    decompress_announced,
    encode,
    encode_header,
    encode_streamed_frame,
    inflate,
)
from bridge.server.streamed import HeldParts

W, H = 1024, 640  # rgba8: 2.5 MiB, three chunks of 1 MiB (the last 0.5 MiB)
MIB = 1 << 20
CTX = ("lz4", "zstd", CHUNKED, SHUFFLE, STREAMED_FRAMES)
SPEC = [BufferSpec("hudless_color", "rgba8_srgb")]


def _image(seed: int, w: int = W, h: int = H) -> np.ndarray:
    return tiled_image(seed, w, h)


def _frame(img: np.ndarray, method: str = "lz4", shuffle: bool = False, chunk_bytes: int = MIB,
           session: int = 7, fid: int = 3, extra: list[Buffer] | None = None) -> Frame:
    b = Buffer.from_array("hudless_color", "rgba8_srgb", img, compression=method)
    b.chunk_bytes = chunk_bytes
    b.filter = SHUFFLE if shuffle else None
    return Frame(session, fid, 0, 1 / 60, 1000.0, [b, *(extra or [])])


def _stream(frame: Frame, pool: ThreadPoolExecutor | None = None) -> tuple[list[list[Any]], list[Any]]:
    """``frame`` streamed: each PART's wire frames in order, then the FRAME's wire."""
    parts = list(encode_streamed_frame(frame, pool))
    return parts, encode(frame)


def _decoded_parts(parts: list[list[Any]]) -> list[Part]:
    out = []
    for wire in parts:
        msg = decode(wire, compression=CTX)
        assert isinstance(msg, Part)
        out.append(msg)
    return out


# ------------------------------------------------------------------------------------------------------ codec


@pytest.mark.parametrize("method", ["lz4", "zstd"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_a_streamed_frame_is_parts_then_a_header_and_inflates_to_exactly_the_buffer(method: str,
                                                                                  shuffle: bool) -> None:
    img = _image(1)
    raw = Buffer.from_array("depth", "r32f", np.linspace(0, 1, 64 * 32, dtype="<f4").reshape(32, 64))
    frame = _frame(img, method, shuffle, extra=[raw])
    with ThreadPoolExecutor(3) as pool:
        parts, wire = _stream(frame, pool)
    got = _decoded_parts(parts)
    assert [(q.session, q.frame, q.buffer, q.index) for q in got] == [(7, 3, "hudless_color", i) for i in range(3)]
    streamed = frame.buffers[0]
    assert streamed.streamed and streamed.chunks == [len(q.data) for q in got]
    assert len(wire) == 2  # the header, and the raw depth's payload only
    msg = decode(wire, compression=CTX)
    assert isinstance(msg, Frame) and msg.buffers[0].streamed and msg.buffers[0].data is None
    attach_frame_parts(msg.buffers, [(q.buffer, q.index, q.data, None) for q in reversed(got)])
    inflate(msg.buffers)
    assert np.array_equal(msg.buffers[0].array(), img)
    assert np.array_equal(msg.buffers[1].array(), raw.array())


def test_early_decompressions_are_used_and_a_wrong_one_is_decompressed_again() -> None:
    img = _image(2)
    frame = _frame(img, "lz4", True)
    parts, wire = _stream(frame)
    got = _decoded_parts(parts)
    used: list[int] = []

    def early(i: int, data: Any) -> EarlyChunk:
        fut: Future[bytes | None] = Future()
        if i == 0:  # what the codec frame says, taken as it is
            plain = decompress_announced(data, "lz4", MIB)
            assert plain is not None
            fut.set_result(plain)
            used.append(i)
        elif i == 1:  # a wrong size: not used, the chunk is decompressed at the FRAME
            fut.set_result(b"\0" * 100)
        else:  # failed
            fut.set_exception(RuntimeError("boom"))
        return EarlyChunk("lz4", MIB, fut)

    msg = decode(wire, compression=CTX)
    assert isinstance(msg, Frame)
    attach_frame_parts(msg.buffers, [(q.buffer, q.index, q.data, early(q.index, q.data)) for q in got])
    inflate(msg.buffers, ThreadPoolExecutor(2))
    assert used == [0] and np.array_equal(msg.buffers[0].array(), img)


def test_a_corrupt_streamed_chunk_is_payload_mismatch_naming_it() -> None:
    frame = _frame(_image(3))
    parts, wire = _stream(frame)
    got = _decoded_parts(parts)
    bad = bytearray(got[1].data)
    bad[20:40] = b"\xff" * 20
    msg = decode(wire, compression=CTX)
    assert isinstance(msg, Frame)
    pieces = [(q.buffer, q.index, bytes(bad) if q.index == 1 else q.data, None) for q in got]
    attach_frame_parts(msg.buffers, pieces)
    with pytest.raises(ProtocolError) as err:
        inflate(msg.buffers)
    assert err.value.code == ErrorCode.PAYLOAD_MISMATCH and "hudless_color: chunks[1]" in err.value.message


def _match_error(entries: Any) -> str:
    frame = _frame(_image(4))
    parts, wire = _stream(frame)
    got = _decoded_parts(parts)
    msg = decode(wire, compression=CTX)
    assert isinstance(msg, Frame)
    with pytest.raises(ProtocolError) as err:
        attach_frame_parts(msg.buffers, entries(got))
    assert err.value.code == ErrorCode.PAYLOAD_MISMATCH
    return err.value.message


def test_the_frame_checks_its_parts_against_its_tables() -> None:
    assert _match_error(lambda g: [(q.buffer, q.index, q.data, None) for q in g[:2]]) == \
        "hudless_color: chunks[2]: no PART arrived"
    assert _match_error(lambda g: [(q.buffer, q.index, q.data, None) for q in [*g, g[1]]]) == \
        "hudless_color: chunks[1]: more than one PART arrived"
    msg = _match_error(lambda g: [(q.buffer, q.index, bytes(q.data)[:-1], None) for q in g])
    assert msg.startswith("hudless_color: chunks[0]: the PART holds")
    assert _match_error(lambda g: [*((q.buffer, q.index, q.data, None) for q in g), ("albedo", 0, b"x", None)]) == \
        "albedo: a PART arrived for a buffer the FRAME does not stream"


def test_part_and_streamed_checks_follow_the_negotiation() -> None:
    part = encode(Part(7, 3, "albedo", 0, b"\x01"))
    out = encode(Part(7, 3, "output", 0, b"\x01"))
    assert isinstance(decode(part, compression=CTX), Part)
    for wire, caps in ((part, ("lz4", CHUNKED, STREAMED_OUTPUT)), (out, CTX)):
        with pytest.raises(ProtocolError) as err:
            decode(wire, compression=caps)
        assert err.value.code == ErrorCode.BAD_VALUE and "was not negotiated" in err.value.message
    frame = _frame(_image(5, 64, 32))
    list(encode_streamed_frame(frame))
    header = encode(frame)
    with pytest.raises(ProtocolError) as err:
        decode(header, compression=("lz4", CHUNKED, STREAMED_OUTPUT))
    assert err.value.code == ErrorCode.BAD_VALUE and "streamed_frames was not negotiated" in err.value.message
    assert isinstance(decode(header, compression=CTX), Frame)


def test_held_parts_keep_to_the_limits_and_the_decompression_budget() -> None:
    frame = _frame(_image(6))
    got = _decoded_parts(list(encode_streamed_frame(frame)))
    with ThreadPoolExecutor(2) as pool:
        hold = HeldParts(frame_bytes=2 * MIB)  # room to decompress two of the three chunks ahead
        for q in got:
            hold.add(q, None, ("lz4",), lambda: pool)
        ahead = [p.early for p in hold.parts]
        assert [e is not None for e in ahead] == [True, True, False]
        assert hold.early_bytes == 2 * MIB
        taken = hold.take(3)
        assert len(taken) == 3 and len(hold) == 0 and hold.bytes == 0 and hold.early_bytes == 0
        first = taken[0].early
        assert first is not None and first.future.result() is not None and len(first.future.result() or b"") == MIB
        # over the byte limit: that frame's PARTs go, LIMIT_EXCEEDED
        hold = HeldParts(frame_bytes=1000)
        hold.add(Part(7, 4, "albedo", 0, b"\1" * 1000), None, ("lz4",), None)
        hold.add(Part(7, 5, "albedo", 0, b"\1" * 1000), None, ("lz4",), None)
        with pytest.raises(ProtocolError) as err:
            hold.add(Part(7, 5, "albedo", 1, b"\1" * (PART_SLACK_BYTES)), None, ("lz4",), None)
        assert err.value.code == ErrorCode.LIMIT_EXCEEDED
        assert [p.frame for p in hold.parts] == [4]
        # a FRAME takes its own PARTs and drops older frames'
        hold.add(Part(7, 6, "albedo", 0, b"\1"), None, ("lz4",), None)
        assert hold.take(5) == [] and [p.frame for p in hold.parts] == [6]
        hold = HeldParts(frame_bytes=1 << 30)
        for i in range(MAX_HELD_FRAME_PARTS):
            hold.add(Part(7, 9, "albedo", i % 256, b"\1"), None, ("lz4",), None)
        with pytest.raises(ProtocolError) as err:
            hold.add(Part(7, 9, "albedo", 0, b"\1"), None, ("lz4",), None)
        assert err.value.code == ErrorCode.LIMIT_EXCEEDED and len(hold) == 0


# ------------------------------------------------------------------------------------------------- nrb serve


@pytest.fixture(scope="module")
def passthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("streamed_frames"), "--renderer", "passthrough") as srv:
        yield srv


def _open(c: Client, w: int = W, h: int = H, caps: tuple[str, ...] = ("lz4", "zstd", CHUNKED, SHUFFLE,
                                                                        STREAMED_FRAMES)) -> None:
    welcome = c.hello((w, h), SPEC, capabilities=list(caps))
    assert STREAMED_FRAMES in welcome.capabilities and c.streamed_frames


def _next(c: Client, img: np.ndarray, **kw: Any) -> Frame:
    assert c.session is not None
    fid = c.next_frame
    c.next_frame += 1
    return _frame(img, session=c.session, fid=fid, **kw)


def _send_streamed(c: Client, frame: Frame, fault: Any = None) -> None:
    """``frame``'s PARTs (``fault`` may change the list of (header, payload) pairs), then the FRAME."""
    parts = [(decode(w, compression=CTX), w[1]) for w in encode_streamed_frame(frame)]
    if fault is not None:
        parts = fault(parts)
    for part, payload in parts:
        c.send_raw([encode_header(part), payload])
    c.send(frame)


def _rendered(c: Client, img: np.ndarray, **kw: Any) -> None:
    """A good streamed frame renders: the session goes on."""
    res = c.result(c.send_frame([_frame(img, **kw).buffers[0]]), timeout=20)
    assert res.output is not None and np.array_equal(res.output.array(), img)


@pytest.mark.parametrize("method", ["lz4", "zstd"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_nrb_serve_renders_a_streamed_frame_exactly_as_the_frame_sent_whole(passthrough: RunningServer,
                                                                            method: str, shuffle: bool) -> None:
    img = _image(7)
    with Client(passthrough.endpoint, timeout=20) as c:
        _open(c)
        whole = c.result(c.send_frame(_frame(img, method, shuffle).buffers, stream=False))
        b = _frame(img, method, shuffle).buffers[0]
        sent = c.send_frame([b])  # streamed by default once negotiated; the caller's buffer stays as it was
        assert not b.streamed and b.chunks is None
        streamed = c.result(sent)
        assert whole.output is not None and streamed.output is not None
        assert np.array_equal(streamed.output.array(), whole.output.array())
        assert np.array_equal(streamed.output.array(), img)
        c.bye()


def test_nrb_serve_takes_parts_in_any_order(passthrough: RunningServer) -> None:
    img = _image(8)
    with Client(passthrough.endpoint, timeout=20) as c:
        _open(c)
        frame = _next(c, img, method="zstd")
        _send_streamed(c, frame, lambda ps: ps[::-1])
        res = c.result(frame.frame)
        assert res.output is not None and np.array_equal(res.output.array(), img)
        c.bye()


def _frame_error(c: Client, fid: int) -> Error:
    with pytest.raises(RemoteError) as err:
        c.result(fid)
    return err.value.error


def _session_error(c: Client) -> Error:
    msg = c.recv(timeout=20)
    assert isinstance(msg, Error), msg
    assert msg.frame is None  # section 6.3.5 step 3: it names the session only
    return msg


@pytest.mark.parametrize("fault, message", [
    (lambda ps: ps[:2], "hudless_color: chunks[2]: no PART arrived"),
    (lambda ps: [*ps, ps[0]], "hudless_color: chunks[0]: more than one PART arrived"),
    (lambda ps: [(ps[0][0], bytes(ps[0][1])[:-3]), *ps[1:]], "hudless_color: chunks[0]: the PART holds"),
    (lambda ps: [*ps, (Part(ps[0][0].session, ps[0][0].frame, "depth", 0, b""), b"\x01\x02")],
     "depth: a PART arrived for a buffer the FRAME does not stream"),
])
def test_a_frame_whose_parts_do_not_match_is_payload_mismatch_and_the_session_goes_on(
        passthrough: RunningServer, fault: Any, message: str) -> None:
    img = _image(9)
    with Client(passthrough.endpoint, timeout=20) as c:
        _open(c)
        frame = _next(c, img)
        _send_streamed(c, frame, fault)
        err = _frame_error(c, frame.frame)
        assert err.code == ErrorCode.PAYLOAD_MISMATCH and err.message.startswith(message), err
        assert err.session == c.session
        _rendered(c, img)
        c.bye()


def test_a_part_after_its_frame_is_bad_value_naming_the_session(passthrough: RunningServer) -> None:
    img = _image(10, 256, 128)
    with Client(passthrough.endpoint, timeout=20) as c:
        _open(c, 256, 128)
        assert c.session is not None
        fid = c.send_frame([_frame(img).buffers[0]])
        c.result(fid)
        c.send_raw(encode(Part(c.session, fid, "hudless_color", 0, b"\x04\x22\x4d\x18")))
        err = _session_error(c)
        assert err.code == ErrorCode.BAD_VALUE and err.session == c.session and "not above" in err.message
        _rendered(c, img)
        c.bye()


def test_a_part_for_no_session_is_no_session(passthrough: RunningServer) -> None:
    img = _image(11, 256, 128)
    with Client(passthrough.endpoint, timeout=20) as c:
        _open(c, 256, 128)
        assert c.session is not None
        c.send_raw(encode(Part(c.session + 1000, 1, "hudless_color", 0, b"\x01")))
        err = _session_error(c)
        assert err.code == ErrorCode.NO_SESSION and err.session == c.session + 1000
        _rendered(c, img)
        c.bye()


def test_a_part_of_a_session_that_did_not_negotiate_it_is_bad_value(passthrough: RunningServer) -> None:
    with Client(passthrough.endpoint, timeout=20) as c:
        c.hello((256, 128), SPEC, capabilities=["lz4", CHUNKED])
        assert c.session is not None and not c.streamed_frames
        c.send_raw(encode(Part(c.session, 1, "hudless_color", 0, b"\x01")))
        err = _session_error(c)
        assert err.code == ErrorCode.BAD_VALUE and "streamed_frames was not negotiated" in err.message
        c.bye()


def test_parts_over_the_byte_limit_are_limit_exceeded_and_dropped(passthrough: RunningServer) -> None:
    img = _image(12, 256, 128)
    with Client(passthrough.endpoint, timeout=20) as c:
        _open(c, 256, 128)
        assert c.session is not None and c.welcome is not None and c.welcome.limits is not None
        fb = c.welcome.limits.frame_bytes
        limit = fb + fb // 128 + PART_SLACK_BYTES
        fid = c.next_frame
        c.send_raw(encode(Part(c.session, fid, "hudless_color", 0, b"\x01" * (limit // 2 + 1))))
        c.send_raw(encode(Part(c.session, fid, "hudless_color", 1, b"\x01" * (limit // 2 + 1))))
        err = _session_error(c)
        assert err.code == ErrorCode.LIMIT_EXCEEDED and err.session == c.session
        # the frame's PARTs were dropped: the same frame sent streamed now has exactly its own
        _rendered(c, img)
        c.bye()


def test_parts_over_the_count_limit_are_limit_exceeded(passthrough: RunningServer) -> None:
    img = _image(13, 256, 128)
    with Client(passthrough.endpoint, timeout=20) as c:
        _open(c, 256, 128)
        assert c.session is not None
        fid = c.next_frame
        for i in range(MAX_HELD_FRAME_PARTS + 1):
            c.send_raw(encode(Part(c.session, fid, "hudless_color", i % 256, b"\x01")))
        err = _session_error(c)
        assert err.code == ErrorCode.LIMIT_EXCEEDED and "1024" in err.message
        _rendered(c, img)
        c.bye()


def test_parts_of_a_frame_that_never_came_are_dropped_at_the_next_frame(passthrough: RunningServer) -> None:
    img = _image(14, 256, 128)
    with Client(passthrough.endpoint, timeout=20) as c:
        _open(c, 256, 128)
        assert c.session is not None
        for _ in range(5):  # 5 x 256 PARTs held at once would be over the 1024 a session may hold
            lost = c.next_frame
            c.next_frame += 1
            for i in range(256):
                c.send_raw(encode(Part(c.session, lost, "hudless_color", i, b"\x01")))
            _rendered(c, img)  # a later frame drops them, and does not take them for its own
        c.ping()
        assert not c._pending, c._pending  # no ERROR came
        c.bye()


def _welcome_caps(endpoint: str, caps: list[str]) -> list[str]:
    with Client(endpoint, timeout=20) as c:
        welcome = c.hello((64, 32), SPEC, capabilities=caps)
        c.bye()
        return welcome.capabilities


def test_nrb_serve_accepts_streamed_frames_only_when_offered_with_chunks(passthrough: RunningServer) -> None:
    assert STREAMED_FRAMES in _welcome_caps(passthrough.endpoint, ["lz4", CHUNKED, STREAMED_FRAMES])
    assert STREAMED_FRAMES not in _welcome_caps(passthrough.endpoint, ["lz4", CHUNKED])
    assert STREAMED_FRAMES not in _welcome_caps(passthrough.endpoint, ["lz4", STREAMED_FRAMES])


def test_nrb_serve_no_streamed_frames_does_not_accept_it(tmp_path: Path) -> None:
    img = _image(15)
    with served(tmp_path, "--renderer", "passthrough", "--no-streamed-frames") as srv:
        caps = _welcome_caps(srv.endpoint, ["lz4", CHUNKED, STREAMED_FRAMES, STREAMED_OUTPUT])
        assert CHUNKED in caps and STREAMED_OUTPUT in caps and STREAMED_FRAMES not in caps
        with Client(srv.endpoint, timeout=20) as c:
            c.hello((W, H), SPEC, capabilities=["lz4", CHUNKED, STREAMED_FRAMES])
            assert not c.streamed_frames
            _rendered(c, img)  # sent whole
            frame = _next(c, img)
            _send_streamed(c, frame)  # sent streamed anyway: each PART is BAD_VALUE, and so is the FRAME
            errors: list[Message] = []
            deadline = time.monotonic() + 20
            while len(errors) < 4 and time.monotonic() < deadline:
                errors.append(c.recv(timeout=20))
            assert all(isinstance(e, Error) and e.code == ErrorCode.BAD_VALUE for e in errors), errors
            assert [getattr(e, "frame", None) for e in errors] == [None, None, None, frame.frame]
            c.bye()


def test_a_result_is_still_a_result(passthrough: RunningServer) -> None:
    """Streaming up and down at once: the image comes back in PARTs too and assembles."""
    img = _image(16)
    with Client(passthrough.endpoint, timeout=20) as c:
        _open(c, caps=("lz4", CHUNKED, STREAMED_FRAMES, STREAMED_OUTPUT))
        res = c.result(c.send_frame([_frame(img).buffers[0]]))
        assert isinstance(res, Result) and res.output is not None and res.output.streamed
        assert np.array_equal(res.output.array(), img)
        c.bye()


def test_nrb_serve_decompresses_held_chunks_ahead_and_the_worker_uses_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: each PART's chunk is decompressed on the chunk threads when it arrives (at the size its frame
    announces: path ""), and the render worker's inflate takes those instead of decompressing again."""
    import threading

    from bridge import protocol
    from bridge.server import Server

    real = protocol._decompress
    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def spy(data: Any, method: str, size: int, path: str, shape: tuple[int, int] = (0, 0)) -> bytes:
        with lock:
            calls.append((path, threading.current_thread().name))
        return real(data, method, size, path, shape)

    monkeypatch.setattr(protocol, "_decompress", spy)
    img = _image(17)
    with Server(port=0, renderer="passthrough") as server:
        with Client(server.endpoint or "", timeout=20) as c:
            _open(c)
            res = c.result(c.send_frame([_frame(img, "lz4", True).buffers[0]]))
            assert res.output is not None and np.array_equal(res.output.array(), img)
            c.bye()
    ahead = [name for path, name in calls if path == ""]
    assert len(ahead) == 3 and all(name.startswith("nrb-chunk") for name in ahead), calls
    assert not [path for path, _ in calls if path.startswith("hudless_color")], calls


def test_a_recording_keeps_the_streamed_frame_inline(tmp_path: Path) -> None:
    from bridge.capture import CaptureReader

    img = _image(18)
    capture = tmp_path / "streamed_frames.nrbcap"
    with served(tmp_path, "--renderer", "passthrough", "--record", str(capture)) as srv:
        with Client(srv.endpoint, timeout=20) as c:
            _open(c)
            c.result(c.send_frame([_frame(img).buffers[0]]))
            c.bye()
    with CaptureReader(capture) as r:
        frames = r.frames()
        assert len(frames) == 1
        recorded = frames[0].decode()
    b = recorded.buffer("hudless_color")
    assert b is not None and not b.streamed and np.array_equal(b.array(), img)


def _welcome(endpoint: str, caps: list[str]) -> Any:
    with Client(endpoint, timeout=20) as c:
        welcome = c.hello((W, H), SPEC, capabilities=caps)
        c.bye()
        return welcome


def test_a_streaming_session_reserves_what_it_holds_ahead_and_goes_without_when_that_does_not_fit(
        tmp_path: Path) -> None:
    """Section 11.1: PARTs held ahead of a FRAME (payloads and chunks decompressed ahead) count in session_bytes;
    a server whose per-session budget has no room for them opens the session without streamed frames."""
    with served(tmp_path, "--renderer", "passthrough") as srv:
        without = _welcome(srv.endpoint, ["lz4", CHUNKED])
        streaming = _welcome(srv.endpoint, ["lz4", CHUNKED, STREAMED_FRAMES])
    fb = without.limits.frame_bytes
    assert STREAMED_FRAMES in streaming.capabilities and streaming.limits.frame_bytes == fb
    assert streaming.limits.session_bytes - without.limits.session_bytes == 2 * fb + fb // 128 + (1 << 20)
    budget = without.limits.session_bytes + fb  # room for the plain session, not for what streaming holds
    with served(tmp_path, "--renderer", "passthrough", "--max-session-bytes", str(budget), name="tight") as srv:
        tight = _welcome(srv.endpoint, ["lz4", CHUNKED, STREAMED_FRAMES])
    assert CHUNKED in tight.capabilities and STREAMED_FRAMES not in tight.capabilities
    assert tight.limits.session_bytes == without.limits.session_bytes
