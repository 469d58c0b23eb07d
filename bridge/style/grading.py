"""The exact grading and post stage, applied per pixel after every renderer (neural, deferred, passthrough, yours).

``grade`` applies each pixel's *grading* parameters (``bridge.style.library.GRADING_PARAMS``: Σ weight × row over
the style map, like the deferred shader's parameters) and its styles' ``.cube`` LUTs; ``post_process`` then applies
the session's intensity and masks (``StyleState.set_intensity`` / ``exclude``) against the engine's own image.

Order, per pixel (colours linear unless said):

1. **fog** — ``a = fog_max · (1 - exp(-fog · z))`` with ``z`` the linear depth (the sky, with no geometry, is at
   infinite depth and gets ``fog_max``); ``c ← c + (fog_color - c) · a``. Skipped when the frame has no depth.
2. **white balance** — channel gains ``(2^(T/2), 2^(-G/2), 2^(-T/2))`` for ``temperature`` T and ``wb_tint`` G,
   divided by their Rec. 709 luminance so that grey keeps its brightness: + temperature warms, + tint is magenta.
3. **hue** — rotation of the RGB vector by ``hue`` degrees about the grey axis (greys and the channel mean stay).
4. sRGB-encode (clamped to 0..1: the stage is display-referred, like the tools that export ``.cube`` files).
5. **lift / gamma / gain** — ``c ← clamp(gain · c + lift · (1 - c), 0, 1) ^ (1 / gamma)``, per channel.
6. **LUTs** — ``c ← c + Σ_s w_s · (LUT_s(c) - c)`` over the pixel's styles that name a LUT (a pixel mixing two LUT
   styles mixes the two graded results by weight; the rest of the weight keeps ``c``).
7. decode back (float outputs) or round to 8 bits (uint8 outputs).

Cost control: a style map whose styles are all grading-neutral (every shipped preset) returns the image object
untouched without reading a pixel; otherwise only the pixels that carry a graded style are read and written.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bridge.protocol import BufferSpec
from bridge.renderer import RenderInputs, linear_to_srgb, srgb8_to_linear, to_srgb8
from bridge.style.library import GRADING_START, Style, StyleLibrary
from bridge.style.state import StyleState

log = logging.getLogger("nrb.style")

_HUE, _TEMP, _WBT = 0, 1, 2
_LIFT, _GAMMA, _GAIN = slice(3, 6), slice(6, 9), slice(9, 12)
_FOG, _FOG_RGB, _FOG_MAX = 12, slice(13, 16), 16
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _gradeable(image: object) -> bool:
    """An image of the renderer contract (else the stages leave it for the server to answer as bad output)."""
    return isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4) \
        and (image.dtype == np.uint8 or image.dtype.kind == "f")


def _is_broadcast(style_map: np.ndarray) -> bool:
    return style_map.strides[0] == 0 and style_map.strides[1] == 0


def _nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``a`` (H, W, ...) resampled to (h, w) = ``size`` by nearest neighbour (an upscaler's output is larger)."""
    h, w = size
    if a.shape[:2] == (h, w):
        return a
    if h % a.shape[0] == 0 and w % a.shape[1] == 0:  # a whole factor (an upscaler's 2x): 4-5x faster than indexing
        return a.repeat(h // a.shape[0], axis=0).repeat(w // a.shape[1], axis=1)
    ys = (np.arange(h) * a.shape[0]) // h
    xs = (np.arange(w) * a.shape[1]) // w
    return a[ys[:, None], xs[None, :]]


#: pixels per chunk of the grading pipeline (about 100 KB per float32 plane)
_CHUNK = 1 << 15
_SRGB8 = srgb8_to_linear(np.arange(256, dtype=np.uint8))
_TABLE = 65536
_ENC = linear_to_srgb(np.linspace(0.0, 1.0, _TABLE, dtype=np.float32)).astype(np.float32)
_e = np.linspace(0.0, 1.0, _TABLE, dtype=np.float64)
_DEC = np.where(_e <= 0.04045, _e / 12.92, ((_e + 0.055) / 1.055) ** 2.4).astype(np.float32)
del _e


def _table_index(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * np.float32(_TABLE - 1) + np.float32(0.5)).astype(np.int32)


def encode_srgb(lin: np.ndarray) -> np.ndarray:
    """float linear → float sRGB-encoded 0..1 (clamped), through a 65536-entry table: within 2e-4 of the exact curve
    (under a tenth of an 8-bit step) at a fraction of the cost of ``x ** (1 / 2.4)``."""
    return _ENC[_table_index(lin)]


def srgb_to_linear(e: np.ndarray) -> np.ndarray:
    """float sRGB-encoded 0..1 → float32 linear (table, like ``encode_srgb``)."""
    return _DEC[_table_index(e)]


def _colour_matrix(prm: np.ndarray) -> np.ndarray | None:
    """(N or 1, 3, 3) ``R(hue) · diag(white balance)`` per pixel (rows: output channel), or None when neutral.

    White balance gains ``(2^(T/2), 2^(-G/2), 2^(-T/2))`` over their luminance; the hue rotation is Rodrigues'
    formula about the grey axis k = (1, 1, 1)/√3: ``cos θ I + sin θ [k]× + (1 - cos θ) k kᵀ`` (+120° turns red into
    green)."""
    hue, temp, tint = prm[:, _HUE], prm[:, _TEMP], prm[:, _WBT]
    if not (hue.any() or temp.any() or tint.any()):
        return None
    n = prm.shape[0]
    gains = np.stack([np.exp2(temp * 0.5), np.exp2(-tint * 0.5), np.exp2(-temp * 0.5)], axis=1)
    gains /= (gains @ _LUMA)[:, None]
    theta = hue * np.float32(math.pi / 180.0)
    cos, sin = np.cos(theta), np.sin(theta)
    third = (np.float32(1) - cos) / np.float32(3)
    s3 = sin / np.float32(math.sqrt(3.0))
    rot = np.empty((n, 3, 3), np.float32)
    for i in range(3):
        for j in range(3):
            # [k]x is (1/√3)·[[0,-1,1],[1,0,-1],[-1,1,0]]
            cross = 0.0 if i == j else (1.0 if (j - i) % 3 == 2 else -1.0)
            rot[:, i, j] = third + (cos if i == j else np.float32(0)) + s3 * np.float32(cross)
    return (rot * gains[:, None, :]).astype(np.float32)


def _linear_steps(lin: np.ndarray, prm: np.ndarray, depth: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-3 (fog, white balance, hue) on (3, N) linear planes: (the graded linear planes, the parameters as
    (P, N or 1) planes)."""
    c = np.array(lin, dtype=np.float32)  # (3, N), a copy we may modify
    p = np.ascontiguousarray(prm.T, dtype=np.float32)  # (P, N or 1)
    fog = p[_FOG]
    if depth is not None and fog.any():
        safe = np.where(fog > 0, fog, np.float32(1))
        z = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=3e38)
        with np.errstate(over="ignore"):
            a = (p[_FOG_MAX] / safe) * (np.float32(1) - np.exp(-fog * np.maximum(z, np.float32(0))))
        a = np.where(fog > 0, a, np.float32(0))
        c += (p[_FOG_RGB] / safe - c) * a
    m = _colour_matrix(prm)
    if m is not None:
        mt = np.ascontiguousarray(m.transpose(1, 2, 0))  # (3, 3, N or 1)
        c = np.stack([c[0] * mt[i, 0] + c[1] * mt[i, 1] + c[2] * mt[i, 2] for i in range(3)])
    return c, p


def _display_steps(e: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Step 5 (lift / gamma / gain) on sRGB-encoded planes ``e`` with the parameter planes ``p``."""
    lift, gamma, gain = p[_LIFT], p[_GAMMA], p[_GAIN]
    if lift.any() or (gain != 1).any():
        e = gain * e + lift * (np.float32(1) - e)
        np.clip(e, 0.0, 1.0, out=e)
    if (gamma != 1).any():
        e = np.power(e, np.float32(1) / np.maximum(gamma, np.float32(1e-3)), dtype=np.float32)
    return e


def grade_pixels(lin: np.ndarray, prm: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
    """Steps 1-5 on (3, N) linear colour planes with (N or 1, len(GRADING_PARAMS)) parameters and (N,) linear
    depths (None: no fog); returns (3, N) sRGB-encoded 0..1. Contiguous channel planes: numpy streams them several
    times faster than interleaved (N, 3) columns."""
    c, p = _linear_steps(lin, prm, depth)
    return _display_steps(encode_srgb(c), p)


class _ToneTables:
    """Steps 4-5 (sRGB-encode, lift / gamma / gain) and the final rounding for one parameter row, as (3, 65536)
    tables over ``encode_srgb``'s own table index: the stage's encoded value of a channel is a function of that index
    alone, so a whole-frame mix (one row: a global look, or one object's group) looks each channel up once instead of
    running five to eight whole-image passes; the same float32 operations on the table's entries give the same
    values. Built per row (a tween makes a new row each frame: 3 x 65536 entries against 3 x W x H pixels)."""

    def __init__(self, row: np.ndarray) -> None:
        p = np.ascontiguousarray(row[None, :].T, dtype=np.float32)  # (P, 1), as grade_pixels has them
        self.encoded = _display_steps(np.broadcast_to(_ENC, (3, _TABLE)), p)  # (3, 65536) float32
        if self.encoded.base is not None or not self.encoded.flags.writeable:
            self.encoded = np.array(self.encoded)  # neutral step 5 returns the broadcast view
        self._u8: np.ndarray | None = None
        self._lin: np.ndarray | None = None

    def final(self, dtype: np.dtype[Any]) -> np.ndarray:
        """Step 7 folded in: uint8 (rounded) or float32 linear values per index."""
        if dtype == np.uint8:
            if self._u8 is None:
                self._u8 = to_srgb8(self.encoded)
            return self._u8
        if self._lin is None:
            self._lin = srgb_to_linear(self.encoded)
        return self._lin


_TONES: dict[bytes, _ToneTables] = {}


def _tones(row: np.ndarray) -> _ToneTables:
    """The tone tables of a parameter row, cached by its step-5 values (a few looks per session; the cache is
    dropped when it grows past 32 rows, as a long tween makes a new row every frame)."""
    key = np.ascontiguousarray(row[_LIFT.start:_GAIN.stop], np.float32).tobytes()
    t = _TONES.get(key)
    if t is None:
        if len(_TONES) >= 32:
            _TONES.clear()
        t = _TONES[key] = _ToneTables(row)
    return t


def _lookup(table: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    """``out[c] = table[c][idx[c]]`` per channel plane."""
    for ch in range(3):
        np.take(table[ch], idx[ch], out=out[ch], mode="clip")


#: A per-pixel style map with at most this many distinct weight rows (one per object or material mix, the usual
#: case) is graded group by group, each with one parameter row, instead of pixel by pixel.
MAX_GROUPS = 64
_KEY = np.random.default_rng(0).standard_normal(4096)  # a random projection: distinct weight rows, distinct keys


def _groups(style_map: np.ndarray, out_hw: tuple[int, int], max_groups: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A piecewise-constant style map as (rows (G, S): its distinct weight rows, gid (H'*W',): each output pixel's
    row index), found at the map's own resolution; None when it has more than ``max_groups`` distinct rows."""
    h, w, s = style_map.shape
    if s > len(_KEY) or max_groups < 1:
        return None
    flat = np.ascontiguousarray(style_map, np.float32).reshape(-1, s)
    _, first, inverse = np.unique(flat.astype(np.float64) @ _KEY[:s], return_index=True, return_inverse=True)
    if len(first) > max_groups:
        return None
    rows = flat[first]
    if not np.array_equal(rows[inverse.reshape(-1)], flat):  # two rows with one key: grade pixel by pixel
        return None
    gid = _nearest(inverse.reshape(h, w).astype(np.uint8), out_hw).reshape(-1)
    return rows, gid


def grade(image: np.ndarray, style_map: np.ndarray, library: StyleLibrary, inputs: RenderInputs,
          max_groups: int = MAX_GROUPS) -> np.ndarray:
    """The image with each pixel's grading applied (module docstring); ``image`` itself (untouched) when no pixel
    carries a graded style. ``style_map`` is (H, W, S) over the first S styles of ``library``; ``image`` is the
    renderer's output (uint8 sRGB or float linear, (H', W', 3|4), H'×W' the output size). A map of at most
    ``max_groups`` distinct weight rows is graded per group (the same result, without per-pixel parameters)."""
    s = style_map.shape[2]
    graded = [i for i in library.graded if i < s]
    if not graded or not _gradeable(image):
        return image
    table = library.table()[:s, GRADING_START:]
    styles = [library[i] for i in range(s)]
    out_hw = image.shape[:2]
    depth_cache: list[np.ndarray | None] = []

    def depth() -> np.ndarray | None:
        """The output-size linear depth, flattened (the sky at infinity), or None without a depth buffer."""
        if not depth_cache:
            z = None
            if "depth" in inputs.buffers or "linear_depth" in inputs.buffers:
                z = inputs.linear_depth().astype(np.float32)
                sky = inputs.sky_mask()
                if sky is not None:
                    z = np.where(sky, np.float32(np.inf), z)
                z = _nearest(z, out_hw).reshape(-1)
            depth_cache.append(z)
        return depth_cache[0]

    if _is_broadcast(style_map):
        weights = np.asarray(style_map[0, 0], np.float32)[None, :]
        if not weights[0, graded].any():
            return image
        out = image.copy()
        _grade_into(out.reshape(-1, out.shape[2]), None, weights, table, styles, depth)
        return out
    if not any(style_map[..., i].any() for i in graded):  # a per-object map of presets only: no groups to find
        return image
    groups = _groups(style_map, out_hw, max_groups)
    if groups is not None:
        rows, gid = groups
        todo = [g for g in range(len(rows)) if rows[g, graded].any()]
        if not todo:
            return image
        out = image.copy()
        pix = out.reshape(-1, out.shape[2])
        if len(rows) == 1:
            _grade_into(pix, None, rows[0][None, :], table, styles, depth)
            return out
        counts = np.bincount(gid, minlength=len(rows))
        big = int(np.argmax(counts))
        if big not in todo or 2 * counts[big] < gid.size:
            for g in todo:
                _grade_into(pix, np.flatnonzero(gid == g), rows[g][None, :], table, styles, depth)
            return out
        # One mix covers most of the frame (the world's look; the weapon, a boss differ): the other pixels are
        # taken out, graded by their own mixes or kept, and put back after the whole image is graded with the big
        # mix in place: no gather and scatter of most of the frame.
        rest = np.flatnonzero(gid != big)
        kept = pix[rest]
        rest_gid = gid[rest]
        rest_depth: list[np.ndarray | None] = []

        def depth_rest() -> np.ndarray | None:
            if not rest_depth:
                z = depth()
                rest_depth.append(None if z is None else z[rest])
            return rest_depth[0]

        for g in todo:
            if g != big:
                _grade_into(kept, np.flatnonzero(rest_gid == g), rows[g][None, :], table, styles, depth_rest)
        _grade_into(pix, None, rows[big][None, :], table, styles, depth)
        pix[rest] = kept
        return out
    if style_map.shape[:2] != out_hw:
        style_map = _nearest(style_map, out_hw)
    flat = style_map.reshape(-1, s)
    hit = flat[:, graded].any(axis=1)
    if not hit.any():
        return image
    sel = None if hit.all() else np.flatnonzero(hit)
    out = image.copy()
    _grade_into(out.reshape(-1, out.shape[2]), sel, flat if sel is None else flat[sel], table, styles, depth)
    return out


def _grade_into(pix: np.ndarray, sel: np.ndarray | None, weights: np.ndarray, table: np.ndarray,
                styles: Sequence[Style], depth: Callable[[], np.ndarray | None]) -> None:
    """Grade the pixels ``sel`` (None: all) of ``pix`` ((N, C) view of the output image) in place, given their
    style weights ``weights`` ((len(sel), S), or (1, S) for all of them alike)."""
    used = [i for i in range(weights.shape[1]) if weights[:, i].any()]
    prm = np.zeros((weights.shape[0], table.shape[1]), np.float32)
    for i in used:
        prm += weights[:, i:i + 1] * table[i]
    rgb = (pix[:, :3] if sel is None else pix[sel, :3]).T  # (3, N) planes
    lin = np.take(_SRGB8, rgb) if pix.dtype == np.uint8 else rgb.astype(np.float32)
    z = depth() if prm[:, _FOG].any() else None
    zs = None if z is None else (z if sel is None else z[sel])
    luts = [(i, styles[i].lut) for i in used if styles[i].lut is not None]
    n = lin.shape[1]
    new = np.empty((3, n), pix.dtype)
    # one row (a global look, one group): steps 4-5, and 7 without LUTs, by table
    tones = _tones(prm[0]) if len(prm) == 1 and pix.dtype in (np.uint8, np.float32) else None
    for a in range(0, n, _CHUNK):  # chunks: the temporaries stay in cache and off the page-fault path
        b = min(a + _CHUNK, n)
        if tones is not None:
            c, _ = _linear_steps(lin[:, a:b], prm, None if zs is None else zs[a:b])
            idx = _table_index(c)
            if not luts:
                _lookup(tones.final(pix.dtype), idx, new[:, a:b])
                continue
            e = np.empty((3, b - a), np.float32)
            _lookup(tones.encoded, idx, e)
        else:
            p = prm[a:b]
            e = grade_pixels(lin[:, a:b], p, None if zs is None else zs[a:b])
        if luts:
            e0 = e
            e = e0.copy()
            for i, lut in luts:
                assert lut is not None
                wgt = weights[:, i] if len(weights) == 1 else weights[a:b, i]
                e += wgt * (lut.apply_planar(e0) - e0)
            np.clip(e, 0.0, 1.0, out=e)
        new[:, a:b] = to_srgb8(e) if pix.dtype == np.uint8 else srgb_to_linear(e)
    if sel is None:
        pix[:, :3] = new.T
    else:
        pix[sel, :3] = new.T


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """(H, W) float32 box blur of radius ``r`` (edges clamped), separable running sums."""
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
        n = a.shape[axis]
        hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        a = ((hi - lo) / (2 * r + 1)).astype(np.float32)
    return a


#: The engine's per-pixel exclusion mask (protocol 6.1): r8, 0 = re-rendered, 255 = the engine's pixel.
MASK_BUFFER = "neural_mask"
#: What the post stage reads whatever the renderer: the engine's image (intensity, masks), its mask, the id buffers
#: (exclusions by id).
POST_BUFFERS: tuple[BufferSpec, ...] = (BufferSpec("hudless_color", "rgba8_srgb"), BufferSpec(MASK_BUFFER, "r8"),
                                        BufferSpec("material_id", "r16u"), BufferSpec("object_id", "r16u"))


def with_post_buffers(optional: Sequence[BufferSpec], required: Sequence[BufferSpec] = ()) -> list[BufferSpec]:
    """A renderer's WELCOME ``optional`` list plus the buffers the post stage reads (``POST_BUFFERS``) that it does
    not list already: libnrb sends only the buffers WELCOME names (protocol 5.2), so without them an engine's
    ``hudless_color`` or ``neural_mask`` would never reach a renderer that does not itself use them."""
    listed = {b.name for b in (*required, *optional)}
    return [*optional, *(b for b in POST_BUFFERS if b.name not in listed)]


def exclusion_mask(inputs: RenderInputs, state: StyleState) -> np.ndarray | None:
    """(H, W) float32 at render size: 1 where an excluded object or material is, or the engine's ``neural_mask``
    value / 255 where larger, falling off to 0 over ``feather`` pixels around it (a pixel keeps at least its own
    value: an excluded object, or a mask of 255, keeps exactly the engine's pixels); None when nothing is excluded
    here."""
    hard: np.ndarray | None = None
    for name, ids in (("object_id", state.excluded_objects), ("material_id", state.excluded_materials)):
        img = inputs.ids(name) if ids else None
        if img is not None:
            hit = np.isin(img, np.fromiter(ids, np.int64, len(ids)))
            hard = hit if hard is None else hard | hit
    m: np.ndarray | None = None if hard is None or not hard.any() else hard.astype(np.float32)
    b = inputs.buffers.get(MASK_BUFFER)
    if b is not None and b.format == "r8" and b.data is not None:
        raw = inputs.raw(MASK_BUFFER)[..., 0]
        if raw.any():
            engine = raw.astype(np.float32) * np.float32(1.0 / 255.0)
            m = engine if m is None else np.maximum(m, engine)
    if m is None:
        return None
    r = int(round(state.feather))
    if r > 0:
        m = np.maximum(m, _box_blur(m, r))
    return m


_MIXES: dict[float, np.ndarray] = {}


def _mix_table(intensity: np.float32) -> np.ndarray:
    """(65536,) uint8: the mix of an 8-bit engine value e and re-rendered value n at ``intensity``, at index
    ``e << 8 | n``: the same float32 steps as the per-pixel path (linear light, sRGB-encoded, rounded) for each of
    the 65536 pairs, so a whole-frame intensity costs one lookup per channel. Cached for the last few intensities
    (a tween makes a new one each frame)."""
    key = float(intensity)
    table = _MIXES.get(key)
    if table is None:
        if len(_MIXES) >= 8:
            _MIXES.clear()
        e, n = _SRGB8[:, None], _SRGB8[None, :]
        table = _MIXES[key] = to_srgb8(encode_srgb(e + (n - e) * intensity)).reshape(-1)
    return table


def post_process(image: np.ndarray, inputs: RenderInputs, state: StyleState) -> np.ndarray:
    """Blend the re-rendered ``image`` with the engine's ``hudless_color``: per pixel the re-rendered amount is
    ``intensity · (1 - mask)`` (``exclusion_mask``: excluded ids and the engine's ``neural_mask``). Pixels with amount 0 get the engine's pixels exactly, amount 1 are untouched, the rest
    are mixed in linear light. ``image`` itself when nothing applies (intensity 1, nothing excluded) or the engine's
    image was not sent (logged once per session)."""
    if not (state.post_active or MASK_BUFFER in inputs.buffers) or not _gradeable(image):
        return image
    if "hudless_color" not in inputs.buffers:
        if not getattr(state, "_warned_no_hudless", False):
            log.warning("intensity/masks are set but the engine sends no hudless_color: showing the re-rendered "
                        "image as is")
            state._warned_no_hudless = True  # type: ignore[attr-defined]
        return image
    intensity = np.float32(state.intensity())
    mask = exclusion_mask(inputs, state)
    if mask is None and intensity >= 1.0:
        return image
    out_hw = image.shape[:2]
    if inputs.buffers["hudless_color"].format == "rgba8_srgb":
        engine8 = _nearest(inputs.raw("hudless_color")[..., :3], out_hw)
        # (not needed where one intensity mixes 8-bit values: that is looked up in ``_mix_table``)
        engine_lin = engine8 if mask is None and image.dtype == np.uint8 else _SRGB8[engine8]
    else:
        engine_lin = _nearest(inputs["hudless_color"][..., :3], out_hw)
        engine8 = to_srgb8(encode_srgb(engine_lin))
    engine_px = engine8 if image.dtype == np.uint8 else engine_lin.astype(image.dtype)
    out = image.copy()
    rgb = out[..., :3]
    if mask is None:  # one amount for the whole frame: plain array arithmetic, no per-pixel selection
        if intensity <= 0.0:
            rgb[...] = engine_px
        elif image.dtype == np.uint8:  # 8-bit engine and re-rendered values: every pair's mix, looked up
            pair = engine8.astype(np.uint16) << np.uint16(8)
            pair |= rgb
            np.take(_mix_table(intensity), pair, out=rgb, mode="clip")
        else:
            mixed = engine_lin + (rgb.astype(np.float32) - engine_lin) * intensity
            rgb[...] = mixed.astype(image.dtype)
        return out
    amount = _nearest(intensity * (np.float32(1) - mask), out_hw)
    zero = amount <= 0.0
    rgb[zero] = engine_px[zero]
    mid = (amount > 0.0) & (amount < 1.0)
    if mid.any():
        a = amount[mid][:, None]
        neural = rgb[mid]
        lin = _SRGB8[neural] if image.dtype == np.uint8 else neural.astype(np.float32)
        mixed = engine_lin[mid] + (lin - engine_lin[mid]) * a
        rgb[mid] = to_srgb8(encode_srgb(mixed)) if image.dtype == np.uint8 else mixed.astype(image.dtype)
    return out
