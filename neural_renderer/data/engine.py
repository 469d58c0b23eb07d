"""The "engine image": what a real-time engine would draw for a scene, beside the path-traced target.

Issue 15 makes the engine's own lit image (``hudless_color``, docs/protocol.md 6.1) an input of the neural
renderer, so the training data needs one per frame, and it must look like raster, not like a noisy path trace:
shaded in NumPy from the same G-buffers and the same lights (:class:`neural_renderer.data.scene.Light`, the sun,
the sky). Per light: Lambert diffuse plus a GGX specular (Smith-Schlick visibility with Unreal's k for analytic
lights, Schlick Fresnel, F0 = 0.04 or the base colour of metals); spot cones with an engine-style smoothstep; area
lights as a 2x2 grid of point samples of a Lambertian panel; optionally an engine's windowed distance falloff.
Then an ambient term from the sky colour (flat or hemispheric, scaled as an artist would), optionally darkened by
a screen-space ambient occlusion computed from the position and normal buffers, and the emissive buffer. What
raster misses is missing on purpose: no inter-reflection, emissive objects do not light their surroundings,
reflections are the flat ambient, shadows are hard or a fixed 4-tap filter, for the sun only, or absent.

Each scene draws an :class:`EngineLook` so that a model does not learn one engine's look: shadows (none, sun
only, hard, PCF-like), ambient and occlusion, falloff, tone mapping (:data:`TONE_MAPPINGS`) and an exposure
(histogram auto-exposure to a mid-grey key, then an offset in EV). The stored ``hudless_color`` is what the
engine would send: the linear image times ``pre_exposure`` through the tone curve (display-linear, in [0, 1]; an
sRGB buffer format would only encode it), or, for tone mapping ``none``, the pre-exposed linear HDR image an
engine sends as ``rgba16f``. The manifest records the look, so a loader can undo the exposure (and an invertible
curve), as the camera constants ``pre_exposure`` and a tone-mapping field will let a renderer do with a live
engine.

Shadows need ray queries, so the visibility function comes from the caller (:mod:`neural_renderer.data.render`
passes Mitsuba shadow rays); everything else is NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from bridge.tonemap import tone_map
from neural_renderer.data.scene import Light, SceneSpec

ToneMapping = Literal["none", "clamp", "reinhard", "aces", "agx"]
#: Tone curves an engine image may use (the proposed camera-constant values, see docs/model.md).
TONE_MAPPINGS: tuple[ToneMapping, ...] = ("none", "clamp", "reinhard", "aces", "agx")
#: Auto-exposure maps the log-average luminance of the lit image to this key (the classic 18 % grey).
EXPOSURE_KEY = 0.18

#: ``visibility(origins (N,3), unit directions (N,3), max distances (N,)) -> (N,) in {0, 1}``: 1 where the ray
#: reaches its max distance (inf for a directional light) unblocked. One call per frame: every shadow ray of
#: every light and tap at once (a ray launch costs milliseconds of JIT tracing).
Visibility = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EngineLook:
    """How one scene's engine image is drawn (recorded in the manifest under ``engine``).

    ``pre_exposure`` is the factor the linear image was multiplied by before ``tone_mapping`` (None until the
    auto-exposure of the scene's first frame has fixed it; then the same for every frame of the path).
    """

    tone_mapping: ToneMapping = "aces"
    pre_exposure: float | None = None
    exposure_ev: float = 0.0
    shadows: Literal["none", "sun_only", "hard", "pcf"] = "hard"
    ambient: Literal["none", "flat", "hemisphere"] = "flat"
    ambient_scale: float = 1.0
    occlusion: Literal["none", "ssao"] = "none"
    falloff: Literal["inverse_square", "windowed"] = "inverse_square"
    specular: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> EngineLook:
        return EngineLook(**d)


def random_look(rng: np.random.Generator) -> EngineLook:
    """Draw an engine look: every choice varies per scene."""
    tone = TONE_MAPPINGS[int(rng.choice(len(TONE_MAPPINGS), p=[0.15, 0.15, 0.2, 0.3, 0.2]))]
    return EngineLook(
        tone_mapping=tone,
        exposure_ev=round(float(rng.uniform(-1.0, 1.0)), 4),
        shadows=("none", "sun_only", "hard", "pcf")[int(rng.choice(4, p=[0.1, 0.25, 0.35, 0.3]))],
        ambient=("none", "flat", "hemisphere")[int(rng.choice(3, p=[0.15, 0.45, 0.4]))],
        ambient_scale=round(float(rng.uniform(0.5, 1.5)), 4),
        occlusion="ssao" if rng.uniform() < 0.5 else "none",
        falloff="windowed" if rng.uniform() < 0.4 else "inverse_square",
        specular=bool(rng.uniform() < 0.85),
    )


# ---------------------------------------------------------------------------------------------------------------
# Tone curves: bridge.tonemap.tone_map (linear, already exposed -> display-linear [0, 1]), the same curves the
# neural renderer inverts when a live engine states its ``tone_mapping``; re-exported here for the data code.


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb @ np.array([0.2126, 0.7152, 0.0722]))


def auto_exposure(linear: np.ndarray, valid: np.ndarray, ev: float) -> float:
    """An engine's histogram auto-exposure (Unreal's default): the factor that maps the log-average luminance
    of the pixels between the 50th and 95th percentile (an engine exposes for what is lit, not for the
    shadows) to :data:`EXPOSURE_KEY`, bounded to 2^-4..2^6, then times 2^ev."""
    lum = luminance(linear)[valid] if valid.any() else luminance(linear).ravel()
    lo, hi = np.percentile(lum, [50, 95])
    band = lum[(lum >= lo) & (lum <= hi)]
    avg = float(np.exp(np.mean(np.log(band + 1e-4)))) if band.size else 1.0
    return float(np.clip(EXPOSURE_KEY / max(avg, 1e-6), 2.0**-4, 2.0**6) * 2.0**ev)


# ---------------------------------------------------------------------------------------------------------------
# Shading.

#: Light positions of the ``pcf`` look: four fixed taps on a small cross (world units / radians for the sun).
_PCF_TAPS = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
_PCF_RADIUS = 0.08
_PCF_SUN = 0.015


@dataclass
class _Sample:
    """One point-like light sample: its position (or direction, when ``directional``) and what it gives."""

    to: np.ndarray  # position, or unit direction towards the light
    directional: bool
    rgb: np.ndarray  # irradiance (directional) or radiant intensity (point)
    light: Light | None = None
    area_normal: np.ndarray | None = None
    pcf_radius: float = _PCF_RADIUS


def _samples(spec: SceneSpec) -> list[_Sample]:
    out = []
    if any(c > 0 for c in spec.sun_irradiance):
        d = np.asarray(spec.sun_direction, float)
        out.append(_Sample(d / np.linalg.norm(d), True, np.asarray(spec.sun_irradiance, float)))
    for li in spec.lights:
        rgb = np.asarray(li.rgb, float)
        if li.kind in ("point", "spot"):
            out.append(_Sample(np.asarray(li.position, float), False, rgb, li))
            continue
        panel = np.asarray(li.panel().to_world)
        n = panel[:3, 2] / np.linalg.norm(panel[:3, 2])
        area = 4 * li.size[0] * li.size[1]
        for u in (-0.5, 0.5):
            for v in (-0.5, 0.5):
                p = panel[:3, 3] + panel[:3, 0] * u + panel[:3, 1] * v
                out.append(_Sample(p, False, rgb * area / 4, li, n, min(li.size) / 2))
    return out


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / max(e1 - e0, 1e-6), 0.0, 1.0)
    return np.asarray(t * t * (3 - 2 * t))


def shade(
    frame: dict[str, np.ndarray],
    spec: SceneSpec,
    camera_index: int,
    look: EngineLook,
    visibility: Visibility | None,
) -> np.ndarray:
    """The engine's linear lit image (H, W, 3) of one frame (G-buffers as :func:`render.render_scene` returns
    them, with ``position``); ``visibility`` is needed unless ``look.shadows == "none"``. Shadows: ``none``,
    ``sun_only`` (a cascaded shadow map for the sun, local lights unshadowed: a common engine budget), ``hard``
    (every light), ``pcf`` (every light, four taps around it)."""
    cam = spec.cameras[camera_index]
    albedo = frame["albedo"].astype(np.float64)
    h, w, _ = albedo.shape
    valid = frame["object_id"] > 0
    p = frame["position"].astype(np.float64)[valid]
    nrm = frame["normals"].astype(np.float64)[valid]
    nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-8)
    base = albedo[valid]
    rough = np.clip(frame["roughness"].astype(np.float64)[valid], 0.03, 1.0)
    metal = frame["metallic"].astype(np.float64)[valid]
    view = np.asarray(cam.origin, float) - p
    view /= np.maximum(np.linalg.norm(view, axis=-1, keepdims=True), 1e-8)
    ndv = np.clip(np.sum(nrm * view, -1), 1e-4, 1.0)
    f0 = 0.04 * (1 - metal[:, None]) + base * metal[:, None]
    diffuse = base * (1 - metal[:, None]) / math.pi
    alpha = rough**2
    k = (rough + 1) ** 2 / 8  # Unreal's Schlick-GGX k for analytic lights
    out = np.zeros_like(base)
    shadow_jobs: list[tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    for s in _samples(spec):
        if s.directional:
            to_l = np.broadcast_to(s.to, p.shape)
            e = np.broadcast_to(s.rgb, p.shape)
        else:
            v = s.to - p
            d2 = np.maximum(np.sum(v * v, -1), 1e-6)
            to_l = v / np.sqrt(d2)[:, None]
            atten = 1.0 / d2
            if look.falloff == "windowed":  # Unreal's: 0 at the light's radius, here where E < 0.01 of 1 m
                reach = math.sqrt(float(s.rgb.max()) / 0.01)
                atten = atten * np.clip(1 - (d2 / reach**2) ** 2, 0, 1) ** 2
            if s.light is not None and s.light.kind == "spot":
                axis = np.asarray(s.light.direction, float)
                cos_a = -to_l @ (axis / np.linalg.norm(axis))
                atten = atten * _smoothstep(
                    math.cos(math.radians(s.light.cone_deg)), math.cos(math.radians(s.light.beam_deg)), cos_a
                )
            if s.area_normal is not None:  # a Lambertian panel: intensity falls with the cosine at the panel
                atten = atten * np.clip(-to_l @ s.area_normal, 0, 1)
            e = s.rgb[None, :] * atten[:, None]
        ndl = np.clip(np.sum(nrm * to_l, -1), 0.0, 1.0)
        lit = ndl > 0
        if not lit.any():
            continue
        brdf = diffuse.copy()
        if look.specular:
            hv = to_l + view
            hv /= np.maximum(np.linalg.norm(hv, axis=-1, keepdims=True), 1e-8)
            ndh = np.clip(np.sum(nrm * hv, -1), 0, 1)
            vdh = np.clip(np.sum(view * hv, -1), 0, 1)
            a2 = alpha**2
            dd = a2 / (math.pi * (ndh**2 * (a2 - 1) + 1) ** 2)
            g = (ndv / (ndv * (1 - k) + k)) * (ndl / (ndl * (1 - k) + k))
            fr = f0 + (1 - f0) * ((1 - vdh) ** 5)[:, None]
            brdf = brdf + fr * (dd * g / (4 * ndv * np.maximum(ndl, 1e-4)))[:, None]
        shadowed = look.shadows in ("hard", "pcf") or (look.shadows == "sun_only" and s.directional)
        if shadowed and visibility is not None:
            idx = np.nonzero(lit)[0]
            shadow_jobs.append(
                (brdf[idx] * e[idx] * ndl[idx, None], idx, _shadow_rays(p[idx], nrm[idx], s, look))
            )
        else:
            out += brdf * e * ndl[:, None]
    if shadow_jobs:
        assert visibility is not None
        rays = [r for _c, _i, r in shadow_jobs]
        hits = visibility(*(np.concatenate([r[j] for r in rays]) for j in range(3)))
        at = 0
        for contrib, idx, (o, _d, _t) in shadow_jobs:
            taps = len(o) // len(idx)
            vis = hits[at : at + len(o)].reshape(taps, len(idx)).mean(0)
            at += len(o)
            out[idx] += contrib * vis[:, None]  # idx is unique: plain fancy-index add
    if look.ambient != "none":
        sky = np.asarray(spec.sky_radiance, float) * look.ambient_scale
        amb = np.broadcast_to(sky, p.shape).copy()
        if look.ambient == "hemisphere":  # sky from above, a darker ground bounce from below
            t = (0.5 + 0.5 * nrm[:, 1])[:, None]
            amb = amb * (t + (1 - t) * 0.3)
        ao = np.ones(len(p))
        if look.occlusion == "ssao":
            ao = ssao_map(frame, cam.origin, cam.fov_y)[valid]
        # E = pi * L from a uniform hemisphere; the specular part as if the sky filled every reflection.
        out += (diffuse * math.pi + f0) * amb * ao[:, None]
    # One-sided rectangles (walls, light panels) seen from behind are black, as for the path tracer.
    rect_ids = [i + 1 for i, sh in enumerate(spec.all_shapes()) if sh.kind in ("floor", "wall")]
    out[np.isin(frame["object_id"][valid], rect_ids) & (np.sum(nrm * view, -1) < 0)] = 0.0
    out += frame["emissive"].astype(np.float64)[valid]
    img = np.empty((h, w, 3))
    img[~valid] = np.asarray(spec.sky_radiance, float)  # background: the sky, as the path tracer sees it
    img[valid] = out
    return img


def _shadow_rays(
    p: np.ndarray, n: np.ndarray, s: _Sample, look: EngineLook
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shadow rays (origins, directions, max distances) from surface points towards a light sample, one set per
    PCF tap (stacked tap-major). Rays start a hair above the surface and stop a hair before a point light."""
    targets = [np.zeros(3)] if look.shadows != "pcf" else list(_PCF_TAPS)
    o = p + n * (1e-3 * (1.0 + np.abs(p).max(axis=-1, keepdims=True)))
    os_, ds, ts = [], [], []
    for tap in targets:
        if s.directional:
            d = s.to + tap * _PCF_SUN
            ds.append(np.broadcast_to(d / np.linalg.norm(d), o.shape))
            ts.append(np.full(len(o), np.inf))
        else:
            v = s.to + tap * s.pcf_radius - o
            dist = np.linalg.norm(v, axis=-1)
            ds.append(v / np.maximum(dist, 1e-9)[:, None])
            ts.append(np.maximum(dist * (1 - 1e-4) - 1e-3, 0.0))
        os_.append(o)
    return np.concatenate(os_), np.concatenate(ds), np.concatenate(ts)


