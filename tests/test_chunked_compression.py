"""Compressed payloads in independent chunks (docs/protocol.md section 6.3.2, issue 19).

What a user would check: a large buffer compressed in chunks decodes to exactly its pixels, in both codecs, on a
pool of threads or without one; a bad chunk is refused naming the buffer and the chunk, before or while
decompressing, and the server goes on serving; ``nrb serve`` accepts ``"chunked"`` only from an engine that offers
it (older engines keep getting one frame per buffer), decompresses a FRAME's chunks and compresses its image in
chunks; libnrb against ``nrb serve`` over tcp with compression on gets every image back exact. The shared vectors
(tests/vectors, ``chunk*`` and ``*_chunked``) hold both codecs to the same table checks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from helpers.serverkit import RunningServer, connected_client, image_of, served, tiled_image

from bridge.protocol import (
    CHUNKED,
    COMPRESSIONS,
    Buffer,
    BufferSpec,
    ErrorCode,
    Frame,
    ProtocolError,
    chunk_bytes_for,
    decode,
    encode,
    inflate,
    message_from_header,
    parse_header,
)

W, H = 512, 384  # rgba8: 768 KiB, above the 512 KiB from which libnrb and nrb serve split a buffer


def _image(seed: int = 0, w: int = W, h: int = H) -> np.ndarray:
    return tiled_image(seed, w, h)


def _frame(buffers: list[Buffer]) -> Frame:
    return Frame(7, 1, 123, 0.016, 50.0, buffers)


@pytest.mark.parametrize("method", COMPRESSIONS)
@pytest.mark.parametrize("threads", [0, 3])
def test_a_buffer_compressed_in_chunks_decodes_to_exactly_its_pixels(method: str, threads: int) -> None:
    img = _image(1)
    b = Buffer.from_array("albedo", "rgba8", img, compression=method)
    b.chunk_bytes = 200_000  # 786,432 bytes: 4 chunks, the last 186,432
    pool = ThreadPoolExecutor(threads) if threads else None
    try:
        wire = encode(_frame([b]), pool)
        assert b.chunks is not None and len(b.chunks) == 4 and sum(b.chunks) == len(wire[1])
        header = parse_header(wire[0])
        assert header["buffers"][0]["chunks"] == b.chunks and header["buffers"][0]["chunk_bytes"] == 200_000
        msg = message_from_header(header, wire[1:], compression=(method, CHUNKED), defer_decompression=True)
        assert isinstance(msg, Frame)
        got = msg.buffers[0]
        assert got.data is None and got.compressed is not None  # left for the render worker
        inflate(msg.buffers, pool)
        assert np.array_equal(got.array(), img)
    finally:
        if pool is not None:
            pool.shutdown()


def test_chunks_are_refused_unless_the_session_negotiated_them() -> None:
    b = Buffer.from_array("albedo", "rgba8", _image(2), compression="lz4")
    b.chunk_bytes = 262_144
    wire = encode(_frame([b]))
    with pytest.raises(ProtocolError) as err:
        decode(wire, compression=("lz4",))
    assert err.value.code == ErrorCode.BAD_VALUE and "not negotiated" in str(err.value)
    assert isinstance(decode(wire, compression=("lz4", CHUNKED)), Frame)


def test_a_corrupt_chunk_is_payload_mismatch_naming_the_buffer_and_the_chunk() -> None:
    b = Buffer.from_array("albedo", "rgba8", _image(3), compression="lz4")
    b.chunk_bytes = 262_144
    wire = encode(_frame([b]))
    assert b.chunks is not None
    payload = bytearray(wire[1])
    start = b.chunks[0] + 20  # inside chunk 1's data
    payload[start:start + 64] = bytes(64)
    msg = message_from_header(parse_header(wire[0]), [bytes(payload)], compression=("lz4", CHUNKED),
                              defer_decompression=True)
    assert isinstance(msg, Frame)
    with ThreadPoolExecutor(2) as pool, pytest.raises(ProtocolError) as err:
        inflate(msg.buffers, pool)
    assert err.value.code == ErrorCode.PAYLOAD_MISMATCH
    assert "albedo: chunks[1]" in str(err.value)


def test_a_chunk_table_that_does_not_add_up_is_refused_before_anything_is_decompressed() -> None:
    b = Buffer.from_array("albedo", "rgba8", _image(4), compression="zstd")
    b.chunk_bytes = 262_144
    wire = encode(_frame([b]))
    with pytest.raises(ProtocolError) as err:  # even when decompression is deferred: a length check
        message_from_header(parse_header(wire[0]), [bytes(wire[1]) + b"\0"], compression=("zstd", CHUNKED),
                            defer_decompression=True)
    assert err.value.code == ErrorCode.PAYLOAD_MISMATCH and "add up to" in str(err.value)


def test_the_split_rule_uses_the_pool_and_leaves_small_buffers_whole() -> None:
    """Section 6.3.2 step 5: k chunks of ceil(size / k) rounded up to 64 KiB; under 512 KiB, or one thread: whole."""
    assert chunk_bytes_for(1920 * 1080 * 4, 2) == 4_194_304  # 8.29 MB in two chunks of 4 MiB (the last shorter)
    assert chunk_bytes_for(1920 * 1080 * 4, 4) == 2_097_152
    assert chunk_bytes_for(960 * 540 * 2, 2) == 524_288  # an r16f depth buffer: 1,036,800 bytes
    assert chunk_bytes_for(512 * 1024 - 1, 4) is None
    assert chunk_bytes_for(8 << 20, 1) is None


# ----------------------------------------------------------------------------------------- nrb serve, end to end
@pytest.fixture(scope="module")
def passthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("chunked"), "--renderer", "passthrough") as srv:
        yield srv


@pytest.mark.parametrize("method", COMPRESSIONS)
def test_nrb_serve_takes_chunks_and_answers_in_chunks_when_the_engine_offers_them(
        passthrough: RunningServer, method: str) -> None:
    from bridge.client import Client

    img = _image(5)
    with Client(passthrough.endpoint) as c:
        welcome = c.hello((W, H), [BufferSpec("hudless_color", "rgba8_srgb")], capabilities=[method, CHUNKED])
        assert CHUNKED in welcome.capabilities
        b = Buffer.from_array("hudless_color", "rgba8_srgb", img, compression=method)
        b.chunk_bytes = 262_144
        result = c.render([b])
        out = result.output
        assert out is not None and out.compression == method
        assert out.chunks is not None and len(out.chunks) >= 2  # the image came back in chunks too
        assert np.array_equal(out.array(), img)
        c.bye()


def test_an_engine_that_does_not_offer_chunks_gets_one_frame_per_buffer(passthrough: RunningServer) -> None:
    """Older engines (no "chunked" in HELLO) see nothing new: WELCOME does not list it, the image is one lz4 frame."""
    from bridge.client import Client

    img = _image(6)
    with Client(passthrough.endpoint) as c:
        welcome = c.hello((W, H), [BufferSpec("hudless_color", "rgba8_srgb")], capabilities=["lz4"])
        assert CHUNKED not in welcome.capabilities
        out = c.render([Buffer.from_array("hudless_color", "rgba8_srgb", img, compression="lz4")]).output
        assert out is not None and out.compression == "lz4" and out.chunks is None
        assert np.array_equal(out.array(), img)
        c.bye()


def test_a_corrupt_chunk_is_answered_from_the_render_worker_and_the_session_goes_on(passthrough: RunningServer) -> None:
    from bridge.client import Client, RemoteError

    img = _image(7)
    with Client(passthrough.endpoint) as c:
        c.hello((W, H), [BufferSpec("hudless_color", "rgba8_srgb")], capabilities=["zstd", CHUNKED])
        good = Buffer.from_array("hudless_color", "rgba8_srgb", img, compression="zstd")
        good.chunk_bytes = 262_144
        fid = c.next_frame
        c.next_frame += 1
        wire = encode(Frame(c.session, fid, time.monotonic_ns(), 0.016, 1000.0, [good]))
        assert good.chunks is not None
        payload = bytearray(wire[1])
        payload[good.chunks[0] + good.chunks[1] - 8:good.chunks[0] + good.chunks[1]] = bytes(8)  # chunk 1's end
        wire[1] = bytes(payload)
        c.send_raw(wire)
        with pytest.raises(RemoteError, match="PAYLOAD_MISMATCH") as err:
            c.result(fid, timeout=10)
        assert "hudless_color: chunks[1]" in str(err.value)
        good.chunks = None
        out = c.render([good]).output
        assert out is not None and np.array_equal(out.array(), img)
        c.bye()


native = pytest.importorskip("bridge._native")


def _native_client(endpoint: str, **kw: Any) -> Any:
    opts: dict[str, Any] = {"transport": "inline", "render_size": (W, H), "frames_in_flight": 2,
                            "deadline_ms": 10_000.0, "server_timeout_ms": 20_000, "handshake_timeout_ms": 10_000,
                            "buffers": [("hudless_color", "rgba8_srgb")]}
    return connected_client(endpoint, **{**opts, **kw})


@pytest.mark.parametrize("method", COMPRESSIONS)
def test_libnrb_over_tcp_with_compression_gets_every_image_back_exact(passthrough: RunningServer,
                                                                      method: str) -> None:
    """libnrb offers "chunked" with its codec; nrb serve accepts: frames go out in chunks compressed on libnrb's
    pool, images come back in chunks decompressed on it, and each image is the engine's, byte for byte (two frames
    in flight, so answers overlap with the next frame's compression)."""
    with _native_client(passthrough.endpoint, compression=method) as c:
        assert c.stats()["compression"] == method
        shown: set[int] = set()
        want: dict[int, np.ndarray] = {}
        end = time.monotonic() + 60
        while len(shown) < 4:
            assert time.monotonic() < end, c.stats()
            fid = c.begin()
            want[fid] = _image(fid)
            c.tag_buffer("hudless_color", "rgba8_srgb", want[fid])
            c.submit()
            time.sleep(0.02)
            got = c.acquire_result(with_info=True)
            if got is not None and got[1]["frame_id"] not in shown:
                fid_got = got[1]["frame_id"]
                assert np.array_equal(np.asarray(got[0]).reshape(H, W, 4), want[fid_got])
                shown.add(fid_got)
        s = c.stats()
        assert s["results_received"] >= 4
        assert s["bytes_received"] < s["results_received"] * W * H * 4  # the images came back compressed


def test_nrb_serve_no_chunks_answers_as_an_older_server_and_libnrb_still_gets_exact_images(tmp_path: Any) -> None:
    """``nrb serve --no-chunks`` (what ``nrb bench remote --chunks off`` compares against) leaves "chunked" out of
    WELCOME: libnrb, which offers it, then sends and receives one frame per buffer, and its images stay exact."""
    from bridge.client import Client

    with served(tmp_path, "--renderer", "passthrough", "--no-chunks") as srv:
        with Client(srv.endpoint) as py:
            welcome = py.hello((W, H), [BufferSpec("hudless_color", "rgba8_srgb")], capabilities=["lz4", CHUNKED])
            assert CHUNKED not in welcome.capabilities
            py.bye()
        with _native_client(srv.endpoint, compression="lz4") as c:
            for seed in (11, 12):
                fid = c.begin()
                img = _image(seed)
                c.tag_buffer("hudless_color", "rgba8_srgb", img)
                c.submit()
                assert np.array_equal(image_of(c, fid).reshape(H, W, 4), img)
