"""Lossy return of the rendered image (docs/protocol.md section 6.3.1): JPEG through Pillow's libjpeg-turbo, WebP
through Pillow's libwebp.

Why lossy at all: over a 1 Gbit/s link a 1920x1080 ``rgba8`` image is 66 ms of link time per frame, and lossless
codecs shrink a rendered image only about 2x; JPEG at quality 90 takes it 20x smaller. The price, measured with FLIP
(tests/test_lossy_output.py): about 0.034 on the synthetic scene, where shifting every pixel of the exact image by one
8-bit step already scores 0.032, so no lossy codec reaches FLIP 0.01. It stays opt-in: an engine allows it in HELLO
``lossy_output``, otherwise every image is exact.

The renderer side is three calls the server makes, kept here so that the server's own module stays about serving:

* ``accepts_lossy(hello, output_format)`` when it opens a session: the capability (``"jpeg"`` or ``"webp"``) to add
  to WELCOME;
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
#: libwebp's speed/size trade-off (0 fastest .. 6 smallest): 0, because the encode runs on a render worker for every
#: frame; bench/remote.md has its size and milliseconds next to JPEG's. WebP's lossy mode is always 4:2:0 chroma,
#: which FLIP counts: 0.044 at quality 90 and still 0.038 at 99 on the synthetic scene, above the 1.15x one-step bound
#: JPEG meets (tests/test_lossy_output.py). So quality 100 means WebP's lossless mode (VP8L, exact, effort 0), which
#: the same test holds to FLIP 0 and which shrinks flat rendered images further than lossy JPEG does.
_WEBP_METHOD = 0
_WEBP_LOSSLESS_QUALITY = 100
#: Pillow's name of each codec's plugin, for ``features.check`` and ``Image.open(formats=...)``.
_PLUGIN = {"jpeg": ("jpg", "JPEG"), "webp": ("webp", "WEBP")}


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # an engine-side install without the [server] extra
        raise RuntimeError("lossy image return needs Pillow (pip install 'neural-render-bridge[server]')") from exc
    return Image


def available(codec: str = "jpeg") -> bool:
    """Whether this process can encode and decode ``codec`` (Pillow with its JPEG or WebP plugin)."""
    try:
        from PIL import features
    except ImportError:
        return False
    return codec in _PLUGIN and bool(features.check(_PLUGIN[codec][0]))


def accepts_lossy(hello: Hello, output_format: str) -> list[str]:
    """The capabilities to add to WELCOME for ``hello``'s ``lossy_output``: its codec (``["jpeg"]``, ``["webp"]``)
    when the engine allowed it and the session's image is 8-bit RGBA (neither carries ``rgba16f``), else ``[]`` (the
    image stays exact)."""
    lossy = hello.lossy_output
    if lossy is None or lossy.codec not in LOSSY_COMPRESSIONS or output_format not in LOSSY_FORMATS:
        return []
    return [lossy.codec] if available(lossy.codec) else []


def compress_output(buf: Buffer, hello: Hello, capabilities: Collection[str]) -> bool:
    """Encode an inline RESULT image lossily when the session negotiated it (``capabilities`` is WELCOME's); return
    whether it did. The JPEG bytes go in ``buf.compressed``, which ``protocol.encode`` sends as the payload."""
    lossy = hello.lossy_output
    if lossy is None or lossy.codec not in capabilities or buf.shm is not None or buf.format not in LOSSY_FORMATS:
        return False
    buf.compressed = memoryview(encode_image(buf, lossy.quality, lossy.codec))
    buf.compression = lossy.codec
    return True


def encode_image(buf: Buffer, quality: int, codec: str = "jpeg") -> bytes:
    """``buf``'s pixels (8-bit RGBA, tight rows) as one image at ``quality``, alpha dropped: a baseline 4:4:4 JPEG,
    or a WebP (libwebp method ``_WEBP_METHOD``: lossy below quality 100, lossless at 100)."""
    if buf.data is None:
        raise ValueError(f"buffer {buf.name!r} has no pixels to encode")
    if codec not in _PLUGIN:
        raise ValueError(f"no image codec {codec!r} (jpeg, webp)")
    if buf.format not in LOSSY_FORMATS or buf.stride != buf.width * 4:
        raise ValueError(f"{codec} carries rgba8/rgba8_srgb with tight rows, not {buf.format} stride {buf.stride}")
    image = _pil().frombuffer("RGBX", (buf.width, buf.height), buf.data, "raw", "RGBX", 0, 1)
    out = io.BytesIO()
    if codec == "jpeg":
        image.save(out, "JPEG", quality=int(quality), subsampling=_SUBSAMPLING)
    else:
        lossless = int(quality) >= _WEBP_LOSSLESS_QUALITY
        image.convert("RGB").save(out, "WEBP", lossless=lossless, quality=0 if lossless else int(quality),
                                  method=_WEBP_METHOD)
    return out.getvalue()


def decode_image(data: memoryview | bytes, width: int, height: int, path: str = "output",
                 codec: str = "jpeg") -> bytes:
    """One JPEG or WebP payload as ``width`` × ``height`` RGBA (alpha 255). The image's header size is checked before
    any pixel is decoded: anything else, or undecodable data, is ``PAYLOAD_MISMATCH`` (protocol section 6.3.1)."""
    image_mod = _pil()
    name = codec.upper()
    try:
        image = image_mod.open(io.BytesIO(bytes(data)), formats=[_PLUGIN[codec][1]])
    except Exception as exc:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError...
        raise ProtocolError(ErrorCode.PAYLOAD_MISMATCH, f"{path}: not a {name} image: {exc}") from exc
    if image.size != (width, height):
        raise ProtocolError(ErrorCode.PAYLOAD_MISMATCH, f"{path}: the {name} is {image.size[0]}x{image.size[1]}, "
                                                        f"the descriptor says {width}x{height}")
    if image.mode not in ("RGB", "L", "RGBA"):
        raise ProtocolError(ErrorCode.PAYLOAD_MISMATCH, f"{path}: a {image.mode} {name} (1 or 3 components only)")
    try:
        # a WebP's own alpha is ignored: alpha is 255 (6.3.1)
        rgba = image.convert("RGB").convert("RGBA") if image.mode == "RGBA" else image.convert("RGBA")
        return bytes(rgba.tobytes())
    except Exception as exc:
        raise ProtocolError(ErrorCode.PAYLOAD_MISMATCH, f"{path}: cannot decode the {name}: {exc}") from exc
