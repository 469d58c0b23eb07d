"""Passthrough renderer: returns the engine's own image (``hudless_color``) or, failing that, ``albedo``.

Useful to measure the bridge's own overhead and to check an engine integration end to end: what comes back is
what went out (byte for byte for 8-bit sRGB inputs). It ignores the style map.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bridge.protocol import BufferSpec
from bridge.renderer import Renderer, RenderInputs

_SOURCES = ("hudless_color", "albedo")


class PassthroughRenderer(Renderer):
    """Echo ``hudless_color`` (preferred) or ``albedo``."""

    name = "passthrough"

    def optional(self) -> list[BufferSpec]:
        return [BufferSpec("hudless_color", "rgba8_srgb"), BufferSpec("albedo", "rgba8_srgb")]

    def check_offer(self, offered: Mapping[str, str]) -> str | None:
        if not any(s in offered for s in _SOURCES):
            return "the passthrough renderer needs hudless_color or albedo"
        return None

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        for name in _SOURCES:
            b = inputs.buffers.get(name)
            if b is None:
                continue
            if b.format in ("rgba8_srgb", "rgba8"):
                return inputs.raw(name)  # already display-referred 8-bit: pass the bytes through
            return inputs[name]  # float formats are linear: the server encodes them
        raise KeyError("frame carries neither hudless_color nor albedo")
