"""The sample game of ``make demo``: a small arena with a floor, walls, a few lit objects, a boss, a pickup and a
first-person "weapon", a dark crypt lit only by two torches (point lights) and a coloured spotlight, a camera that
walks a scripted path (towards the boss, then into the crypt) and scripted gameplay whose looks are plain game logic
calling the plugin's verbs (``set_style``, ``fire_event``, ``define_style``, ``exclude``/``include``,
``set_intensity``):

=================  ==============================================================================================
beat (game time)   what happens
=================  ==============================================================================================
``start`` (0)      ``set_style("photoreal")`` for the whole world; the player's settings: ``set_intensity
                   (settings.intensity)`` and, with "keep faces" on, ``exclude(("material", FACE_MATERIALS))``
``powerup``        the player picks up the power-up → ``set_style("golden", target=weapon)`` + ``weapon_powerup``
``damage``         the boss hits the player → event ``player_damaged`` (the server's hooks flash a short red pulse)
``boss_phase``     ``set_style("noir", over=2 s)`` + ``boss_phase``; the boss is excluded from re-rendering
                   (``exclude(("object", [BOSS_ID]))``): it keeps the engine's own red while the world goes noir
``boss_defeated``  the boss is gone → ``include`` it again, ``set_style("sunset", over=1 s)`` (the LUT style of the
                   demo's style file, ``bridge/style/looks/demo.toml``) + ``boss_defeated``
``enter_crypt``    the player walks into the dark crypt → ``define_style("crypt", CRYPT_STYLE)`` (a parameter set
                   sent through the protocol at run time, in no style file) and ``set_style("crypt", over=0.5 s)``
``torchlight``     by the altar → ``set_intensity(0.5, over=0.5 s)``: half the engine's torch-lit image shows
=================  ==============================================================================================

The crypt is the dark section: the sun and the arena's ambient light are switched off inside it (its floor, the
lining of its walls and ceiling and what stands in it), so it is lit only by two flickering ``PointLight`` torches,
a cold blue ``Spotlight`` on the altar and a faint ambient; its objects use Panda3D's per-pixel shader generator
(``setShaderAuto``) so the cones and fall-off are in the raster image, which the plugin sends as ``hudless_color``.

Everything is driven by *game time* = frame number × ``dt`` (a fixed step), so a run is deterministic and frame
``n`` always shows the same picture, whatever the machine's speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from panda3d.core import (
    AmbientLight,
    DirectionalLight,
    NodePath,
    PerspectiveLens,
    PointLight,
    Shader,
    Spotlight,
    Texture,
    TransparencyAttrib,
    Vec3,
    Vec4,
)

from nrb_panda3d import geometry
from nrb_panda3d.gbuffer import tag_surface

SHADER_DIR = Path(__file__).resolve().parent / "shaders"

# Object ids (object_id buffer) and material ids (material_id buffer) of the sample scene.
FLOOR_ID, WALL_IDS, CRATE_IDS, PILLAR_ID, ORB_ID, LAMP_ID, BOSS_ID, PICKUP_ID, WEAPON_ID = (
    1, (2, 3, 4), (10, 11, 12), 13, 14, 15, 30, 31, 42)
MAT_FLOOR, MAT_WALL, MAT_WOOD, MAT_STONE, MAT_CHROME, MAT_LAMP, MAT_BOSS, MAT_PICKUP, MAT_WEAPON = range(1, 10)
# The crypt (the dark section): floor, outer shell, inner lining, altar, idol, its keeper, two torches.
CRYPT_FLOOR_ID, CRYPT_SHELL_ID, CRYPT_LINING_ID, ALTAR_ID, IDOL_ID, KEEPER_ID, TORCH_IDS = (
    20, 21, 22, 23, 24, 25, (26, 27))
MAT_CRYPT, MAT_IDOL, MAT_SKIN, MAT_CLOTH, MAT_FLAME = range(10, 15)
#: The characters' face materials: what the sample game's "keep faces" setting excludes from re-rendering (the
#: boss is all face; the crypt keeper's head).
FACE_MATERIALS: tuple[int, ...] = (MAT_BOSS, MAT_SKIN)
#: The look the game defines at run time when the player enters the crypt (``define_style``, protocol §5.3): cold
#: white balance, lifted blue shadows, a blue-grey haze by depth. Parameters of ``bridge.style.library``.
CRYPT_STYLE: dict[str, float | list[float]] = {
    "temperature": -0.35,
    "lift": [0.0, 0.01, 0.04],
    "gain": [0.95, 1.0, 1.1],
    "saturation": 0.85,
    "fog": 0.12,
    "fog_color": [0.18, 0.22, 0.35],
    "fog_max": 0.3,
}
#: The crypt's spotlight: cold blue, on the idol.
SPOT_COLOR = Vec4(0.77, 1.54, 3.52, 1)
#: Where the crypt stands (Panda3D world, z up): x from CRYPT_X0 to CRYPT_X1, y within ±CRYPT_HALF_Y; its doorway
#: faces the arena (west) at y = 0.
CRYPT_X0, CRYPT_X1, CRYPT_HALF_Y, CRYPT_HEIGHT, DOOR_HALF_WIDTH, DOOR_HEIGHT = 6.5, 11.5, 3.0, 3.2, 1.2, 2.5


@dataclass
class ScriptEvent:
    time: float
    name: str
    action: Callable[[], None]
    done: bool = False


@dataclass
class Timeline:
    """When the scripted gameplay beats happen (seconds of game time). The camera walks towards the boss until
    ``defeat``, then into the crypt, where it arrives by ``torchlight`` and stays until ``end``."""

    powerup: float = 2.0
    damage: float = 3.5
    boss: float = 4.5
    defeat: float = 6.5
    crypt: float = 7.3
    torchlight: float = 8.6
    end: float = 10.0

    @classmethod
    def scaled(cls, total: float) -> Timeline:
        """The same beats spread over a run of ``total`` seconds (the default fits a 10 s run)."""
        k = total / 10.0
        d = cls()
        return cls(d.powerup * k, d.damage * k, d.boss * k, d.defeat * k, d.crypt * k, d.torchlight * k, total)


@dataclass
class GameSettings:
    """The sample game's own settings menu, next to the plugin's toggle (``NeuralRendering.enabled``): how much of
    the re-rendered image is shown (``intensity`` 0..1, the plugin's ``set_intensity``) and "keep faces" (the
    characters' face materials, :data:`FACE_MATERIALS`, keep the engine's pixels: the plugin's ``exclude``)."""

    intensity: float = 1.0
    keep_faces: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.intensity <= 1.0:
            raise ValueError(f"intensity must be in [0, 1], not {self.intensity}")


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
                 camera_speed: float = 1.0, settings: GameSettings | None = None) -> None:
        self.base = base
        self.nrb = nrb
        self.dt = dt
        self.timeline = timeline or Timeline()
        self.settings = settings or GameSettings()
        self._faces_kept = False
        self.camera_speed = camera_speed
        self.frame = 0
        self.time = 0.0
        self.frozen = False
        self.log: list[tuple[int, float, str]] = []
        #: what each beat asked the plugin for, in order: (frame, game time, beat, plugin call as text); the
        #: demo's timing report lists these under each beat
        self.calls: list[tuple[int, float, str, str]] = []
        self._beat = "game"
        self.root = base.render.attachNewNode("sample-game")
        self.objects: dict[str, NodePath] = {}
        self._build_scene()
        self._build_crypt()
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

    def _build_crypt(self) -> None:
        """The dark section (module docstring). Its outer shell belongs to the arena (sunlit like the other walls);
        a lining just inside it, the floor and everything in the crypt hang under ``self.crypt``, which
        :meth:`_build_lights` lights with the torches, the spotlight and a faint ambient only."""
        x0, x1, hy, h = CRYPT_X0, CRYPT_X1, CRYPT_HALF_Y, CRYPT_HEIGHT
        cx, length, t = (x0 + x1) / 2, x1 - x0, 0.3
        shell = self.root.attachNewNode("crypt-shell")
        side = (hy - DOOR_HALF_WIDTH) / 2
        parts = [  # (centre, size): back, north, south, the two front pieces beside the door, lintel, roof
            ((x1 + t / 2, 0, h / 2), (t, 2 * hy + 2 * t, h)),
            ((cx, hy + t / 2, h / 2), (length, t, h)), ((cx, -hy - t / 2, h / 2), (length, t, h)),
            ((x0 - t / 2, DOOR_HALF_WIDTH + side, h / 2), (t, 2 * side, h)),
            ((x0 - t / 2, -DOOR_HALF_WIDTH - side, h / 2), (t, 2 * side, h)),
            ((x0 - t / 2, 0, (DOOR_HEIGHT + h) / 2), (t, 2 * DOOR_HALF_WIDTH, h - DOOR_HEIGHT)),
            ((cx, 0, h + t / 2), (length + 2 * t, 2 * hy + 2 * t, t)),
        ]
        for pos, size in parts:
            piece = shell.attachNewNode(geometry.box(*size))
            piece.setPos(*pos)
        shell.setColor(0.5, 0.47, 0.44, 1)
        tag_surface(shell, roughness=0.9, material_id=MAT_CRYPT, object_id=CRYPT_SHELL_ID)
        self.objects["crypt_shell"] = shell

        crypt = self.root.attachNewNode("crypt")
        self.crypt = crypt
        floor = self._add("crypt_floor", geometry.plane(length, 2 * hy, uv_repeat=3), pos=(cx, 0, 0.02),
                          color=(0.8, 0.78, 0.74), parent=crypt, roughness=0.8, material_id=MAT_CRYPT,
                          object_id=CRYPT_FLOOR_ID)
        floor.setTexture(checker_texture(a=(150, 140, 128), b=(70, 66, 62)))
        lining = crypt.attachNewNode("crypt-lining")
        e = 0.02  # just inside the shell
        for pos, size in [((x1 - e, 0, h / 2), (e, 2 * hy, h)), ((cx, hy - e, h / 2), (length, e, h)),
                          ((cx, -hy + e, h / 2), (length, e, h)),
                          ((x0 + e, DOOR_HALF_WIDTH + side, h / 2), (e, 2 * side, h)),
                          ((x0 + e, -DOOR_HALF_WIDTH - side, h / 2), (e, 2 * side, h)),
                          ((x0 + e, 0, (DOOR_HEIGHT + h) / 2), (e, 2 * DOOR_HALF_WIDTH, h - DOOR_HEIGHT)),
                          ((cx, 0, h - e), (length, 2 * hy, e))]:
            piece = lining.attachNewNode(geometry.box(*size))
            piece.setPos(*pos)
        lining.setColor(0.62, 0.58, 0.54, 1)
        tag_surface(lining, roughness=0.9, material_id=MAT_CRYPT, object_id=CRYPT_LINING_ID)
        self.objects["crypt_lining"] = lining
        self._add("altar", geometry.box(0.9, 1.6, 1.0), pos=(x1 - 1.0, 0, 0.5), color=(0.55, 0.55, 0.58),
                  parent=crypt, roughness=0.6, material_id=MAT_CRYPT, object_id=ALTAR_ID)
        self._add("idol", geometry.sphere(0.3), pos=(x1 - 1.0, 0, 1.3), color=(1.0, 0.8, 0.35), parent=crypt,
                  roughness=0.25, metallic=1.0, material_id=MAT_IDOL, object_id=IDOL_ID)
        keeper = crypt.attachNewNode("keeper")
        keeper.setPos(x1 - 1.6, -hy + 0.9, 0.0)
        body = keeper.attachNewNode(geometry.cylinder(0.28, 1.3))
        body.setColor(0.25, 0.22, 0.4, 1)
        tag_surface(body, roughness=0.8, material_id=MAT_CLOTH, object_id=KEEPER_ID)
        head = keeper.attachNewNode(geometry.sphere(0.2))
        head.setPos(0, 0, 1.5)
        head.setColor(0.85, 0.62, 0.5, 1)
        tag_surface(head, roughness=0.5, material_id=MAT_SKIN, object_id=KEEPER_ID)
        self.objects["keeper"] = keeper
        for i, y in enumerate((1.7, -1.7)):  # on the back wall, either side of the altar
            stick = crypt.attachNewNode(geometry.cylinder(0.04, 0.45, 8))
            stick.setPos(x1 - 0.15, y, 1.45)
            stick.setColor(0.3, 0.2, 0.12, 1)
            tag_surface(stick, roughness=0.9, material_id=MAT_WOOD, object_id=TORCH_IDS[i])
            self._add(f"torch{i}", geometry.sphere(0.09, 8, 10), pos=(x1 - 0.15, y, 1.98), color=(1.0, 0.6, 0.25),
                      parent=crypt, roughness=0.5, material_id=MAT_FLAME, object_id=TORCH_IDS[i],
                      emission=(6.0, 3.0, 1.0))

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

        # The crypt: no sun, no arena ambient (a game's light linking / lighting channels; Panda3D's lights cast
        # no shadows by default, so the roof alone would not keep the sun out), only what burns inside it.
        crypt = self.crypt
        crypt.setLightOff(1)
        dark = AmbientLight("crypt-ambient")
        dark.setColor(Vec4(0.025, 0.025, 0.035, 1))
        lights = [crypt.attachNewNode(dark)]
        self.torches: list[PointLight] = []
        for i in range(2):
            torch = PointLight(f"torch-light{i}")
            torch.setAttenuation(Vec3(1.0, 0.0, 0.6))
            self.torches.append(torch)
            flame = self.objects[f"torch{i}"]
            lights.append(flame.attachNewNode(torch))
            flame.setLightOff(2)  # the flame itself glows
            flame.setColorScale(1.6, 1.2, 0.8, 1)
        spot = Spotlight("altar-spot")
        lens = PerspectiveLens()
        lens.setFov(34)
        spot.setLens(lens)
        spot.setColor(SPOT_COLOR)  # a cold blue spotlight on the idol
        spot.setExponent(8.0)
        spot.setAttenuation(Vec3(1.0, 0.0, 0.05))
        spot_np = crypt.attachNewNode(spot)
        idol = self.objects["idol"]
        spot_np.setPos(idol.getX() - 1.4, 0.0, CRYPT_HEIGHT - 0.15)
        spot_np.lookAt(idol.getPos())
        lights.append(spot_np)
        for light in lights:
            crypt.setLight(light, 2)
        self.crypt_lights = lights
        # Per-pixel lighting for the crypt (shaders/lit.*: Panda3D's shader generator emits Cg, which this build
        # cannot run), so the spot's cone and the torches' fall-off show across a floor of two triangles; the arena
        # keeps Panda3D's default lighting. The G-buffer pass overrides both with its own shaders (priority 1000).
        crypt.setShader(Shader.load(Shader.SL_GLSL, vertex=str(SHADER_DIR / "lit.vert"),
                                    fragment=str(SHADER_DIR / "lit.frag")), 1)
        for i in range(2):
            self.objects[f"torch{i}"].setShaderOff(2)
        self._flicker(0.0)

    def _flicker(self, t: float) -> None:
        """The torches' light, a deterministic flicker of game time."""
        for i, torch in enumerate(self.torches):
            k = 1.0 + 0.12 * math.sin(t * 11.0 + 1.7 * i) + 0.06 * math.sin(t * 23.0 + 0.5 * i)
            torch.setColor(Vec4(1.0, 0.55, 0.22, 1) * (1.8 * k))

    # -------------------------------------------------------------------------------------------- gameplay
    def _schedule(self) -> None:
        t = self.timeline
        self._script = [
            ScriptEvent(0.0, "start", self.on_start),
            ScriptEvent(t.powerup, "powerup", self.on_powerup),
            ScriptEvent(t.damage, "damage", self.on_damage),
            ScriptEvent(t.boss, "boss_phase", self.on_boss_phase),
            ScriptEvent(t.defeat, "boss_defeated", self.on_boss_defeated),
            ScriptEvent(t.crypt, "enter_crypt", self.on_enter_crypt),
            ScriptEvent(t.torchlight, "torchlight", self.on_torchlight),
        ]

    def _nrb(self, method: str, *args: Any, **kw: Any) -> None:
        """Call the plugin (when there is one) and note the call under the current beat (:attr:`calls`)."""
        text = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kw.items()])
        self.calls.append((self.frame, self.time, self._beat, f"{method}({text})"))
        if self.nrb is not None:
            getattr(self.nrb, method)(*args, **kw)

    def on_start(self) -> None:
        self._nrb("set_style", "photoreal", 1.0, over=0.0)
        self.apply_settings()

    def apply_settings(self, settings: GameSettings | None = None) -> None:
        """The settings menu's intensity and "keep faces" (:class:`GameSettings`): applied at start, and again
        whenever the player changes them (``settings``)."""
        before = self._faces_kept
        if settings is not None:
            self.settings = settings
        if settings is not None or self.settings.intensity != 1.0:  # 1 is the session's default
            self._nrb("set_intensity", self.settings.intensity, over=0.0)
        if self.settings.keep_faces != before:
            self._nrb("exclude", ("material", list(FACE_MATERIALS)), self.settings.keep_faces)
            self._faces_kept = self.settings.keep_faces

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
        """The world goes noir; the boss is excluded from re-rendering and keeps the engine's own colours."""
        self._nrb("set_style", "noir", 1.0, over=2.0)
        self._nrb("fire_event", "boss_phase", {"phase": 2})
        self.exclude_boss()

    def exclude_boss(self) -> None:
        self._nrb("exclude", ("object", [BOSS_ID]))

    def on_boss_defeated(self) -> None:
        self.boss_alive = False
        self.objects["boss"].hide()
        self._nrb("include", ("object", [BOSS_ID]))
        self._nrb("set_style", "sunset", 1.0, over=1.0)
        self._nrb("fire_event", "boss_defeated", {})

    def on_enter_crypt(self) -> None:
        """A look no style file has: the game defines it through the protocol, then switches to it."""
        self.enter_crypt()

    def enter_crypt(self, over: float = 0.5) -> None:
        self._nrb("define_style", "crypt", CRYPT_STYLE, 1.0, over=over)

    def on_torchlight(self) -> None:
        """By the altar the engine's torch-lit image shows through: half intensity."""
        self._nrb("set_intensity", 0.5, over=0.5)

    # ---------------------------------------------------------------------------------------------- update
    def place_camera(self, t: float) -> None:
        """The scripted walk: from the entrance towards the boss, swaying, looking around the room; after the boss
        falls (``timeline.defeat``) it turns to the crypt, walks in by ``timeline.torchlight`` and looks around."""
        tl = self.timeline
        if t <= tl.defeat:
            pos, hpr = self._arena_pose(t)
        else:
            pos, hpr = self._crypt_pose(t)
        self.base.camera.setPos(*pos)
        self.base.camera.setHpr(*hpr)

    def _arena_pose(self, t: float) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        s = t * self.camera_speed
        x = 2.5 * math.sin(s * 0.35)
        y = min(-6.0 + 1.0 * s, 2.0)
        return (x, y, 1.6 + 0.05 * math.sin(s * 4.0)), (-12.0 * math.sin(s * 0.5), -6.0 + 2.0 * math.sin(s * 0.8), 0.0)

    def _crypt_pose(self, t: float) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        tl = self.timeline
        (x0, y0, z0), (h0, p0, _r) = self._arena_pose(tl.defeat)
        door = (CRYPT_X0 - 1.2, 0.0)
        inside = (CRYPT_X0 + 0.7, 0.4)
        walk = max(tl.torchlight - tl.defeat, 1e-6)
        u = min(max((t - tl.defeat) / walk, 0.0), 1.0)
        u = u * u * (3.0 - 2.0 * u)  # smoothstep: no jolt at either end
        if u < 0.5:  # to the door, turning to face the crypt (heading -90: looking along +x)
            v = u / 0.5
            x, y = x0 + (door[0] - x0) * v, y0 + (door[1] - y0) * v
        else:
            v = (u - 0.5) / 0.5
            x, y = door[0] + (inside[0] - door[0]) * v, door[1] + (inside[1] - door[1]) * v
        heading = h0 + (-90.0 - h0) * min(u / 0.5, 1.0)
        # inside: look around slowly, from the torches to the idol on the altar
        look = max(t - tl.torchlight, 0.0)
        heading += 18.0 * math.sin(look * 1.3) * min(look, 1.0)
        pitch = p0 + (-4.0 - p0) * u
        return (x, y, z0 + (1.6 - z0) * u), (heading, pitch, 0.0)

    def animate(self, t: float) -> None:
        boss = self.objects["boss"]
        boss.setPos(1.8 * math.sin(t * 0.9), 10.0, 1.4 + 0.3 * math.sin(t * 2.1))
        boss.setH(t * 40.0)
        self.objects["pickup"].setH(t * 90.0)
        self.objects["orb"].setZ(0.6 + 0.15 * math.sin(t * 1.7))
        self.objects["idol"].setH(t * 30.0)
        self._flicker(t)

    def step(self) -> float:
        """Advance the game by one fixed step: gameplay beats, animation, camera. Returns the game time."""
        if not self.frozen:
            self.time = self.frame * self.dt
            for ev in self._script:
                if not ev.done and self.time + 1e-9 >= ev.time:
                    ev.done = True
                    self._beat = ev.name
                    ev.action()
                    self._beat = "game"
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
