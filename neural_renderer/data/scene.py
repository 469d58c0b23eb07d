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
Emissive objects are the per-scene lights the ``emissive`` buffer shows.

:func:`random_lit_scene` (``nrb data generate --lighting every``) is the other regime: every kind of light a game
uses. Point, spot and area lights (:class:`Light`, plain data in the spec), coloured, several per scene, indoors
(a closed room, or one open to the sun) and outdoors, by day, at dusk and at night, and suns from any direction.
It reuses :func:`random_scene`'s objects for the same seed and draws everything else from a second generator, so
the house-lit scenes stay exactly what they were. :func:`corridor_scene` (``--lighting corridor``) is a scene
family the generator was *not* designed around, for the benchmark only: a long corridor lit by a row of repeated
lamps, with thin pillars.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

ShapeKind = Literal["sphere", "cube", "cylinder", "torus", "cone", "floor", "wall"]
LightKind = Literal["point", "spot", "area"]
Layout = Literal["room", "plane", "indoor", "corridor"]
#: ``nrb data generate --lighting``: house (the shipped model's data), every (all kinds of light), corridor (the
#: held-out family: never trained on, every scene is a test scene).
LIGHTINGS = ("house", "every", "corridor")

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
class Light:
    """One local light, in the units of the sun's irradiance and of ``emissive`` radiance.

    ``point``: radiant intensity ``intensity * color`` (W/sr) at ``position``: irradiance I / d² on a surface
    facing it. ``spot``: a point light aimed along ``direction``, full intensity inside ``beam_deg`` of the axis
    and falling to zero at ``cone_deg`` (Mitsuba's ``spot``: linear in angle between the two). ``area``: a
    one-sided rectangle of half extents ``size`` centred on ``position``, facing ``direction``, emitting the
    radiance ``intensity * color``; it is visible geometry (an emissive quad in the G-buffers, see
    :meth:`SceneSpec.all_shapes`). ``color`` has its largest channel at 1, so ``intensity`` alone says how strong.
    """

    kind: LightKind
    position: tuple[float, float, float]
    color: tuple[float, float, float]
    intensity: float
    direction: tuple[float, float, float] = (0.0, -1.0, 0.0)
    cone_deg: float = 0.0
    beam_deg: float = 0.0
    size: tuple[float, float] = (0.0, 0.0)

    @property
    def rgb(self) -> tuple[float, float, float]:
        """Intensity (point, spot) or radiance (area) per channel."""
        r, g, b = (c * self.intensity for c in self.color)
        return (r, g, b)

    def panel(self) -> Shape:
        """The visible emissive rectangle of an ``area`` light (a light-grey diffuser)."""
        assert self.kind == "area"
        z = np.asarray(self.direction, float)
        z = z / np.linalg.norm(z)
        helper = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 0, 1.0])
        x = np.cross(helper, z)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        r = np.stack([x, y, z], axis=1)
        return Shape(
            "wall",
            _trs(np.asarray(self.position), r, np.array([self.size[0], self.size[1], 1.0])),
            Material((0.8, 0.8, 0.8), 1.0, 0.0, self.rgb),
        )


@dataclass
class SceneSpec:
    """A whole scene plus its camera path (consecutive frames are a few degrees apart).

    ``lights`` are the local lights (empty for house lighting). A scene without a sun has a zero
    ``sun_irradiance`` (its ``sun_direction`` stays a unit vector, as the lighting constants require).
    """

    seed: int
    layout: Layout
    shapes: list[Shape]
    sun_direction: tuple[float, float, float]
    sun_irradiance: tuple[float, float, float]
    sky_radiance: tuple[float, float, float]
    cameras: list[Camera] = field(default_factory=list)
    lights: list[Light] = field(default_factory=list)

    def all_shapes(self) -> list[Shape]:
        """The shapes to render: the spec's, then one emissive panel per area light (object ids follow)."""
        return self.shapes + [li.panel() for li in self.lights if li.kind == "area"]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.lights:  # house-lit manifests stay byte for byte what they were
            del d["lights"]
        return d

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
            lights=[Light(**_tuples(li)) for li in d.get("lights", [])],
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


# ---------------------------------------------------------------------------------------------------------------
# Every kind of light (``--lighting every``) and the held-out corridor family (``--lighting corridor``).

