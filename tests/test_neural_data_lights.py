"""Synthetic data with every kind of light (issue 15, the data side): the default generator is untouched, point,
spot, area and emissive lights light the path-traced target, the engine image shows the same lights, its tone
mapping and exposure are recorded, night is dark, and the held-out corridor family renders."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mitsuba")

from neural_renderer.data.dataset import engine_constants, generate, iter_frames, load_manifest  # noqa: E402
from neural_renderer.data.engine import EngineLook, engine_output, luminance, tone_map  # noqa: E402
from neural_renderer.data.render import render_scene, render_with_engine, select_variant  # noqa: E402
from neural_renderer.data.scene import (  # noqa: E402
    LIT_SETTINGS,
    Camera,
    Light,
    Material,
    SceneSpec,
    Shape,
    corridor_scene,
    random_lit_scene,
    random_scene,
)

#: Digests of what ``nrb data generate`` wrote before lights existed (computed from the code at f1e614e):
#: the specs of scenes 0..39, and 2 scenes (seed 3: a room and a plane with emissive objects) at 16x16, 4 spp.
HOUSE_SPEC_DIGEST = "4cc406e76a2130dc4a50244350db49f988e9084a4687ffca923c82e97077846e"
HOUSE_PIXEL_DIGEST = {
    "llvm_ad_rgb": "c9dd318a7d8f84236785b1c5754f4d382beae7378a58b26481b6c3f2aebeb8f9",
    # the same code (f1e614e) on a host with AVX-512 (2026-12-08): see _pixel_key
    "llvm_ad_rgb/avx512": "4f9f76d648a5c9c4683aa6be27c7c15dfc8905c00438fac95fb704f9363a5099",
    "scalar_rgb": "349d2d90444c98948fdd319026e943aa7f0c0d3267e1b6a0de392fa694b75706",
}
HOUSE_MANIFEST_DIGEST = {
    "llvm_ad_rgb": "d86f0d673c28f8bdb7941b50c1cca5bf0a0f48fe3a96ff3f44f6fedb47b5a0df",
    "scalar_rgb": "788b00dbdd842aad6f2ca50f86bd2e2f2ba9de1410d7d90694b5c37dcd89fa3c",
}
GREY = Material((0.5, 0.5, 0.5), 1.0, 0.0)
FLOOR = [[12.0, 0, 0, 0], [0, 0, 1, 0], [0, -12.0, 0, 0], [0, 0, 0, 1]]  # faces +y
LINEAR = EngineLook(tone_mapping="none", pre_exposure=1.0, shadows="hard", ambient="none", specular=False)


def _dark_scene(
    lights: list[Light], shapes: list[Shape] | None = None, cam: Camera | None = None
) -> SceneSpec:
    """A grey floor under a black sky, no sun: only ``lights`` (and emissive shapes) light it."""
    return SceneSpec(
        seed=0,
        layout="plane",
        shapes=[Shape("floor", FLOOR, GREY), *(shapes or [])],
        sun_direction=(0.0, 1.0, 0.0),
        sun_irradiance=(0.0, 0.0, 0.0),
        sky_radiance=(0.0, 0.0, 0.0),
        cameras=[cam or Camera((0.0, 6.0, 0.01), (0.0, 0.0, 0.0), (0.0, 0.0, -1.0), math.radians(60))],
        lights=lights,
    )


def _floor_xz(frame: dict[str, np.ndarray]) -> np.ndarray:
    return frame["position"][..., [0, 2]].astype(np.float64)


def test_default_generator_writes_the_same_house_lit_scenes_as_before(tmp_path: Path) -> None:
    h = hashlib.sha256()
    for s in range(40):
        h.update(json.dumps(random_scene(s, frames=2).to_json(), sort_keys=True).encode())
    assert h.hexdigest() == HOUSE_SPEC_DIGEST
    m = generate(tmp_path, 2, (16, 16), spp=4, seed=3)
    h = hashlib.sha256()
    for e in m["scenes"].values():
        for f in e["files"]:
            with np.load(tmp_path / f) as z:
                assert "hudless_color" not in z.files
                for n in sorted(z.files):
                    a = z[n]
                    h.update(f"{f}:{n}:{a.dtype}:{a.shape}".encode())
                    h.update(a.tobytes())
    entries = {k: {kk: vv for kk, vv in e.items() if kk != "seconds"} for k, e in m["scenes"].items()}
    manifest = hashlib.sha256(json.dumps([m["settings"], entries], sort_keys=True).encode()).hexdigest()
    variant = select_variant()
    key = _pixel_key(variant)
    if key not in HOUSE_PIXEL_DIGEST:
        pytest.skip(f"no recorded pixel digest for Mitsuba variant {variant} on this CPU ({key})")
    assert h.hexdigest() == HOUSE_PIXEL_DIGEST[key]
    assert manifest == HOUSE_MANIFEST_DIGEST[variant]


def _pixel_key(variant: str) -> str:
    """Which recorded pixel digest applies here. Dr.Jit's LLVM backend compiles for the host CPU, its features and
    vector width, and floating-point results follow it: the code the digests were taken from (f1e614e) wrote other
    pixels, and the same manifest, on the AVX-512 host of 2026-12-08, with the same Mitsuba and Dr.Jit. Hosts are
    told apart by AVX-512 (16 lanes instead of 8), the likeliest difference; the scalar variant does not vectorise."""
    if not variant.startswith("llvm"):
        return variant
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    return f"{variant}/avx512" if "avx512f" in flags.split() else variant


def test_a_house_dataset_resumes_and_refuses_other_lighting(tmp_path: Path) -> None:
    generate(tmp_path, 1, (8, 8), spp=1, frames=1)
    assert "lighting" not in load_manifest(tmp_path)["settings"]  # the default is not written down
    generate(tmp_path, 2, (8, 8), spp=1, frames=1, lighting="house")
    with pytest.raises(ValueError, match="refusing to resume"):
        generate(tmp_path, 3, (8, 8), spp=1, frames=1, lighting="every")
    with pytest.raises(ValueError, match="refusing to resume"):
        generate(tmp_path, 3, (8, 8), spp=1, frames=1, engine_image=True)
    with pytest.raises(ValueError, match="unknown lighting"):
        generate(tmp_path / "x", 1, (8, 8), spp=1, lighting="disco")


def test_a_point_light_lights_the_floor_under_it_by_the_inverse_square_law() -> None:
    light = Light("point", (0.0, 1.5, 0.0), (1.0, 0.5, 0.25), 10.0)
    cam = Camera((0.0, 4.0, 0.01), (0.0, 0.0, 0.0), (0.0, 0.0, -1.0), math.radians(60))
    frames, _ = render_with_engine(_dark_scene([light], cam=cam), 32, 32, 64, LINEAR)
    f = frames[0]
    r = np.linalg.norm(_floor_xz(f), axis=-1)
    under, far = r < 0.35, r > 2.0
    assert under.sum() > 8 and far.sum() > 20
    # a white Lambertian floor of albedo 0.5 below an isotropic light: L = 0.5 / pi * I * cos / d^2
    d = np.hypot(1.5, r)[..., None]
    expected = 0.5 / math.pi * np.array(light.rgb) * 1.5 / d**3
    np.testing.assert_allclose(f["reference"][under].mean(0), expected[under].mean(0), rtol=0.1)
    assert f["reference"][far].mean() < 0.2 * f["reference"][under].mean()
    assert np.all(np.diff(f["reference"][under].mean(0)) < 0)  # the light's colour: red > green > blue
    # the engine image (direct light only, and there is nothing else here) agrees with the path tracer
    np.testing.assert_allclose(f["engine_linear"][under], expected[under], rtol=0.02)


def test_a_spot_lights_the_floor_inside_its_cone_only() -> None:
    spot = Light(
        "spot",
        (0.0, 2.0, 0.0),
        (1.0, 1.0, 1.0),
        20.0,
        direction=(0.0, -1.0, 0.0),
        cone_deg=20.0,
        beam_deg=15.0,
    )
    frames, _ = render_with_engine(_dark_scene([spot]), 32, 32, 32, LINEAR)
    f = frames[0]
    r = np.linalg.norm(_floor_xz(f), axis=-1)
    edge = 2.0 * math.tan(math.radians(20))  # 0.73
    inside, outside = r < 0.8 * 2.0 * math.tan(math.radians(15)), (r > 1.15 * edge) & (r < 3.0)
    assert inside.sum() > 10 and outside.sum() > 50
    for img in (f["reference"], f["engine_linear"]):
        assert luminance(img[inside]).mean() > 20 * luminance(img[outside]).mean() + 1e-3


def test_area_lights_and_emissive_objects_light_their_surroundings_in_the_target() -> None:
    panel = Light("area", (1.5, 1.2, 0.0), (0.3, 0.6, 1.0), 6.0, direction=(0.0, -1.0, 0.0), size=(0.4, 0.4))
    orb = Shape(
        "sphere",
        [[0.4, 0, 0, -1.5], [0, 0.4, 0, 0.5], [0, 0, 0.4, 0.0], [0, 0, 0, 1]],
        Material((0.0, 0.0, 0.0), 1.0, 0.0, (4.0, 1.0, 0.2)),
    )
    f = render_scene(_dark_scene([panel], [orb]), 32, 32, 32)[0]
    floor = f["object_id"] == 1
    xz = _floor_xz(f)
    near_panel = floor & (np.linalg.norm(xz - [1.5, 0.0], axis=-1) < 0.5)
    near_orb = (
        floor
        & (np.linalg.norm(xz - [-1.5, 0.0], axis=-1) < 0.9)
        & (np.linalg.norm(xz - [-1.5, 0], axis=-1) > 0.45)
    )
    assert near_panel.sum() > 3 and near_orb.sum() > 3
    # the panel is a quad in the G-buffers with its own object id; seen from above, it is its unlit back (the
    # path tracer's emitter is one-sided), so the emissive buffer must not claim it glows
    back = f["object_id"] == 3
    assert back.sum() > 2 and not f["emissive"][back].any()
    assert np.median(luminance(f["reference"][back])) < 0.05
    panel_floor = f["reference"][near_panel].mean(0)
    orb_floor = f["reference"][near_orb].mean(0)
    assert panel_floor[2] > panel_floor[0] > 0.02  # bluish light below the panel
    assert orb_floor[0] > orb_floor[2] and orb_floor[0] > 0.05  # orange glow around the orb
    dark = render_scene(_dark_scene([]), 32, 32, 4)[0]
    assert dark["reference"].max() == 0.0


def test_the_engine_image_shows_the_same_lights_as_the_target() -> None:
    spec = next(
        s
        for s in (random_lit_scene(i, frames=1) for i in range(40))
        if len(s.lights) >= 3 and not any(s.sun_irradiance)
    )
    look = EngineLook(tone_mapping="none", pre_exposure=1.0, shadows="hard", ambient="flat", occlusion="ssao")
    frames, _ = render_with_engine(spec, 32, 32, 32, look)
    f = frames[0]
    valid = f["object_id"] > 0
    le, lt = luminance(f["engine_linear"])[valid], luminance(f["reference"])[valid]
    corr = np.corrcoef(np.log(le + 1e-3), np.log(lt + 1e-3))[0, 1]
    assert corr > 0.6, corr
    # take away the brightest light: the engine image gets darker, the most where that light was
    # take away each light: the engine image gets darker (where the geometry stays: an area light's panel goes)
    for j in range(len(spec.lights)):
        less = SceneSpec(**{**spec.__dict__, "lights": spec.lights[:j] + spec.lights[j + 1 :]})
        g = render_with_engine(less, 32, 32, 1, look)[0][0]
        same = f["object_id"] == g["object_id"]
        gain = (luminance(f["engine_linear"]) - luminance(g["engine_linear"]))[same]
        assert gain.min() > -1e-5 and gain.sum() > 0, j


def test_tone_mapping_and_exposure_are_recorded_and_reproduce_the_stored_engine_image(tmp_path: Path) -> None:
    m = generate(tmp_path, 3, (16, 16), spp=2, frames=2, seed=1, lighting="every", engine_image=True)
    assert m["settings"]["lighting"] == "every" and m["settings"]["engine_image"] is True
    for key, entry in m["scenes"].items():
        look = EngineLook.from_json(entry["engine"])
        assert look.pre_exposure is not None and look.pre_exposure > 0
        assert engine_constants(entry) == {
            "pre_exposure": look.pre_exposure,
            "tone_mapping": look.tone_mapping,
        }
        spec = SceneSpec.from_json(entry["spec"])
        assert spec.to_json() == entry["spec"]  # lights round-trip through the manifest
        again, look2 = render_with_engine(spec, 16, 16, 1, look, seed=int(key))
        assert look2 == look  # a recorded exposure is used, not re-measured
        for k, fname in enumerate(entry["files"]):
            with np.load(tmp_path / fname) as z:
                stored = z["hudless_color"].astype(np.float32)
            redo = engine_output(again[k]["engine_linear"], look)
            np.testing.assert_allclose(
                stored, redo.astype(np.float16).astype(np.float32), rtol=1e-3, atol=1e-3
            )
            if look.tone_mapping != "none":
                assert 0.0 <= stored.min() and stored.max() <= 1.0
    frames = next(iter_frames(tmp_path))
    assert frames[0].arrays["hudless_color"].shape == (16, 16, 3)


def test_tone_curves_are_monotonic_and_exposure_moves_the_image() -> None:
    x = np.linspace(0, 20, 200)[:, None].repeat(3, 1)
    for curve in ("clamp", "reinhard", "aces", "agx"):
        y = luminance(tone_map(x, curve))
        assert np.all(np.diff(y) >= -1e-6), curve
        assert y[0] < 0.02 and 0.8 < y[-1] <= 1.0, curve
    np.testing.assert_array_equal(tone_map(x, "none"), x)
    with pytest.raises(ValueError, match="unknown tone mapping"):
        tone_map(x, "filmic2")


def test_night_scenes_are_dark_outside_the_lights() -> None:
    spec = next(
        s
        for s in (random_lit_scene(i, frames=1) for i in range(60))
        if s.layout != "indoor" and max(s.sky_radiance) < 0.02 and len(s.lights) >= 2
    )
    look = EngineLook(tone_mapping="none", pre_exposure=1.0, shadows="none", ambient="none", specular=False)
    frames, _ = render_with_engine(spec, 32, 32, 32, look)
    f = frames[0]
    sky = f["object_id"] == 0
    # the sky is dark (a pixel whose centre sees the sky may still have a lamp in its corner)
    assert not sky.any() or np.percentile(luminance(f["reference"][sky]), 90) < 0.02
    direct = luminance(f["engine_linear"] - f["emissive"])
    valid = (f["object_id"] > 0) & (luminance(f["emissive"]) == 0)
    lit = valid & (direct > 0.2 * direct[valid].max())
    unlit = valid & (direct < 0.01 * direct[valid].max())
    assert lit.sum() > 5 and unlit.sum() > 5
    ref = luminance(f["reference"])
    # (the median: a path-traced pixel at 32 spp may catch a firefly or the glow of an emissive object)
    assert np.median(ref[unlit]) < 0.05 * ref[lit].mean()


def test_every_lighting_draws_all_settings_and_light_kinds_reproducibly() -> None:
    specs = [random_lit_scene(i) for i in range(60)]
    assert {li.kind for s in specs for li in s.lights} == {"point", "spot", "area"}
    assert {s.layout for s in specs} >= {"indoor", "plane", "room"}
    assert any(not any(s.sun_irradiance) for s in specs) and any(
        s.sun_irradiance[0] > 1 and not s.lights for s in specs
    )
    assert len({li.color for s in specs for li in s.lights}) > 50  # coloured, not one white
    assert max(len(s.lights) for s in specs) >= 5
    assert json.dumps(random_lit_scene(7).to_json()) == json.dumps(specs[7].to_json())
    # same objects as the house scene of the same seed: the lights are drawn from a second stream
    house = random_scene(7)
    assert [sh.kind for sh in house.shapes if sh.kind not in ("floor", "wall")] == [
        sh.kind for sh in specs[7].shapes if sh.kind not in ("floor", "wall")
    ] or specs[7].layout == "indoor"
    assert set(LIT_SETTINGS) == {"day", "sun_only", "dusk", "night", "indoor", "indoor_open"}


def test_the_corridor_family_is_held_out_and_lit_by_a_row_of_lamps(tmp_path: Path) -> None:
    spec = corridor_scene(1)
    zs = sorted(li.position[2] for li in spec.lights)
    assert len(zs) >= 4 and len({li.kind for li in spec.lights}) == 1
    assert not any(spec.sun_irradiance)
    assert sum(sh.kind == "cylinder" for sh in spec.shapes) >= 6  # thin pillars
    m = generate(tmp_path, 2, (16, 16), spp=2, frames=1, lighting="corridor")
    assert [e["split"] for e in m["scenes"].values()] == ["test", "test"]
    assert m["scenes"]["0"]["spec"]["layout"] == "corridor"


def test_nrb_data_generate_takes_the_lighting_and_engine_image_flags(tmp_path: Path) -> None:
    from neural_renderer.cli import main

    out = tmp_path / "lit"
    argv = ["data", "generate", "--scenes", "1", "--size", "8x8", "--spp", "1", "--frames", "1", "--quiet"]
    assert main([*argv, "--out", str(out), "--lighting", "every", "--engine-image"]) == 0
    entry = load_manifest(out)["scenes"]["0"]
    assert entry["engine"]["tone_mapping"] in ("none", "clamp", "reinhard", "aces", "agx")
    with np.load(out / entry["files"][0]) as z:
        assert z["hudless_color"].shape == (8, 8, 3)
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(out), "--lighting", "disco"])
