"""The trivial renderer of the round-trip test: albedo shaded by the normal against a fixed light.

Loaded by a real ``nrb serve`` process as ``tests/helpers/lambert_renderer.py:make``.
"""

from __future__ import annotations

import numpy as np

from bridge.protocol import BufferSpec
from bridge.renderer import Renderer, RenderInputs

LIGHT = np.array([0.0, 0.0, 1.0], np.float32)


def shade(albedo: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 albedo, (H, W, 3) float normals → (H, W, 4) uint8: albedo × max(0, n·l), alpha 255."""
    lambert = np.clip(normals[..., :3] @ LIGHT, 0.0, 1.0)[..., None]
    rgb = np.round(albedo[..., :3].astype(np.float32) * lambert).astype(np.uint8)
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)


class Lambert(Renderer):
    name = "lambert-test"

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8"), BufferSpec("normals", "rgba32f")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        return shade(inputs.raw("albedo"), inputs.raw("normals"))


def make() -> Renderer:
    return Lambert()
