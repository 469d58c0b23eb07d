"""Classic deferred shader in vectorised numpy: the raster baseline the neural renderer is measured against.

Per pixel: Lambert diffuse + energy-normalised Blinn-Phong specular from one directional light plus a constant
ambient, from ``albedo``, ``normals``, ``roughness``, ``metallic`` and ``depth``; then the style parameters of the
pixel's style mix (``bridge.style.library``): tint/paint/metal on the material, exposure, toon bands on the light,
saturation/contrast grading, a thermal palette and ink outlines on depth/normal edges.

Every step is per pixel except edge detection, which looks at neighbouring *geometry* (depth, normals) but never at
neighbouring styles. Hence changing the style of some pixels changes exactly those pixels — the property the
"weapon turns golden and nothing else changes" test relies on. The view direction is the camera's ``-forward`` (a
directional-viewer approximation; no position reconstruction), or +Z without a camera.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bridge.protocol import LIGHTING_CONSTANTS, BufferSpec
from bridge.renderer import Renderer, RenderInputs, linear_to_srgb, to_srgb8
from bridge.style.library import DEFAULT_LIBRARY, P, StyleLibrary

_LUMA = np.asarray([0.2126, 0.7152, 0.0722], np.float32)
# Thermal palette stops: cold black-blue → purple → red → orange → yellow → white.
_HEAT_X = np.asarray([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], np.float32)
_HEAT_RGB = np.asarray(
    [[0.0, 0.0, 0.1], [0.15, 0.0, 0.55], [0.65, 0.0, 0.55], [0.95, 0.3, 0.05], [1.0, 0.8, 0.1], [1.0, 1.0, 0.9]],
    np.float32,
)


def _unit(v: Sequence[float]) -> np.ndarray:
    a = np.asarray(v, np.float32)
    n = float(np.linalg.norm(a))
    if a.shape != (3,) or not np.isfinite(n) or n == 0.0:
        raise ValueError(f"expected a non-zero 3-vector, got {list(v)}")
    return a / np.float32(n)


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _neighbour_max(img: np.ndarray, fn: object) -> np.ndarray:
    """max over the 4 neighbours of fn(center, neighbour), edge-replicated borders."""
    pad = np.pad(img, [(1, 1), (1, 1)] + [(0, 0)] * (img.ndim - 2), mode="edge")
    c = pad[1:-1, 1:-1]
    out = None
    for sl in ((slice(0, -2), slice(1, -1)), (slice(2, None), slice(1, -1)),
               (slice(1, -1), slice(0, -2)), (slice(1, -1), slice(2, None))):
        v = fn(c, pad[sl])  # type: ignore[operator]
        out = v if out is None else np.maximum(out, v)
    assert out is not None
    return out


class DeferredRenderer(Renderer):
    """Lambert + Blinn-Phong deferred shading with per-pixel styles.

    Options (``nrb serve --renderer deferred -o KEY=VALUE``): ``light_dir`` (towards the light, world space),
    ``light_color``, ``light_intensity``, ``ambient`` (RGB), ``reflection`` (environment reflection on metals, in
    units of ``ambient``), ``depth_edge`` / ``normal_edge`` (outline thresholds:
    relative depth jump, 1 - cos of the normal angle), ``default_roughness``, ``default_metallic``.

    When the engine sends its lights as per-frame constants (1x1 buffers, docs/protocol.md 6.1) they replace
    the options: ``x_sun_direction`` the light direction, ``x_sun_irradiance`` (linear irradiance E) the light,
    as ``E / pi x sun_gain`` (Lambert radiance under irradiance E is albedo E / pi), and ``x_sky_radiance`` the
    ambient, as ``radiance x sky_gain``; ``sun_gain`` and ``sky_gain`` (default 1) are the look's free scales.
    """

    name = "deferred"

    def __init__(
        self,
        light_dir: Sequence[float] = (-0.45, 0.8, 0.4),
        light_color: Sequence[float] = (1.0, 0.96, 0.9),
        light_intensity: float = 2.0,
        ambient: Sequence[float] = (0.16, 0.18, 0.22),
        reflection: float = 3.0,
        depth_edge: float = 0.04,
        normal_edge: float = 0.35,
        default_roughness: float = 0.6,
        default_metallic: float = 0.0,
        sun_gain: float = 1.0,
        sky_gain: float = 1.0,
        library: StyleLibrary = DEFAULT_LIBRARY,
    ) -> None:
        self.reflection = np.float32(reflection)
        self.sun_gain = np.float32(sun_gain)
        self.sky_gain = np.float32(sky_gain)
        self.light_dir = _unit(light_dir)
        self.light_color = np.asarray(light_color, np.float32) * np.float32(light_intensity)
        self.ambient = np.asarray(ambient, np.float32)
        self.environment = self.ambient * np.float32(reflection)
        if self.light_color.shape != (3,) or self.ambient.shape != (3,):
            raise ValueError("light_color and ambient are RGB triples")
        self.depth_edge = float(depth_edge)
        self.normal_edge = float(normal_edge)
        self.default_roughness = float(default_roughness)
        self.default_metallic = float(default_metallic)
        self.library = library
        self._table = library.shading_table()  # the grading columns are applied after it (bridge.style.grading)

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8_srgb"), BufferSpec("normals", "rgba16f"), BufferSpec("depth", "r32f")]

    def optional(self) -> list[BufferSpec]:
        return [BufferSpec("roughness", "r8"), BufferSpec("metallic", "r8"), BufferSpec("emissive", "rgba16f"),
                BufferSpec("material_id", "r16u"), BufferSpec("object_id", "r16u"),
                *(BufferSpec(name, "rgba32f") for name in LIGHTING_CONSTANTS)]

    def lights(self, inputs: RenderInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(light direction, light colour, ambient, environment) for this frame: the engine's lighting constants
        where sent, the options otherwise."""
        direction, color, ambient, environment = self.light_dir, self.light_color, self.ambient, self.environment
        if (d := inputs.constant("x_sun_direction", 3)) is not None:
            direction = _unit(d.tolist())  # ValueError for the zero vector
        if (e := inputs.constant("x_sun_irradiance", 3)) is not None:
            color = e * np.float32(1 / np.pi) * self.sun_gain
        if (sky := inputs.constant("x_sky_radiance", 3)) is not None:
            ambient = sky * self.sky_gain
            environment = ambient * self.reflection
        return direction, color, ambient, environment

    # ------------------------------------------------------------------------------------------------ render
    def pixel_params(self, style_map: np.ndarray) -> np.ndarray:
        """(H, W, P) per-pixel shader parameters: the style map times the library table, summed elementwise (no
        BLAS, so the result is bit-reproducible)."""
        if style_map.ndim != 3 or style_map.shape[2] != len(self._table):
            raise ValueError(f"style map has shape {style_map.shape}, expected (H, W, {len(self._table)})")
        out = np.zeros(style_map.shape[:2] + (self._table.shape[1],), np.float32)
        for s, row in enumerate(self._table):
            w = style_map[..., s]
            if w.any():
                out += w[..., None] * row
        return out

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        prm = self.pixel_params(style_map)

        def p(name: str) -> np.ndarray:
            return prm[..., P[name]]

        base = inputs["albedo"][..., :3]
        h, w = base.shape[:2]
        n = inputs["normals"][..., :3]
        n = n / np.maximum(np.sqrt(_dot3(n, n)), np.float32(1e-6))[..., None]
        sky = inputs.sky_mask()  # no geometry (protocol 6.5): the engine's albedo there, unlit
        bg = sky if sky is not None else np.zeros((h, w), bool)
        rough = inputs["roughness"][..., 0] if "roughness" in inputs else np.full((h, w), self.default_roughness,
                                                                                     np.float32)
        metal = inputs["metallic"][..., 0] if "metallic" in inputs else np.full((h, w), self.default_metallic,
                                                                               np.float32)

        # material edits: tint, paint, metal
        paint = p("paint")[..., None]
        albedo = base * prm[..., 0:3] * (1.0 - paint) + prm[..., P["paint_r"]:P["paint_b"] + 1]
        m = p("metal")
        metal = metal * (1.0 - m) + m
        rough = rough * (1.0 - m) + p("metal_roughness")

        # lighting
        cam = inputs.camera
        view = _unit([-x for x in cam.forward]) if cam is not None and cam.forward is not None else _unit((0, 0, 1))
        light_dir, light_color, ambient, environment = self.lights(inputs)
        half = _unit(light_dir + view)
        ndl = np.clip(_dot3(n, light_dir), 0.0, 1.0)
        ndh = np.clip(_dot3(n, half), 0.0, 1.0)
        shin = np.clip(2.0 / np.maximum(rough * rough, 1e-4) - 2.0, 1.0, 2048.0)
        spec = ndh ** shin * ((shin + 8.0) / np.float32(8.0 * np.pi))
        toon = p("toon")
        if toon.any():
            levels = np.maximum(p("toon_levels") / np.maximum(toon, 1e-6), 1.0)
            ndl_q = np.minimum(np.ceil(ndl * levels) / levels, 1.0)
            spec_q = np.where(spec > 1.0, np.float32(1.5), np.float32(0.0))
            ndl = ndl * (1.0 - toon) + ndl_q * toon
            spec = spec * (1.0 - toon) + spec_q * toon
        f0 = np.float32(0.04) * (1.0 - metal)[..., None] + albedo * metal[..., None]
        diffuse = albedo * (1.0 - metal)[..., None]
        color = (ambient * diffuse + environment * f0
                 + light_color * ndl[..., None] * (diffuse + f0 * spec[..., None]))
        if "emissive" in inputs:
            color = color + inputs["emissive"][..., :3]
        color = np.where(bg[..., None], albedo, color)  # background (far plane): unlit sky colour
        color = color * p("exposure")[..., None]

        # grading in display space
        c = linear_to_srgb(color)
        luma = _dot3(c, _LUMA)[..., None]
        c = luma + (c - luma) * p("saturation")[..., None]
        c = (c - 0.5) * p("contrast")[..., None] + 0.5
        heat = p("heat")
        if heat.any():
            lum = np.clip(_dot3(np.clip(c, 0.0, 1.0), _LUMA), 0.0, 1.0)
            pal = np.stack([np.interp(lum, _HEAT_X, _HEAT_RGB[:, i]) for i in range(3)], axis=-1)
            c = c * (1.0 - heat)[..., None] + pal.astype(np.float32) * heat[..., None]
        outline = p("outline")
        if outline.any():
            edge = self.edges(inputs, n, bg)
            k = (outline * edge)[..., None]
            c = c * (1.0 - k) + prm[..., P["outline_r"]:P["outline_b"] + 1] * edge[..., None]

        out = np.empty((h, w, 4), np.uint8)
        out[..., :3] = to_srgb8(c)
        out[..., 3] = 255
        return out

    def edges(self, inputs: RenderInputs, normals: np.ndarray, background: np.ndarray) -> np.ndarray:
        """(H, W) 0..1 edge strength from relative depth jumps and normal creases (geometry only; normals of the
        background carry no meaning, so only depth jumps count there)."""
        # 1/z is affine in screen space across any plane, so its second difference is ~0 on flat surfaces however
        # grazing, and large at silhouettes: no false outlines on floors seen edge-on.
        iz = 1.0 / np.maximum(inputs.linear_depth(), np.float32(1e-6))
        pad = np.pad(iz, 1, mode="edge")
        lap = np.maximum(np.abs(pad[1:-1, :-2] + pad[1:-1, 2:] - 2 * iz), np.abs(pad[:-2, 1:-1] + pad[2:, 1:-1] - 2 * iz))
        zr = lap / iz
        nr = _neighbour_max(normals, lambda a, b: 1.0 - _dot3(a, b))
        e_depth = np.clip((zr - self.depth_edge) / self.depth_edge, 0.0, 1.0)
        e_norm = np.where(_neighbour_max(background, np.logical_or), 0.0,
                          np.clip((nr - self.normal_edge) / self.normal_edge, 0.0, 1.0))
        return np.maximum(e_depth, e_norm).astype(np.float32)
