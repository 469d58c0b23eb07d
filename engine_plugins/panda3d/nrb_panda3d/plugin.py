"""``NeuralRendering``: the plugin object a Panda3D game adds in one line.

    from nrb_panda3d import NeuralRendering
    nrb = NeuralRendering(base)                        # after ShowBase(), before base.run()
    nrb.set_style("noir", 1.0, over=2.0)               # game logic: whole world, over two seconds
    nrb.fire_event("weapon_powerup", {}, target=("object", [42]))
    nrb.define_style("poison", {"hue": 35, "gain": [0.85, 1.1, 0.75]}, over=0.5)  # a look written at run time
    nrb.set_intensity(0.5, over=1.0)                   # half the engine's own image (0: all of it)
    nrb.exclude(("object", [7]))                       # object 7 keeps the engine's pixels; include() undoes it
    nrb.enabled = False                                # the player's settings toggle (also: key F9)
    nrb.intensity = 0.8                                # the player's intensity slider

What it does each frame (two tasks around Panda3D's ``igLoop``, sort 50):

* **before rendering** (task ``nrb-pre``, sort 49): gets the newest rendered image from the client (``acquire
  result``); if there is one it is uploaded to a texture and shown on the full-screen card, otherwise the card shows
  the game's own raster image (fall back). Then it sets every object's current/previous model-view-projection for
  the G-buffer pass and begins the client frame.
* **rendering** (``igLoop``): the game's cameras render the scene into an offscreen texture (``FilterManager``); the
  G-buffer camera renders albedo, normals, depth, roughness/metallic, emissive, material/object ids and motion
  vectors (:mod:`nrb_panda3d.gbuffer`); the window draws the card and the game's 2D UI on top.
* **after rendering** (task ``nrb-post``, sort 51): reads the G-buffers back, tags them with the camera constants and
  the scene's sun and ambient light (:mod:`nrb_panda3d.lights`) and submits the frame; the client sends it in the background and never blocks the game.
  With the pack pass (:mod:`nrb_panda3d.pack`, the default) the G-buffers are already wire-ready bytes on the GPU:
  each target's readback is copied as is into the buffer's slot in libnrb's shared memory (``acquire_slot``), no
  numpy conversion per pixel.

The window may be larger than the render size (``nrb-render-size``): the plugin then asks for output at the window
size (``output_size``), which an upscaling renderer (the neural renderer with a 2x model) delivers; a renderer that
answers at the render size is stretched onto the window.

The raster image is always rendered, so falling back (server down, late result, toggle off) costs nothing more
than showing a different texture, and the 2D UI (``render2d``/``aspect2d``) stays on top of either image. That
image, taken before the UI is drawn, is what the plugin sends as ``hudless_color``: the renderer works on the
HUD-less picture (intensity and exclusions mix it back in) and the HUD is composited after the neural pass, by
Panda3D drawing ``render2d`` over the card. The camera constants say how that image was made (``exposure`` →
``pre_exposure``, ``tone_mapping``): Panda3D's default pipeline lights in the 8-bit window format and clamps, so the
defaults are 1 and ``"clamp"``; a game with its own post-processing sets what it does.

Settings come from Panda3D config variables (``Config.prc`` or ``loadPrcFileData``), overridable in code:
``nrb-enabled``, ``nrb-intensity``, ``nrb-endpoint``, ``nrb-deadline-ms``, ``nrb-frames-in-flight``,
``nrb-toggle-key``, ``nrb-show-stats``, ``nrb-render-size``, ``nrb-send-color``, ``nrb-send-lighting``,
``nrb-gpu-pack``, ``nrb-exposure``, ``nrb-tone-mapping``.
"""

from __future__ import annotations

import collections
import logging
import textwrap
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from panda3d.core import (
    ConfigVariableBool,
    ConfigVariableDouble,
    ConfigVariableInt,
    ConfigVariableString,
    PandaSystem,
    Texture,
)

from bridge._native import BUFFER_HUDLESS_COLOR
from nrb_panda3d.client import (
    ClientConfig,
    ClientStats,
    FrameResult,
    TargetLike,
    make_client,
    normalize_target,
)
from nrb_panda3d.gbuffer import GBUFFER_FORMATS, GBufferPass, texture_to_array
from nrb_panda3d.lights import LIGHTING_FORMATS, lighting_zone, scene_light_list, scene_lighting
from nrb_panda3d.pack import PackPass, can_pack

