"""The engine's punctual lights as one per-frame constant buffer, ``x_lights`` (docs/protocol.md section 6.1).

The sun and sky constants (``x_sun_*``, ``x_sky_radiance``) describe one directional light and an ambient term; a
game is lit by many more: torches, lamps, a spotlight on the boss. ``x_lights`` carries up to :data:`MAX_LIGHTS`
point, spot and directional lights as an ``rgba32f`` buffer 4 texels wide and one row per light, so the codecs need
no new message field and an older renderer ignores it as any vendor buffer. This module is the Python reference of
that layout: :func:`encode_lights` packs :class:`Light` rows (what a Python engine or the benchmarks send),
:func:`check_lights` validates a received buffer (``ProtocolError`` naming the light and field), and
:func:`decode_lights` turns it into arrays a renderer shades with. libnrb's ``nrb_frame_set_lights`` packs the
same layout from ``nrb_light`` structs (cpp/src/lights.cpp) and applies the same checks before sending.

Row ``i`` (texels x = 0..3, channels r, g, b, a):

====  =========================================  ==============================================================
x     rgb                                        a
====  =========================================  ==============================================================
0     position, world space (point, spot)        type: 0 point, 1 spot, 2 directional
1     unit direction the light shines along      range, world units (0: no range window)
      (spot axis, directional), world space
2     colour times intensity, linear RGB         reserved (0)
3     spot inner, outer cone half-angle (rad)    reserved (0)
====  =========================================  ==============================================================

Radiometry follows ``x_sun_irradiance``: a directional light's rgb is the irradiance E on a surface facing it; a
point or spot light's rgb is its radiant intensity I, giving E = I / d² at distance d (a white Lambertian surface
there has radiance E / π in the units of ``emissive``), times the range window ``clamp(1 - (d / range)^4, 0, 1)^2``
and, for a spot, ``smoothstep(cos outer, cos inner, cos angle-to-axis)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bridge.protocol import Buffer, ErrorCode, ProtocolError

#: The buffer's name (a vendor-extension name, section 6.1).
X_LIGHTS = "x_lights"
#: The most lights one frame may carry (a taller buffer is LIMIT_EXCEEDED).
MAX_LIGHTS = 64
#: Texels per light (the buffer's width).
LIGHT_TEXELS = 4
#: Light types (row texel 0, alpha).
LIGHT_POINT, LIGHT_SPOT, LIGHT_DIRECTIONAL = 0, 1, 2
LIGHT_TYPES = {"point": LIGHT_POINT, "spot": LIGHT_SPOT, "directional": LIGHT_DIRECTIONAL}
#: How far from 1 a direction's length may be (float32 normalisation in an engine is well inside this).
UNIT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Light:
    """One punctual light in protocol world space (see the module docstring for the units). ``kind`` is
    ``"point"``, ``"spot"`` or ``"directional"``; ``direction`` is the way the light shines (a spot's axis, a
    directional light's travel: the opposite of ``x_sun_direction``'s "towards the light"); ``inner`` and
    ``outer`` are a spot's cone half-angles in radians; ``range`` 0 means no range window."""

    kind: str
    color: tuple[float, float, float]
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, float, float] = (0.0, -1.0, 0.0)
    range: float = 0.0
    inner: float = 0.0
    outer: float = 0.0


@dataclass(frozen=True)
class LightArrays:
    """A decoded ``x_lights`` buffer as float32 arrays of N lights, ready to shade with."""

    kind: np.ndarray  # (N,) int: LIGHT_POINT, LIGHT_SPOT or LIGHT_DIRECTIONAL
    position: np.ndarray  # (N, 3)
    direction: np.ndarray  # (N, 3) unit, the way the light shines
    range: np.ndarray  # (N,) 0: no window
    color: np.ndarray  # (N, 3) intensity I (point, spot) or irradiance E (directional)
    cos_inner: np.ndarray  # (N,)
    cos_outer: np.ndarray  # (N,)

    def __len__(self) -> int:
        return int(self.kind.shape[0])


def encode_lights(lights: Sequence[Light]) -> np.ndarray:
    """The ``x_lights`` pixels of ``lights``: a (N, 4, 4) float32 array (height N, width 4, rgba), to send as
    ``("rgba32f", array)``. Raises ``ValueError`` for an empty list, more than :data:`MAX_LIGHTS` or an unknown
    kind; the values are checked as a renderer checks them (:func:`check_lights`)."""
    if not 1 <= len(lights) <= MAX_LIGHTS:
        raise ValueError(f"x_lights carries 1..{MAX_LIGHTS} lights, got {len(lights)}")
    out = np.zeros((len(lights), LIGHT_TEXELS, 4), np.float32)
    for i, li in enumerate(lights):
        if li.kind not in LIGHT_TYPES:
            raise ValueError(f"x_lights[{i}].type: {li.kind!r} is not one of {', '.join(LIGHT_TYPES)}")
        out[i, 0, :3] = li.position
        out[i, 0, 3] = LIGHT_TYPES[li.kind]
        out[i, 1, :3] = li.direction
        out[i, 1, 3] = li.range
        out[i, 2, :3] = li.color
        out[i, 3, 0:2] = (li.inner, li.outer)
    try:
        _check_values(out)
    except ProtocolError as exc:
        raise ValueError(exc.message) from None
    return out


