"""Neural Render Bridge: engine-side and server-side Python for the NRB/1 protocol.

The main entry points are re-exported lazily (importing ``bridge`` stays cheap for the codec-only users):
``Renderer`` (the renderer interface), ``StyleState`` (a session's style mix over time) and ``Server`` (the
render server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.renderer import Renderer
    from bridge.server import Server
    from bridge.style.state import StyleState

__all__: list[str] = ["Renderer", "Server", "StyleState"]

_EXPORTS = {"Renderer": "bridge.renderer", "Server": "bridge.server", "StyleState": "bridge.style.state"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")
