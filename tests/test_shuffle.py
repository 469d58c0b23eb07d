"""Byte-shuffled compressed payloads (docs/protocol.md section 6.3.3, issue 19).

What a user would check: the shuffle puts the bytes where the spec says (planes, then the tail); a shuffled buffer
decodes to exactly its pixels in both codecs, whole or in chunks; 16-bit G-buffers travel in far fewer bytes than
unshuffled; ``nrb serve`` accepts ``"shuffle"`` only from an engine that offers it (``--no-shuffle`` answers as an
older server, and a shuffled payload it did not accept is refused while it goes on serving); libnrb shuffles what it
compresses once the server accepts, its images stay exact, and it sends fewer bytes than to a server that does not.
The shared vectors (tests/vectors, ``shuffle_*`` and ``*_shuffled*``) hold both codecs to the same layout and checks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from helpers.serverkit import connected_client, image_of, served, tiled_image

from bridge.protocol import (
    CHUNKED,
    COMPRESSIONS,
    SHUFFLE,
    Buffer,
    BufferSpec,
    Frame,
    decode,
    encode,
    shuffle_bytes,
    unshuffle_bytes,
)

W, H = 512, 384


def _smooth_half(w: int = W, h: int = H, channels: int = 2) -> np.ndarray:
    """Half floats that vary smoothly across the image (motion vectors, depth, octahedral normals look so)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    planes = [np.sin(xx * (0.011 + 0.003 * c)) * 0.5 + yy * 0.001 * (c + 1) for c in range(channels)]
    return np.ascontiguousarray(np.stack(planes, -1).astype(np.float16))


def _image(seed: int = 0, w: int = W, h: int = H) -> np.ndarray:
    return tiled_image(seed, w, h)


def test_shuffle_puts_byte_j_of_texel_i_at_j_times_n_plus_i_and_keeps_the_tail_in_place() -> None:
    # 7 bytes, 2-byte texels: n = 3 whole texels, planes [1 3 5] [2 4 6], then the 1 byte after the last texel
    assert shuffle_bytes(bytes([1, 2, 3, 4, 5, 6, 7]), 2) == bytes([1, 3, 5, 2, 4, 6, 7])
    data = bytes(range(23))
    for t in (2, 4, 8):
        assert unshuffle_bytes(shuffle_bytes(data, t), t) == data


