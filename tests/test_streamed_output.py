"""Streamed image return (docs/protocol.md sections 5.12 and 6.3.4): a compressed chunked RESULT image sent as PART
messages, one per chunk, ahead of its RESULT.

What a user would check: the sender's stream yields each chunk as a PART in order and fills in the chunk table; the
receiver's assembly gives back exactly the image, and refuses missing, extra, repeated and wrong-length PARTs with
``PAYLOAD_MISMATCH`` before decompressing anything; ``nrb serve`` streams only to an engine that offered it with
``"chunked"`` (not with ``--no-streamed-output``, not without chunks, never with a doorbell), sends every PART before
the RESULT, and records the RESULT with its image; a PART of output sent to ``nrb serve`` is ``BAD_VALUE`` and the session goes
on; ``bridge.client`` holds PARTs and hands back the image as usual. The shared vectors (tests/vectors, ``part*``,
``*streamed*``) hold both codecs to the same checks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from helpers.serverkit import RunningServer, served, tiled_image

from bridge.client import Client, RemoteError
from bridge.protocol import (
    CHUNK_ALIGN,
    CHUNKED,
    MAX_CHUNKS,
    SHUFFLE,
    STREAM_CHUNK_BYTES,
    STREAMED_OUTPUT,
    Buffer,
    BufferSpec,
    Error,
    ErrorCode,
    Frame,
    Message,
    OutputSpec,
    Part,
    ProtocolError,
    Result,
    Timing,
    Welcome,
    attach_parts,
    decode,
    encode,
    encode_streamed,
    inflate,
    message_from_header,
    parse_header,
    stream_chunk_bytes_for,
)

W, H = 1024, 640  # rgba8: 2.5 MiB, three chunks of 1 MiB (the last 0.5 MiB)
STREAMING = ("lz4", "zstd", CHUNKED, SHUFFLE, STREAMED_OUTPUT)
SPEC = [BufferSpec("hudless_color", "rgba8_srgb")]


def _image(seed: int, w: int = W, h: int = H) -> np.ndarray:
    return tiled_image(seed, w, h)


def _result(img: np.ndarray, method: str = "lz4", shuffle: bool = False) -> Result:
    out = Buffer.from_array("output", "rgba8", img, compression=method)
    out.chunk_bytes = stream_chunk_bytes_for(out.size)
    out.filter = SHUFFLE if shuffle else None
    return Result(7, 3, "ok", Timing(render_ms=1.0), out)


def _streamed(img: np.ndarray, method: str = "lz4", shuffle: bool = False,
              pool: ThreadPoolExecutor | None = None) -> tuple[Result, list[list[Any]], list[Any]]:
    """``img`` streamed: the RESULT, each PART's wire frames in the order they came, the RESULT's wire."""
    result = _result(img, method, shuffle)
    parts = list(encode_streamed(result, pool))
    return result, parts, encode(result)


def _parts_of(parts: list[list[Any]]) -> list[Part]:
    out = []
    for wire in parts:
        msg = decode(wire, compression=STREAMING)
        assert isinstance(msg, Part)
        out.append(msg)
    return out


# --------------------------------------------------------------------------------------------------- the codec
def test_the_stream_chunk_size_is_1_mib_rounded_to_64_kib_and_at_most_256_chunks() -> None:
    assert stream_chunk_bytes_for(1000) == STREAM_CHUNK_BYTES  # one chunk
    assert stream_chunk_bytes_for(W * H * 4) == STREAM_CHUNK_BYTES
    big = 1 << 30  # 1 GiB: 256 chunks of 4 MiB
    assert stream_chunk_bytes_for(big) == 4 << 20
    odd = 300 * (1 << 20) + 1
    n = stream_chunk_bytes_for(odd)
    assert n % CHUNK_ALIGN == 0 and -(-odd // n) <= MAX_CHUNKS


@pytest.mark.parametrize("method", ["lz4", "zstd"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("threads", [0, 3])
def test_a_streamed_image_is_parts_in_order_then_a_header_and_assembles_to_exactly_the_image(
        method: str, shuffle: bool, threads: int) -> None:
    img = _image(1)
    pool = ThreadPoolExecutor(threads) if threads else None
    try:
        result, parts, wire = _streamed(img, method, shuffle, pool)
    finally:
        if pool is not None:
            pool.shutdown()
    out = result.output
    assert out is not None and out.streamed and out.chunks is not None and len(out.chunks) == 3
    got = _parts_of(parts)
    assert [(q.session, q.frame, q.buffer, q.index) for q in got] == [(7, 3, "output", i) for i in range(3)]
    assert [len(q.data) for q in got] == out.chunks  # the chunk table is the PARTs' lengths
    assert len(wire) == 1  # the RESULT has no payload frame for a streamed image
    header = parse_header(wire[0])
    assert header["output"]["streamed"] is True and header["output"]["chunks"] == out.chunks
    assert list(header["output"])[-1] == "streamed"  # canonical position: after filter
    res = decode(wire, compression=STREAMING)
    assert isinstance(res, Result) and res.output is not None and res.output.data is None
    attach_parts(res.output, {q.index: q.data for q in reversed(got)})  # any order of arrival
    assert np.array_equal(res.output.array().view(np.uint8), img)
    # the same image sent whole decodes to the same bytes
    whole = _result(img, method, shuffle)
    plain = decode(encode(whole), compression=STREAMING)
    assert isinstance(plain, Result) and plain.output is not None and not plain.output.streamed
    assert bytes(plain.output.data or b"") == bytes(res.output.data or b"")


def test_a_deferred_assembly_leaves_the_chunks_for_inflate() -> None:
    img = _image(2)
    _, parts, wire = _streamed(img)
    res = decode(wire, compression=STREAMING)
    assert isinstance(res, Result) and res.output is not None
    attach_parts(res.output, [(q.index, q.data) for q in _parts_of(parts)], decompress=False)
    assert res.output.data is None and res.output.compressed is not None
    inflate([res.output])
    assert np.array_equal(res.output.array(), img)


def _assembly_error(parts: Any) -> str:
    img = _image(3)
    _, _, wire = _streamed(img)
    res = decode(wire, compression=STREAMING)
    assert isinstance(res, Result) and res.output is not None
    with pytest.raises(ProtocolError) as err:
        attach_parts(res.output, parts)
    assert err.value.code == ErrorCode.PAYLOAD_MISMATCH
    return err.value.message


@pytest.fixture(scope="module")
def chunks() -> list[bytes]:
    _, parts, _ = _streamed(_image(3))
    return [bytes(q.data) for q in _parts_of(parts)]


def test_a_missing_part_is_payload_mismatch(chunks: list[bytes]) -> None:
    assert _assembly_error({0: chunks[0], 2: chunks[2]}) == "output: chunks[1]: no PART arrived"


def test_an_extra_part_is_payload_mismatch(chunks: list[bytes]) -> None:
    assert "chunks[3]" in _assembly_error({0: chunks[0], 1: chunks[1], 2: chunks[2], 3: chunks[2]})


def test_a_repeated_part_is_payload_mismatch(chunks: list[bytes]) -> None:
    msg = _assembly_error([(0, chunks[0]), (1, chunks[1]), (1, chunks[1]), (2, chunks[2])])
    assert msg.startswith("output: chunks[1]") and "more than one" in msg


def test_a_part_of_the_wrong_length_is_payload_mismatch(chunks: list[bytes]) -> None:
    msg = _assembly_error({0: chunks[0], 1: chunks[1][:-4], 2: chunks[2]})
    assert msg == f"output: chunks[1]: the PART holds {len(chunks[1]) - 4} bytes, the table says {len(chunks[1])}"


def test_a_corrupt_part_is_payload_mismatch_naming_the_chunk(chunks: list[bytes]) -> None:
    bad = bytearray(chunks[2])
    bad[6] ^= 1  # the content size its frame header announces
    assert _assembly_error({0: chunks[0], 1: chunks[1], 2: bytes(bad)}).startswith("output: chunks[2]")


# --------------------------------------------------------------------------------------------- nrb serve
@pytest.fixture(scope="module")
def passthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("streamed"), "--renderer", "passthrough") as srv:
        yield srv


def _raw_answers(c: Client, fid: int, timeout: float = 20.0) -> list[Message]:
    """Every message the server sent up to the answer to ``fid``, decoded as they came off the socket."""
    got: list[Message] = []
    while True:
        assert c.sock.poll(int(timeout * 1000)), f"no answer to frame {fid}; got {got}"
        msg = decode(c.sock.recv_multipart(copy=False), compression=c.compression)
        got.append(msg)
        if isinstance(msg, (Result, Error)) and msg.frame == fid:
            return got


def _send(c: Client, img: np.ndarray, method: str = "lz4", shuffle: bool = False) -> int:
    b = Buffer.from_array("hudless_color", "rgba8_srgb", img, compression=method)
    b.filter = SHUFFLE if shuffle else None
    return c.send_frame([b])


@pytest.mark.parametrize("method", ["lz4", "zstd"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_nrb_serve_streams_the_image_in_parts_ahead_of_its_result(passthrough: RunningServer, method: str,
                                                                   shuffle: bool) -> None:
    img = _image(4)
    with Client(passthrough.endpoint, timeout=20) as c:
        caps = [method, CHUNKED, STREAMED_OUTPUT] + ([SHUFFLE] if shuffle else [])
        welcome = c.hello((W, H), SPEC, capabilities=caps)
        assert STREAMED_OUTPUT in welcome.capabilities and CHUNKED in welcome.capabilities
        fid = _send(c, img, method, shuffle)
        got = _raw_answers(c, fid)
        *parts, result = got
        assert all(isinstance(q, Part) for q in parts) and isinstance(result, Result)
        assert [(q.session, q.frame, q.buffer, q.index) for q in parts if isinstance(q, Part)] == \
            [(c.session, fid, "output", i) for i in range(3)]
        out = result.output
        assert out is not None and out.streamed and out.compression == method
        assert out.chunk_bytes == STREAM_CHUNK_BYTES and out.filter == (SHUFFLE if shuffle else None)
        assert out.chunks == [len(q.data) for q in parts if isinstance(q, Part)]
        assert result.timing.encode_ms > 0 and result.timing.total_ms >= result.timing.encode_ms
        attach_parts(out, [(q.index, q.data) for q in parts if isinstance(q, Part)])
        assert np.array_equal(out.array(), img)
        # bridge.client holds the PARTs itself: result() hands back the image as usual
        fid = _send(c, img, method, shuffle)
        res = c.result(fid)
        assert res.output is not None and res.output.streamed and np.array_equal(res.output.array(), img)
        c.bye()


def test_a_small_image_is_streamed_as_one_part(passthrough: RunningServer) -> None:
    img = _image(5, 64, 32)
    with Client(passthrough.endpoint, timeout=20) as c:
        c.hello((64, 32), SPEC, capabilities=["lz4", CHUNKED, STREAMED_OUTPUT])
        got = _raw_answers(c, _send(c, img))
        assert [type(m) for m in got] == [Part, Result]
        c.bye()


def test_nrb_serve_does_not_stream_unless_the_engine_offers_it_with_chunks(passthrough: RunningServer) -> None:
    img = _image(6)
    for caps in (["lz4", CHUNKED], ["lz4", STREAMED_OUTPUT]):
        with Client(passthrough.endpoint, timeout=20) as c:
            welcome = c.hello((W, H), SPEC, capabilities=caps)
            assert STREAMED_OUTPUT not in welcome.capabilities
            got = _raw_answers(c, _send(c, img))
            assert len(got) == 1 and isinstance(got[0], Result), got
            out = got[0].output
            assert out is not None and not out.streamed and np.array_equal(out.array(), img)
            c.bye()


def test_nrb_serve_no_streamed_output_answers_in_one_message(tmp_path: Path) -> None:
    img = _image(7)
    with served(tmp_path, "--renderer", "passthrough", "--no-streamed-output") as srv:
        with Client(srv.endpoint, timeout=20) as c:
            welcome = c.hello((W, H), SPEC, capabilities=["lz4", CHUNKED, STREAMED_OUTPUT])
            assert CHUNKED in welcome.capabilities and STREAMED_OUTPUT not in welcome.capabilities
            got = _raw_answers(c, _send(c, img))
            assert len(got) == 1 and isinstance(got[0], Result)
            out = got[0].output
            assert out is not None and not out.streamed and out.chunks is not None  # chunked, in one message
            assert np.array_equal(out.array(), img)
            c.bye()


def test_nrb_serve_no_chunks_does_not_stream(tmp_path: Path) -> None:
    with served(tmp_path, "--renderer", "passthrough", "--no-chunks") as srv:
        with Client(srv.endpoint, timeout=20) as c:
            welcome = c.hello((W, H), SPEC, capabilities=["lz4", CHUNKED, STREAMED_OUTPUT])
            assert CHUNKED not in welcome.capabilities and STREAMED_OUTPUT not in welcome.capabilities
            c.bye()


def test_an_uncompressed_frame_gets_its_image_whole(passthrough: RunningServer) -> None:
    img = _image(8, 256, 128)
    with Client(passthrough.endpoint, timeout=20) as c:
        c.hello((256, 128), SPEC, capabilities=["lz4", CHUNKED, STREAMED_OUTPUT])
        got = _raw_answers(c, c.send_frame([Buffer.from_array("hudless_color", "rgba8_srgb", img)]))
        assert len(got) == 1 and isinstance(got[0], Result) and got[0].output is not None
        assert got[0].output.compression is None and np.array_equal(got[0].output.array(), img)
        c.bye()


def test_a_part_sent_to_nrb_serve_is_bad_value_and_the_session_goes_on(passthrough: RunningServer) -> None:
    img = _image(9, 256, 128)
    with Client(passthrough.endpoint, timeout=20) as c:
        c.hello((256, 128), SPEC, capabilities=["lz4", CHUNKED, STREAMED_OUTPUT])
        assert c.session is not None
        c.send_raw(encode(Part(c.session, 1, "output", 0, b"\x04\x22\x4d\x18")))
        err = c.recv()
        assert isinstance(err, Error) and err.code == ErrorCode.BAD_VALUE
        assert err.message == "a renderer does not accept a PART of output"
        assert err.session == c.session and err.frame is None
        res = c.render([Buffer.from_array("hudless_color", "rgba8_srgb", img, compression="lz4")])
        assert res.output is not None and np.array_equal(res.output.array(), img)
        c.bye()


def test_a_recording_keeps_the_streamed_image(tmp_path: Path) -> None:
    from bridge.capture import CaptureReader

    img = _image(10)
    capture = tmp_path / "streamed.nrbcap"
    with served(tmp_path, "--renderer", "passthrough", "--record", str(capture)) as srv:
        with Client(srv.endpoint, timeout=20) as c:
            c.hello((W, H), SPEC, capabilities=["lz4", CHUNKED, STREAMED_OUTPUT])
            res = c.result(_send(c, img))
            assert res.output is not None and res.output.streamed
            c.bye()
    with CaptureReader(capture) as r:
        frames = r.frames()
        assert len(frames) == 1
        recorded = frames[0].decode_result()
    assert isinstance(recorded, Result) and recorded.output is not None
    assert not recorded.output.streamed and recorded.output.chunks is not None
    assert np.array_equal(recorded.output.array(), img)


# ------------------------------------------------------------------------------------------ bridge.client
class _FakeServer:
    """A ROUTER that plays a renderer to ``bridge.client``: it answers the HELLO, then sends what a test says."""

    def __init__(self) -> None:
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.peer = b""

    def recv(self) -> Message:
        assert self.sock.poll(5000)
        self.peer, *frames = self.sock.recv_multipart()
        return decode(frames, compression=STREAMING)

    def send(self, wire: list[Any]) -> None:
        self.sock.send_multipart([self.peer, *wire])

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def fake() -> Iterator[_FakeServer]:
    srv = _FakeServer()
    yield srv
    srv.close()


def _open(fake: _FakeServer, c: Client, caps: tuple[str, ...] = ("lz4", CHUNKED, STREAMED_OUTPUT),
          accept: tuple[str, ...] = ("lz4", CHUNKED, STREAMED_OUTPUT)) -> None:
    def answer() -> None:
        fake.recv()
        fake.send(encode(Welcome(11, "fake", list(accept), SPEC, [], OutputSpec("rgba8", W, H), 4, [])))

    t = threading.Thread(target=answer)
    t.start()
    c.hello((W, H), SPEC, capabilities=list(caps), follow_redirect=False)
    t.join()


def _play(fake: _FakeServer, c: Client, order: list[int] | None = None, extra: list[list[Any]] | None = None,
          drop: int | None = None, cut: int | None = None) -> Result:
    """The client sends a frame; the fake server streams ``img`` (its PARTs in ``order``, ``extra`` PARTs first,
    PART ``drop`` left out, PART ``cut`` 4 bytes short), then the RESULT; return what ``result()`` gives."""
    img = _image(12)
    fid = c.send_frame(
        [Buffer.from_array("hudless_color", "rgba8_srgb", np.zeros((H, W, 4), np.uint8), compression="lz4")])
    fake.recv()
    res = _result(img)
    res.session, res.frame = 11, fid
    parts = list(encode_streamed(res))
    for wire in extra or []:
        fake.send(wire)
    for i in order or range(len(parts)):
        if i == drop:
            continue
        wire = parts[i]
        fake.send([wire[0], wire[1][:-4]] if i == cut else wire)
    fake.send(encode(res))
    got = c.result(fid)
    assert got.output is not None
    assert np.array_equal(got.output.array(), img)
    return got


def test_the_client_assembles_parts_in_any_order_and_drops_parts_of_other_frames(fake: _FakeServer) -> None:
    with Client(fake.endpoint, timeout=5) as c:
        _open(fake, c)
        assert STREAMED_OUTPUT in c.compression
        stray = encode(Part(11, 999, "output", 0, b"x"))  # a frame not in flight: discarded
        other = encode(Part(12, 1, "output", 0, b"x"))  # another session: discarded
        _play(fake, c, order=[2, 0, 1], extra=[stray, other])
        _play(fake, c)  # the next frame starts with nothing held


@pytest.mark.parametrize("fault, needle", [
    ({"drop": 1}, "chunks[1]: no PART arrived"),
    ({"cut": 2}, "chunks[2]: the PART holds"),
    ({"order": [0, 1, 1, 2]}, "chunks[1]: more than one PART"),
])
def test_the_client_refuses_a_streamed_image_whose_parts_do_not_match(fake: _FakeServer, fault: dict[str, Any],
                                                                      needle: str) -> None:
    with Client(fake.endpoint, timeout=5) as c:
        _open(fake, c)
        with pytest.raises(ProtocolError) as err:
            _play(fake, c, **fault)
        assert err.value.code == ErrorCode.PAYLOAD_MISMATCH and needle in err.value.message


def test_the_client_refuses_an_extra_part(fake: _FakeServer) -> None:
    with Client(fake.endpoint, timeout=5) as c:
        _open(fake, c)
        fid = c.next_frame
        extra = encode(Part(11, fid, "output", 3, b"\x04\x22\x4d\x18"))
        with pytest.raises(ProtocolError) as err:
            _play(fake, c, extra=[extra])
        assert err.value.code == ErrorCode.PAYLOAD_MISMATCH and "chunks[3]" in err.value.message


def test_the_client_holds_no_more_than_the_limits_allow(fake: _FakeServer) -> None:
    """Section 6.3.4 step 5: 2 x the image + 1 MiB of PARTs per frame at most; beyond, the RESULT is refused."""
    with Client(fake.endpoint, timeout=5) as c:
        _open(fake, c)
        fid = c.next_frame
        flood = encode(Part(11, fid, "output", 5, bytes(W * H * 4 + (1 << 20))))
        with pytest.raises(ProtocolError) as err:
            _play(fake, c, extra=[flood, flood])
        assert err.value.code == ErrorCode.PAYLOAD_MISMATCH and "went over" in err.value.message


def test_a_client_that_did_not_ask_for_streaming_refuses_parts(fake: _FakeServer) -> None:
    with Client(fake.endpoint, timeout=5) as c:
        _open(fake, c, caps=("lz4", CHUNKED))  # the fake accepts what was not offered: the client does not take it
        assert STREAMED_OUTPUT not in c.compression
        fid = c.send_frame([Buffer.from_array("hudless_color", "rgba8_srgb", np.zeros((H, W, 4), np.uint8))])
        fake.recv()
        res = _result(_image(13))
        res.session, res.frame = 11, fid
        for wire in encode_streamed(res):
            fake.send(wire)
        fake.send(encode(res))
        with pytest.raises(ProtocolError) as err:  # its RESULT says streamed, which was not negotiated
            c.result(fid)
        assert err.value.code == ErrorCode.BAD_VALUE


def test_remote_error_after_parts_discards_them(fake: _FakeServer) -> None:
    """Section 6.3.4 step 3: an ERROR naming the frame ends it; its PARTs are dropped, the next frame is clean."""
    with Client(fake.endpoint, timeout=5) as c:
        _open(fake, c)
        fid = c.send_frame([Buffer.from_array("hudless_color", "rgba8_srgb", np.zeros((H, W, 4), np.uint8))])
        fake.recv()
        res = _result(_image(14))
        res.session, res.frame = 11, fid
        fake.send(next(encode_streamed(res)))
        fake.send(encode(Error(int(ErrorCode.RENDER_FAILED), "RENDER_FAILED", "boom", 11, fid)))
        with pytest.raises(RemoteError):
            c.result(fid)
        assert not c._parts and (11, fid) not in c._in_flight
        _play(fake, c)


def test_frame_buffers_are_not_streamed_without_streamed_frames() -> None:
    b = Buffer.from_array("albedo", "rgba8", _image(15, 64, 32), compression="lz4")
    b.chunk_bytes = 4096
    wire = encode(Frame(1, 1, 0, 0.0, 10.0, [b]))
    header = parse_header(wire[0])
    assert "streamed" not in header["buffers"][0]
    header["buffers"][0]["streamed"] = True
    with pytest.raises(ProtocolError) as err:
        message_from_header(header, wire[1:], compression=STREAMING)
    assert err.value.code == ErrorCode.BAD_VALUE and "streamed" in err.value.message
