"""The pack pass: the G-buffers become wire-ready bytes on the GPU, so the readback *is* the frame's buffers.

Without it (:meth:`nrb_panda3d.gbuffer.GBufferPass.read`) every frame reads six render targets back and converts
them in numpy: rows flipped, BGRA swizzled, float32 halved, ids rounded, sky motion computed per pixel. At 640x360
that cost more than Panda3D's own render. Here a full-screen pass per group below (``shaders/pack.frag``) writes
each wire buffer's exact bytes (protocol §6.2 formats, top row first) into an rgba8 target; the CPU's part is one
``extractTextureData`` per target and one copy of its RAM image into the buffer's shared-memory slot
(``nrb_frame_acquire_slot``), the way the Unreal plugin's pack pass feeds libnrb.

Every target is rgba8 because that is the one format Panda3D reads back byte for byte (it widens half-float
targets to float32 on readback); a wire buffer of B bytes per pixel gets a target B/4 as wide as the render:

=========  ==============  =======================================================================
group      target width    wire buffers (one render target each, same order as the outputs)
=========  ==============  =======================================================================
full       W               albedo rgba8_srgb, depth r32f, linear_depth r32f, motion_vectors rg16f,
                           hudless_color rgba8_srgb (the game's image, box-averaged to the render size)
double     2W              normals rgba16f, emissive rgba16f
half       W/2             material_id r16u, object_id r16u
quarter    W/4             roughness r8, metallic r8
=========  ==============  =======================================================================

The render width must be a multiple of 4 (:func:`can_pack`); the plugin uses the Python path otherwise.
``tests/test_plugin_panda3d.py`` checks the packed bytes against the Python conversion on the same frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from panda3d.core import Camera as PandaCamera
from panda3d.core import (
    CardMaker,
    FrameBufferProperties,
    GraphicsOutput,
    GraphicsPipe,
    LVecBase4f,
    NodePath,
    OrthographicLens,
    Shader,
    Texture,
    WindowProperties,
)

from bridge._native import (
    BUFFER_ALBEDO,
    BUFFER_DEPTH,
    BUFFER_EMISSIVE,
    BUFFER_HUDLESS_COLOR,
    BUFFER_LINEAR_DEPTH,
    BUFFER_MATERIAL_ID,
    BUFFER_METALLIC,
    BUFFER_MOTION_VECTORS,
    BUFFER_NORMALS,
    BUFFER_OBJECT_ID,
    BUFFER_ROUGHNESS,
)
from nrb_panda3d.camera import CameraConstants
from nrb_panda3d.gbuffer import SHADER_DIR, GBufferPass

#: (group, target width = render width * num / den, [(wire buffer, format, numpy dtype, channels)])
GROUPS: list[tuple[str, int, int, list[tuple[str, str, type, int]]]] = [
    ("FULL", 1, 1, [(BUFFER_ALBEDO, "rgba8_srgb", np.uint8, 4), (BUFFER_DEPTH, "r32f", np.float32, 1),
                    (BUFFER_LINEAR_DEPTH, "r32f", np.float32, 1), (BUFFER_MOTION_VECTORS, "rg16f", np.float16, 2),
                    (BUFFER_HUDLESS_COLOR, "rgba8_srgb", np.uint8, 4)]),
    ("DOUBLE", 2, 1, [(BUFFER_NORMALS, "rgba16f", np.float16, 4), (BUFFER_EMISSIVE, "rgba16f", np.float16, 4)]),
    ("HALF", 1, 2, [(BUFFER_MATERIAL_ID, "r16u", np.uint16, 1), (BUFFER_OBJECT_ID, "r16u", np.uint16, 1)]),
    ("QUARTER", 1, 4, [(BUFFER_ROUGHNESS, "r8", np.uint8, 1), (BUFFER_METALLIC, "r8", np.uint8, 1)]),
]

_PLANES = [GraphicsOutput.RTPColor, GraphicsOutput.RTPAuxRgba0, GraphicsOutput.RTPAuxRgba1,
           GraphicsOutput.RTPAuxRgba2, GraphicsOutput.RTPAuxRgba3]


def can_pack(size: tuple[int, int]) -> bool:
    """The pack pass needs a render width that is a multiple of 4 (four r8 pixels per rgba8 texel)."""
    return size[0] % 4 == 0 and size[0] > 0 and size[1] > 0


@dataclass
class PackedFrame:
    """One frame's wire buffers as read back: name → (format, (H, W, C) array over the target's RAM image; valid
    until the next readback), and the time it took."""

    buffers: dict[str, tuple[str, np.ndarray]]
    readback_ms: float


class PackPass:
    """Renders the pack groups from ``gbuffer``'s targets (and ``color``, the game's image, when given) every frame
    the G-buffer pass renders. Drive it like the G-buffer pass: :meth:`update` before the frame renders,
    :meth:`read` after."""

    def __init__(self, base: Any, gbuffer: GBufferPass, color: Texture | None = None, *, sort: int = -5) -> None:
        if not can_pack((gbuffer.width, gbuffer.height)):
            raise ValueError(f"the pack pass needs a render width divisible by 4, not {gbuffer.width}")
        self.base = base
        self.width, self.height = gbuffer.width, gbuffer.height
        self.color = color
        vert = (SHADER_DIR / "pack.vert").read_text()
        frag = (SHADER_DIR / "pack.frag").read_text()
        self.root = NodePath("nrb-pack")
        # one scene per group (a camera sees its scene's state, not its parents'), the same inputs on each
        self.scenes = [self.root.attachNewNode(f"pack-{g[0].lower()}") for g in GROUPS]
        for name, tex in gbuffer.textures.items():
            self._input(f"nrb_{name}", tex)
        ratio = (1.0, 1.0)
        if color is not None:
            ratio = (max(1, color.getXSize() // self.width), max(1, color.getYSize() // self.height))
        else:  # hudless_color is then not sent; any texture will do for the unused sampler
            color = gbuffer.textures[BUFFER_ALBEDO]
        self._input("nrb_color", color)
        self._input("nrb_color_ratio", LVecBase4f(ratio[0], ratio[1], 0.0, 0.0))
        self._input("nrb_render_size", (float(self.width), float(self.height)))
        self.set_camera(None)
        self.buffers: list[GraphicsOutput] = []
        self.targets: list[tuple[str, str, type, int, Texture]] = []
        self._cams: list[NodePath] = []
        gsg = base.win.getGsg()
        for (group, num, den, outputs), scene in zip(GROUPS, self.scenes, strict=True):
            w = self.width * num // den
            fb = FrameBufferProperties()
            fb.setRgbaBits(8, 8, 8, 8)
            fb.setDepthBits(0)
            fb.setAuxRgba(len(outputs) - 1)
            buf = base.graphicsEngine.makeOutput(base.pipe, f"nrb-pack-{group.lower()}", sort, fb,
                                                 WindowProperties.size(w, self.height),
                                                 GraphicsPipe.BFRefuseWindow, gsg, base.win)
            if buf is None:
                raise RuntimeError(f"could not create the pack buffer {group} ({w}x{self.height}, "
                                   f"{len(outputs)} rgba8 targets)")
            buf.setClearColorActive(False)
            for (name, fmt, dtype, ch), plane in zip(outputs, _PLANES, strict=False):
                tex = Texture(f"nrb-pack-{name}")
                tex.setup2dTexture(w, self.height, Texture.T_unsigned_byte, Texture.F_rgba8)
                tex.setMinfilter(Texture.FT_nearest)
                tex.setMagfilter(Texture.FT_nearest)
                buf.addRenderTexture(tex, GraphicsOutput.RTMBindOrCopy, plane)
                self.targets.append((name, fmt, dtype, ch, tex))
            shader = Shader.make(Shader.SL_GLSL, f"#version 330\n{vert}",
                                 f"#version 330\n#define GROUP_{group}\n{frag}")
            if shader is None:
                raise RuntimeError("could not compile the pack shader")
            scene.setDepthTest(False)
            scene.setDepthWrite(False)
            cm = CardMaker(f"pack-{group.lower()}")
            cm.setFrameFullscreenQuad()
            scene.attachNewNode(cm.generate())
            scene.setShader(shader)
            lens = OrthographicLens()
            lens.setFilmSize(2, 2)
            lens.setNearFar(-10, 10)
            cam = PandaCamera(f"nrb-pack-cam-{group.lower()}", lens)
            cam_np = scene.attachNewNode(cam)
            cam.setScene(scene)
            dr = buf.makeDisplayRegion()
            dr.setCamera(cam_np)
            dr.setClearColorActive(False)
            self.buffers.append(buf)
            self._cams.append(cam_np)
        self.gbuffer = gbuffer
        self.active = True

    @property
    def names(self) -> list[str]:
        """The wire buffers this pass produces (``hudless_color`` only means something with a ``color`` image)."""
        return [t[0] for t in self.targets if t[0] != BUFFER_HUDLESS_COLOR or self.color is not None]

    def set_active(self, active: bool) -> None:
        self.active = active
        for b in self.buffers:
            b.setActive(active)

    def set_camera(self, camera: CameraConstants | None) -> None:
        """The camera of the frame about to render: sky pixels' motion comes from its ``clip_to_prev_clip``."""
        m = np.eye(4) if camera is None else np.asarray(camera.clip_to_prev_clip, np.float64)
        for i in range(4):
            self._input(f"nrb_c2p{i}", LVecBase4f(*(float(v) for v in m[i])))

    def _input(self, name: str, value: Any) -> None:
        for scene in self.scenes:
            scene.setShaderInput(name, value)

    def read(self, gsg: Any = None) -> PackedFrame:
        """After the frame rendered: read every target back; the arrays view Panda3D's RAM images (no copy)."""
        gsg = gsg or self.base.win.getGsg()
        t0 = time.perf_counter()
        out: dict[str, tuple[str, np.ndarray]] = {}
        engine = self.base.graphicsEngine
        for name, fmt, dtype, ch, tex in self.targets:
            if name == BUFFER_HUDLESS_COLOR and self.color is None:
                continue
            if not engine.extractTextureData(tex, gsg):
                raise RuntimeError(f"could not read back the pack target {name}")
            a: np.ndarray = np.frombuffer(memoryview(tex.getRamImage()), dtype).reshape(self.height, self.width, ch)
            out[name] = (fmt, a)
        return PackedFrame(out, (time.perf_counter() - t0) * 1e3)

    def destroy(self) -> None:
        for b in self.buffers:
            self.base.graphicsEngine.removeWindow(b)
        self.root.removeNode()
