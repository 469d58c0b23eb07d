"""The G-buffer pass: one extra camera that renders the scene with the plugin's own shader into six render targets
(multiple render targets, read back to RAM each frame) and turns them into NRB/1 buffers (docs/protocol.md §6).

Render targets of the offscreen buffer (``FrameBufferProperties``: colour + ``aux_rgba`` 1 + ``aux_hrgba`` 2 +
``aux_float`` 2; the fragment outputs follow Panda3D's attachment order):

====  ==============  =========  ==========================================  =================================
loc   plane           format     contents                                    wire buffers
====  ==============  =========  ==========================================  =================================
0     color           rgba8      base colour (sRGB-encoded)                  ``albedo`` rgba8_srgb
1     aux_rgba_0      rgba8      roughness, metallic                         ``roughness`` r8, ``metallic`` r8
2     aux_hrgba_0     rgba16f    world normal (+Y up)                        ``normals`` rgba16f
3     aux_hrgba_1     rgba16f    emitted radiance                            ``emissive`` rgba16f
4     aux_float_0     rgba32f    depth, linear depth, motion x, motion y     ``depth`` r32f, ``linear_depth``
                                                                             r32f, ``motion_vectors`` rg16f
5     aux_float_1     rgba32f    material id, object id                      ``material_id``, ``object_id`` r16u
====  ==============  =========  ==========================================  =================================

Per-object inputs (shader inputs, inherited down the scene graph, set by :class:`SurfaceTagger` or by hand):
``nrb_surface`` = (roughness, metallic, material id, object id) and ``nrb_emission`` = (r, g, b, 0). Each frame
:meth:`GBufferPass.update_objects` sets every ``GeomNode``'s current and previous model-view-projection, so motion
vectors include object motion (a rotating weapon, a moving enemy), not only camera motion.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from panda3d.core import (
    Camera,
    FrameBufferProperties,
    GraphicsOutput,
    GraphicsPipe,
    LMatrix4f,
    LVecBase4f,
    NodePath,
    Shader,
    Texture,
    WindowProperties,
)

from bridge._native import (
    BUFFER_ALBEDO,
    BUFFER_DEPTH,
    BUFFER_EMISSIVE,
    BUFFER_LINEAR_DEPTH,
    BUFFER_MATERIAL_ID,
    BUFFER_METALLIC,
    BUFFER_MOTION_VECTORS,
    BUFFER_NORMALS,
    BUFFER_OBJECT_ID,
    BUFFER_ROUGHNESS,
)
from nrb_panda3d.camera import PANDA_TO_WORLD, CameraConstants, CameraTracker, panda_mat_to_np

SHADER_DIR = Path(__file__).resolve().parent / "shaders"

#: Wire buffers this pass produces: name → format (protocol §6.1/§6.2). ``hudless_color`` comes from the scene
#: render (the game's own image), the rest from the G-buffer targets.
GBUFFER_FORMATS: dict[str, str] = {
    BUFFER_ALBEDO: "rgba8_srgb",
    BUFFER_NORMALS: "rgba16f",
    BUFFER_DEPTH: "r32f",
    BUFFER_LINEAR_DEPTH: "r32f",
    BUFFER_MOTION_VECTORS: "rg16f",
    BUFFER_ROUGHNESS: "r8",
    BUFFER_METALLIC: "r8",
    BUFFER_EMISSIVE: "rgba16f",
    BUFFER_MATERIAL_ID: "r16u",
    BUFFER_OBJECT_ID: "r16u",
}

_PLANES = [
    (BUFFER_ALBEDO, GraphicsOutput.RTPColor, Texture.T_unsigned_byte, Texture.F_rgba8),
    ("surface", GraphicsOutput.RTPAuxRgba0, Texture.T_unsigned_byte, Texture.F_rgba8),
    ("normal", GraphicsOutput.RTPAuxHrgba0, Texture.T_half_float, Texture.F_rgba16),
    (BUFFER_EMISSIVE, GraphicsOutput.RTPAuxHrgba1, Texture.T_half_float, Texture.F_rgba16),
    ("depth_motion", GraphicsOutput.RTPAuxFloat0, Texture.T_float, Texture.F_rgba32),
    ("ids", GraphicsOutput.RTPAuxFloat1, Texture.T_float, Texture.F_rgba32),
]

_NP_TYPES = {Texture.T_unsigned_byte: np.uint8, Texture.T_float: np.float32, Texture.T_half_float: np.float16,
             Texture.T_unsigned_short: np.uint16}


def texture_to_array(tex: Texture) -> np.ndarray:
    """A texture's RAM image as (H, W, C), top row first, channels in RGBA order (Panda3D stores rows bottom-up and
    colour channels as BGR(A))."""
    dtype = _NP_TYPES[tex.getComponentType()]
    c = tex.getNumComponents()
    a = np.frombuffer(memoryview(tex.getRamImage()), dtype).reshape(tex.getYSize(), tex.getXSize(), c)
    a = a[::-1]
    if c >= 3:
        order = [2, 1, 0, 3][:c]
        a = a[..., order]
    return a


def surface(roughness: float = 0.6, metallic: float = 0.0, material_id: int = 0, object_id: int = 0) -> LVecBase4f:
    """The ``nrb_surface`` shader input value."""
    if not (0 <= material_id < 65536 and 0 <= object_id < 65536):
        raise ValueError("material and object ids travel as r16u: 0..65535")
    return LVecBase4f(float(roughness), float(metallic), float(material_id), float(object_id))


def tag_surface(node: NodePath, *, roughness: float = 0.6, metallic: float = 0.0, material_id: int = 0,
                object_id: int = 0, emission: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> NodePath:
    """Give ``node`` (and everything below it that has no tag of its own) its G-buffer surface and ids."""
    node.setShaderInput("nrb_surface", surface(roughness, metallic, material_id, object_id))
    node.setShaderInput("nrb_emission", LVecBase4f(*map(float, emission), 0.0))
    node.setPythonTag("nrb_ids", (material_id, object_id))
    return node


@dataclass
class GBufferFrame:
    """One frame's G-buffers as wire-ready numpy arrays (name → (format, array (H, W, C))) and the camera."""

    buffers: dict[str, tuple[str, np.ndarray]]
    camera: CameraConstants
    readback_ms: float
    convert_ms: float


