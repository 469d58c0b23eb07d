"""A renderer with a known cost, for the soak's overload row (``nrb serve --renderer
nrb_bench.paced_renderer:make -o render_ms=20 -o stall_file=PATH``).

It echoes ``hudless_color`` after ``render_ms`` milliseconds, and stalls while ``stall_file`` exists, so that the
benchmark can make a sender exactly twice as fast as the renderer and then stop the renderer for a while.
"""

from __future__ import annotations

import os
import time

import numpy as np

from bridge.protocol import BufferSpec
from bridge.renderer import Renderer, RenderInputs


class PacedRenderer(Renderer):
    name = "paced"

    def __init__(self, render_ms: float = 20.0, stall_file: str | None = None) -> None:
        self.render_s = float(render_ms) / 1e3
        self.stall_file = stall_file

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("hudless_color", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        while self.stall_file and os.path.exists(self.stall_file):
            time.sleep(0.005)
        time.sleep(self.render_s)
        return inputs.raw("hudless_color")


def make(render_ms: float = 20.0, stall_file: str | None = None) -> Renderer:
    return PacedRenderer(render_ms, stall_file)