def check_descriptor(b: Buffer) -> None:
    """The ``x_lights`` rules a descriptor alone decides (a session check, before any payload is read): format
    ``rgba32f`` and width 4 (``BAD_VALUE``), at most :data:`MAX_LIGHTS` rows (``LIMIT_EXCEEDED``)."""
    if b.format != "rgba32f" or b.width != LIGHT_TEXELS:
        raise ProtocolError(ErrorCode.BAD_VALUE, f"buffer {X_LIGHTS!r} is {b.width}x{b.height} {b.format}; it is "
                                                 f"rgba32f, {LIGHT_TEXELS} texels wide, one row per light")
    if b.height > MAX_LIGHTS:
        raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"buffer {X_LIGHTS!r} has {b.height} lights, at most "
                                                      f"{MAX_LIGHTS}")


def _bad(i: int, field: str, why: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_VALUE, f"{X_LIGHTS}[{i}].{field}: {why}")


def _check_values(px: np.ndarray) -> None:
    """Value rules of (N, 4, 4) light rows; the first broken one raises (lights in order, fields in row order)."""
    for i, row in enumerate(px):
        names = (("position", row[0, :3]), ("type", row[0, 3:]), ("direction", row[1, :3]), ("range", row[1, 3:]),
                 ("color", row[2, :3]), ("cone", row[3, :2]))
        for name, v in names:
            if not np.isfinite(v).all():
                raise _bad(i, name, f"{[float(x) for x in v]} is not finite")
        kind = float(row[0, 3])
        if kind not in (LIGHT_POINT, LIGHT_SPOT, LIGHT_DIRECTIONAL):
            raise _bad(i, "type", f"{kind:g} is not 0 (point), 1 (spot) or 2 (directional)")
        if kind != LIGHT_POINT:
            length = float(np.linalg.norm(row[1, :3].astype(np.float64)))
            if abs(length - 1.0) > UNIT_TOLERANCE:
                raise _bad(i, "direction", f"length {length:.6g} is not 1 (within {UNIT_TOLERANCE:g})")
        if float(row[1, 3]) < 0.0:
            raise _bad(i, "range", f"{float(row[1, 3]):g} is negative (0: no range window)")
        if (row[2, :3] < 0.0).any():
            raise _bad(i, "color", f"{[float(x) for x in row[2, :3]]} has a negative channel")
        if kind == LIGHT_SPOT:
            inner, outer = float(row[3, 0]), float(row[3, 1])
            if not 0.0 < outer <= math.pi:
                raise _bad(i, "outer", f"{outer:g} rad is outside (0, pi]")
            if not 0.0 <= inner <= outer:
                raise _bad(i, "inner", f"{inner:g} rad is outside [0, outer = {outer:g}]: the cone's outer angle "
                                       "must not be below its inner one")


def check_lights(buffers: Sequence[Buffer] | Mapping[str, Buffer]) -> None:
    """Validate the frame's ``x_lights`` payload, if it has one (``ProtocolError`` ``BAD_VALUE`` naming the light
    index and field: a non-finite value, an unknown type, a negative colour or range, a spot or directional
    direction that is not a unit vector, a spot cone whose outer angle is below its inner one or outside (0, pi]).
    Needs the pixels: the server calls it where it reads payloads (after decompression)."""
    items = buffers.values() if isinstance(buffers, Mapping) else buffers
    for b in items:
        if b.name == X_LIGHTS:
            check_descriptor(b)
            _check_values(np.asarray(b.array(), np.float32))


def decode_lights(b: Buffer) -> LightArrays:
    """A checked ``x_lights`` buffer as :class:`LightArrays` (``ProtocolError`` as :func:`check_lights`)."""
    check_descriptor(b)
    px = np.array(b.array(), np.float32).reshape(b.height, LIGHT_TEXELS, 4)
    _check_values(px)
    kind = px[:, 0, 3].astype(np.int32)
    direction = px[:, 1, :3]
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    direction = np.where(norm > 0, direction / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
    return LightArrays(kind, px[:, 0, :3].copy(), direction, px[:, 1, 3].copy(), px[:, 2, :3].copy(),
                       np.cos(px[:, 3, 0]).astype(np.float32), np.cos(px[:, 3, 1]).astype(np.float32))
