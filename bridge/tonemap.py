"""The engine's tone curves and their inverses: taking ``hudless_color`` back to linear light.

An engine multiplies its linear HDR image by a pre-exposure and puts it through a tone curve before it becomes
the ``hudless_color`` it sends (docs/protocol.md 6.1). The camera constants ``exposure`` and ``tone_mapping``
(docs/protocol.md 8) state both, so a renderer that wants light, not a picture of it (the neural renderer, which
learns to turn the engine's raster image into a path-traced one), can undo them: :func:`engine_linear`.

The curves are the ones the training data's engine images use (``neural_renderer.data.engine.tone_map``; a test
keeps the two in step), each mapping exposed linear RGB to display-linear values in [0, 1] (what a float or
``*_srgb`` texture holds after the sRGB decode a sampler does):

``none``     the buffer is the pre-exposed linear HDR image itself (``rgba16f``); the inverse is exact.
``clamp``    ``min(x, 1)``; exact below 1, saturated values stay at 1.
``reinhard`` ``x / (1 + x)`` per channel; exact (display values are capped just below 1).
``aces``     Stephen Hill's fit of the ACES RRT+ODT (input matrix, rational curve, output matrix); exact
             (matrix inverses and the rational curve's positive root) where the forward result was not clipped
             to [0, 1]: the very darkest values (the fit dips below 0 near black) and saturated ones are not.
``agx``      Troy Sobotka's AgX base look with its 6th-order sigmoid fit and a 2.2 display power; the sigmoid is
             monotonic on [0, 1] and is inverted numerically (table, then Newton steps) to float32 precision,
             exact up to the log2 range the curve clips ([2^-12.47, 2^4.03] before its input matrix).
``other``    a curve the engine does not name: the values are taken as display values, i.e. as if the engine had
             clamped linear light to [0, 1] (the ``clamp`` inverse). Also what an unstated (None) curve means.

Where the exposure is unstated (None) it is taken as 1.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np

ToneMapping = Literal["none", "clamp", "reinhard", "aces", "agx", "other"]
#: The ``tone_mapping`` camera-constant values, in wire order (docs/protocol.md 8; the C ABI's
#: ``NRB_TONE_MAPPING_*`` constants are 1 + the index here, 0 meaning "not stated").
TONE_MAPPINGS: Final[tuple[ToneMapping, ...]] = ("none", "clamp", "reinhard", "aces", "agx", "other")

_ACES_IN = np.array([[0.59719, 0.35458, 0.04823], [0.07600, 0.90834, 0.01566], [0.02840, 0.13383, 0.83777]])
_ACES_OUT = np.array(
    [[1.60475, -0.53108, -0.07367], [-0.10208, 1.10813, -0.00605], [-0.00327, -0.07276, 1.07602]]
)
# The rational curve (v (v + A) - B) / (v (C v + D) + E).
_ACES_A, _ACES_B, _ACES_C, _ACES_D, _ACES_E = 0.0245786, 0.000090537, 0.983729, 0.4329510, 0.238081
# AgX: rows here are the GLSL matrices' columns (applied as ``v @ M``).
_AGX_IN = np.array(
    [
        [0.842479062253094, 0.0423282422610123, 0.0423756549057051],
        [0.0784335999999992, 0.878468636469772, 0.0784336],
        [0.0792237451477643, 0.0791661274605434, 0.879142973793104],
    ]
)
_AGX_OUT = np.array(
    [
        [1.19687900512017, -0.0528968517574562, -0.0529716355144438],
        [-0.0980208811401368, 1.15190312990417, -0.0980434501171241],
        [-0.0990297440797205, -0.0989611768448433, 1.15107367264116],
    ]
)
_AGX_EV = (-12.47393, 4.026069)

_ACES_IN_INV = np.linalg.inv(_ACES_IN)
_ACES_OUT_INV = np.linalg.inv(_ACES_OUT)
_AGX_IN_INV = np.linalg.inv(_AGX_IN)
_AGX_OUT_INV = np.linalg.inv(_AGX_OUT)

#: Reinhard's display values are capped here before the inverse: 1 itself would be infinite light.
REINHARD_MAX: Final = 1.0 - 1.0 / 1024.0


def _agx_sigmoid(v: np.ndarray) -> np.ndarray:
    return ((((((15.5 * v - 40.14) * v + 31.96) * v - 6.868) * v + 0.4298) * v + 0.1191) * v) - 0.00232


def _agx_sigmoid_d(v: np.ndarray) -> np.ndarray:
    return (((((93.0 * v - 200.7) * v + 127.84) * v - 20.604) * v + 0.8596) * v) + 0.1191


_AGX_TABLE_X = np.linspace(0.0, 1.0, 4097)
_AGX_TABLE_Y = _agx_sigmoid(_AGX_TABLE_X)


def tone_map(x: np.ndarray, curve: str) -> np.ndarray:
    """Apply a tone curve to exposed linear RGB (..., 3): what an engine does before sending ``hudless_color``.
    ``none`` returns it unchanged (negatives clamped); the others return display-linear values in [0, 1]. Used by
    tests and tools that play an engine; float64 out."""
    x = np.maximum(np.asarray(x, np.float64), 0.0)
    if curve == "none":
        return x
    if curve in ("clamp", "other"):
        return np.minimum(x, 1.0)
    if curve == "reinhard":
        return x / (1.0 + x)
    if curve == "aces":
        v = x @ _ACES_IN.T
        v = (v * (v + _ACES_A) - _ACES_B) / (v * (_ACES_C * v + _ACES_D) + _ACES_E)
        return np.clip(v @ _ACES_OUT.T, 0.0, 1.0)
    if curve == "agx":
        v = x @ _AGX_IN
        lo, hi = _AGX_EV
        v = (np.clip(np.log2(np.maximum(v, 1e-10)), lo, hi) - lo) / (hi - lo)
        v = _agx_sigmoid(v) @ _AGX_OUT
        return np.clip(np.maximum(v, 0.0) ** 2.2, 0.0, 1.0)
    raise ValueError(f"unknown tone mapping {curve!r}: expected one of {', '.join(TONE_MAPPINGS)}")


def inverse_tone_map(y: np.ndarray, curve: str) -> np.ndarray:
    """Undo a tone curve: display-linear values (..., 3) -> exposed linear RGB (>= 0), float64. See the module
    docstring for where each inverse is exact."""
    y = np.asarray(y, np.float64)
    if curve == "none":
        return np.maximum(y, 0.0)
    if curve in ("clamp", "other"):
        return np.clip(y, 0.0, 1.0)
    if curve == "reinhard":
        y = np.clip(y, 0.0, REINHARD_MAX)
        return y / (1.0 - y)
    if curve == "aces":
        f = np.clip(y, 0.0, 1.0) @ _ACES_OUT_INV.T
        # f (C v^2 + D v + E) = v^2 + A v - B  ->  (f C - 1) v^2 + (f D - A) v + (f E + B) = 0; the curve tends to
        # 1/C, so f is capped below it, where the leading coefficient is negative and the larger root is the one.
        f = np.clip(f, -_ACES_B / _ACES_E, (1.0 - 1e-7) / _ACES_C)
        a = f * _ACES_C - 1.0
        b = f * _ACES_D - _ACES_A
        c = f * _ACES_E + _ACES_B
        disc = np.maximum(b * b - 4.0 * a * c, 0.0)
        v = (b + np.sqrt(disc)) / (-2.0 * a)
        return np.maximum(v @ _ACES_IN_INV.T, 0.0)
    if curve == "agx":
        s = np.clip(y, 0.0, 1.0) ** (1.0 / 2.2) @ _AGX_OUT_INV
        s = np.clip(s, _AGX_TABLE_Y[0], _AGX_TABLE_Y[-1])
        v = np.interp(s, _AGX_TABLE_Y, _AGX_TABLE_X)
        for _ in range(3):
            v = np.clip(v - (_agx_sigmoid(v) - s) / np.maximum(_agx_sigmoid_d(v), 1e-6), 0.0, 1.0)
        lo, hi = _AGX_EV
        lin = 2.0 ** (v * (hi - lo) + lo)
        # The forward clamps log2 at lo, so a channel at the floor was anything below 2^lo: call it 0.
        lin = np.where(v <= 0.0, 0.0, lin)
        return np.maximum(lin @ _AGX_IN_INV, 0.0)
    raise ValueError(f"unknown tone mapping {curve!r}: expected one of {', '.join(TONE_MAPPINGS)}")


def engine_linear(image: np.ndarray, exposure: float | None, tone_mapping: str | None) -> np.ndarray:
    """The engine's image as linear light: undo ``tone_mapping`` then divide by ``exposure``.

    ``image`` is (H, W, 3) (or any (..., 3)) display-linear values, or the linear HDR image for ``none``, as the
    camera constants describe ``hudless_color``. ``exposure`` None means 1; ``tone_mapping`` None means ``other``
    (display values). Returns float32 linear light >= 0. Raises ValueError on an unknown curve or an exposure that
    is not a positive finite number (what the protocol codecs already reject on the wire).
    """
    e = 1.0 if exposure is None else float(exposure)
    if not (np.isfinite(e) and e > 0.0):
        raise ValueError(f"exposure must be a positive finite number, got {exposure!r}")
    lin = inverse_tone_map(image, "other" if tone_mapping is None else tone_mapping)
    return (lin / e).astype(np.float32)