log = logging.getLogger("nrb.panda3d")

RASTER, NEURAL = "raster", "neural"
#: The camera's ``tone_mapping`` values (docs/protocol.md section 8; nrb.h ``NRB_TONE_MAPPING_*``).
TONE_MAPPINGS = ("none", "clamp", "reinhard", "aces", "agx", "other")


def overlay_text(s: Mapping[str, Any], width: int = 72) -> str:
    """The statistics overlay's text for :meth:`NeuralRendering.stats` ``s``. When the renderer refused the session
    (state ``refused``) its second line is ``REFUSED: <the renderer's message>``, wrapped to ``width`` columns: the
    game shows its own image until the player toggles neural rendering off and on (or the game calls ``retry()``)."""
    lines = [f"{'NEURAL' if s['source'] == NEURAL else 'RASTER'}  {s['fps']:.0f} fps  [{s['state']}]"]
    if s["state"] == "refused":
        why = s.get("refusal_message") or s.get("last_error") or "no reason given"
        lines += textwrap.wrap(f"REFUSED: {why}", width, subsequent_indent="  ", break_long_words=True)
    lines += [f"rtt p50 {s['rtt_p50_ms']:.1f} ms  p95 {s['rtt_p95_ms']:.1f} ms",
              f"sent {s['frames_sent']}  results {s['results_received']}  fallbacks {s['fallbacks']}"
              f"  reconnects {s['reconnects']}"]
    return "\n".join(lines)


def _srgb8(pixels: np.ndarray) -> np.ndarray:
    """A result image as (H, W, 4) uint8 for display (float formats are linear: sRGB-encode them)."""
    if pixels.dtype == np.uint8:
        if pixels.shape[2] == 4:
            return pixels
        out = np.full(pixels.shape[:2] + (4,), 255, np.uint8)
        out[..., : pixels.shape[2]] = pixels
        return out
    x = np.clip(pixels.astype(np.float32), 0.0, 1.0)
    rgb = np.where(x[..., :3] <= 0.0031308, x[..., :3] * 12.92, 1.055 * x[..., :3] ** (1 / 2.4) - 0.055)
    out = np.full(pixels.shape[:2] + (4,), 255, np.uint8)
    out[..., :3] = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out