#: Per-scene settings of :func:`random_lit_scene` and how often each is drawn.
LIT_SETTINGS: dict[str, float] = {
    "day": 0.2,  # outdoors, a sun from anywhere above the horizon, a few lamps
    "sun_only": 0.1,  # outdoors, only a sun (outside the house cone) and a sky
    "dusk": 0.15,  # a low orange sun, a dim sky, lamps
    "night": 0.2,  # no sun (or a faint moon), a very dark sky, lamps
    "indoor": 0.2,  # a closed room: only lamps, panels and glowing objects
    "indoor_open": 0.15,  # a room open on one side, the sun and the sky come in
}
#: Tag mixed into the seed of the second generator, so lights never shift the house scene's draws.
_LIT_STREAM = 15
_CORRIDOR_STREAM = 17


def _light_color(rng: np.random.Generator) -> tuple[float, float, float]:
    """Half warm/neutral/cool whites (lamps), half saturated colours (neon, signal lights); max channel 1."""
    if rng.uniform() < 0.5:
        warm = float(rng.uniform(-1.0, 1.0))  # -1 cool (0.75, 0.85, 1) .. +1 warm (1, 0.72, 0.42)
        c = (
            np.array([1.0, 0.72, 0.42]) * max(warm, 0)
            + np.array([0.75, 0.85, 1.0]) * max(-warm, 0)
            + np.array([1.0, 0.95, 0.9]) * (1 - abs(warm))
        )
    else:
        c = np.array(colorsys.hsv_to_rgb(float(rng.uniform()), float(rng.uniform(0.55, 1.0)), 1.0))
    c = c / c.max()
    return (float(c[0]), float(c[1]), float(c[2]))


def _v3(v: Any) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _unit(v: np.ndarray) -> tuple[float, float, float]:
    u = v / np.linalg.norm(v)
    return (float(u[0]), float(u[1]), float(u[2]))


def _free_spot(
    rng: np.random.Generator, objects: list[Shape], lo: np.ndarray, hi: np.ndarray, clearance: float = 0.25
) -> np.ndarray:
    """A point in the box [lo, hi] outside every object's bounding sphere (best of a few tries)."""
    p = rng.uniform(lo, hi)
    for _try in range(30):
        if all(
            np.linalg.norm(p - np.asarray(sh.to_world)[:3, 3])
            > np.linalg.norm(np.asarray(sh.to_world)[:3, :3], axis=0).max() * 1.45 + clearance
            for sh in objects
        ):
            return p
        p = rng.uniform(lo, hi)
    return p


def _draw_light(
    rng: np.random.Generator,
    kind: LightKind,
    objects: list[Shape],
    ceiling: float | None,
    strength: float,
) -> Light:
    """One light of ``kind`` above the objects, ``strength`` = irradiance (around 2 m away) it should give."""
    color = _light_color(rng)
    e = strength * float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    top = (ceiling - 0.25) if ceiling is not None else 3.5
    if kind == "point":
        p = _free_spot(rng, objects, np.array([-3.0, 0.6, -3.0]), np.array([3.0, min(top, 2.8), 3.0]))
        return Light("point", (float(p[0]), float(p[1]), float(p[2])), color, e * 4.0)
    if kind == "spot":
        p = _free_spot(rng, objects, np.array([-3.2, 1.8, -3.2]), np.array([3.2, top, 3.2]))
        aim = np.array([rng.uniform(-2.0, 2.0), 0.0, rng.uniform(-2.0, 2.0)])
        if objects and rng.uniform() < 0.6:  # a spotlight on an object
            aim = np.asarray(objects[int(rng.integers(len(objects)))].to_world)[:3, 3]
        cone = float(rng.uniform(12.0, 45.0))
        d = aim - p
        return Light(
            "spot",
            (float(p[0]), float(p[1]), float(p[2])),
            color,
            e * float(np.dot(d, d)) * 1.5,
            direction=_unit(d),
            cone_deg=cone,
            beam_deg=cone * float(rng.uniform(0.4, 0.9)),
        )
    sx, sz = (float(v) for v in rng.uniform(0.25, 0.8, size=2))
    if ceiling is not None:  # a ceiling panel facing down
        p = np.array([rng.uniform(-2.5, 2.5), ceiling - 0.01, rng.uniform(-2.5, 2.5)])
        n = np.array([0.0, -1.0, 0.0])
    else:  # a floating sign or light box, facing the scene centre and somewhat down
        p = _free_spot(rng, objects, np.array([-3.2, 1.6, -3.2]), np.array([3.2, 3.2, 3.2]), 0.8)
        n = np.array([-p[0], -p[1] * rng.uniform(0.3, 1.2), -p[2]])
    area = 4 * sx * sz
    return Light(
        "area",
        (float(p[0]), float(p[1]), float(p[2])),
        color,
        e * 5.0 / area,
        direction=_unit(n),
        size=(sx, sz),
    )


