"""Styles: the named looks a renderer knows (``library``), how a session mixes them over time (``state``) and the
per-pixel weights the renderer consumes (``stylemap``)."""

from bridge.style.library import DEFAULT_LIBRARY, PARAM_NAMES, Style, StyleLibrary
from bridge.style.state import EASINGS, StyleSnapshot, StyleState
from bridge.style.stylemap import build_style_map, style_map_digest

__all__ = [
    "DEFAULT_LIBRARY", "EASINGS", "PARAM_NAMES", "Style", "StyleLibrary", "StyleSnapshot", "StyleState",
    "build_style_map", "style_map_digest",
]
