"""Render a :class:`SceneSpec` with Mitsuba 3: pixel-centre G-buffers and a path-traced reference.

Alignment is by construction: the G-buffers are *the same sensor's* rays through the pixel centres
(``sensor.sample_ray`` at ``(x + 0.5) / W, (y + 0.5) / H``), and the reference uses a box reconstruction
filter of radius 0.5, so reference pixel (x, y) is the average radiance over exactly the pixel square whose
centre the G-buffers sample. ``tests/test_neural_data.py`` checks this.

Local lights (:class:`neural_renderer.data.scene.Light`) become Mitsuba ``point`` and ``spot`` emitters, and area
lights emissive rectangles, which the G-buffers see like any emissive object. With an
:class:`neural_renderer.data.engine.EngineLook`, each frame also gets the engine image (``hudless_color``), shaded
from the G-buffers in NumPy with Mitsuba shadow rays (:func:`render_with_engine`).

Variant: ``llvm_ad_rgb`` (vectorized, JIT) when an LLVM that Dr.Jit accepts is found (Debian's ``libllvm19``;
LLVM 14/15 make Dr.Jit abort the process, so we never try those), else ``scalar_rgb``. ``NRB_MITSUBA_VARIANT``
forces one.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from neural_renderer.data.camera import hardware_depth, motion_vectors
from neural_renderer.data.engine import EngineLook, engine_output, resolve_exposure, shade
from neural_renderer.data.meshes import ensure_meshes
from neural_renderer.data.scene import Camera, Light, Material, SceneSpec

LLVM_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libLLVM-19.so",
    "/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1",
    "/usr/lib/llvm-19/lib/libLLVM-19.so",
    "/usr/lib/aarch64-linux-gnu/libLLVM-19.so",
)

_VARIANT: str | None = None


def select_variant() -> str:
    """Pick and set the Mitsuba variant once per process (see module docstring)."""
    global _VARIANT
    if _VARIANT is not None:
        return _VARIANT
    forced = os.environ.get("NRB_MITSUBA_VARIANT")
    if forced:
        variant = forced
    elif os.environ.get("DRJIT_LIBLLVM_PATH"):
        variant = "llvm_ad_rgb"
    else:
        found = next((p for p in LLVM_CANDIDATES if os.path.exists(p)), None)
        if found:
            os.environ["DRJIT_LIBLLVM_PATH"] = found
            variant = "llvm_ad_rgb"
        else:
            variant = "scalar_rgb"
    import drjit as dr
    import mitsuba as mi

    try:
        mi.set_variant(variant)
    except Exception:  # noqa: BLE001 - e.g. a DRJIT_LIBLLVM_PATH Dr.Jit refuses: fall back, do not die
        variant = "scalar_rgb"
        mi.set_variant(variant)
    # Dr.Jit's thread pool runs the LLVM kernels and the scalar variant's render blocks alike.
    dr.set_thread_count(int(os.environ.get("NRB_THREADS", "2")))
    _VARIANT = variant
    return variant


def _material_dict(m: Material) -> dict[str, Any]:
    import mitsuba as mi

    base: Any = {"type": "rgb", "value": list(m.base_color)}
    if m.checker is not None:
        base = {
            "type": "checkerboard",
            "color0": {"type": "rgb", "value": list(m.base_color)},
            "color1": {"type": "rgb", "value": list(m.checker)},
            "to_uv": mi.ScalarTransform4f().scale([m.checker_scale, m.checker_scale, 1.0]),
        }
    return {"type": "principled", "base_color": base, "roughness": m.roughness, "metallic": m.metallic}


def _sensor(cam: Camera, width: int, height: int, spp: int) -> dict[str, Any]:
    import mitsuba as mi

    return {
        "type": "perspective",
        "fov": math.degrees(cam.fov_y),
        "fov_axis": "y",
        "near_clip": cam.near,
        "far_clip": cam.far * 10,
        "to_world": mi.ScalarTransform4f().look_at(
            origin=list(cam.origin), target=list(cam.target), up=list(cam.up)
        ),
        "film": {
            "type": "hdrfilm",
            "width": width,
            "height": height,
            "rfilter": {"type": "box"},
            "pixel_format": "rgb",
        },
        "sampler": {"type": "independent", "sample_count": spp},
    }


_MESH_DIR: Path | None = None


def build_scene_dict(
    spec: SceneSpec, width: int, height: int, spp: int, max_depth: int = 8
) -> dict[str, Any]:
    """Mitsuba scene dictionary; shape ``i`` of ``spec.all_shapes()`` gets the Mitsuba id ``s{i}``, light ``j``
    (point, spot) the id ``l{j}``."""
    import mitsuba as mi

    global _MESH_DIR
    if _MESH_DIR is None:
        _MESH_DIR = Path(tempfile.gettempdir()) / f"nrb-meshes-{os.getuid()}"
    meshes = ensure_meshes(_MESH_DIR)
    d: dict[str, Any] = {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": max_depth},
        "sun": {
            "type": "directional",
            "direction": [-c for c in spec.sun_direction],
            "irradiance": {"type": "rgb", "value": list(spec.sun_irradiance)},
        },
        "sky": {"type": "constant", "radiance": {"type": "rgb", "value": list(spec.sky_radiance)}},
    }
    if not any(c > 0 for c in spec.sun_irradiance):  # no sun (night, closed rooms): not a black emitter
        del d["sun"]
    for j, li in enumerate(spec.lights):
        if li.kind != "area":  # area lights are emissive shapes, below
            d[f"l{j}"] = _light_dict(li)
    for i, cam in enumerate(spec.cameras):
        d[f"sensor{i}"] = _sensor(cam, width, height, spp)
    for i, sh in enumerate(spec.all_shapes()):
        tw = mi.ScalarTransform4f(np.asarray(sh.to_world, dtype=np.float64))
        entry: dict[str, Any]
        if sh.kind in ("floor", "wall"):
            entry = {"type": "rectangle"}
        elif sh.kind in ("sphere", "cube"):
            entry = {"type": sh.kind}
        else:
            entry = {"type": "ply", "filename": str(meshes[sh.kind]), "face_normals": False}
        entry["to_world"] = tw
        entry["bsdf"] = _material_dict(sh.material)
        if any(c > 0 for c in sh.material.emission):
            entry["emitter"] = {
                "type": "area",
                "radiance": {"type": "rgb", "value": list(sh.material.emission)},
            }
        d[f"s{i}"] = entry
    return d


def _light_dict(li: Light) -> dict[str, Any]:
    import mitsuba as mi

    rgb = {"type": "rgb", "value": list(li.rgb)}
    if li.kind == "point":
        return {"type": "point", "position": list(li.position), "intensity": rgb}
    pos = np.asarray(li.position, float)
    axis = np.asarray(li.direction, float)
    up = [0.0, 1.0, 0.0] if abs(axis[1]) < 0.9 * np.linalg.norm(axis) else [1.0, 0.0, 0.0]
    return {
        "type": "spot",
        "to_world": mi.ScalarTransform4f().look_at(origin=list(pos), target=list(pos + axis), up=up),
        "intensity": rgb,
        "cutoff_angle": li.cone_deg,
        "beam_width": li.beam_deg,
    }


def _visibility(scene: Any) -> Any:
    """Shadow rays for the engine image (:data:`neural_renderer.data.engine.Visibility`): Mitsuba ``ray_test``
    on a whole batch at once."""
    import mitsuba as mi

    scalar = str(mi.variant()).startswith("scalar")

    def vis(o: np.ndarray, d: np.ndarray, maxt: np.ndarray) -> np.ndarray:
        maxt = np.minimum(maxt, 1e30)
        if scalar:
            out = np.ones(len(o))
            for k in range(len(o)):
                ray = mi.Ray3f(mi.Point3f(*o[k]), mi.Vector3f(*d[k]))
                ray.maxt = float(maxt[k])  # type: ignore[assignment]
                out[k] = 0.0 if scene.ray_test(ray) else 1.0
            return out
        ray = mi.Ray3f(
            mi.Point3f(*(mi.Float(c) for c in o.T.astype(np.float32))),
            mi.Vector3f(*(mi.Float(c) for c in d.T.astype(np.float32))),
        )
        ray.maxt = mi.Float(maxt.astype(np.float32))  # type: ignore[assignment]
        return 1.0 - np.array(scene.ray_test(ray), dtype=np.float64)

    return vis


def _raycast(scene: Any, sensor: Any, width: int, height: int) -> dict[str, np.ndarray]:
    """Primary rays through pixel centres -> hit data, arrays of shape (H*W, ...)."""
    import drjit as dr
    import mitsuba as mi

    xs, ys = np.meshgrid((np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height)
    shape_ids = {s.id(): s for s in scene.shapes()}
    if mi.variant().startswith("scalar"):
        n = width * height
        out = {
            "valid": np.zeros(n, bool),
            "t": np.zeros(n),
            "p": np.zeros((n, 3)),
            "n": np.zeros((n, 3)),
            "ng": np.zeros((n, 3)),
            "d": np.zeros((n, 3)),
            "o": np.zeros((n, 3)),
            "shape": np.full(n, -1),
            "uv": np.zeros((n, 2)),
        }
        for k, (x, y) in enumerate(zip(xs.ravel(), ys.ravel(), strict=True)):
            ray, _ = sensor.sample_ray(0.0, 0.0, mi.Point2f(x, y), mi.Point2f(0.5, 0.5))
            si = scene.ray_intersect(ray)
            out["d"][k] = np.array(ray.d)
            out["o"][k] = np.array(ray.o)
            if si.is_valid():
                out["valid"][k] = True
                out["t"][k] = si.t
                out["p"][k] = np.array(si.p)
                out["n"][k] = np.array(si.sh_frame.n)
                out["ng"][k] = np.array(si.n)
                out["uv"][k] = np.array(si.uv)
                out["shape"][k] = int(si.shape.id()[1:])
        return out
    pos = mi.Point2f(mi.Float(xs.ravel().astype(np.float32)), mi.Float(ys.ravel().astype(np.float32)))
    ray, _ = sensor.sample_ray(0.0, 0.0, pos, mi.Point2f(0.5, 0.5))
    si = scene.ray_intersect(ray)
    ptr = np.array(dr.reinterpret_array(mi.UInt32, si.shape))
    lut = {int(dr.reinterpret_array(mi.UInt32, mi.ShapePtr(s))[0]): int(k[1:]) for k, s in shape_ids.items()}
    shape = np.array([lut.get(int(v), -1) for v in np.unique(ptr)])
    shape_idx = shape[np.searchsorted(np.unique(ptr), ptr)]
    valid = np.array(si.is_valid())
    return {
        "valid": valid,
        "t": np.where(valid, np.array(si.t), 0.0),
        "p": np.array(si.p).T,
        "n": np.array(si.sh_frame.n).T,
        "ng": np.array(si.n).T,
        "d": np.array(ray.d).T,
        "o": np.array(ray.o).T,
        "shape": np.where(valid, shape_idx, -1),
        "uv": np.array(si.uv).T,
    }


def _checker(m: Material, uv: np.ndarray) -> np.ndarray:
    """Mitsuba's ``checkerboard`` texture evaluated in NumPy (same formula as its ``eval``)."""
    assert m.checker is not None
    u = uv * m.checker_scale
    mask = (u - np.floor(u)) > 0.5
    same = mask[:, 0] == mask[:, 1]
    return np.where(same[:, None], np.asarray(m.base_color), np.asarray(m.checker))