def ssao_map(
    frame: dict[str, np.ndarray], origin: tuple[float, float, float], fov_y: float, radius: float = 0.6
) -> np.ndarray:
    """Screen-space ambient occlusion (the Alchemy estimator) from the position and normal buffers: (H, W) in
    [0, 1], 1 = open. 12 taps on a spiral whose on-screen radius is ``radius`` world units at each pixel's
    distance, so it does not change with the resolution, as an engine's would not."""
    valid = frame["object_id"] > 0
    h, w = valid.shape
    p = frame["position"].astype(np.float64)
    n = frame["normals"].astype(np.float64)
    dist = np.maximum(np.linalg.norm(p - np.asarray(origin), axis=-1), 1e-3)
    focal = h / (2 * math.tan(fov_y / 2))
    r_px = np.clip(radius * focal / dist, 1.0, max(h, w) / 4)
    ys, xs = np.mgrid[0:h, 0:w]
    taps = 12
    occ = np.zeros((h, w))
    for i in range(taps):
        a = i * 2.399963  # golden angle
        f = (i + 0.5) / taps
        sx = np.clip(np.rint(xs + np.cos(a) * f * r_px), 0, w - 1).astype(int)
        sy = np.clip(np.rint(ys + np.sin(a) * f * r_px), 0, h - 1).astype(int)
        v = p[sy, sx] - p
        vv = np.sum(v * v, -1)
        term = np.maximum(np.sum(v * n, -1) - 0.002 * dist, 0.0) / (vv + 0.01)
        term = np.where(valid[sy, sx] & (vv < (2 * radius) ** 2), term, 0.0)
        occ += term
    ao = np.clip(1 - 2 * 0.6 / taps * occ * radius, 0.0, 1.0)
    return np.where(valid, ao, 1.0)


def resolve_exposure(look: EngineLook, linear: np.ndarray, valid: np.ndarray) -> EngineLook:
    """Fix ``pre_exposure`` by auto-exposure of ``linear`` (the scene's first frame) unless already set."""
    if look.pre_exposure is not None:
        return look
    return replace(look, pre_exposure=round(auto_exposure(linear, valid, look.exposure_ev), 6))


def engine_output(linear: np.ndarray, look: EngineLook) -> np.ndarray:
    """What the engine sends as ``hudless_color``: ``tone_map(linear * pre_exposure)`` (float32)."""
    assert look.pre_exposure is not None, "resolve_exposure first"
    return tone_map(linear * look.pre_exposure, look.tone_mapping).astype(np.float32)
