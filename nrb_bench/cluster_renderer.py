"""The cluster benchmark's renderer: a fixed per-frame sleep, 10x longer for one session (``nrb_bench.cluster``).

It echoes ``hudless_color`` after ``render_ms`` milliseconds of sleep (almost no CPU, so the scaling rows measure
the cluster and not this 2-core machine), or after ``slow_factor`` x ``render_ms`` when the frame is ``slow_width``
pixels wide: the "one slow session" row marks its slow engine by its render size.
"""

from __future__ import annotations

import time

import numpy as np

from bridge.protocol import BufferSpec
from bridge.renderer import Renderer, RenderInputs


class SleepRenderer(Renderer):
    name = "sleep"

    def __init__(self, render_ms: float = 20.0, slow_width: int = 0, slow_factor: float = 10.0) -> None:
        self.render_s = float(render_ms) / 1e3
        self.slow_width = int(slow_width)
        self.slow_factor = float(slow_factor)

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("hudless_color", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        slow = self.slow_width and inputs.size[0] == self.slow_width
        if self.render_s > 0:
            time.sleep(self.render_s * (self.slow_factor if slow else 1.0))
        return inputs.raw("hudless_color")


def make(render_ms: float = 20.0, slow_width: int = 0, slow_factor: float = 10.0) -> Renderer:
    return SleepRenderer(render_ms, slow_width, slow_factor)
