"""A renderer that misbehaves on purpose, chosen by the frame id's last digit (loaded as ``file.py:make``).

3: raises; 4: returns an image of the wrong size; 5: returns NaNs; 7: takes 0.4 s; anything else: echoes albedo.
"""

from __future__ import annotations

import time

import numpy as np

from bridge.protocol import BufferSpec
from bridge.renderer import Renderer, RenderInputs


class Misbehaving(Renderer):
    name = "misbehaving"

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        kind = inputs.frame % 10
        if kind == 3:
            raise RuntimeError("boom on purpose")
        if kind == 4:
            return np.zeros((2, 2, 4), np.uint8)
        if kind == 5:
            return np.full(inputs.raw("albedo").shape, np.nan, np.float32)
        if kind == 7:
            time.sleep(0.4)
        return inputs.raw("albedo")


def make() -> Renderer:
    return Misbehaving()
