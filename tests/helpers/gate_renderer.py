"""A renderer the test controls: ``nrb serve --renderer tests/helpers/gate_renderer.py:make -o dir=DIR``.

Every render appends ``<session-size> <frame>`` to ``DIR/rendered.log`` when it starts (so a test knows exactly which
frames reached the renderer, and in which order). A frame whose id ends in 7 is a *gated* frame: the renderer
creates ``DIR/started-<frame>`` and then waits (up to 30 s) until the test creates ``DIR/go-<frame>``, so the test
decides when it finishes and never depends on how fast this machine is. Other frames sleep ``sleep_ms`` (default 0)
and echo albedo.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bridge.protocol import BufferSpec
from bridge.renderer import Renderer, RenderInputs


class Gate(Renderer):
    name = "gate"

    def __init__(self, dir: str, sleep_ms: float = 0.0) -> None:
        self.dir = Path(dir)
        self.sleep_ms = float(sleep_ms)

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        w, h = inputs.size
        with open(self.dir / "rendered.log", "a") as log:
            log.write(f"{w}x{h} {inputs.frame}\n")
        if inputs.frame % 10 == 7:
            (self.dir / f"started-{inputs.frame}").touch()
            go = self.dir / f"go-{inputs.frame}"
            end = time.monotonic() + 30.0
            while not go.exists() and time.monotonic() < end:
                time.sleep(0.002)
        elif self.sleep_ms > 0:
            time.sleep(self.sleep_ms / 1e3)
        return inputs.raw("albedo")


def make(dir: str, sleep_ms: float = 0.0) -> Renderer:
    return Gate(dir, sleep_ms)