class GBufferPass:
    """Renders the G-buffers of ``scene`` as seen by ``camera_np`` (sharing its lens) each frame.

    The pass is driven by Panda3D's own frame loop: :meth:`update_objects` before ``renderFrame`` (the plugin does it
    in a task), :meth:`read` after it.
    """

    def __init__(self, base: Any, scene: NodePath, camera_np: NodePath, size: tuple[int, int], *,
                 sky_albedo: tuple[float, float, float] = (0.45, 0.55, 0.7), sort: int = -20) -> None:
        self.base = base
        self.scene = scene
        if not isinstance(camera_np.node(), Camera):  # e.g. base.camera (the parent of base.cam)
            found = camera_np.find("**/+Camera")
            if found.isEmpty():
                raise ValueError(f"{camera_np} is not a camera and has none below it")
            camera_np = found
        self.camera_np = camera_np
        self.width, self.height = size
        self.sky_albedo = sky_albedo
        self.lens = camera_np.node().getLens()
        fb = FrameBufferProperties()
        fb.setRgbaBits(8, 8, 8, 8)
        fb.setDepthBits(24)
        fb.setAuxRgba(1)
        fb.setAuxHrgba(2)
        fb.setAuxFloat(2)
        wp = WindowProperties.size(self.width, self.height)
        gsg = base.win.getGsg()
        self.buffer = base.graphicsEngine.makeOutput(base.pipe, "nrb-gbuffer", sort, fb, wp,
                                                     GraphicsPipe.BFRefuseWindow, gsg, base.win)
        if self.buffer is None:
            raise RuntimeError("could not create the G-buffer offscreen buffer (no FBO with 6 render targets?)")
        self.textures: dict[str, Texture] = {}
        for name, plane, ctype, fmt in _PLANES:
            tex = Texture(f"nrb-{name}")
            tex.setup2dTexture(self.width, self.height, ctype, fmt)
            tex.setMinfilter(Texture.FT_nearest)
            tex.setMagfilter(Texture.FT_nearest)
            self.buffer.addRenderTexture(tex, GraphicsOutput.RTMBindOrCopy, plane)
            self.textures[name] = tex
        far = self.lens.getFar()
        self.buffer.setClearColorActive(True)
        self.buffer.setClearColor((*sky_albedo, 1.0))
        clears = {
            GraphicsOutput.RTPAuxRgba0: (0.0, 0.0, 0.0, 0.0),
            GraphicsOutput.RTPAuxHrgba0: (0.0, 0.0, 0.0, 0.0),
            GraphicsOutput.RTPAuxHrgba1: (0.0, 0.0, 0.0, 0.0),
            GraphicsOutput.RTPAuxFloat0: (1.0, far, 0.0, 0.0),
            GraphicsOutput.RTPAuxFloat1: (0.0, 0.0, 0.0, 0.0),
        }
        for plane, value in clears.items():
            self.buffer.setClearActive(plane, True)
            self.buffer.setClearValue(plane, value)
        self.buffer.setClearDepthActive(True)

        self.cam_node = Camera("nrb-gbuffer-cam", self.lens)
        self.cam_np = camera_np.attachNewNode(self.cam_node)
        self.cam_node.setScene(scene)
        dr = self.buffer.makeDisplayRegion()
        dr.setCamera(self.cam_np)
        dr.setClearColorActive(False)
        self.display_region = dr
        shader = Shader.load(Shader.SL_GLSL, vertex=str(SHADER_DIR / "gbuffer.vert"),
                             fragment=str(SHADER_DIR / "gbuffer.frag"))
        if shader is None:
            raise RuntimeError("could not load the G-buffer shaders")
        state_np = NodePath("nrb-gbuffer-state")
        # Shader priority 1000 beats the game's own shaders (setShaderAuto, custom ones) for this camera only;
        # per-object shader inputs still compose in from the scene graph.
        state_np.setShader(shader, 1000)
        state_np.setShaderInput("nrb_render_size", (float(self.width), float(self.height)), priority=1000)
        state_np.setLightOff(1000)
        state_np.setFogOff(1000)
        self.cam_node.setInitialState(state_np.getState())
        # defaults for untagged geometry
        scene.setShaderInput("nrb_surface", surface())
        scene.setShaderInput("nrb_emission", LVecBase4f(0, 0, 0, 0))
        scene.setShaderInput("nrb_mvp", LMatrix4f.identMat())
        scene.setShaderInput("nrb_prev_mvp", LMatrix4f.identMat())
        scene.setShaderInput("nrb_normal_matrix", LMatrix4f.identMat())
        self.tracker = CameraTracker()
        self._prev_mvp: dict[int, LMatrix4f] = {}
        self._camera: CameraConstants | None = None
        self.active = True

    # ---------------------------------------------------------------------------------------------- per frame
    def set_active(self, active: bool) -> None:
        """Stop or restart rendering the G-buffers (nothing is rendered while neural rendering is off)."""
        self.active = active
        self.buffer.setActive(active)

    def reset_history(self) -> None:
        """Forget previous transforms (a camera cut): the next frame's motion vectors are zero."""
        self._prev_mvp.clear()
        self.tracker.reset()

    def update_objects(self) -> CameraConstants:
        """Before the frame renders: set every object's current and previous model-view-projection and its normal
        matrix, and compute the camera constants of the frame."""
        proj = self.lens.getProjectionMat()
        cam = self.camera_np
        seen: dict[int, LMatrix4f] = {}
        to_world = LMatrix4f(*[float(x) for x in _embed(PANDA_TO_WORLD).T.reshape(16)])
        for geom_np in self.scene.findAllMatches("**/+GeomNode"):
            if geom_np.isHidden():
                continue
            model_to_cam = geom_np.getMat(cam)
            mvp = LMatrix4f(model_to_cam * proj)
            key = geom_np.getKey()
            prev = self._prev_mvp.get(key, mvp)
            seen[key] = mvp
            geom_np.setShaderInput("nrb_mvp", mvp)
            geom_np.setShaderInput("nrb_prev_mvp", prev)
            # normal matrix (Panda row-vector form): inverse-transpose of the model -> world 3x3, then Z-up -> Y-up
            m = LMatrix4f(geom_np.getMat(self.scene))
            m.setRow(3, (0, 0, 0, 1))
            n = LMatrix4f(m)
            if not n.invertInPlace():
                n = LMatrix4f.identMat()
            n.transposeInPlace()
            geom_np.setShaderInput("nrb_normal_matrix", n * to_world)
        self._prev_mvp = seen
        w, h = self.width, self.height
        fov_y = math.radians(self.lens.getFov()[1])
        cam_to_world = panda_mat_to_np(cam.getMat(self.scene))
        self._camera = self.tracker.update(cam_to_world, fov_y, w / h, self.lens.getNear(), self.lens.getFar(),
                                           (w, h))
        return self._camera

    def read(self, gsg: Any = None) -> GBufferFrame:
        """After the frame rendered: read the targets back and convert them to wire buffers."""
        assert self._camera is not None, "update_objects() must run before the frame renders"
        gsg = gsg or self.base.win.getGsg()
        t0 = time.perf_counter()
        arrays = {}
        for name, tex in self.textures.items():
            if not self.base.graphicsEngine.extractTextureData(tex, gsg):
                raise RuntimeError(f"could not read back the G-buffer target {name}")
            arrays[name] = texture_to_array(tex)
        t1 = time.perf_counter()
        bufs = convert_targets(arrays, self._camera)
        for tex in self.textures.values():  # the pack pass samples these: see NeuralRendering.raster_image
            tex.clearRamImage()
        t2 = time.perf_counter()
        return GBufferFrame(bufs, self._camera, (t1 - t0) * 1e3, (t2 - t1) * 1e3)

    def destroy(self) -> None:
        self.base.graphicsEngine.removeWindow(self.buffer)
        self.cam_np.removeNode()


