"""The sample game of ``make demo``: a small arena with a floor, walls, a few lit objects, a boss, a pickup and a
first-person "weapon", a camera that walks a scripted path, and scripted gameplay whose style changes are plain
game logic calling the plugin's ``set_style`` / ``fire_event``:

=========  ======================================================================================================
time (s)   what happens
=========  ======================================================================================================
0          ``set_style("photoreal")`` for the whole world
``POWERUP``    the player picks up the power-up → ``set_style("golden", target=weapon)`` + event ``weapon_powerup``
``DAMAGE``     the boss hits the player → event ``player_damaged`` (the server's hooks flash a short red pulse)
``BOSS``       the boss phase starts → ``set_style("noir", over=2 s)`` + event ``boss_phase``
``DEFEAT``     the boss is defeated → ``set_style("photoreal", over=1 s)`` + event ``boss_defeated``
=========  ======================================================================================================

Everything is driven by *game time* = frame number × ``dt`` (a fixed step), so a run is deterministic and frame
``n`` always shows the same picture, whatever the machine's speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from panda3d.core import (
    AmbientLight,
    DirectionalLight,
    NodePath,
    PointLight,
    Texture,
    TransparencyAttrib,
    Vec3,
    Vec4,
)

from nrb_panda3d import geometry
from nrb_panda3d.gbuffer import tag_surface

# Object ids (object_id buffer) and material ids (material_id buffer) of the sample scene.
FLOOR_ID, WALL_IDS, CRATE_IDS, PILLAR_ID, ORB_ID, LAMP_ID, BOSS_ID, PICKUP_ID, WEAPON_ID = (
    1, (2, 3, 4), (10, 11, 12), 13, 14, 15, 30, 31, 42)
MAT_FLOOR, MAT_WALL, MAT_WOOD, MAT_STONE, MAT_CHROME, MAT_LAMP, MAT_BOSS, MAT_PICKUP, MAT_WEAPON = range(1, 10)


@dataclass
class ScriptEvent:
    time: float
    name: str
    action: Callable[[], None]
    done: bool = False


@dataclass
class Timeline:
    """When the scripted gameplay beats happen (seconds of game time)."""

    powerup: float = 2.0
    damage: float = 3.5
    boss: float = 5.0
    defeat: float = 8.0

    @classmethod
    def scaled(cls, total: float) -> Timeline:
        """The same beats spread over a run of ``total`` seconds (the default fits a 10 s run)."""
        k = total / 10.0
        return cls(2.0 * k, 3.5 * k, 5.0 * k, 8.0 * k)


def checker_texture(size: int = 64, squares: int = 8, a: tuple[int, int, int] = (200, 200, 190),
                    b: tuple[int, int, int] = (90, 95, 105)) -> Texture:
    """A procedural checkerboard (so the floor has texture detail without files)."""
    y, x = np.mgrid[0:size, 0:size]
    cell = size // squares
    mask = ((x // cell + y // cell) % 2).astype(bool)
    img = np.where(mask[..., None], np.array(a, np.uint8), np.array(b, np.uint8)).astype(np.uint8)
    tex = Texture("checker")
    tex.setup2dTexture(size, size, Texture.T_unsigned_byte, Texture.F_rgb8)
    tex.setRamImageAs(np.ascontiguousarray(img[::-1]).tobytes(), "RGB")
    tex.setMinfilter(Texture.FT_linear_mipmap_linear)
    tex.setMagfilter(Texture.FT_nearest)
    tex.setWrapU(Texture.WM_repeat)
    tex.setWrapV(Texture.WM_repeat)
    return tex


class SampleGame:
    """The demo scene and its scripted gameplay. ``nrb`` is the plugin (anything with ``set_style`` / ``fire_event``
    works; None runs the game without neural rendering)."""

    def __init__(self, base: Any, nrb: Any = None, *, dt: float = 1.0 / 30.0, timeline: Timeline | None = None,
                 camera_speed: float = 1.0) -> None:
        self.base = base
        self.nrb = nrb
        self.dt = dt
        self.timeline = timeline or Timeline()
        self.camera_speed = camera_speed
        self.frame = 0
        self.time = 0.0
        self.frozen = False
        self.log: list[tuple[int, float, str]] = []
        self.root = base.render.attachNewNode("sample-game")
        self.objects: dict[str, NodePath] = {}
        self._build_scene()
        self._build_lights()
        self._script: list[ScriptEvent] = []
        self._schedule()
        base.camLens.setFov(70)
        base.camLens.setNearFar(0.1, 60.0)
        self.weapon_golden = False
        self.boss_alive = True
        self.place_camera(0.0)

    # ------------------------------------------------------------------------------------------------- scene
    def _add(self, name: str, node: Any, *, pos: tuple[float, float, float], color: tuple[float, ...],
             parent: NodePath | None = None, hpr: tuple[float, float, float] = (0, 0, 0), **surface: Any) -> NodePath:
        np_ = (parent or self.root).attachNewNode(node)
        np_.setPos(*pos)
        np_.setHpr(*hpr)
        np_.setColor(Vec4(*color, 1.0) if len(color) == 3 else Vec4(*color))
        tag_surface(np_, **surface)
        self.objects[name] = np_
        return np_

    def _build_scene(self) -> None:
        floor = self._add("floor", geometry.plane(24, 24, uv_repeat=6), pos=(0, 0, 0), color=(1, 1, 1),
                          roughness=0.85, material_id=MAT_FLOOR, object_id=FLOOR_ID)
        floor.setTexture(checker_texture())
        walls = [((0, 12, 2.5), (24, 0.5, 5)), ((-12, 0, 2.5), (0.5, 24, 5)), ((12, 0, 2.5), (0.5, 24, 5))]
        for i, (pos, size) in enumerate(walls):
            self._add(f"wall{i}", geometry.box(*size), pos=pos, color=(0.72, 0.62, 0.52), roughness=0.9,
                      material_id=MAT_WALL, object_id=WALL_IDS[i])
        crates = [(-3.5, 5.0, 0.6, 1.2, 20), (-2.2, 6.2, 0.45, 0.9, -10), (4.0, 4.0, 0.7, 1.4, 35)]
        for i, (x, y, z, s, h) in enumerate(crates):
            self._add(f"crate{i}", geometry.box(s, s, s), pos=(x, y, z), hpr=(h, 0, 0), color=(0.62, 0.4, 0.2),
                      roughness=0.7, material_id=MAT_WOOD, object_id=CRATE_IDS[i])
        self._add("pillar", geometry.cylinder(0.5, 4.0), pos=(2.0, 8.0, 0.0), color=(0.6, 0.62, 0.66),
                  roughness=0.5, material_id=MAT_STONE, object_id=PILLAR_ID)
        self._add("orb", geometry.sphere(0.6), pos=(-0.8, 6.5, 0.6), color=(0.85, 0.85, 0.9), roughness=0.15,
                  metallic=1.0, material_id=MAT_CHROME, object_id=ORB_ID)
        self._add("lamp", geometry.sphere(0.25), pos=(-5.0, 9.0, 3.2), color=(1.0, 0.9, 0.6), roughness=0.3,
                  material_id=MAT_LAMP, object_id=LAMP_ID, emission=(4.0, 3.4, 2.0))
        boss = self._add("boss", geometry.sphere(1.0, 16, 24), pos=(0.0, 10.0, 1.4), color=(0.55, 0.1, 0.12),
                         roughness=0.4, material_id=MAT_BOSS, object_id=BOSS_ID)
        horn = boss.attachNewNode(geometry.box(0.3, 0.3, 0.9))
        horn.setPos(0, -0.6, 0.9)
        horn.setColor(0.9, 0.85, 0.7, 1)
        self._add("pickup", geometry.box(0.4, 0.4, 0.4), pos=(0.0, 3.0, 0.5), color=(0.2, 0.8, 1.0),
                  roughness=0.3, material_id=MAT_PICKUP, object_id=PICKUP_ID)
        # The weapon is a first-person view model: parented to the camera, bottom right of the view.
        weapon = self.root.attachNewNode("weapon")
        weapon.reparentTo(self.base.camera)
        weapon.setPos(0.28, 0.7, -0.24)
        weapon.setHpr(4, 2, 0)
        body = weapon.attachNewNode(geometry.box(0.1, 0.5, 0.12))
        body.setColor(0.25, 0.27, 0.3, 1)
        barrel = weapon.attachNewNode(geometry.cylinder(0.03, 0.35, 12))
        barrel.setP(-90)
        barrel.setPos(0, 0.2, 0.03)
        barrel.setColor(0.15, 0.15, 0.17, 1)
        grip = weapon.attachNewNode(geometry.box(0.08, 0.1, 0.2))
        grip.setPos(0, -0.15, -0.12)
        grip.setColor(0.35, 0.22, 0.12, 1)
        tag_surface(weapon, roughness=0.45, metallic=0.6, material_id=MAT_WEAPON, object_id=WEAPON_ID)
        weapon.setTransparency(TransparencyAttrib.MNone)
        self.objects["weapon"] = weapon

    def _build_lights(self) -> None:
        sun = DirectionalLight("sun")
        # irradiance pi x 0.75 = 2.36: inside the range the default neural model was trained on (2.0-2.6)
        sun.setColor(Vec4(1.0, 0.96, 0.9, 1) * 0.75)
        sun_np = self.root.attachNewNode(sun)
        # protocol world sun direction (0.45, 0.8, 0.4) (+Y up) is Panda (0.45, -0.4, 0.8): the light shines the
        # other way
        sun_np.lookAt(Vec3(-0.45, 0.4, -0.8))
        amb = AmbientLight("ambient")
        amb.setColor(Vec4(0.28, 0.3, 0.36, 1))
        amb_np = self.root.attachNewNode(amb)
        lamp = PointLight("lamp-light")
        lamp.setColor(Vec4(1.0, 0.85, 0.55, 1) * 2.0)
        lamp.setAttenuation(Vec3(1, 0.0, 0.08))
        lamp_np = self.objects["lamp"].attachNewNode(lamp)
        for light in (sun_np, amb_np, lamp_np):
            self.root.setLight(light)
        self.objects["lamp"].setLightOff()  # the bulb itself glows
        self.objects["lamp"].setColorScale(1.3, 1.2, 1.0, 1)
        self.base.setBackgroundColor(0.45, 0.55, 0.7, 1)

    # -------------------------------------------------------------------------------------------- gameplay
    def _schedule(self) -> None:
        t = self.timeline
        self._script = [
            ScriptEvent(0.0, "start", self.on_start),
            ScriptEvent(t.powerup, "powerup", self.on_powerup),
            ScriptEvent(t.damage, "damage", self.on_damage),
            ScriptEvent(t.boss, "boss_phase", self.on_boss_phase),
            ScriptEvent(t.defeat, "boss_defeated", self.on_boss_defeated),
        ]

    def _nrb(self, method: str, *args: Any, **kw: Any) -> None:
        if self.nrb is not None:
            getattr(self.nrb, method)(*args, **kw)

    def on_start(self) -> None:
        self._nrb("set_style", "photoreal", 1.0, over=0.0)

    def on_powerup(self) -> None:
        self.objects["pickup"].hide()  # picked up
        self.power_up_weapon()

    def power_up_weapon(self) -> None:
        """The weapon turns golden: a style on the weapon's object id only, plus the event for the hooks."""
        self.weapon_golden = True
        self._nrb("set_style", "golden", 1.0, over=0.3, target=("object", [WEAPON_ID]))
        self._nrb("fire_event", "weapon_powerup", {"over": 0.3}, target=("object", [WEAPON_ID]))

    def on_damage(self) -> None:
        """The player is hit: the server's hooks answer ``player_damaged`` with a short red pulse."""
        self._nrb("fire_event", "player_damaged", {"amount": 0.6})

    def on_boss_phase(self) -> None:
        self._nrb("set_style", "noir", 1.0, over=2.0)
        self._nrb("fire_event", "boss_phase", {"phase": 2})

    def on_boss_defeated(self) -> None:
        self.boss_alive = False
        self.objects["boss"].hide()
        self._nrb("set_style", "photoreal", 1.0, over=1.0)
        self._nrb("fire_event", "boss_defeated", {})

    # ---------------------------------------------------------------------------------------------- update
    def place_camera(self, t: float) -> None:
        """The scripted walk: from the entrance towards the boss, swaying, looking around the room."""
        s = t * self.camera_speed
        x = 2.5 * math.sin(s * 0.35)
        y = min(-6.0 + 1.0 * s, 2.0)
        self.base.camera.setPos(x, y, 1.6 + 0.05 * math.sin(s * 4.0))
        self.base.camera.setHpr(-12.0 * math.sin(s * 0.5), -6.0 + 2.0 * math.sin(s * 0.8), 0.0)

    def animate(self, t: float) -> None:
        boss = self.objects["boss"]
        boss.setPos(1.8 * math.sin(t * 0.9), 10.0, 1.4 + 0.3 * math.sin(t * 2.1))
        boss.setH(t * 40.0)
        self.objects["pickup"].setH(t * 90.0)
        self.objects["orb"].setZ(0.6 + 0.15 * math.sin(t * 1.7))

    def step(self) -> float:
        """Advance the game by one fixed step: gameplay beats, animation, camera. Returns the game time."""
        if not self.frozen:
            self.time = self.frame * self.dt
            for ev in self._script:
                if not ev.done and self.time + 1e-9 >= ev.time:
                    ev.done = True
                    ev.action()
                    self.log.append((self.frame, self.time, ev.name))
            self.animate(self.time)
            self.place_camera(self.time)
            self.frame += 1
        return self.time

    def task(self, task: Any) -> int:
        self.step()
        return task.cont

    def start_task(self, sort: int = 0) -> None:
        """Drive the game from Panda3D's task manager (one step per rendered frame)."""
        self.base.taskMgr.add(self.task, "sample-game", sort=sort)
