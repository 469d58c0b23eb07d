"""A procedural G-buffer scene (spheres on a checkered floor), ray-cast in numpy.

It stands in for a game engine in ``nrb demo``, the tests and tools: every buffer the deferred renderer uses, plus
``material_id`` / ``object_id`` so that per-material and per-object styles have something to bite on. The scene is
a pure function of time, so the same frame time always gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bridge.protocol import Buffer, BufferSpec, Camera
from bridge.renderer import to_srgb8

NEAR, FAR = 0.1, 100.0

# object ids / material ids the demo hooks and tests refer to
GROUND_OBJECT, GROUND_MATERIAL = 1, 1
HERO_OBJECT, PAINT_MATERIAL = 2, 2
BOSS_OBJECT, BOSS_MATERIAL = 3, 3
PICKUP_OBJECT = 5  # painted like the hero: shares PAINT_MATERIAL
WEAPON_OBJECT, WEAPON_MATERIAL = 42, 7


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float
    albedo: tuple[float, float, float]  # linear
    roughness: float
    metallic: float
    object_id: int
    material_id: int
    bob: float = 0.0  # vertical bobbing amplitude (animated scenes)


SPHERES = (
    Sphere((-1.35, 0.7, 0.0), 0.7, (0.62, 0.07, 0.05), 0.4, 0.0, HERO_OBJECT, PAINT_MATERIAL, 0.08),
    Sphere((1.45, 1.0, -1.1), 1.0, (0.3, 0.12, 0.45), 0.55, 0.0, BOSS_OBJECT, BOSS_MATERIAL, 0.12),
    Sphere((0.15, 0.36, 1.15), 0.36, (0.45, 0.46, 0.5), 0.35, 0.3, WEAPON_OBJECT, WEAPON_MATERIAL, 0.05),
    Sphere((-0.25, 0.26, -0.7), 0.26, (0.06, 0.16, 0.62), 0.45, 0.0, PICKUP_OBJECT, PAINT_MATERIAL, 0.1),
)

#: What the synthetic engine offers in HELLO.
BUFFERS = [
    BufferSpec("albedo", "rgba8_srgb"), BufferSpec("normals", "rgba16f"), BufferSpec("depth", "r32f"),
    BufferSpec("roughness", "r8"), BufferSpec("metallic", "r8"), BufferSpec("material_id", "r16u"),
    BufferSpec("object_id", "r16u"),
]


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class SyntheticScene:
    """Spheres on a floor seen by a slowly orbiting camera (``animate=False``: everything still)."""

    def __init__(self, width: int = 384, height: int = 216, *, animate: bool = True, fov_y: float = 0.9) -> None:
        self.width, self.height, self.animate, self.fov_y = width, height, animate, fov_y

    def camera(self, t: float) -> Camera:
        angle = 0.25 * math.sin(0.4 * t) if self.animate else 0.0
        pos = np.array([5.6 * math.sin(angle), 1.7, 5.6 * math.cos(angle)])
        target = np.array([0.0, 0.65, 0.0])
        fwd = _normalize(target - pos)
        right = _normalize(np.cross(fwd, [0.0, 1.0, 0.0]))
        up = np.cross(right, fwd)
        return Camera(position=tuple(pos), up=tuple(up), right=tuple(right), forward=tuple(fwd), near=NEAR, far=FAR,
                      fov_y=self.fov_y, aspect=self.width / self.height, depth_inverted=False, depth_infinite=False,
                      render_size=(self.width, self.height), output_size=(self.width, self.height))

    def gbuffers(self, t: float = 0.0) -> tuple[dict[str, np.ndarray], Camera]:
        """``{name: array}`` in the formats of ``BUFFERS``, and the camera, for scene time ``t`` seconds."""
        w, h = self.width, self.height
        cam = self.camera(t)
        pos = np.asarray(cam.position)
        fwd, right, up = (np.asarray(v) for v in (cam.forward, cam.right, cam.up))
        tan = math.tan(self.fov_y / 2)
        xs = ((np.arange(w) + 0.5) / w * 2 - 1) * tan * w / h
        ys = (1 - (np.arange(h) + 0.5) / h * 2) * tan
        d = _normalize(fwd + xs[None, :, None] * right + ys[:, None, None] * up)  # (H, W, 3), row 0 = top

        best = np.full((h, w), np.inf)
        normal = -d
        albedo = np.zeros((h, w, 3))
        sky = np.clip(d[..., 1], 0, 1)[..., None]
        albedo[:] = (1 - sky) * np.array([0.55, 0.62, 0.75]) + sky * np.array([0.12, 0.25, 0.6])
        rough = np.full((h, w), 1.0)
        metal = np.zeros((h, w))
        mat = np.zeros((h, w), np.uint16)
        obj = np.zeros((h, w), np.uint16)

        # floor y = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            tp = -pos[1] / d[..., 1]
        hit = (tp > 0) & (tp < best)
        p = pos + tp[..., None] * d
        checker = ((np.floor(p[..., 0]) + np.floor(p[..., 2])) % 2 == 0)
        floor_col = np.where(checker[..., None], [0.34, 0.32, 0.28], [0.16, 0.15, 0.14])
        best = np.where(hit, tp, best)
        normal = np.where(hit[..., None], [0.0, 1.0, 0.0], normal)
        albedo = np.where(hit[..., None], floor_col, albedo)
        rough = np.where(hit, 0.85, rough)
        mat = np.where(hit, GROUND_MATERIAL, mat).astype(np.uint16)
        obj = np.where(hit, GROUND_OBJECT, obj).astype(np.uint16)

        for i, s in enumerate(SPHERES):
            c = np.asarray(s.center, float)
            if self.animate:
                c = c + [0.0, s.bob * math.sin(2.2 * t + i * 1.7), 0.0]
            oc = pos - c
            b = (d * oc).sum(-1)
            disc = b * b - (oc @ oc - s.radius ** 2)
            ts = -b - np.sqrt(np.maximum(disc, 0))
            hit = (disc > 0) & (ts > 0) & (ts < best)
            p = pos + ts[..., None] * d
            best = np.where(hit, ts, best)
            normal = np.where(hit[..., None], (p - c) / s.radius, normal)
            albedo = np.where(hit[..., None], s.albedo, albedo)
            rough = np.where(hit, s.roughness, rough)
            metal = np.where(hit, s.metallic, metal)
            mat = np.where(hit, s.material_id, mat).astype(np.uint16)
            obj = np.where(hit, s.object_id, obj).astype(np.uint16)

        z = np.where(np.isfinite(best), best * (d @ fwd), FAR)  # view-space depth along forward
        z = np.clip(z, NEAR, FAR)
        depth = (FAR / (FAR - NEAR) * (1 - NEAR / z)).astype(np.float32)
        depth[~np.isfinite(best)] = 1.0

        rgba = np.empty((h, w, 4), np.uint8)
        enc = np.where(albedo <= 0.0031308, albedo * 12.92, 1.055 * albedo ** (1 / 2.4) - 0.055)
        rgba[..., :3] = to_srgb8(enc)
        rgba[..., 3] = 255
        nrm = np.zeros((h, w, 4), np.float16)
        nrm[..., :3] = normal
        return {
            "albedo": rgba,
            "normals": nrm,
            "depth": depth[..., None],
            "roughness": (np.clip(rough, 0, 1) * 255 + 0.5).astype(np.uint8)[..., None],
            "metallic": (np.clip(metal, 0, 1) * 255 + 0.5).astype(np.uint8)[..., None],
            "material_id": mat[..., None],
            "object_id": obj[..., None],
        }, cam

    def buffers(self, t: float = 0.0) -> tuple[list[Buffer], Camera]:
        """The G-buffers as protocol ``Buffer``s ready to send, and the camera."""
        arrays, cam = self.gbuffers(t)
        fmt = {s.name: s.format for s in BUFFERS}
        return [Buffer.from_array(n, fmt[n], a) for n, a in arrays.items()], cam
