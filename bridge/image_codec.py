"""Lossy return of the rendered image (docs/protocol.md section 6.3.1): JPEG through Pillow's libjpeg-turbo.

Why lossy at all: over a 1 Gbit/s link a 1920x1080 ``rgba8`` image is 66 ms of link time per frame, and lossless
codecs shrink a rendered image only about 2x; JPEG at quality 90 takes it 20x smaller. The price, measured with FLIP
(tests/test_lossy_output.py): about 0.034 on the synthetic scene, where shifting every pixel of the exact image by one
8-bit step already scores 0.032, so no lossy codec reaches FLIP 0.01. It stays opt-in: an engine allows it in HELLO
``lossy_output``, otherwise every image is exact.

The renderer side is three calls the server makes, kept here so that the server's own module stays about serving:

* ``accepts_lossy(hello, output_format)`` when it opens a session: the capability (``"jpeg"``) to add to WELCOME;
* ``compress_output(buf, hello, capabilities)`` on the render worker, for an inline RESULT image: encodes it (inside
  the RESULT's ``encode_ms``) and marks the buffer so ``protocol.encode`` sends those bytes;
* ``decode_image`` is the receiving side (``bridge.protocol`` calls it), checking the size before decoding.

Pillow is imported lazily: it is in the ``[server]`` extra, and an engine-side install needs it only when it allows
lossy return.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from bridge.protocol import (
    LOSSY_COMPRESSIONS,
    LOSSY_FORMATS,
    Buffer,
    ErrorCode,
    Hello,
    ProtocolError,
)

if TYPE_CHECKING:
    from collections.abc import Collection

#: JPEG chroma subsampling 4:4:4 (Pillow's 0): FLIP counts chroma loss hard (on the synthetic scene at quality 90,
#: 0.034 with 4:4:4 vs 0.038 with 4:2:0, for 17% more bytes), and the bytes are few either way.
_SUBSAMPLING = 0


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # an engine-side install without the [server] extra
        raise RuntimeError("lossy image return needs Pillow (pip install 'neural-render-bridge[server]')") from exc
    return Image


def available() -> bool:
    """Whether this process can encode and decode JPEG (Pillow with its JPEG plugin)."""
    try:
        from PIL import features
    except ImportError:
        return False
    return bool(features.check("jpg"))


def accepts_lossy(hello: Hello, output_format: str) -> list[str]:
    """The capabilities to add to WELCOME for ``hello``'s ``lossy_output``: ``["jpeg"]`` when the engine allowed it
    and the session's image is 8-bit RGBA (JPEG cannot carry ``rgba16f``), else ``[]`` (the image stays exact)."""
    lossy = hello.lossy_output
    if lossy is None or lossy.codec not in LOSSY_COMPRESSIONS or output_format not in LOSSY_FORMATS:
        return []
    return [lossy.codec] if available() else []


def compress_output(buf: Buffer, hello: Hello, capabilities: Collection[str]) -> bool:
    """Encode an inline RESULT image lossily when the session negotiated it (``capabilities`` is WELCOME's); return
    whether it did. The JPEG bytes go in ``buf.compressed``, which ``protocol.encode`` sends as the payload."""
    lossy = hello.lossy_output
    if lossy is None or lossy.codec not in capabilities or buf.shm is not None or buf.format not in LOSSY_FORMATS:
        return False
    buf.compressed = memoryview(encode_image(buf, lossy.quality))
    buf.compression = lossy.codec
    return True


def encode_image(buf: Buffer, quality: int) -> bytes:
    """``buf``'s pixels (8-bit RGBA, tight rows) as one baseline 4:4:4 JPEG at ``quality``; alpha is dropped."""
    if buf.data is None:
        raise ValueError(f"buffer {buf.name!r} has no pixels to encode")
    if buf.format not in LOSSY_FORMATS or buf.stride != buf.width * 4:
        raise ValueError(f"JPEG carries rgba8/rgba8_srgb with tight rows, not {buf.format} stride {buf.stride}")
    image = _pil().frombuffer("RGBX", (buf.width, buf.height), buf.data, "raw", "RGBX", 0, 1)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(quality), subsampling=_SUBSAMPLING)
    return out.getvalue()


def decode_image(data: memoryview | bytes, width: int, height: int, path: str = "output") -> bytes:
    """One JPEG payload as ``width`` × ``height`` RGBA (alpha 255). The frame header's size is checked before any
    pixel is decoded: anything else, or undecodable data, is ``PAYLOAD_MISMATCH`` (protocol section 6.3.1)."""
    image_mod = _pil()
    try:
        image = image_mod.open(io.BytesIO(bytes(data)), formats=["JPEG"])
    except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError...
        raise ProtocolError(ErrorCode.PAYLOAD_MISMATCH, f"{path}: not a JPEG image: {exc}") from exc
    if image.size != (width, height):
        raise ProtocolError(ErrorCode.PAYLOAD_MISMATCH, f"{path}: the JPEG is {image.size[0]}x{image.size[1]}, the "
                                                        f"descriptor says {width}x{height}")
    if image.mode not in ("RGB", "L"):
        raise ProtocolError(ErrorCode.PAYLOAD_MISMATCH, f"{path}: a {image.mode} JPEG (1 or 3 components only)")
    try:
        return bytes(image.convert("RGBA").tobytes())
    except Exception as exc:
        raise ProtocolError(ErrorCode.PAYLOAD_MISMATCH, f"{path}: cannot decode the JPEG: {exc}") from exc
