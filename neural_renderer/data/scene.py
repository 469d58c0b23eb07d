"""Randomized scene descriptions for the synthetic training set.

A :class:`SceneSpec` is plain data (JSON-serializable, no Mitsuba import) so that the manifest can record
exactly what was rendered and a sample can be re-rendered from its seed alone. Rendering lives in
:mod:`neural_renderer.data.render`.

Lighting is deliberately *house lighting*: a sun whose direction only jitters in a cone around a fixed
world-space direction, with an irradiance in a narrow range, plus a sky of one colour at a scale near 1. Each
scene's lights go into its manifest spec and reach the network as the lighting constants an engine sends with its
G-buffers (``x_sun_direction``, ``x_sun_irradiance``, ``x_sky_radiance``: docs/protocol.md 6.1,
:func:`neural_renderer.data.dataset.scene_lighting`), so the jitter is not noise in the targets. The ranges stay
narrow because a model only knows the lights it was trained under; a game has a house look too, and fine-tuning
on engine captures (:mod:`neural_renderer.data.capture`) is how a team teaches the model its own lights.
Emissive objects are the per-scene lights the ``emissive`` buffer shows. Point lights are not modelled.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

ShapeKind = Literal["sphere", "cube", "cylinder", "torus", "cone", "floor", "wall"]

#: Unit vector *towards* the sun before per-scene jitter (world space, +Y up).
SUN_DIRECTION = (0.45, 0.8, 0.4)
#: Mid of the per-scene sun irradiance range (linear RGB): the house sun a frame without lighting inputs gets.
SUN_IRRADIANCE = (2.3, 2.3 * 0.97, 2.3 * 0.9)
#: Constant sky radiance (linear RGB) before per-scene scaling.
SKY_RADIANCE = (0.26, 0.31, 0.42)
NEAR = 0.1
FAR = 100.0


@dataclass
class Material:
    """Principled material with constant parameters; ``checker`` gives a second base colour in a
    checkerboard."""

    base_color: tuple[float, float, float]
    roughness: float
    metallic: float
    emission: tuple[float, float, float] = (0.0, 0.0, 0.0)
    checker: tuple[float, float, float] | None = None
    checker_scale: float = 1.0


@dataclass
class Shape:
    """One object: ``to_world`` is a row-major 4x4 affine matrix applied to the unit shape of ``kind``."""

    kind: ShapeKind
    to_world: list[list[float]]
    material: Material


@dataclass
class Camera:
    """Pinhole camera; ``fov_y`` in radians (protocol §8 convention)."""

    origin: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float]
    fov_y: float
    near: float = NEAR
    far: float = FAR


@dataclass
class SceneSpec:
    """A whole scene plus its camera path (consecutive frames are a few degrees apart)."""

    seed: int
    layout: Literal["room", "plane"]
    shapes: list[Shape]
    sun_direction: tuple[float, float, float]
    sun_irradiance: tuple[float, float, float]
    sky_radiance: tuple[float, float, float]
    cameras: list[Camera] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> SceneSpec:
        shapes = [
            Shape(kind=s["kind"], to_world=s["to_world"], material=Material(**_tuples(s["material"])))
            for s in d["shapes"]
        ]
        cams = [Camera(**_tuples(c)) for c in d["cameras"]]
        return SceneSpec(
            seed=d["seed"],
            layout=d["layout"],
            shapes=shapes,
            sun_direction=tuple(d["sun_direction"]),
            sun_irradiance=tuple(d["sun_irradiance"]),
            sky_radiance=tuple(d["sky_radiance"]),
            cameras=cams,
        )


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}


def _trs(t: np.ndarray, r: np.ndarray, s: np.ndarray) -> list[list[float]]:
    m = np.eye(4)
    m[:3, :3] = r @ np.diag(s)
    m[:3, 3] = t
    return m.tolist()


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _color(
    rng: np.random.Generator, sat: tuple[float, float] = (0.2, 0.9), val: tuple[float, float] = (0.25, 0.95)
) -> tuple[float, float, float]:
    h, s, v = rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (r, g, b)


def random_scene(seed: int, frames: int = 2) -> SceneSpec:
    """Draw one scene and a ``frames``-long camera path from ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    layout: Literal["room", "plane"] = "room" if rng.uniform() < 0.5 else "plane"
    shapes: list[Shape] = []
    floor_mat = Material(
        base_color=_color(rng, (0.0, 0.6), (0.15, 0.75)),
        roughness=float(rng.uniform(0.3, 1.0)),
        metallic=0.0,
        checker=_color(rng, (0.0, 0.6), (0.15, 0.75)) if rng.uniform() < 0.6 else None,
        checker_scale=float(rng.choice([4.0, 8.0, 16.0])),
    )
    # Floor: unit rectangle is [-1,1]^2 in xy facing +z; rotate to face +y.
    half = 12.0
    shapes.append(
        Shape(
            "floor",
            _trs(np.zeros(3), _rot(np.array([1.0, 0, 0]), -math.pi / 2), np.array([half, half, 1.0])),
            floor_mat,
        )
    )
    room = 4.5
    if layout == "room":
        wall_h = 3.0
        # Back wall at z=-room facing +z, left wall at x=-room facing +x.
        shapes.append(
            Shape(
                "wall",
                _trs(np.array([0, wall_h, -room]), np.eye(3), np.array([room * 2, wall_h, 1])),
                Material(_color(rng, (0.0, 0.6), (0.2, 0.8)), float(rng.uniform(0.4, 1.0)), 0.0),
            )
        )
        shapes.append(
            Shape(
                "wall",
                _trs(
                    np.array([-room, wall_h, 0]),
                    _rot(np.array([0, 1.0, 0]), math.pi / 2),
                    np.array([room * 2, wall_h, 1]),
                ),
                Material(_color(rng, (0.0, 0.6), (0.2, 0.8)), float(rng.uniform(0.4, 1.0)), 0.0),
            )
        )
    n_obj = int(rng.integers(3, 8))
    placed: list[tuple[float, float, float]] = []
    kinds: list[ShapeKind] = ["sphere", "cube", "cylinder", "torus", "cone"]
    for _ in range(n_obj):
        kind = kinds[int(rng.integers(len(kinds)))]
        size = float(rng.uniform(0.3, 0.9))
        for _try in range(20):
            x, z = rng.uniform(-2.6, 2.6, size=2)
            if all((x - px) ** 2 + (z - pz) ** 2 > (size + pr) ** 2 for px, pz, pr in placed):
                break
        placed.append((x, z, size))
        yaw = rng.uniform(0, 2 * math.pi)
        r = _rot(np.array([0, 1.0, 0]), yaw)
        if kind == "sphere":
            s = np.array([size, size, size])
            y = size
        elif kind == "cube":
            s = np.array([size, size * rng.uniform(0.5, 1.5), size]) * 0.8
            y = s[1]
        elif kind == "cylinder":  # unit cylinder: radius 1, y in [-1, 1]
            s = np.array([size * 0.7, size * rng.uniform(0.6, 1.6), size * 0.7])
            y = s[1]
        elif kind == "cone":  # unit cone: base radius 1 at y=-1, apex at y=1
            s = np.array([size * 0.8, size * rng.uniform(0.8, 1.6), size * 0.8])
            y = s[1]
        else:  # torus: major radius 1, minor 0.35, lying in xz; stand some upright
            s = np.array([size, size, size]) * 0.8
            if rng.uniform() < 0.5:
                r = r @ _rot(np.array([1.0, 0, 0]), math.pi / 2)
                y = s[0] * 1.35
            else:
                y = s[1] * 0.35
        metallic = 1.0 if rng.uniform() < 0.3 else 0.0
        emissive = rng.uniform() < 0.15
        col = _color(rng)
        emission = (
            tuple(float(c) * float(rng.uniform(2.0, 6.0)) for c in _color(rng, (0.3, 0.8)))
            if emissive
            else (0.0, 0.0, 0.0)
        )
        mat = Material(col, float(rng.uniform(0.05, 0.9)), metallic, emission)  # type: ignore[arg-type]
        objects = [sh for sh in shapes if sh.kind not in ("floor", "wall")]
        if objects and rng.uniform() < 0.25:  # shared materials make material_id differ from object_id
            mat = objects[int(rng.integers(len(objects)))].material
        shapes.append(Shape(kind, _trs(np.array([x, y, z]), r, s), mat))

    d0 = np.array(SUN_DIRECTION) / np.linalg.norm(SUN_DIRECTION)
    jitter_axis = np.cross(d0, rng.normal(size=3))
    sun = _rot(jitter_axis, float(rng.uniform(0, math.radians(15)))) @ d0
    sun_e = float(rng.uniform(2.0, 2.6))
    sky_s = float(rng.uniform(0.8, 1.2))

    # Camera path: orbit around the scene centre, a few degrees per frame.
    if layout == "room":
        yaw0 = rng.uniform(math.radians(15), math.radians(75))  # in the open (+x,+z) quadrant
        radius = rng.uniform(4.0, 6.0)
    else:
        yaw0 = rng.uniform(0, 2 * math.pi)
        radius = rng.uniform(4.5, 8.0)
    height = rng.uniform(1.0, 3.5)
    target = np.array([rng.uniform(-0.5, 0.5), rng.uniform(0.2, 0.8), rng.uniform(-0.5, 0.5)])
    fov = math.radians(float(rng.uniform(38, 55)))
    dyaw = math.radians(float(rng.uniform(1.0, 3.0))) * (1 if rng.uniform() < 0.5 else -1)
    dh = float(rng.uniform(-0.05, 0.05))
    dr = float(rng.uniform(-0.08, 0.08))
    cams = []
    for k in range(frames):
        yaw, rad, h = yaw0 + k * dyaw, radius + k * dr, height + k * dh
        origin = (target[0] + rad * math.cos(yaw), h, target[2] + rad * math.sin(yaw))
        cams.append(
            Camera(
                origin=tuple(float(v) for v in origin),
                target=tuple(float(v) for v in target),
                up=(0.0, 1.0, 0.0),
                fov_y=fov,
            )
        )  # type: ignore[arg-type]
    return SceneSpec(
        seed=seed,
        layout=layout,
        shapes=shapes,
        sun_direction=tuple(float(v) for v in sun),  # type: ignore[arg-type]
        sun_irradiance=(sun_e, sun_e * 0.97, sun_e * 0.9),
        sky_radiance=tuple(c * sky_s for c in SKY_RADIANCE),  # type: ignore[arg-type]
        cameras=cams,
    )