def test_libnrb_kernels_and_the_numpy_kernels_shuffle_alike_for_every_texel_and_length(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python codec runs libnrb's SSE2 kernels (bridge._native) where they are built and numpy's otherwise: the
    same planes and tails either way, whole buffers and a chunk unshuffled into its range of a larger one."""
    native = pytest.importorskip("bridge._native")
    from bridge import protocol

    assert protocol._native_shuffle() is native  # the kernels bridge.protocol runs when the module is built
    rng = np.random.default_rng(5)
    for length in (0, 1, 7, 63, 64, 1000, 65_537):
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        for t in (2, 3, 4, 8, 16):
            fast = bytes(shuffle_bytes(data, t))
            back = np.zeros(length + 10, np.uint8)
            unshuffle_bytes(fast, t, back[5:5 + length])
            monkeypatch.setattr(protocol, "_NATIVE_SHUFFLE", None)
            assert fast == bytes(shuffle_bytes(data, t)), (length, t)
            assert bytes(unshuffle_bytes(fast, t)) == data
            monkeypatch.undo()
            assert back[5:5 + length].tobytes() == data and not back[:5].any() and not back[5 + length:].any()
    with pytest.raises(ValueError, match="same length"):
        native.shuffle_into(b"abcd", bytearray(3), 2)
    with pytest.raises(ValueError, match="overlap"):
        buf = bytearray(8)
        native.unshuffle_into(memoryview(buf)[:4], memoryview(buf)[2:6], 2)


@pytest.mark.parametrize("method", COMPRESSIONS)
@pytest.mark.parametrize("chunk_bytes", [None, 100_003])  # chunks of an odd length: each has its own tail
def test_a_shuffled_buffer_decodes_to_exactly_its_pixels(method: str, chunk_bytes: int | None) -> None:
    mv = _smooth_half()
    b = Buffer.from_array("motion_vectors", "rg16f", mv, compression=method)
    b.filter, b.chunk_bytes = SHUFFLE, chunk_bytes
    with ThreadPoolExecutor(3) as pool:
        wire = encode(Frame(7, 1, 123, 0.016, 50.0, [b]), pool)
    got = decode(wire, compression=(*COMPRESSIONS, CHUNKED, SHUFFLE))
    assert isinstance(got, Frame)
    out = got.buffers[0]
    assert out.filter == SHUFFLE and (out.chunks is not None) == (chunk_bytes is not None)
    assert np.array_equal(out.array(), mv)


@pytest.mark.parametrize("method", COMPRESSIONS)
def test_shuffled_half_float_buffers_travel_in_far_fewer_bytes(method: str) -> None:
    """The point of the filter: a smooth rg16f buffer compresses to well under 70 % of its unshuffled size."""
    mv = _smooth_half()

    def wire_bytes(flt: str | None) -> int:
        b = Buffer.from_array("motion_vectors", "rg16f", mv, compression=method)
        b.filter = flt
        return len(encode(Frame(7, 1, 123, 0.016, 50.0, [b]))[1])

    assert wire_bytes(SHUFFLE) < 0.7 * wire_bytes(None)


def test_nrb_serve_takes_shuffled_frames_and_no_shuffle_refuses_them_and_keeps_serving(tmp_path: Any) -> None:
    """With "shuffle" accepted a shuffled FRAME renders the engine's image exactly; ``nrb serve --no-shuffle``
    leaves it out of WELCOME (an older server), answers a shuffled FRAME anyway sent with BAD_VALUE at ``filter``,
    and renders the next, unshuffled one."""
    from bridge.client import Client, RemoteError

    img = _image(3)
    for args, accepts in (((), True), (("--no-shuffle",), False)):
        with served(tmp_path, "--renderer", "passthrough", *args, name=f"server{int(accepts)}") as srv:
            with Client(srv.endpoint) as c:
                welcome = c.hello((W, H), [BufferSpec("hudless_color", "rgba8_srgb")],
                                  capabilities=["lz4", CHUNKED, SHUFFLE])
                assert (SHUFFLE in welcome.capabilities) == accepts
                b = Buffer.from_array("hudless_color", "rgba8_srgb", img, compression="lz4")
                b.filter = SHUFFLE
                if accepts:
                    out = c.render([b]).output
                else:
                    with pytest.raises(RemoteError, match="BAD_VALUE") as err:
                        c.render([b])
                    assert "filter" in str(err.value)
                    b.filter = None
                    out = c.render([b]).output
                assert out is not None and np.array_equal(out.array(), img)
                c.bye()


def test_nrb_serve_returns_its_image_shuffled_only_to_an_engine_that_shuffles_its_frame(tmp_path: Any) -> None:
    """Section 6.3.3 step 4: the image answering a shuffled FRAME comes back lz4 in byte planes (exact, and in fewer
    bytes than the same image unshuffled); the image answering an unshuffled compressed FRAME comes back unshuffled,
    and with ``--no-shuffle`` never shuffled."""
    from bridge.client import Client

    img = _image(5)
    for args, accepts in (((), True), (("--no-shuffle",), False)):
        with served(tmp_path, "--renderer", "passthrough", *args, name=f"back{int(accepts)}") as srv:
            with Client(srv.endpoint) as c:
                c.hello((W, H), [BufferSpec("hudless_color", "rgba8_srgb")], capabilities=["lz4", CHUNKED, SHUFFLE])
                sizes = {}
                for shuffled in (True, False):
                    b = Buffer.from_array("hudless_color", "rgba8_srgb", img, compression="lz4")
                    b.filter = SHUFFLE if shuffled and accepts else None
                    out = c.render([b]).output
                    assert out is not None and np.array_equal(out.array(), img)
                    assert out.compression == "lz4"
                    assert out.filter == (SHUFFLE if shuffled and accepts else None)
                    assert out.chunks is not None  # 768 KiB: chunked (section 6.3.2), the table gives its bytes
                    sizes[shuffled] = sum(out.chunks)
                if accepts:
                    assert sizes[True] < 0.9 * sizes[False], sizes
                c.bye()


native = pytest.importorskip("bridge._native")


def _bytes_sent_per_frame(endpoint: str, frames: int = 1) -> float:
    """libnrb (lz4, one frame in flight) sending a colour image and two smooth half-float G-buffers to a
    passthrough server: every image must come back exact; the bytes it sent, per frame. A session's first frame is
    always compressed (libnrb measures before it decides whether compressing pays, section 6.3), so one frame
    compares the codecs' bytes; later ones on this fast local link would mostly go raw."""
    bufs = [("hudless_color", "rgba8_srgb"), ("depth", "r16f"), ("motion_vectors", "rg16f")]
    c = connected_client(endpoint, transport="inline", render_size=(W, H), frames_in_flight=1,
                         deadline_ms=10_000.0, server_timeout_ms=20_000, handshake_timeout_ms=10_000, buffers=bufs,
                         compression="lz4", exact_formats=True)
    with c:
        depth, mv = _smooth_half(channels=1)[..., 0], _smooth_half()
        for seed in range(frames):
            fid = c.begin()
            img = _image(seed)
            c.tag_buffer("hudless_color", "rgba8_srgb", img)
            c.tag_buffer("depth", "r16f", depth)
            c.tag_buffer("motion_vectors", "rg16f", mv)
            c.submit()
            assert np.array_equal(image_of(c, fid).reshape(H, W, 4), img)
        s = c.stats()
        return float(s["bytes_sent"]) / frames


def test_libnrb_shuffles_what_it_compresses_and_sends_fewer_bytes_than_to_a_server_without_it(tmp_path: Any) -> None:
    """libnrb lists "shuffle" with its codec; against ``nrb serve`` (which accepts) it shuffles its 16-bit and
    32-bit-texel buffers on its pool and its images come back exact; against ``nrb serve --no-shuffle`` (an older
    server) it sends them unshuffled, exact too, and more bytes for the same frames."""
    wants = ("-o", 'wants=["depth", "motion_vectors"]')
    with served(tmp_path, "--renderer", "passthrough", *wants, name="shuffle") as srv:
        shuffled = _bytes_sent_per_frame(srv.endpoint)
    with served(tmp_path, "--renderer", "passthrough", *wants, "--no-shuffle", name="plain") as srv:
        plain = _bytes_sent_per_frame(srv.endpoint)
    assert shuffled < 0.8 * plain, (shuffled, plain)