def _room_shapes(rng: np.random.Generator, half: float, height: float, closed: bool) -> list[Shape]:
    """Walls (+x, -x, -z and, when ``closed``, +z) and a ceiling around the floor's centre, facing inwards."""
    y = np.array([0, 1.0, 0])

    def mat() -> Material:
        return Material(_color(rng, (0.0, 0.5), (0.3, 0.85)), float(rng.uniform(0.5, 1.0)), 0.0)

    hh = height / 2
    walls = [
        (np.array([0, hh, -half]), np.eye(3)),
        (np.array([-half, hh, 0]), _rot(y, math.pi / 2)),
        (np.array([half, hh, 0]), _rot(y, -math.pi / 2)),
    ]
    if closed:
        walls.append((np.array([0, hh, half]), _rot(y, math.pi)))
    shapes = [Shape("wall", _trs(t, r, np.array([half, hh, 1.0])), mat()) for t, r in walls]
    ceiling = _trs(
        np.array([0, height, 0]), _rot(np.array([1.0, 0, 0]), math.pi / 2), np.array([half, half, 1])
    )
    shapes.append(Shape("wall", ceiling, mat()))
    return shapes


def _glow(rng: np.random.Generator, shapes: list[Shape], p: float) -> list[Shape]:
    """Make some more objects emissive (glowing orbs, screens): each object with probability ``p``."""
    out = []
    for sh in shapes:
        if sh.kind not in ("floor", "wall") and rng.uniform() < p:
            em = _v3(np.array(_light_color(rng)) * rng.uniform(2.0, 8.0))
            m = sh.material
            sh = Shape(sh.kind, sh.to_world, Material(m.base_color, m.roughness, m.metallic, em))
        out.append(sh)
    return out


def _inside_cameras(rng: np.random.Generator, frames: int, half: float, height: float) -> list[Camera]:
    """An orbit inside a room on its +z side (the open side of an open room), looking towards the back."""
    yaw0 = rng.uniform(math.radians(35), math.radians(145))
    radius = rng.uniform(0.55, 0.75) * half
    h = rng.uniform(0.9, min(2.2, height - 0.5))
    target = np.array([rng.uniform(-0.5, 0.5), rng.uniform(0.3, 1.0), rng.uniform(-1.0, 0.0)])
    fov = math.radians(float(rng.uniform(50, 70)))
    dyaw = math.radians(float(rng.uniform(1.0, 3.0))) * (1 if rng.uniform() < 0.5 else -1)
    cams = []
    for k in range(frames):
        yaw = yaw0 + k * dyaw
        origin = (target[0] + radius * math.cos(yaw), h, target[2] + radius * math.sin(yaw))
        cams.append(Camera(_v3(origin), _v3(target), (0.0, 1.0, 0.0), fov))
    return cams