def render_scene(
    spec: SceneSpec, width: int, height: int, spp: int, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Render every camera of ``spec``: one dict of named arrays (protocol names) per frame.

    Arrays: ``albedo`` (linear base colour; the sky colour on background pixels), ``normals`` (zero on
    background),
    ``emissive`` (linear radiance), ``position`` (H, W, 3) float32; ``linear_depth``, ``depth``,
    ``roughness``, ``metallic`` (H, W) float32; ``material_id``, ``object_id`` (H, W) uint16 (0 = background);
    ``motion_vectors`` (H, W, 2) float32 (zeros on the first frame of a path); ``reference`` (H, W, 3) float32
    linear radiance.
    """
    return _render(spec, width, height, spp, seed, None)[0]


def render_with_engine(
    spec: SceneSpec, width: int, height: int, spp: int, look: EngineLook, seed: int = 0
) -> tuple[list[dict[str, np.ndarray]], EngineLook]:
    """:func:`render_scene` plus the engine image of every frame: ``engine_linear`` (H, W, 3) float32, the
    engine's lit linear image, and ``hudless_color``, what the engine sends (:func:`engine.engine_output`).
    Returns the frames and ``look`` with its ``pre_exposure`` fixed by the first frame's auto-exposure."""
    frames, resolved = _render(spec, width, height, spp, seed, look)
    assert resolved is not None
    return frames, resolved


def _render(
    spec: SceneSpec, width: int, height: int, spp: int, seed: int, look: EngineLook | None
) -> tuple[list[dict[str, np.ndarray]], EngineLook | None]:
    import mitsuba as mi

    select_variant()
    # optimize=False: Mitsuba would otherwise merge meshes that share a material, losing their object ids.
    scene = mi.load_dict(build_scene_dict(spec, width, height, spp), optimize=False)
    # Material ids: unique materials in first-use order (objects may share one), 1-based.
    mat_ids: dict[str, int] = {}
    shape_mat = []
    shapes = spec.all_shapes()
    for sh in shapes:
        key = repr(sh.material)  # value identity survives the JSON round trip of the manifest
        if key not in mat_ids:
            mat_ids[key] = len(mat_ids) + 1
        shape_mat.append(mat_ids[key])
    frames = []
    for k, cam in enumerate(spec.cameras):
        sensor = scene.sensors()[k]
        ref = np.array(mi.render(scene, sensor=sensor, spp=spp, seed=seed * 1009 + k), dtype=np.float32)
        hit = _raycast(scene, sensor, width, height)
        n = width * height
        valid, shape = hit["valid"], hit["shape"]
        albedo = np.zeros((n, 3))
        rough = np.zeros(n)
        metal = np.zeros(n)
        emis = np.zeros((n, 3))
        obj = np.zeros(n, np.uint16)
        mat = np.zeros(n, np.uint16)
        for i, sh in enumerate(shapes):
            sel = shape == i
            if not sel.any():
                continue
            m = sh.material
            albedo[sel] = _checker(m, hit["uv"][sel]) if m.checker is not None else m.base_color
            rough[sel], metal[sel], emis[sel] = m.roughness, m.metallic, m.emission
            if sh.kind in (
                "floor",
                "wall",
            ):  # a rectangle emits on its front side only (Mitsuba's area light)
                emis[sel & (np.sum(hit["ng"] * hit["d"], -1) > 0)] = 0.0
            obj[sel], mat[sel] = i + 1, shape_mat[i]
        # Background: the sky's colour in ``albedo`` (the convention the deferred shader reads as "unlit
        # sky").
        albedo[~valid] = np.clip(np.asarray(spec.sky_radiance), 0.0, 1.0)
        fwd = np.asarray(cam.target) - np.asarray(cam.origin)
        fwd = fwd / np.linalg.norm(fwd)
        # From the hit point, not ray.t: Mitsuba starts primary rays on the near-clip plane.
        lin = np.where(valid, (hit["p"] - np.asarray(cam.origin)) @ fwd, cam.far)
        pos = np.where(valid[:, None], hit["p"], hit["o"] + hit["d"] * 1e4)
        normals = np.where(valid[:, None], hit["n"], 0.0)
        sh3 = (height, width, 3)
        position = pos.reshape(sh3).astype(np.float32)
        f = {
            "albedo": albedo.reshape(sh3).astype(np.float32),
            "normals": normals.reshape(sh3).astype(np.float32),
            "linear_depth": lin.reshape(height, width).astype(np.float32),
            "depth": hardware_depth(lin.reshape(height, width), cam.near, cam.far),
            "roughness": rough.reshape(height, width).astype(np.float32),
            "metallic": metal.reshape(height, width).astype(np.float32),
            "emissive": emis.reshape(sh3).astype(np.float32),
            "material_id": mat.reshape(height, width),
            "object_id": obj.reshape(height, width),
            "position": position,
            "motion_vectors": (
                motion_vectors(spec.cameras[k - 1], position)
                if k > 0
                else np.zeros((height, width, 2), np.float32)
            ),
            "reference": ref,
        }
        if look is not None:
            lin = shade(f, spec, k, look, _visibility(scene))
            if k == 0:
                look = resolve_exposure(look, lin, obj.reshape(height, width) > 0)
            f["engine_linear"] = lin.astype(np.float32)
            f["hudless_color"] = engine_output(lin, look)
        frames.append(f)
    return frames, look
