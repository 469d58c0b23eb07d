"""Shared evaluation helpers: dataset frames as the server would see them, the raster baseline, image metrics.

The raster baseline is the server's deferred shader (``bridge.renderers.deferred.DeferredRenderer``) fed the
same G-buffers, encoded in the protocol's usual formats (albedo ``rgba8_srgb``, normals ``rgba16f``, depth
``r32f``, ...) and the scene's lights as the lighting constants an engine sends (``x_sun_direction``,
``x_sun_irradiance``, ``x_sky_radiance``, 1x1 ``rgba32f``: both renderers see the same lights), with the
shader's free sun and sky scales chosen by :func:`fit_raster` on *training* scenes, so it is the best this
shader can do on this data rather than a strawman.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bridge.protocol import LIGHTING_CONSTANTS
from bridge.protocol import Camera as WireCamera
from bridge.renderer import RenderInputs
from bridge.style.library import DEFAULT_LIBRARY
from neural_renderer.data.camera import basis
from neural_renderer.data.dataset import engine_constants, iter_frames, load_manifest
from neural_renderer.data.scene import SKY_RADIANCE, SUN_DIRECTION, SUN_IRRADIANCE, Camera, SceneSpec


@dataclass
class EvalFrame:
    scene: int
    index: int
    arrays: dict[str, np.ndarray]
    camera: Camera
    sky: tuple[float, float, float]
    #: how the frame's engine image was made (``pre_exposure``, ``tone_mapping``), empty without one
    engine: dict[str, Any] = field(default_factory=dict)


def load_paths(root: Path, split: str = "test", limit: int | None = None) -> list[list[EvalFrame]]:
    """Camera paths of ``split`` with each frame's camera (from the manifest's scene spec)."""
    manifest = load_manifest(root)
    out = []
    for frames in iter_frames(root, split, limit):
        entry = manifest["scenes"][str(frames[0].scene)]
        spec = SceneSpec.from_json(entry["spec"])
        look = engine_constants(entry)
        out.append(
            [EvalFrame(f.scene, f.index, f.arrays, spec.cameras[f.index], spec.sky_radiance, look) for f in frames]
        )
    return out


def wire_camera(cam: Camera, width: int, height: int) -> WireCamera:
    r, u, f = basis(cam)
    return WireCamera(
        position=tuple(cam.origin),
        up=tuple(u),
        right=tuple(r),
        forward=tuple(f),
        near=cam.near,
        far=cam.far,
        fov_y=cam.fov_y,
        aspect=width / height,
        mv_scale=(1.0, 1.0),
        render_size=(width, height),
    )


def _srgb8(lin: np.ndarray) -> np.ndarray:
    x = np.clip(lin, 0, 1)
    s = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return (s * 255 + 0.5).astype(np.uint8)


def render_inputs(frame: EvalFrame) -> RenderInputs:
    """The frame's G-buffers encoded as an engine would send them (usual protocol formats)."""
    a = frame.arrays
    h, w = a["linear_depth"].shape
    one = np.ones((h, w, 1), np.float32)
    albedo = np.concatenate([_srgb8(a["albedo"].astype(np.float32)), np.full((h, w, 1), 255, np.uint8)], -1)
    normals = np.concatenate([a["normals"].astype(np.float32), 0 * one], -1).astype(np.float16)
    emissive = np.concatenate([a["emissive"].astype(np.float32), 0 * one], -1).astype(np.float16)
    arrays = {
        "albedo": ("rgba8_srgb", albedo),
        "normals": ("rgba16f", normals),
        "depth": ("r32f", a["depth"].astype(np.float32)[..., None]),
        "linear_depth": ("r32f", a["linear_depth"].astype(np.float32)[..., None]),
        "roughness": (
            "r8",
            (np.clip(a["roughness"].astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)[..., None],
        ),
        "metallic": (
            "r8",
            (np.clip(a["metallic"].astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)[..., None],
        ),
        "emissive": ("rgba16f", emissive),
        "motion_vectors": ("rg32f", a["motion_vectors"].astype(np.float32)),
        "material_id": ("r16u", a["material_id"].astype(np.uint16)[..., None]),
        "object_id": ("r16u", a["object_id"].astype(np.uint16)[..., None]),
    }
    for name in LIGHTING_CONSTANTS:  # 1x1 per-frame constants, last
        if name in a:
            rgba = np.zeros((1, 1, 4), np.float32)
            rgba[0, 0, :3] = np.asarray(a[name], np.float32)[:3]
            arrays[name] = ("rgba32f", rgba)
    camera = wire_camera(frame.camera, w, h)
    if "hudless_color" in a and frame.engine:
        # the engine's image as engines send it: 8-bit sRGB after a tone curve, half floats without one
        hud = np.asarray(a["hudless_color"], np.float32)
        if frame.engine["tone_mapping"] == "none":
            arrays["hudless_color"] = ("rgba16f", np.concatenate([hud, one], -1).astype(np.float16))
        else:
            arrays["hudless_color"] = ("rgba8_srgb", np.concatenate([_srgb8(hud), np.full((h, w, 1), 255, np.uint8)], -1))
        camera = replace(camera, pre_exposure=frame.engine["pre_exposure"], tone_mapping=frame.engine["tone_mapping"])
    return RenderInputs.from_arrays(arrays, camera=camera, frame=frame.index)


def one_style_map(h: int, w: int, style: str) -> np.ndarray:
    m = np.zeros((h, w, len(DEFAULT_LIBRARY)), np.float32)
    m[..., DEFAULT_LIBRARY.index(style)] = 1.0
    return m


def raster_options(sun: float = 1.0, sky: float = 1.0) -> dict[str, Any]:
    """DeferredRenderer options for the dataset's lighting, scaled by ``sun`` and ``sky``: Lambert radiance
    under irradiance E is albedo·E/π (the shader computes albedo·I·n·l, so I = E/π), and under a uniform sky of
    radiance L it is albedo·L. The house lighting (for frames without lighting constants) and the gains on the
    constants a frame sends."""
    return {
        "light_dir": list(SUN_DIRECTION),
        "light_color": [1.0, 0.97, 0.9],
        "light_intensity": SUN_IRRADIANCE[0] / math.pi * sun,
        "ambient": [c * sky for c in SKY_RADIANCE],
        "sun_gain": sun,
        "sky_gain": sky,
    }


def raster(frame: EvalFrame, style_map: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """Deferred shader output as display sRGB float (H, W, 3)."""
    from bridge.renderers.deferred import DeferredRenderer

    out = DeferredRenderer(**options).render(render_inputs(frame), style_map)
    return out[..., :3].astype(np.float32) / 255.0


def fit_raster(frames: list[EvalFrame], targets: list[np.ndarray]) -> dict[str, Any]:
    """Grid-search the deferred shader's light intensity and ambient scale for the lowest photoreal L1 on
    ``frames`` (training frames) against ``targets`` (their photoreal ground truth, display sRGB)."""
    best: tuple[float, dict[str, Any]] | None = None
    for k in (0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8):  # wide enough that the best is inside the grid
        for amb in (0.6, 1.0, 1.4):
            opts = raster_options(k, amb)
            err = float(
                np.mean(
                    [
                        np.abs(raster(f, one_style_map(*t.shape[:2], "photoreal"), opts) - t).mean()
                        for f, t in zip(frames, targets, strict=True)
                    ]
                )
            )
            if best is None or err < best[0]:
                best = (err, opts)
    assert best is not None
    return best[1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0))


def flip(reference: np.ndarray, test: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean LDR FLIP (default 67 pixels per degree) and its error map (H, W)."""
    import flip_evaluator

    emap, mean, _ = flip_evaluator.evaluate(
        np.ascontiguousarray(reference, np.float32),
        np.ascontiguousarray(test, np.float32),
        "LDR",
        applyMagma=False,
    )
    return float(mean), np.asarray(emap).reshape(reference.shape[:2])