def random_lit_scene(seed: int, frames: int = 2) -> SceneSpec:
    """Draw a scene lit by every kind of light from ``seed`` (deterministic).

    The objects are :func:`random_scene`'s for the same seed; the setting (:data:`LIT_SETTINGS`), the room,
    the sun, the sky, the lights and extra glowing objects come from a second generator.
    """
    base = random_scene(seed, frames)
    rng = np.random.default_rng([seed, _LIT_STREAM])
    names = list(LIT_SETTINGS)
    setting = names[int(rng.choice(len(names), p=np.array(list(LIT_SETTINGS.values()))))]
    floor = base.shapes[0]
    objects = [sh for sh in base.shapes if sh.kind not in ("floor", "wall")]
    shapes, cams, layout = base.shapes, base.cameras, base.layout
    ceiling: float | None = None
    if setting.startswith("indoor"):
        half, ceiling = 4.5, float(rng.uniform(2.6, 3.8))
        cams = _inside_cameras(rng, frames, half, ceiling)
        # Objects in the camera's way would fill the view: leave them out.
        objects = [
            sh
            for sh in objects
            if min(
                np.linalg.norm((np.asarray(sh.to_world)[:3, 3] - np.asarray(c.origin))[[0, 2]]) for c in cams
            )
            > np.linalg.norm(np.asarray(sh.to_world)[:3, :3], axis=0).max() * 1.45 + 0.4
        ]
        shapes = [floor] + _room_shapes(rng, half, ceiling, closed=setting == "indoor") + objects
        layout = "indoor"
    # The sun: from anywhere above the horizon by day, low at dusk, absent (or a faint moon) at night.
    az = rng.uniform(0, 2 * math.pi)
    elev = {"dusk": rng.uniform(3, 15), "night": rng.uniform(20, 70)}.get(setting, rng.uniform(12, 85))
    if setting == "indoor_open":  # in through the open +z side, under the ceiling
        az, elev = rng.uniform(math.radians(40), math.radians(140)), rng.uniform(15, 40)
    el = math.radians(float(elev))
    sun_dir = (math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az))
    if setting in ("day", "sun_only", "indoor_open"):
        e = float(rng.uniform(1.2, 3.5))
        tint = np.array([1.0, 0.97, 0.9]) + rng.uniform(-0.05, 0.05, 3)
        sun = tuple(float(v) for v in e * tint)
        sky = tuple(
            float(v)
            for v in np.array(SKY_RADIANCE) * rng.uniform(0.5, 1.5) * (1 + rng.uniform(-0.15, 0.15, 3))
        )
    elif setting == "dusk":
        e = float(rng.uniform(0.4, 1.4))
        sun = (e, e * float(rng.uniform(0.45, 0.7)), e * float(rng.uniform(0.15, 0.35)))
        s = float(rng.uniform(0.04, 0.15))
        sky = (s * 0.8, s * 0.7, s * 1.2)
    elif setting == "night":
        moon = float(rng.uniform(0.0, 0.06)) if rng.uniform() < 0.5 else 0.0
        sun = (moon * 0.8, moon * 0.9, moon * 1.1)
        s = float(rng.uniform(0.002, 0.015))
        sky = (s * 0.5, s * 0.7, s * 1.3)
    else:  # closed room: the sky cannot reach in; it is what an engine's ambient term would be set to
        sun = (0.0, 0.0, 0.0)
        s = float(rng.uniform(0.01, 0.05))
        sky = (s, s, s)
    n_lights = {"sun_only": 0, "day": int(rng.integers(1, 4)), "indoor_open": int(rng.integers(1, 4))}.get(
        setting, int(rng.integers(2, 7))
    )
    strength = {"day": 1.0, "indoor_open": 1.0, "dusk": 1.2}.get(setting, 1.6)
    kinds: list[LightKind] = ["point", "spot", "area"]
    lights = [
        _draw_light(rng, kinds[int(rng.choice(3, p=[0.4, 0.35, 0.25]))], objects, ceiling, strength)
        for _ in range(n_lights)
    ]
    glow_p = {"night": 0.3, "indoor": 0.25, "dusk": 0.2}.get(setting, 0.08)
    shapes = _glow(rng, shapes, glow_p)
    return SceneSpec(
        seed=seed,
        layout=layout,
        shapes=shapes,
        sun_direction=_v3(sun_dir),
        sun_irradiance=_v3(sun),
        sky_radiance=_v3(sky),
        cameras=cams,
        lights=lights,
    )


