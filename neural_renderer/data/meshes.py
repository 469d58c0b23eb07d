"""Unit triangle meshes (cylinder, cone, torus) written as binary PLY for Mitsuba.

Mitsuba's own ``cylinder`` is open-ended, so its inside would show back faces (black under a one-sided BSDF);
capped meshes with split vertices along hard edges give correct shading normals everywhere.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _ring(n: int, y: float, r: float) -> np.ndarray:
    a = np.arange(n) * 2 * math.pi / n
    return np.stack([r * np.cos(a), np.full(n, y), r * np.sin(a)], axis=1)


def _cap(n: int, y: float, facing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disc at height ``y``, normal (0, facing, 0): returns vertices, normals, faces (local indices)."""
    v = np.concatenate([[[0.0, y, 0.0]], _ring(n, y, 1.0)])
    nrm = np.tile([0.0, facing, 0.0], (n + 1, 1))
    i = np.arange(n)
    f = np.stack([np.zeros(n, int), 1 + i, 1 + (i + 1) % n], axis=1)
    if facing > 0:  # counter-clockwise seen from +y
        f = f[:, [0, 2, 1]]
    return v, nrm, f


def _merge(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vs, ns, fs, off = [], [], [], 0
    for v, n, f in parts:
        vs.append(v)
        ns.append(n)
        fs.append(f + off)
        off += len(v)
    return np.concatenate(vs), np.concatenate(ns), np.concatenate(fs)


def cylinder(n: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius 1, y in [-1, 1], capped. Returns (V,3) vertices, (V,3) normals, (F,3) faces."""
    bot, top = _ring(n, -1, 1), _ring(n, 1, 1)
    v = np.concatenate([bot, top])
    nrm = np.concatenate([bot * [1, 0, 1], top * [1, 0, 1]])
    i = np.arange(n)
    j = (i + 1) % n
    f = np.concatenate([np.stack([i, n + i, j], 1), np.stack([j, n + i, n + j], 1)])
    return _merge([(v, nrm, f), _cap(n, 1, 1), _cap(n, -1, -1)])


def cone(n: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base radius 1 at y=-1, apex at y=1, capped base."""
    bot = _ring(n, -1, 1)
    # Side normal of a cone with height 2 and radius 1: (cos, 0.5, sin) normalised.
    side_n = bot * [1, 0, 1] + [0, 0.5, 0]
    side_n /= np.linalg.norm(side_n, axis=1, keepdims=True)
    apex = np.tile([0.0, 1.0, 0.0], (n, 1))
    a_mid = (np.arange(n) + 0.5) * 2 * math.pi / n
    apex_n = np.stack([np.cos(a_mid), np.full(n, 0.5), np.sin(a_mid)], 1)
    apex_n /= np.linalg.norm(apex_n, axis=1, keepdims=True)
    v = np.concatenate([bot, apex])
    nrm = np.concatenate([side_n, apex_n])
    i = np.arange(n)
    f = np.stack([i, n + i, (i + 1) % n], 1)
    return _merge([(v, nrm, f), _cap(n, -1, -1)])


def torus(
    n_major: int = 48, n_minor: int = 24, minor: float = 0.35
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Major radius 1, minor radius ``minor``, symmetric about the y axis."""
    u = np.arange(n_major) * 2 * math.pi / n_major
    w = np.arange(n_minor) * 2 * math.pi / n_minor
    uu, ww = np.meshgrid(u, w, indexing="ij")
    nrm = np.stack([np.cos(ww) * np.cos(uu), np.sin(ww), np.cos(ww) * np.sin(uu)], -1).reshape(-1, 3)
    ctr = np.stack([np.cos(uu), np.zeros_like(uu), np.sin(uu)], -1).reshape(-1, 3)
    v = ctr + minor * nrm
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    a = i * n_minor + j
    b = ((i + 1) % n_major) * n_minor + j
    c = ((i + 1) % n_major) * n_minor + (j + 1) % n_minor
    d = i * n_minor + (j + 1) % n_minor
    f = np.concatenate([np.stack([a, d, b], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
    return v, nrm, f


def write_ply(path: Path, v: np.ndarray, n: np.ndarray, f: np.ndarray) -> None:
    """Binary little-endian PLY with per-vertex normals (what Mitsuba's ``ply`` plugin reads)."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    verts = np.concatenate([v, n], 1).astype("<f4")
    faces = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    faces["n"] = 3
    faces["i"] = f
    with open(path, "wb") as fh:
        fh.write(header.encode())
        fh.write(verts.tobytes())
        fh.write(faces.tobytes())


def ensure_meshes(directory: Path) -> dict[str, Path]:
    """Write the unit meshes once into ``directory``; returns kind -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, fn in (("cylinder", cylinder), ("cone", cone), ("torus", torus)):
        p = directory / f"{name}.ply"
        if not p.exists():
            tmp = p.with_suffix(".tmp")
            write_ply(tmp, *fn())
            tmp.replace(p)
        out[name] = p
    return out
