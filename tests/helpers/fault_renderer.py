"""A renderer whose faults the fault-matrix tests switch from outside (``nrb serve --renderer THIS_FILE:make``).

It echoes ``hudless_color`` back (so the engine can check each image is the one it sent for that frame) and:

* hangs while the file named by ``$NRB_FAULT_HANG_FILE`` exists (the test creates and removes it);
* raises on every N-th render call of this server process when ``$NRB_FAULT_RAISE_EVERY=N``;
* takes ``$NRB_FAULT_RENDER_MS`` milliseconds per render (a renderer slower than the game).
"""

from __future__ import annotations

import itertools
import os
import time

import numpy as np

from bridge.protocol import BufferSpec
from bridge.renderer import Renderer, RenderInputs

_calls = itertools.count(1)  # per server process, over all sessions


class FaultRenderer(Renderer):
    name = "fault"

    def __init__(self) -> None:
        self.hang_file = os.environ.get("NRB_FAULT_HANG_FILE")
        self.raise_every = int(os.environ.get("NRB_FAULT_RAISE_EVERY", "0"))
        self.render_s = float(os.environ.get("NRB_FAULT_RENDER_MS", "0")) / 1e3

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("hudless_color", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        n = next(_calls)
        while self.hang_file and os.path.exists(self.hang_file):
            time.sleep(0.005)
        if self.render_s:
            time.sleep(self.render_s)
        if self.raise_every and n % self.raise_every == 0:
            raise RuntimeError(f"every {self.raise_every}th render call fails on purpose")
        return inputs.raw("hudless_color")


def make() -> Renderer:
    return FaultRenderer()
