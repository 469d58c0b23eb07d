"""The engine's image in linear light, fast enough for every frame: what a model that reads ``hudless_color`` needs.

``bridge.tonemap.engine_linear`` is the reference (exact inverses, float64); at 640x360 it costs 50-1000 ms per
frame depending on the curve, far more than the network. This computes the same function per frame in a few
milliseconds, with what is per frame kept small:

* an 8-bit buffer (``rgba8_srgb``, ``rgba8``) has 256 values per channel, so the per-channel part of the inverse
  (the sRGB decode, and for ``none``, ``clamp``, ``reinhard`` and ``other`` the whole inverse and the exposure)
  is a 256-entry table per (format, curve, exposure), looked up with ``np.take``;
* ``aces`` and ``agx`` mix channels (a 3x3 matrix on each side of a per-channel curve): the matrices are float32
  products, the ACES curve's inverse is its closed-form root in float32, AgX's a lerp in a table of its inverse
  sampled on a uniform grid of the sigmoid's output (an index, not a search);
* float buffers (``rgba16f`` HDR with ``none``) are converted once to float32 and scaled.

Agreement with the reference is tested (``tests/test_neural_params.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bridge import tonemap
from bridge.renderer import RenderInputs

_SEPARABLE = ("none", "clamp", "reinhard", "other")


def _agx_inverse_table(n: int = 8193) -> tuple[float, float, np.ndarray]:
    """AgX's per-channel inverse (sigmoid output -> linear light) sampled on a uniform grid of the sigmoid's output,
    so that a frame needs an index and a lerp, not a search: (first s, 1 / step, values)."""
    s = np.linspace(tonemap._AGX_TABLE_Y[0], tonemap._AGX_TABLE_Y[-1], n)
    v = np.interp(s, tonemap._AGX_TABLE_Y, tonemap._AGX_TABLE_X)
    for _ in range(3):  # the reference's Newton steps, once, on the grid
        v = np.clip(v - (tonemap._agx_sigmoid(v) - s) / np.maximum(tonemap._agx_sigmoid_d(v), 1e-6), 0.0, 1.0)
    lo, hi = tonemap._AGX_EV
    lin = np.where(v <= 0.0, 0.0, 2.0 ** (v * (hi - lo) + lo))
    return float(s[0]), float((n - 1) / (s[-1] - s[0])), lin.astype(np.float32)


_AGX_S0, _AGX_SCALE, _AGX_LIN = _agx_inverse_table()


class EngineLight:
    """``hudless_color`` -> (H, W, 3) float32 linear light (``bridge.tonemap.engine_linear``), with per-renderer
    caches of the tables it needs."""

    def __init__(self) -> None:
        self._tables: dict[tuple[Any, ...], np.ndarray] = {}

    def __call__(self, inputs: RenderInputs, name: str = "hudless_color") -> np.ndarray:
        cam = inputs.camera
        exposure = getattr(cam, "pre_exposure", None)
        curve = getattr(cam, "tone_mapping", None) or "other"
        e = 1.0 if exposure is None else float(exposure)
        if not (np.isfinite(e) and e > 0.0) or curve not in tonemap.TONE_MAPPINGS:
            return tonemap.engine_linear(inputs[name][..., :3], exposure, curve)  # raises the reference's error
        buf = inputs.buffers[name]
        if buf.format in ("rgba8_srgb", "rgba8"):
            first = self._first_stage(buf.format, curve, e)
            # the whole RGBA pixels through the table (contiguous: a strided copy of three channels costs more than
            # the alpha's wasted lookups), then the colour channels
            t = np.take(first, inputs.raw(name))[..., :3]
            if curve in _SEPARABLE:
                return t
        else:
            y = np.asarray(inputs[name][..., :3], np.float32)
            if curve in _SEPARABLE:
                return (tonemap.inverse_tone_map(y, curve) / e).astype(np.float32)
            t = np.clip(y, 0.0, 1.0)
            if curve == "agx":
                t = np.power(t, np.float32(1.0 / 2.2))
        return self._matrix_curve(t, curve, e)

    def _first_stage(self, fmt: str, curve: str, e: float) -> np.ndarray:
        key = (fmt, curve, e)
        table = self._tables.get(key)
        if table is None:
            v = np.arange(256, dtype=np.float64) / 255.0
            if fmt == "rgba8_srgb":
                v = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
            if curve in _SEPARABLE:
                v = np.maximum(tonemap.inverse_tone_map(np.repeat(v[:, None], 3, 1), curve)[:, 0], 0.0) / e
            elif curve == "agx":
                v = np.clip(v, 0.0, 1.0) ** (1.0 / 2.2)
            table = v.astype(np.float32)
            if len(self._tables) > 64:
                self._tables.clear()
            self._tables[key] = table
        return table

    @staticmethod
    def _matrix_curve(t: np.ndarray, curve: str, e: float) -> np.ndarray:
        """ACES / AgX: output-matrix inverse, the per-channel curve's inverse, input-matrix inverse, / exposure.
        Worked on three colour planes (elementwise on strided views is fast; a matrix product of an (H, W, 3) view
        that is not contiguous is not)."""
        planes = [t[..., k] for k in range(3)]
        if curve == "aces":
            out = []
            for f in _mat3(planes, tonemap._ACES_OUT_INV):
                np.clip(f, np.float32(-tonemap._ACES_B / tonemap._ACES_E),
                        np.float32((1.0 - 1e-7) / tonemap._ACES_C), out=f)
                a = f * np.float32(tonemap._ACES_C) - np.float32(1.0)
                b = f * np.float32(tonemap._ACES_D) - np.float32(tonemap._ACES_A)
                c = f * np.float32(tonemap._ACES_E) + np.float32(tonemap._ACES_B)
                disc = np.maximum(b * b - np.float32(4.0) * a * c, np.float32(0.0))
                out.append((b + np.sqrt(disc)) / (np.float32(-2.0) * a))
            lin = _mat3(out, tonemap._ACES_IN_INV / e)
        else:  # agx: rows of its matrices are the GLSL columns (applied as v @ M)
            out = []
            for x in _mat3(planes, tonemap._AGX_OUT_INV.T):
                x -= np.float32(_AGX_S0)
                x *= np.float32(_AGX_SCALE)
                np.clip(x, 0.0, np.float32(len(_AGX_LIN) - 1.001), out=x)
                i = x.astype(np.intp)
                frac = x - i.astype(np.float32)
                lo = _AGX_LIN[i]
                out.append(lo + (_AGX_LIN[i + 1] - lo) * frac)
            lin = _mat3(out, tonemap._AGX_IN_INV.T / e)
        res = np.stack(lin, axis=-1)
        np.maximum(res, np.float32(0.0), out=res)
        return res


def _mat3(planes: list[np.ndarray], m: np.ndarray) -> list[np.ndarray]:
    """``m`` (3x3) applied to three colour planes: out_i = Σ_j m[i, j] · plane_j (float32)."""
    m32 = np.asarray(m, np.float32)
    return [planes[0] * m32[i, 0] + planes[1] * m32[i, 1] + planes[2] * m32[i, 2] for i in range(3)]
