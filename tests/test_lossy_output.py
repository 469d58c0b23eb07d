"""Lossy image return (docs/protocol.md section 6.3.1) and choosing the renderer in HELLO (section 5.11), against a
real ``nrb serve`` rendering the synthetic scene: what an engine on a slow link would see."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.client import Client, RemoteError
from bridge.protocol import DEFAULT_LOSSY_QUALITY, ErrorCode, LossyOutput
from bridge.scene import BUFFERS, SyntheticScene
from bridge.server import Server

SIZE = (640, 360)


def _render(endpoint: str, lossy: LossyOutput | None, frames: int = 3) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Images, payload sizes and WELCOME capabilities of a few frames of the moving scene."""
    scene = SyntheticScene(*SIZE)
    images, sizes = [], []
    with Client(endpoint, timeout=30.0) as c:
        welcome = c.hello(SIZE, BUFFERS, lossy_output=lossy)
        for i in range(frames):
            bufs, cam = scene.buffers(i * 0.5)
            result = c.render(bufs, camera=cam, timeout=30.0)
            assert result.output is not None
            sizes.append(len(result.output.compressed) if result.output.compressed is not None
                         else result.output.size)
            images.append(result.output.array()[..., :3].copy())
            assert result.output.compression == (lossy.codec if lossy else None)
        c.bye()
    return images, sizes, welcome.capabilities


@pytest.mark.parametrize(("codec", "quality"), [("jpeg", DEFAULT_LOSSY_QUALITY), ("webp", 100)])
def test_lossy_image_costs_no_more_flip_than_a_one_step_rounding_of_the_exact_one(codec: str, quality: int) -> None:
    """FLIP 0.01 cannot be the bar (docs/protocol.md 6.3.1): shifting every pixel of the exact image by one 8-bit
    step already scores about 0.032. The bar is that step: the JPEG image at the default quality is within 1.15x of
    its FLIP. WebP's lossy mode (4:2:0 chroma) is not (0.044 at 90, 0.038 at 99), so WebP is held to the bar at
    quality 100, its lossless mode, where the image comes back exact."""
    flip = pytest.importorskip("neural_renderer.evaluate").flip
    with Server(port=0, renderer="deferred") as server:
        exact, exact_sizes, exact_caps = _render(server.endpoint, None)
        lossy, _, lossy_caps = _render(server.endpoint, LossyOutput(codec, quality))
    assert codec not in exact_caps, "lossless stays the default"
    assert codec in lossy_caps
    for ref, test in zip(exact, lossy):
        reference = ref.astype(np.float32) / 255
        one_step, _ = flip(reference, np.clip(reference + 1 / 255, 0, 1))
        mean, _ = flip(reference, test.astype(np.float32) / 255)
        assert mean <= 1.15 * one_step, f"FLIP {mean:.4f} at quality {quality}; one step {one_step:.4f}"
        if codec == "jpeg":
            assert not np.array_equal(ref, test), "the image did travel lossily"
        else:
            assert np.array_equal(ref, test), "WebP at quality 100 is lossless"
    assert exact_sizes[0] == SIZE[0] * SIZE[1] * 4


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_the_lossy_payload_is_a_fraction_of_the_raw_image(codec: str) -> None:
    from bridge.image_codec import decode_image, encode_image

    scene = SyntheticScene(*SIZE)
    with Server(port=0, renderer="deferred") as server, Client(server.endpoint, timeout=30.0) as c:
        c.hello(SIZE, BUFFERS)
        bufs, cam = scene.buffers(0.0)
        out = c.render(bufs, camera=cam, timeout=30.0).output
    assert out is not None
    image = encode_image(out, DEFAULT_LOSSY_QUALITY, codec)
    assert len(image) * 8 < out.size, f"{len(image)} bytes of {codec} for {out.size} raw"
    assert len(decode_image(image, *SIZE, codec=codec)) == out.size


def test_a_hello_asking_for_another_renderer_is_refused_unsupported_and_the_server_keeps_serving() -> None:
    with Server(port=0, renderer="passthrough") as server:
        with Client(server.endpoint) as c:
            with pytest.raises(RemoteError) as info:
                c.hello(SIZE, BUFFERS, renderer="neural")
            assert info.value.error.code == ErrorCode.UNSUPPORTED
            assert "passthrough/0.1.0" in info.value.error.message and "'neural'" in info.value.error.message
        with Client(server.endpoint) as c:
            welcome = c.hello(SIZE, BUFFERS, renderer="passthrough")
            assert welcome.renderer.startswith("passthrough/")
            bufs, cam = SyntheticScene(*SIZE).buffers(0.0)
            assert c.render(bufs, camera=cam).status == "ok"


def test_a_jpeg_frame_buffer_from_an_engine_is_bad_value_even_when_lossy_return_was_negotiated() -> None:
    from bridge.image_codec import encode_image
    from bridge.protocol import Buffer

    with Server(port=0, renderer="passthrough") as server, Client(server.endpoint) as c:
        c.hello(SIZE, BUFFERS, lossy_output=LossyOutput())
        bufs, cam = SyntheticScene(*SIZE).buffers(0.0)
        albedo = next(b for b in bufs if b.name == "albedo")
        sneaky = Buffer(albedo.name, albedo.format, albedo.width, albedo.height, albedo.stride, albedo.data, "jpeg")
        sneaky.compressed = memoryview(encode_image(albedo, 90))
        with pytest.raises(RemoteError) as info:
            c.render([sneaky if b is albedo else b for b in bufs], camera=cam)
        assert info.value.error.code == ErrorCode.BAD_VALUE
        assert c.render(bufs, camera=cam).status == "ok", "the session goes on"


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_libnrb_allowed_lossy_return_shows_the_decoded_image_and_exact_images_by_default(codec: str) -> None:
    """libnrb (``lossy_quality``, nrb_client_config v2; ``lossy_codec`` v3) offers lossy_output, decodes the JPEG
    (libjpeg-turbo) or WebP (libwebp) and hands the engine RGBA as always; without it the image is byte for byte
    the renderer's."""
    native = pytest.importorskip("bridge._native")
    scene = SyntheticScene(*SIZE)
    bufs, _ = scene.buffers(0.0)
    arrays = {b.name: b.array() for b in bufs}
    formats = {s.name: s.format for s in BUFFERS}

    def shown(endpoint: str, **kw: int | str) -> np.ndarray:
        import time

        c = native.Client(endpoint=endpoint, transport="inline", render_size=SIZE, deadline_ms=5000,
                          buffers=[(n, formats[n]) for n in arrays], handshake_timeout_ms=5000, **kw)
        try:
            end = time.monotonic() + 30
            while time.monotonic() < end:
                c.begin()
                for name, a in arrays.items():
                    c.tag_buffer(name, formats[name], a)
                c.submit()
                time.sleep(0.05)
                got = c.acquire_result(copy=True)
                if got is not None:
                    return np.asarray(got)[..., :3].copy()
            raise AssertionError(f"no image: {c.stats()}")
        finally:
            c.close()

    with Server(port=0, renderer="deferred") as server, Client(server.endpoint, timeout=30.0) as py:
        py.hello(SIZE, BUFFERS)
        result = py.render(bufs, timeout=30.0)  # libnrb below sends no camera either
        assert result.output is not None
        exact = result.output.array()[..., :3]
        assert np.array_equal(shown(server.endpoint), exact)
        lossy = shown(server.endpoint, lossy_quality=DEFAULT_LOSSY_QUALITY, lossy_codec=codec)
    assert not np.array_equal(lossy, exact)
    assert np.abs(lossy.astype(int) - exact.astype(int)).mean() < 2.0
