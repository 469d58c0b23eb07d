"""Classic deferred shader in vectorised numpy: the raster baseline the neural renderer is measured against.

Per pixel: Lambert diffuse + energy-normalised Blinn-Phong specular from one directional light plus a constant
ambient, from ``albedo``, ``normals``, ``roughness``, ``metallic`` and ``depth``; then the style parameters of the
pixel's style mix (``bridge.style.library``): tint/paint/metal on the material, exposure, toon bands on the light,
saturation/contrast grading, a thermal palette and ink outlines on depth/normal edges.

Every step is per pixel except edge detection, which looks at neighbouring *geometry* (depth, normals) but never at
neighbouring styles. Hence changing the style of some pixels changes exactly those pixels — the property the
"weapon turns golden and nothing else changes" test relies on. For the sun the view direction is the camera's
``-forward`` (a directional-viewer approximation), or +Z without a camera.

The engine's other lights (``x_lights``, docs/protocol.md 6.1: point, spot and directional lights) are shaded with
the same Lambert + Blinn-Phong model, each pixel's world position reconstructed from its depth and the camera's
``clip_to_view`` / ``world_to_view`` (so also the view direction, per pixel): inverse-square falloff with the
light's range window and a smoothstep spot cone, as the training data's engine images light them
(``neural_renderer.data.engine``). Without those camera matrices (or depth) only the directional ones are shaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bridge.lights import LIGHT_DIRECTIONAL, LIGHT_SPOT, X_LIGHTS, LightArrays, decode_lights
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
                *(BufferSpec(name, "rgba32f") for name in LIGHTING_CONSTANTS), BufferSpec(X_LIGHTS, "rgba32f")]

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

    def local_lights(self, inputs: RenderInputs) -> LightArrays | None:
        """The frame's ``x_lights`` (protocol 6.1), or None when not sent."""
        b = inputs.buffers.get(X_LIGHTS)
        return None if b is None else decode_lights(b)

    @staticmethod
    def world_positions(inputs: RenderInputs) -> np.ndarray | None:
        """(H, W, 3) world-space position of each pixel's surface, or None when the frame cannot say: it needs a
        view distance (``linear_depth``, or ``depth`` with the camera's ``near``) and either the camera's
        ``clip_to_view`` and ``world_to_view`` or its pose and lens (``position``, ``right``, ``up``,
        ``forward``, ``fov_y``, ``aspect``; a perspective camera). With the matrices, each pixel centre's ray is
        unprojected through ``clip_to_view`` at two depths (any clip-z convention, perspective or orthographic)
        and followed to the view distance along -Z; ``world_to_view``'s inverse takes the point to world space."""
        cam = inputs.camera
        if cam is None:
            return None
        if "linear_depth" not in inputs.buffers and ("depth" not in inputs.buffers or cam.near is None):
            return None
        pose = (cam.position, cam.right, cam.up, cam.forward, cam.fov_y, cam.aspect)
        if cam.clip_to_view is None or cam.world_to_view is None:
            if any(v is None for v in pose) or cam.orthographic:
                return None
            dist = inputs.linear_depth().astype(np.float64)
            h, w = dist.shape
            ty = math.tan(float(cam.fov_y) / 2)  # type: ignore[arg-type]
            tx = ty * float(cam.aspect)  # type: ignore[arg-type]
            x = ((np.arange(w) + 0.5) / w * 2.0 - 1.0) * tx
            y = (1.0 - (np.arange(h) + 0.5) / h * 2.0) * ty
            right, up, fwd, origin = (np.asarray(v, np.float64) for v in (cam.right, cam.up, cam.forward,
                                                                           cam.position))
            ray = x[None, :, None] * right + y[:, None, None] * up + fwd
            world = origin + dist[..., None] * ray
            return np.where(np.isfinite(world), world, 0.0).astype(np.float32)
        dist = inputs.linear_depth().astype(np.float64)
        h, w = dist.shape
        c2v = np.asarray(cam.clip_to_view, np.float64).reshape(4, 4)
        v2w = np.linalg.inv(np.asarray(cam.world_to_view, np.float64).reshape(4, 4))
        x = (np.arange(w) + 0.5) / w * 2.0 - 1.0
        y = 1.0 - (np.arange(h) + 0.5) / h * 2.0  # top row first
        ends = []
        for z in (0.25, 0.75):
            clip = np.stack(np.broadcast_arrays(x[None, :], y[:, None], np.float64(z), np.float64(1.0)), axis=-1)
            v = clip @ c2v.T
            ends.append(v[..., :3] / v[..., 3:4])
        a, b = ends
        span = a[..., 2] - b[..., 2]  # how much nearer a is along -Z
        t = np.where(np.abs(span) > 1e-12, (dist + a[..., 2]) / np.where(np.abs(span) > 1e-12, span, 1.0), 0.0)
        p = a + t[..., None] * (b - a)
        world = p @ v2w[:3, :3].T + v2w[:3, 3]
        return np.where(np.isfinite(world), world, 0.0).astype(np.float32)

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
        if (lights := self.local_lights(inputs)) is not None:
            color = color + self.shade_lights(inputs, lights, n, view, shin, toon, p("toon_levels"), diffuse, f0)
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

    def shade_lights(self, inputs: RenderInputs, lights: LightArrays, n: np.ndarray, view: np.ndarray,
                     shin: np.ndarray, toon: np.ndarray, toon_levels: np.ndarray, diffuse: np.ndarray,
                     f0: np.ndarray) -> np.ndarray:
        """(H, W, 3) linear radiance the ``x_lights`` add: per light, irradiance E (directional: its rgb; point and
        spot: I / d² in the range window, times the spot cone) shaded as the sun is, ``E / pi x n.l x (diffuse +
        F0 x Blinn-Phong)``, toon bands on n.l. The view direction is per pixel where positions are known."""
        out = np.zeros(n.shape, np.float32)
        pos = self.world_positions(inputs)
        cam = inputs.camera
        if pos is not None and cam is not None and cam.position is not None:
            to_eye = np.asarray(cam.position, np.float32) - pos
            view_px = to_eye / np.maximum(np.sqrt(_dot3(to_eye, to_eye)), np.float32(1e-6))[..., None]
        else:
            view_px = np.broadcast_to(view, n.shape)
        inv_pi = np.float32(1 / np.pi)
        for i in range(len(lights)):
            kind = int(lights.kind[i])
            if kind == LIGHT_DIRECTIONAL:
                to_l = np.broadcast_to(-lights.direction[i], n.shape)
                atten: np.ndarray | np.float32 = np.float32(1.0)
            elif pos is None:
                continue  # a point or spot light needs the pixels' positions
            else:
                v = lights.position[i] - pos
                d2 = np.maximum(_dot3(v, v), np.float32(1e-4))
                to_l = v / np.sqrt(d2)[..., None]
                atten = 1.0 / d2
                if lights.range[i] > 0:
                    atten = atten * np.clip(1.0 - (d2 / np.float32(lights.range[i] ** 2)) ** 2, 0.0, 1.0) ** 2
                if kind == LIGHT_SPOT:
                    cos_a = -_dot3(to_l, lights.direction[i])
                    lo, hi = lights.cos_outer[i], lights.cos_inner[i]
                    k = np.clip((cos_a - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
                    atten = atten * k * k * (3.0 - 2.0 * k)
            ndl = np.clip(_dot3(n, to_l), 0.0, 1.0)
            half = to_l + view_px
            half = half / np.maximum(np.sqrt(_dot3(half, half)), np.float32(1e-6))[..., None]
            spec = np.clip(_dot3(n, half), 0.0, 1.0) ** shin * ((shin + 8.0) / np.float32(8.0 * np.pi))
            if toon.any():
                levels = np.maximum(toon_levels / np.maximum(toon, 1e-6), 1.0)
                ndl = ndl * (1.0 - toon) + np.minimum(np.ceil(ndl * levels) / levels, 1.0) * toon
                spec = spec * (1.0 - toon) + np.where(spec > 1.0, np.float32(1.5), np.float32(0.0)) * toon
            e = (lights.color[i] * inv_pi) * (atten * ndl)[..., None]
            out += (e * (diffuse + f0 * spec[..., None])).astype(np.float32)
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
