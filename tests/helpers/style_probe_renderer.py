"""A renderer that shows a session's style state in its image (``--renderer tests/helpers/style_probe_renderer.py:make``).

It echoes ``albedo`` with the red channel replaced by how far the style map is from ``identity``: 0 for a session in
its initial style, 255 for one fully in another style (e.g. after ``set_style("noir", 1.0)``). A test reads that
pixel to see which style state a session renders with, e.g. after it moved to another worker.
"""

from __future__ import annotations

import numpy as np

from bridge.protocol import BufferSpec
from bridge.renderer import Renderer, RenderInputs


class StyleProbe(Renderer):
    name = "style-probe"

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        out = np.array(inputs.raw("albedo"), copy=True)
        away = 1.0 - style_map[..., 0]  # channel 0 is the library's first style, identity
        h, w = out.shape[:2]
        out[..., 0] = np.clip(np.rint(255 * np.broadcast_to(away, (h, w))), 0, 255).astype(np.uint8)
        return out


def make() -> Renderer:
    return StyleProbe()
