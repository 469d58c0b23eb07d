"""What HELLO's optional requests ask of a renderer, decided outside the server's serving loop.

``nrb serve`` calls three functions from here, one line each (bridge/server/io_loop.py, processor.py):

* ``check_renderer(hello, label)`` first thing on a HELLO: an engine that asked for a renderer this server does not
  run is refused with ``UNSUPPORTED`` (docs/protocol.md section 5.11). It comes before the session caps, because it
  can never pass (an ``OVERLOADED`` first would send the engine into a retry loop for nothing);
* ``lossy_capabilities(hello, output_format)`` when it builds WELCOME: ``["jpeg"]`` when the engine allowed a lossy
  image (section 6.3.1) and the image is 8-bit, added to WELCOME ``capabilities``;
* ``compress_output(buf, hello, capabilities)`` on the render worker for an inline RESULT image: encodes it as JPEG
  when negotiated (returns True; the lossless choice is skipped then).
"""

from __future__ import annotations

from bridge.image_codec import accepts_lossy, compress_output
from bridge.protocol import ErrorCode, Hello, ProtocolError, renderer_matches

__all__ = ["check_renderer", "compress_output", "lossy_capabilities"]


def check_renderer(hello: Hello, label: str) -> None:
    """Raise ``UNSUPPORTED`` when ``hello`` names a renderer other than ``label`` (this server's WELCOME name)."""
    if hello.renderer is not None and not renderer_matches(hello.renderer, label):
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"renderer: this server renders {label!r}, not "
                                                   f"{hello.renderer!r}")


def lossy_capabilities(hello: Hello, output_format: str) -> list[str]:
    """The lossy codec WELCOME accepts for ``hello`` (``["jpeg"]``), or ``[]``: the image stays exact."""
    return accepts_lossy(hello, output_format)