def _panda_bgra(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA, top row first → Panda3D's RAM layout (BGRA, bottom row first), in three whole-array
    integer operations on 32-bit pixels. ``setRamImageAs(..., "RGBA")`` swizzles byte by byte: 16-22 ms at 640x360
    here against about 3 ms for this plus a plain ``setRamImage``."""
    v = np.ascontiguousarray(rgba).view(np.uint32)[::-1]  # little-endian pixel: 0xAABBGGRR
    out = v & np.uint32(0xFF00FF00)
    out |= (v & np.uint32(0xFF)) << np.uint32(16)
    out |= (v >> np.uint32(16)) & np.uint32(0xFF)
    return out.view(np.uint8)


def _style_params(params: Mapping[str, Any]) -> dict[str, float | str | list[float]]:
    """A run-time style's parameters in the shapes protocol §5.3 allows (a number, 3 numbers, or a string for
    ``lut``/``base``), checked here so a typo in game code fails where it is written."""
    out: dict[str, float | str | list[float]] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not 1 <= len(key.encode()) <= 64:
            raise ValueError(f"style parameter names are 1..64 bytes of text, not {key!r}")
        if key in ("lut", "base"):
            if not isinstance(value, str) or not 1 <= len(value.encode()) <= 64:
                raise ValueError(f"style parameter {key!r} names a style (1..64 bytes), not {value!r}")
            out[key] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, tuple | list | np.ndarray) and len(value) == 3:
            out[key] = [float(v) for v in value]
        else:
            raise ValueError(f"style parameter {key!r} takes a number or 3 numbers (R, G, B), not {value!r}")
    if len(out) > 32:
        raise ValueError(f"a style has at most 32 parameters, not {len(out)}")
    return out


@dataclass
class NeuralSettings:
    """The plugin's settings; :meth:`from_config` reads the Panda3D config variables (the defaults below)."""

    enabled: bool = True
    intensity: float = 1.0  # the player's intensity, 0 (the engine's image) .. 1 (fully re-rendered)
    endpoint: str = "tcp://127.0.0.1:5555"
    deadline_ms: float = 100.0
    frames_in_flight: int = 2
    toggle_key: str = "f9"
    show_stats: bool = False
    render_size: tuple[int, int] | None = None  # None: the window size
    send_color: bool = True  # also send the game's own image as ``hudless_color``
    send_lighting: bool = True  # also send the scene's sun, ambient and other lights (``nrb_panda3d.lights``)
    gpu_pack: bool = True  # pack the wire formats on the GPU (``nrb_panda3d.pack``); False: convert in numpy
    # How the game's image (hudless_color) was made, for the camera constants (protocol section 8): the factor the
    # linear image was multiplied by and the tone curve after it. Panda3D's default pipeline writes the lit colour
    # to an 8-bit target, clamped: 1 and "clamp" (none, clamp, reinhard, aces, agx or other).
    exposure: float = 1.0
    tone_mapping: str = "clamp"
    server_timeout_ms: int = 2000
    reconnect_backoff_max_ms: int = 1000
    curve_server_key: str | None = None  # CurveZMQ, Z85 text (`nrb keys show`); all three or none
    curve_public_key: str | None = None
    curve_secret_key: str | None = None

    @classmethod
    def from_config(cls, **overrides: Any) -> NeuralSettings:
        size = ConfigVariableString("nrb-render-size", "").getValue().strip()
        s = cls(
            enabled=ConfigVariableBool("nrb-enabled", True).getValue(),
            intensity=ConfigVariableDouble("nrb-intensity", cls.intensity).getValue(),
            endpoint=ConfigVariableString("nrb-endpoint", cls.endpoint).getValue(),
            deadline_ms=ConfigVariableDouble("nrb-deadline-ms", cls.deadline_ms).getValue(),
            frames_in_flight=ConfigVariableInt("nrb-frames-in-flight", cls.frames_in_flight).getValue(),
            toggle_key=ConfigVariableString("nrb-toggle-key", cls.toggle_key).getValue(),
            show_stats=ConfigVariableBool("nrb-show-stats", False).getValue(),
            render_size=tuple(int(v) for v in size.split()) if size else None,  # type: ignore[arg-type]
            send_color=ConfigVariableBool("nrb-send-color", True).getValue(),
            send_lighting=ConfigVariableBool("nrb-send-lighting", True).getValue(),
            gpu_pack=ConfigVariableBool("nrb-gpu-pack", True).getValue(),
            exposure=ConfigVariableDouble("nrb-exposure", cls.exposure).getValue(),
            tone_mapping=ConfigVariableString("nrb-tone-mapping", cls.tone_mapping).getValue().strip(),
            curve_server_key=ConfigVariableString("nrb-curve-server-key", "").getValue().strip() or None,
            curve_public_key=ConfigVariableString("nrb-curve-public-key", "").getValue().strip() or None,
            curve_secret_key=ConfigVariableString("nrb-curve-secret-key", "").getValue().strip() or None,
        )
        for k, v in overrides.items():
            if not hasattr(s, k):
                raise TypeError(f"unknown setting {k!r}")
            setattr(s, k, v)
        s.__post_init__()
        return s

    def __post_init__(self) -> None:
        # settings are checked where they are read, so a bad Config.prc line names itself rather than failing later
        if not 0.0 <= self.intensity <= 1.0:
            raise ValueError(f"nrb-intensity must be in [0, 1], not {self.intensity}")
        if not self.exposure > 0.0:
            raise ValueError(f"nrb-exposure must be > 0, not {self.exposure}")
        if self.tone_mapping not in TONE_MAPPINGS:
            raise ValueError(f"nrb-tone-mapping must be one of {', '.join(TONE_MAPPINGS)}, not {self.tone_mapping!r}")