def corridor_scene(seed: int, frames: int = 2) -> SceneSpec:
    """The held-out family: a long closed corridor, a row of identical lamps along its ceiling (points or
    spots, one colour or two alternating, now and then one dark), thin pillars along both walls and a pipe
    under the ceiling, a few objects on the floor; the camera walks down it. Nothing the generator draws for
    training looks like this (long, narrow, periodic, thin)."""
    rng = np.random.default_rng([seed, _CORRIDOR_STREAM])
    w, h = float(rng.uniform(1.3, 2.0)), float(rng.uniform(2.4, 3.2))
    z0, z1 = -14.0, 4.0
    zc, lh = (z0 + z1) / 2, (z1 - z0) / 2
    x_ax, y_ax = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])

    def mat(val: tuple[float, float] = (0.3, 0.8)) -> Material:
        return Material(_color(rng, (0.0, 0.5), val), float(rng.uniform(0.4, 1.0)), 0.0)

    floor_mat = mat()
    floor_mat.checker, floor_mat.checker_scale = (
        _color(rng, (0.0, 0.4), (0.2, 0.7)),
        float(rng.choice([8.0, 16.0])),
    )
    wall_mat, ceil_mat = mat(), mat((0.5, 0.9))
    shapes = [
        Shape("floor", _trs(np.array([0, 0, zc]), _rot(x_ax, -math.pi / 2), np.array([w, lh, 1])), floor_mat),
        Shape(
            "wall",
            _trs(np.array([-w, h / 2, zc]), _rot(y_ax, math.pi / 2), np.array([lh, h / 2, 1])),
            wall_mat,
        ),
        Shape(
            "wall",
            _trs(np.array([w, h / 2, zc]), _rot(y_ax, -math.pi / 2), np.array([lh, h / 2, 1])),
            wall_mat,
        ),
        Shape("wall", _trs(np.array([0, h, zc]), _rot(x_ax, math.pi / 2), np.array([w, lh, 1])), ceil_mat),
        Shape("wall", _trs(np.array([0, h / 2, z0]), np.eye(3), np.array([w, h / 2, 1])), mat()),
        Shape("wall", _trs(np.array([0, h / 2, z1]), _rot(y_ax, math.pi), np.array([w, h / 2, 1])), mat()),
    ]
    spacing = float(rng.uniform(2.0, 3.0))
    pillar = Material(
        _color(rng, (0.0, 0.3), (0.4, 0.9)), float(rng.uniform(0.1, 0.6)), 1.0 if rng.uniform() < 0.5 else 0.0
    )
    r = float(rng.uniform(0.04, 0.09))
    for z in np.arange(z1 - 1.0, z0, -spacing):
        for x in (-w + 0.25, w - 0.25):
            shapes.append(
                Shape("cylinder", _trs(np.array([x, h / 2, z]), np.eye(3), np.array([r, h / 2, r])), pillar)
            )
    pipe_x = float(rng.uniform(-0.6, 0.6)) * w
    shapes.append(
        Shape(
            "cylinder",
            _trs(np.array([pipe_x, h - 0.2, zc]), _rot(x_ax, math.pi / 2), np.array([0.05, lh, 0.05])),
            pillar,
        )
    )
    kinds: list[ShapeKind] = ["sphere", "cube", "torus", "cone"]
    for z in rng.uniform(z0 + 2, 0.0, size=int(rng.integers(2, 5))):
        kind = kinds[int(rng.integers(len(kinds)))]
        size = float(rng.uniform(0.2, 0.45))
        x = float(rng.uniform(-w + 0.6, w - 0.6))
        y = size * (0.35 if kind == "torus" else 1.0)
        shapes.append(
            Shape(
                kind,
                _trs(np.array([x, y, z]), _rot(y_ax, float(rng.uniform(0, 6.3))), np.array([size] * 3)),
                Material(_color(rng), float(rng.uniform(0.1, 0.9)), 1.0 if rng.uniform() < 0.3 else 0.0),
            )
        )
    lamp: LightKind = "spot" if rng.uniform() < 0.5 else "point"
    colors = [_light_color(rng)] + ([_light_color(rng)] if rng.uniform() < 0.5 else [])
    intensity = float(rng.uniform(2.0, 6.0)) * (h - 0.3) ** 2 / 2
    cone = float(rng.uniform(30, 60))
    lights = []
    for j, z in enumerate(np.arange(z1 - 0.5, z0, -spacing * float(rng.choice([1.0, 0.5])))):
        if rng.uniform() < 0.12:  # a dead lamp
            continue
        lights.append(
            Light(
                lamp,
                (0.0, h - 0.3, float(z)),
                colors[j % len(colors)],
                intensity,
                direction=(0.0, -1.0, 0.0),
                cone_deg=cone if lamp == "spot" else 0.0,
                beam_deg=cone * 0.6 if lamp == "spot" else 0.0,
            )
        )
    x0, y0 = float(rng.uniform(-0.3, 0.3)) * w, float(rng.uniform(1.2, min(1.8, h - 0.4)))
    zc0, step = float(rng.uniform(1.5, 3.0)), float(rng.uniform(0.05, 0.15))
    yaw, dyaw = float(rng.uniform(-0.15, 0.15)), math.radians(float(rng.uniform(-1.5, 1.5)))
    fov = math.radians(float(rng.uniform(50, 70)))
    cams = []
    for k in range(frames):
        o = np.array([x0, y0, zc0 - k * step])
        a = yaw + k * dyaw
        t = o + np.array([math.sin(a) * 6, -0.3, -math.cos(a) * 6])
        cams.append(Camera(tuple(float(v) for v in o), tuple(float(v) for v in t), (0.0, 1.0, 0.0), fov))  # type: ignore[arg-type]
    s = float(rng.uniform(0.005, 0.02))
    return SceneSpec(
        seed=seed,
        layout="corridor",
        shapes=shapes,
        sun_direction=_unit(np.array(SUN_DIRECTION)),
        sun_irradiance=(0.0, 0.0, 0.0),
        sky_radiance=(s, s, s),
        cameras=cams,
        lights=lights,
    )


def scene_for(lighting: str, seed: int, frames: int = 2) -> SceneSpec:
    """The scene ``seed`` of the ``lighting`` regime (:data:`LIGHTINGS`)."""
    if lighting == "house":
        return random_scene(seed, frames)
    if lighting == "every":
        return random_lit_scene(seed, frames)
    if lighting == "corridor":
        return corridor_scene(seed, frames)
    raise ValueError(f"unknown lighting {lighting!r}: expected one of {', '.join(LIGHTINGS)}")
