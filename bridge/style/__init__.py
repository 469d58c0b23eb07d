"""Styles: the named looks a renderer knows (``library``), how a session mixes them over time (``state``), the
per-pixel weights the renderer consumes (``stylemap``), the styles a game defines (``defined``: style files,
``define_style``), and the exact grading and post stage after the renderer (``grading``, ``lut``)."""

from bridge.style.errors import StyleError, StyleParamError
from bridge.style.library import DEFAULT_LIBRARY, PARAM_NAMES, PARAM_SPECS, Style, StyleLibrary
from bridge.style.state import EASINGS, StyleSnapshot, StyleState
from bridge.style.stylemap import build_style_map, style_map_digest

__all__ = [
    "DEFAULT_LIBRARY", "EASINGS", "PARAM_NAMES", "PARAM_SPECS", "Style", "StyleError", "StyleLibrary",
    "StyleParamError", "StyleSnapshot", "StyleState",
    "build_style_map", "style_map_digest",
]