@dataclass
class FrameRecord:
    """What happened on one frame (the timing report and the tests read these)."""

    frame: int
    source: str  # what the window showed: "neural" or "raster"
    result_frame: int | None = None  # the client frame id the shown neural image was rendered from
    pre_ms: float = 0.0  # acquire + upload (display_ms) + object matrices
    render_ms: float = 0.0  # igLoop: raster + G-buffer (+ pack pass) + display
    readback_ms: float = 0.0  # G-buffer (or packed) targets to RAM
    convert_ms: float = 0.0  # numpy conversion to wire formats, or (packed) the copy into the shared-memory slots
    submit_ms: float = 0.0  # tag buffers + camera + submit
    display_ms: float = 0.0  # part of pre_ms: acquire the newest result and upload it to the window's texture
    round_trip_ms: float | None = None
    server_ms: float | None = None
    sent: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class NeuralRendering:
    """See the module docstring. ``scene`` defaults to ``base.render`` and ``camera`` to ``base.cam``."""

    def __init__(self, base: Any, settings: NeuralSettings | None = None, *, scene: Any = None, camera: Any = None,
                 client: Any = None, history: int = 4096) -> None:
        from direct.filter.FilterManager import FilterManager
        from direct.gui.OnscreenText import OnscreenText

        self.base = base
        self.settings = settings or NeuralSettings.from_config()
        self.scene = scene if scene is not None else base.render
        self.camera = camera if camera is not None else base.cam
        win_size = (base.win.getXSize(), base.win.getYSize())

        # raster path: the game's camera renders into a texture; a full-screen card shows it (or the neural image)
        self.scene_tex = Texture("nrb-raster")
        self.filters = FilterManager(base.win, self.camera)
        quad = self.filters.renderSceneInto(colortex=self.scene_tex)
        if quad is None:
            raise RuntimeError("could not create the offscreen scene buffer")
        quad.setColor(1, 1, 1, 1)
        quad.setShaderOff(1)
        self.card = quad
        self.neural_tex = Texture("nrb-neural")
        self.neural_tex.setup2dTexture(*win_size, Texture.T_unsigned_byte, Texture.F_rgba8)
        self.source = RASTER
        self.card.setTexture(self.scene_tex, 1)

        buffers = list(GBUFFER_FORMATS.items())
        if self.settings.send_color:
            buffers.append((BUFFER_HUDLESS_COLOR, "rgba8_srgb"))
        if self.settings.send_lighting:
            buffers += list(LIGHTING_FORMATS.items())
        self.buffer_specs = buffers
        if client is None:
            # No render size set (nrb-render-size): libnrb picks it from the link (nrb.h nrb_link): the window size
            # on this host, half of it on a remote link, where the renderer upscales 2x. Formats likewise: the
            # plugin sends what it renders and libnrb sends the compact set on a remote link.
            client = make_client(ClientConfig(
                endpoint=self.settings.endpoint, render_size=self.settings.render_size or (0, 0), output_size=win_size,
                buffers=buffers, frames_in_flight=self.settings.frames_in_flight,
                deadline_ms=self.settings.deadline_ms, engine_name="panda3d",
                engine_version=PandaSystem.getVersionString(), start_disabled=not self.settings.enabled,
                server_timeout_ms=self.settings.server_timeout_ms,
                reconnect_backoff_max_ms=self.settings.reconnect_backoff_max_ms,
                curve_server_key=self.settings.curve_server_key, curve_public_key=self.settings.curve_public_key,
                curve_secret_key=self.settings.curve_secret_key,
            ))
        self.client = client
        self.render_size: tuple[int, int] = tuple(client.render_size)
        self.gbuffer = GBufferPass(base, self.scene, self.camera, self.render_size)
        self.pack: PackPass | None = None
        if self.settings.gpu_pack and can_pack(self.render_size):
            try:
                self.pack = PackPass(base, self.gbuffer, self.scene_tex if self.settings.send_color else None)
            except RuntimeError as exc:  # e.g. a GPU without 5 render targets: the numpy path still works
                log.warning("no GPU pack pass (%s): converting the G-buffers in numpy", exc)
        self._intensity = float(self.settings.intensity)
        if self._intensity != 1.0:  # 1 is every session's default
            self.client.set_intensity(self._intensity, 0.0)
        self._enabled = bool(self.settings.enabled)
        self.gbuffer.set_active(self._enabled)
        if self.pack is not None:
            self.pack.set_active(self._enabled)

        self.frame = 0
        self.records: collections.deque[FrameRecord] = collections.deque(maxlen=history)
        self._record: FrameRecord | None = None
        self._t_pre_end = 0.0
        self._last_result: FrameResult | None = None
        self._uploaded_frame: int | None = None
        self._fps_times: collections.deque[float] = collections.deque(maxlen=60)
        self._stats_cache = ClientStats()
        self.overlay = OnscreenText(text="", pos=(-1.3, 0.92), scale=0.045, align=0, fg=(1, 1, 1, 1),
                                    shadow=(0, 0, 0, 0.8), mayChange=True, parent=base.a2dTopLeft)
        self.overlay.setPos(0.03, -0.06)
        self.show_stats = self.settings.show_stats
        base.taskMgr.add(self._pre_task, "nrb-pre", sort=49)
        base.taskMgr.add(self._post_task, "nrb-post", sort=51)
        if self.settings.toggle_key:
            base.accept(self.settings.toggle_key, self.toggle)

    # ------------------------------------------------------------------------------------------ scripting verbs
    @property
    def enabled(self) -> bool:
        """Neural rendering on (the player's toggle). Off: the next frame shows the raster image, no traffic."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = bool(value)
        if value == self._enabled:
            return
        self._enabled = value
        self.client.set_enabled(value)
        self.gbuffer.set_active(value)
        if self.pack is not None:
            self.pack.set_active(value)
        if value:
            self.gbuffer.reset_history()
        else:
            self._show(RASTER)
        log.info("neural rendering %s", "on" if value else "off")

    def toggle(self) -> None:
        """Flip :attr:`enabled` (bound to the toggle key). Off and on again also asks a renderer that refused the
        session once more."""
        self.enabled = not self._enabled

    def retry(self) -> None:
        """Ask a renderer that refused the session (stats ``state == "refused"``, shown on the overlay as
        ``REFUSED: <message>``) again, e.g. after the server was fixed; a no-op otherwise (``nrb_client_retry``)."""
        self.client.retry()

    def set_style(self, style: str, strength: float = 1.0, over: float = 0.0, target: TargetLike = None) -> None:
        """Move ``target`` (None: whole world; ``("object", [ids])``; ``("material", [ids])``) toward ``style``
        with ``strength`` 0..1 over ``over`` seconds. Rides on the next frame sent."""
        self.client.set_style(style, strength, over, target)

    def define_style(self, name: str, params: Mapping[str, Any], strength: float = 1.0, over: float = 0.0,
                     target: TargetLike = None) -> None:
        """A look written by game logic (``nrb_set_style_params``, protocol §5.3 stylecmd ``params``): defines (or
        redefines) style ``name`` with ``params`` (``{"hue": 35, "gain": [0.85, 1.1, 0.75], "lut": "sunset"}``:
        the style parameters of docs/server.md; a number or 3 numbers each, strings for ``lut`` and ``base``),
        then moves ``target`` to it as :meth:`set_style` does. Afterwards ``set_style(name)`` names it like any
        other style. An unknown parameter or a value out of range is refused by the renderer (that frame is not
        rendered, the game goes on: ``last_error`` says which parameter and its range); a wrongly shaped value is a
        ``ValueError`` here."""
        self.client.set_style_params(name, _style_params(params), strength, over, target)

    @property
    def intensity(self) -> float:
        """How much of the re-rendered image is shown, 0 (the engine's own image) .. 1 (the default): the player's
        intensity setting, next to :attr:`enabled`. Setting it applies at once; :meth:`set_intensity` tweens."""
        return self._intensity

    @intensity.setter
    def intensity(self, value: float) -> None:
        self.set_intensity(value)

    def set_intensity(self, value: float, over: float = 0.0) -> None:
        """Blend the re-rendered image with the engine's own (``nrb_set_intensity``): ``value`` 0..1 reached over
        ``over`` seconds. Needs ``hudless_color`` (``nrb-send-color``, on by default)."""
        value = float(value)
        if not 0.0 <= value <= 1.0 or not 0.0 <= over <= 3600.0:
            raise ValueError("intensity must be in [0, 1] and over in [0, 3600] s")
        self.client.set_intensity(value, float(over))
        self._intensity = value

    def exclude(self, target: TargetLike, excluded: bool = True) -> None:
        """Keep the engine's pixels for these objects or materials (``("object", [ids])``, ``("material",
        [ids])``), with a soft edge (``nrb_exclude``); ``excluded=False`` re-renders them again."""
        if normalize_target(target)[0] == "global" and excluded:
            raise ValueError("exclude needs object or material ids (everything: set_intensity(0))")
        self.client.exclude(target, bool(excluded))

    def include(self, target: TargetLike = None) -> None:
        """Re-render these ids again; None: every id excluded so far."""
        self.client.exclude(target, False)

    def fire_event(self, name: str, params: dict[str, Any] | None = None, target: TargetLike = None) -> None:
        """Send a gameplay event to the server's hooks (``@on(name)``)."""
        self.client.fire_event(name, params or {}, target)

    def stats(self) -> dict[str, Any]:
        """Statistics for an on-screen overlay: client counters, fps, what is shown."""
        s = self.client.stats()
        self._stats_cache = s
        out = asdict(s)
        out.update(fps=self.fps, source=self.source, enabled=self._enabled, frame=self.frame,
                   last_error=self.client.last_error())
        return out

    @property
    def fps(self) -> float:
        if len(self._fps_times) < 2:
            return 0.0
        return (len(self._fps_times) - 1) / max(self._fps_times[-1] - self._fps_times[0], 1e-9)

    @property
    def show_stats(self) -> bool:
        return not self.overlay.isHidden()

    @show_stats.setter
    def show_stats(self, value: bool) -> None:
        if value:
            self.overlay.show()
        else:
            self.overlay.hide()

    # -------------------------------------------------------------------------------------------- captures
    def raster_image(self) -> np.ndarray:
        """The game's own image of the last rendered frame, (H, W, 4) uint8, top row first."""
        gsg = self.base.win.getGsg()
        if not self.base.graphicsEngine.extractTextureData(self.scene_tex, gsg):
            raise RuntimeError("could not read back the raster image")
        img = np.ascontiguousarray(texture_to_array(self.scene_tex))
        # A render target that keeps the RAM image it was read into is uploaded back over the next frame's render
        # when a shader samples it (the pack pass does, for hudless_color): the game's image froze on the first
        # frame read. Dropping the RAM image keeps the GPU copy authoritative.
        self.scene_tex.clearRamImage()
        return img

    def neural_image(self) -> np.ndarray | None:
        """The neural image shown on the last frame (as received, display-encoded), or None."""
        if self.source != NEURAL or self._last_result is None:
            return None
        return _srgb8(self._last_result.pixels)

    def displayed_image(self) -> np.ndarray:
        """What the window shows (card + 2D UI), (H, W, 4) uint8, top row first."""
        shot = self.base.win.getScreenshot()
        if shot is None:
            raise RuntimeError("could not read the window")
        return np.ascontiguousarray(texture_to_array(shot))

    # ------------------------------------------------------------------------------------------- per frame
    def _show(self, source: str) -> None:
        if source == self.source:
            return
        self.card.setTexture(self.neural_tex if source == NEURAL else self.scene_tex, 1)
        self.source = source

    def _upload(self, result: FrameResult) -> None:
        if self._uploaded_frame == result.frame_id:
            return
        img = _srgb8(result.pixels)
        h, w = img.shape[:2]
        if (self.neural_tex.getXSize(), self.neural_tex.getYSize()) != (w, h):
            self.neural_tex.setup2dTexture(w, h, Texture.T_unsigned_byte, Texture.F_rgba8)
        self.neural_tex.setRamImage(_panda_bgra(img))
        self._uploaded_frame = result.frame_id

    def _pre_task(self, task: Any) -> int:
        t0 = time.perf_counter()
        self.frame += 1
        self._fps_times.append(t0)
        rec = FrameRecord(self.frame, RASTER)
        if self._enabled:
            result = self.client.acquire_result()
            if result is not None:
                self._upload(result)
                self._last_result = result
                self._show(NEURAL)
                rec.result_frame = result.frame_id
                rec.round_trip_ms, rec.server_ms = result.round_trip_ms, result.server_ms
            else:
                self._show(RASTER)
            rec.display_ms = (time.perf_counter() - t0) * 1e3
            camera = self.gbuffer.update_objects()
            if self.pack is not None:
                self.pack.set_camera(camera)
            rec.extra["camera"] = camera
            rec.extra["client_frame"] = int(self.client.frame_begin(-1.0))
        else:
            self._show(RASTER)
        rec.source = self.source
        if self.show_stats:
            self._update_overlay()
        self._record = rec
        self._t_pre_end = time.perf_counter()
        rec.pre_ms = (self._t_pre_end - t0) * 1e3
        return task.cont

    def _post_task(self, task: Any) -> int:
        t0 = time.perf_counter()
        rec = self._record
        if rec is None:
            return task.cont
        rec.render_ms = (t0 - self._t_pre_end) * 1e3
        camera = rec.extra.pop("camera", None)
        if self._enabled and camera is not None:
            self._stats_cache = self.client.stats()
            # connected, and the renderer can use this frame: libnrb sends a renderer too slow for the deadline one
            # frame per render time (docs/protocol.md 5.9, engine rule 5), and the others need no readback
            if self.client.frame_live():
                if self.pack is not None:
                    packed = self.pack.read()
                    t1 = time.perf_counter()
                    self._write_packed(packed.buffers)
                    rec.readback_ms = packed.readback_ms
                    rec.convert_ms = (time.perf_counter() - t1) * 1e3
                    cam_dict = camera.as_dict()
                    t1 = time.perf_counter()
                else:
                    frame = self.gbuffer.read()
                    rec.readback_ms, rec.convert_ms = frame.readback_ms, frame.convert_ms
                    t1 = time.perf_counter()
                    for name, (fmt, arr) in frame.buffers.items():
                        self.client.tag_buffer(name, fmt, arr)
                    if self.settings.send_color:
                        self.client.tag_buffer(BUFFER_HUDLESS_COLOR, "rgba8_srgb", self._raster_at_render_size())
                    cam_dict = frame.camera.as_dict()
                if self.settings.send_lighting:
                    zone = lighting_zone(self.scene, self.camera)  # the lights where the camera is
                    for name, (fmt, arr) in scene_lighting(self.scene, zone).items():
                        self.client.tag_buffer(name, fmt, arr)
                    self.client.set_lights(scene_light_list(self.scene, zone))  # torches, lamps, spots: x_lights
                cam_dict["pre_exposure"] = float(self.settings.exposure)
                cam_dict["tone_mapping"] = self.settings.tone_mapping
                self.client.set_camera(cam_dict)
                rec.sent = True
                t0 = t1
            self.client.submit()
        rec.submit_ms = (time.perf_counter() - t0) * 1e3
        self.records.append(rec)
        return task.cont

    def _write_packed(self, buffers: Mapping[str, tuple[str, np.ndarray]]) -> None:
        """Copy each packed target's bytes straight into the buffer's slot of the frame (``acquire_slot``: libnrb's
        shared memory or staging buffer): one memcpy per buffer, no ``tag_buffer`` copy."""
        w, h = self.render_size
        for name, (fmt, arr) in buffers.items():
            slot = self.client.acquire_slot(name, fmt, w, h)
            np.copyto(slot, arr.reshape(slot.shape))

    def _raster_at_render_size(self) -> np.ndarray:
        """``hudless_color`` for the numpy path: the game's image, box-averaged down when the window is larger."""
        img = self.raster_image()
        w, h = self.render_size
        if img.shape[:2] == (h, w):
            return img
        ry, rx = img.shape[0] // h, img.shape[1] // w
        box = img[: h * ry, : w * rx].reshape(h, ry, w, rx, 4).astype(np.float32).mean(axis=(1, 3))
        return np.ascontiguousarray((box + 0.5).astype(np.uint8))

    def _update_overlay(self) -> None:
        self.overlay.setText(overlay_text(self.stats()))

    def destroy(self) -> None:
        """Remove the tasks, buffers and the client (the game keeps running with its own image)."""
        self.base.taskMgr.remove("nrb-pre")
        self.base.taskMgr.remove("nrb-post")
        if self.settings.toggle_key:
            self.base.ignore(self.settings.toggle_key)
        try:
            self.client.close()
        finally:
            if self.pack is not None:
                self.pack.destroy()
            self.gbuffer.destroy()
            self.filters.cleanup()
            self.overlay.destroy()
