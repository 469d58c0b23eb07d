"""Per-pixel style map: (H, W, S) float32 weights over the style library, built from a ``StyleSnapshot`` and the
frame's ``material_id`` / ``object_id`` buffers.

Precedence (see ``bridge.style.state``): every pixel starts from the global mix; a pixel whose material id has an
override gets ``(1 - a_m) · w + c_m``; a pixel whose object id has an override then gets ``(1 - a_o) · w + c_o``.
So **object override > material override > global**. Rows sum to 1 (up to float32 rounding).

Only elementwise float32 operations are used (no BLAS reductions whose summation order could depend on the thread
count), so the map is bit-for-bit reproducible from the same snapshot and id buffers — the basis of replay
determinism.
"""

from __future__ import annotations

import hashlib

import numpy as np

from bridge.style.state import StyleSnapshot


def _lookup(ids_img: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(H, W) int64: the position of each pixel's id in ``keys`` (sorted), or -1."""
    if ids_img.dtype.kind == "u" and ids_img.dtype.itemsize <= 2:  # r16u: a lookup table beats a search
        lut = np.full(1 << (8 * ids_img.dtype.itemsize), -1, np.int64)
        small = keys[keys < len(lut)]
        lut[small] = np.searchsorted(keys, small)
        return lut[ids_img]
    ids = ids_img.astype(np.int64, copy=False)
    idx = np.searchsorted(keys, ids)
    np.minimum(idx, len(keys) - 1, out=idx)
    return np.where(keys[idx] == ids, idx, -1)


def _over(w: np.ndarray, contrib: np.ndarray) -> np.ndarray:
    """Composite override contributions (rows) over weights ``w`` (rows): (1 - a) · w + c, in float32."""
    alpha = contrib.sum(axis=-1, dtype=np.float32, keepdims=True)
    return w * (np.float32(1.0) - alpha) + contrib


#: Above this many (material override, object override) combinations, composite per pixel instead of per combination.
_MAX_COMBOS = 1 << 16


def build_style_map(snapshot: StyleSnapshot, size: tuple[int, int], material_id: np.ndarray | None = None,
                    object_id: np.ndarray | None = None) -> np.ndarray:
    """The (H, W, S) float32 style map for a frame of ``size`` = (width, height). Treat it as read-only: without
    overrides it is a broadcast view of the global mix.

    ``material_id`` / ``object_id`` are (H, W) or (H, W, 1) integer arrays (protocol r16u / r32u); absent buffers
    mean no pixel can match an override of that kind. Every (material override, object override) combination is
    composited once and gathered per pixel; the float32 operations are the same either way.
    """
    w, h = size
    g = snapshot.global_weights.astype(np.float32)
    s = len(g)
    layers: list[tuple[np.ndarray | None, np.ndarray]] = []
    for img, keys, contrib in ((material_id, snapshot.material_ids, snapshot.material_contrib),
                               (object_id, snapshot.object_ids, snapshot.object_contrib)):
        if img is None or len(keys) == 0:
            layers.append((None, contrib))
            continue
        img = img.reshape(img.shape[0], img.shape[1])
        if img.shape != (h, w):
            raise ValueError(f"id buffer is {img.shape[1]}x{img.shape[0]}, the frame is {w}x{h}")
        layers.append((_lookup(img, keys), contrib))
    (mi, mc), (oi, oc) = layers
    if mi is None and oi is None:
        # Every pixel has the global mix: a read-only broadcast view costs nothing, where a materialised map is
        # H·W·S floats (50 MB at 1080p) written every frame for renderers that may not even read it.
        return np.broadcast_to(g, (h, w, s))
    km, ko = len(mc) if mi is not None else 0, len(oc) if oi is not None else 0
    if (km + 1) * (ko + 1) <= _MAX_COMBOS:
        # table[m + 1, o + 1] = the weights of a pixel with material override m and object override o (-1: none)
        by_mat = np.concatenate([g[None], _over(g[None], mc[:km])]) if km else g[None]
        table = by_mat[:, None, :].repeat(ko + 1, axis=1)
        if ko:
            table[:, 1:, :] = _over(by_mat[:, None, :], oc[None, :ko])
        combo = np.zeros((h, w), np.int64)
        if mi is not None:
            combo += (mi + 1) * (ko + 1)
        if oi is not None:
            combo += oi + 1
        return table.reshape(-1, s)[combo]
    out = np.empty((h, w, s), np.float32)
    out[...] = g
    for idx, contrib in ((mi, mc), (oi, oc)):
        if idx is not None:
            hit = idx >= 0
            out[hit] = _over(out[hit], contrib[idx[hit]])
    return out


def style_map_digest(style_map: np.ndarray) -> bytes:
    """A 16-byte digest of a style map's shape and bits: recorded per frame so replay can prove it matches."""
    arr = np.ascontiguousarray(style_map, dtype=np.float32)
    h = hashlib.sha256(np.asarray(arr.shape, np.int64).tobytes())
    h.update(arr.data.cast("B"))
    return h.digest()[:16]
