"""Passthrough renderer: returns the engine's own image (``hudless_color``) or, failing that, ``albedo``.

Useful to measure the bridge's own overhead and to check an engine integration end to end: what comes back is
what went out (byte for byte for 8-bit sRGB inputs). It ignores the style map.

``upscale=2`` (``nrb serve --renderer passthrough -o upscale=2``) makes it an upscaler: G-buffers at the render size,
an image twice as wide and high back (each pixel repeated 2x2). It stands in for the neural renderer's 2x head in
``nrb bench remote``, where a remote session sends G-buffers at half the output resolution: the bytes and the
session's shape are the real ones, and the upscale costs one broadcast copy, not a model.

``wants=[...]`` (buffer names) adds buffers it asks for as optional in WELCOME without using them: engines send
only the buffers a renderer asks for (docs/protocol.md section 5.2), so a bench that wants a neural renderer's
traffic through this renderer names that renderer's buffers here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bridge.protocol import BUFFER_NAMES, BufferSpec
from bridge.renderer import USUAL_FORMAT, Renderer, RenderInputs

_SOURCES = ("hudless_color", "albedo")


class PassthroughRenderer(Renderer):
    """Echo ``hudless_color`` (preferred) or ``albedo``, optionally repeated ``upscale`` x ``upscale``."""

    name = "passthrough"

    def __init__(self, upscale: int = 1, wants: list[str] | None = None) -> None:
        if not isinstance(upscale, int) or isinstance(upscale, bool) or upscale not in (1, 2, 3, 4):
            raise ValueError(f"upscale must be 1, 2, 3 or 4, not {upscale!r}")
        unknown = [n for n in wants or [] if n not in BUFFER_NAMES]
        if unknown:
            raise ValueError(f"wants: {unknown} are not buffer names of protocol section 6.1")
        self.upscale = upscale
        self.wants = [n for n in wants or [] if n not in _SOURCES]

    def optional(self) -> list[BufferSpec]:
        return [BufferSpec("hudless_color", "rgba8_srgb"), BufferSpec("albedo", "rgba8_srgb"),
                *(BufferSpec(n, USUAL_FORMAT.get(n, "rgba8")) for n in self.wants)]

    def check_offer(self, offered: Mapping[str, str]) -> str | None:
        if not any(s in offered for s in _SOURCES):
            return "the passthrough renderer needs hudless_color or albedo"
        return None

    def output_size(self, render_size: tuple[int, int], requested: tuple[int, int]) -> tuple[int, int]:
        """``upscale`` times the render size (the engine's requested size does not change what this returns)."""
        return render_size[0] * self.upscale, render_size[1] * self.upscale

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        for name in _SOURCES:
            b = inputs.buffers.get(name)
            if b is None:
                continue
            if b.format in ("rgba8_srgb", "rgba8"):
                image = inputs.raw(name)  # already display-referred 8-bit: pass the bytes through
            else:
                image = inputs[name]  # float formats are linear: the server encodes them
            return self._upscaled(image)
        raise KeyError("frame carries neither hudless_color nor albedo")

    def _upscaled(self, image: np.ndarray) -> np.ndarray:
        """Each pixel repeated ``upscale`` x ``upscale``. A pixel of 1, 2, 4 or 8 bytes is copied as one integer and
        whole rows are copied after the first (1.7 ms for 960x540 rgba8 -> 1920x1080 where a 5-d broadcast copy
        took 30 ms and np.repeat twice 7 ms on the bench machine)."""
        k = self.upscale
        if k == 1:
            return image
        h, w = image.shape[:2]
        pixel = image.dtype.itemsize * int(np.prod(image.shape[2:], dtype=np.int64))
        if pixel not in (1, 2, 4, 8) or not image.flags.c_contiguous:
            return np.repeat(np.repeat(image, k, 0), k, 1)
        whole = np.dtype(f"u{pixel}")
        src = image.view(whole).reshape(h, w)
        out = np.empty((h, k, w, k), whole)
        for j in range(k):
            out[:, 0, :, j] = src
        for i in range(1, k):
            out[:, i] = out[:, 0]
        return out.reshape(h * k, w * k).view(image.dtype).reshape(h * k, w * k, *image.shape[2:])