def _embed(m3: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = m3
    return out


def convert_targets(t: dict[str, np.ndarray], camera: CameraConstants) -> dict[str, tuple[str, np.ndarray]]:
    """Render-target arrays (top-down, RGBA order) → wire buffers {name: (format, (H, W, C) array)}."""
    albedo = np.ascontiguousarray(t[BUFFER_ALBEDO])
    surf = t["surface"]
    normal = t["normal"].astype(np.float16)
    dm = t["depth_motion"]
    depth = np.ascontiguousarray(dm[..., 0:1], dtype=np.float32)
    linear = np.ascontiguousarray(dm[..., 1:2], dtype=np.float32)
    mv = np.array(dm[..., 2:4], dtype=np.float32)
    bg = depth[..., 0] >= 1.0
    if bg.any():
        mv[bg] = background_motion(camera, bg)
    np.clip(np.nan_to_num(mv, nan=0.0, posinf=0.0, neginf=0.0), -60000.0, 60000.0, out=mv)
    ids = t["ids"]
    return {
        BUFFER_ALBEDO: ("rgba8_srgb", albedo),
        BUFFER_NORMALS: ("rgba16f", np.ascontiguousarray(normal)),
        BUFFER_DEPTH: ("r32f", depth),
        BUFFER_LINEAR_DEPTH: ("r32f", linear),
        BUFFER_MOTION_VECTORS: ("rg16f", mv.astype(np.float16)),
        BUFFER_ROUGHNESS: ("r8", np.ascontiguousarray(surf[..., 0:1])),
        BUFFER_METALLIC: ("r8", np.ascontiguousarray(surf[..., 1:2])),
        BUFFER_EMISSIVE: ("rgba16f", np.ascontiguousarray(t[BUFFER_EMISSIVE].astype(np.float16))),
        BUFFER_MATERIAL_ID: ("r16u", np.ascontiguousarray(np.rint(ids[..., 0:1]).astype(np.uint16))),
        BUFFER_OBJECT_ID: ("r16u", np.ascontiguousarray(np.rint(ids[..., 1:2]).astype(np.uint16))),
    }


def background_motion(camera: CameraConstants, mask: np.ndarray) -> np.ndarray:
    """Motion of far-plane (sky) pixels under the camera's rotation and translation (points at depth 1)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    ndc_x = (xs + 0.5) / w * 2.0 - 1.0
    ndc_y = 1.0 - (ys + 0.5) / h * 2.0
    clip = np.stack([ndc_x, ndc_y, np.full_like(ndc_x, 0.999999), np.ones_like(ndc_x)])
    prev = camera.clip_to_prev_clip @ clip
    prev = prev[:2] / np.where(np.abs(prev[3]) < 1e-12, 1e-12, prev[3])
    dx = (prev[0] - ndc_x) * 0.5 * w
    dy = -(prev[1] - ndc_y) * 0.5 * h
    return np.stack([dx, dy], axis=-1).astype(np.float32)
