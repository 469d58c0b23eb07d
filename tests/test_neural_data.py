"""Synthetic data: G-buffer/reference alignment, motion vectors, the on-disk dataset, style targets,
captures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mitsuba")

from bridge.style.library import DEFAULT_LIBRARY  # noqa: E402
from neural_renderer.data.camera import pixel_centers, project  # noqa: E402
from neural_renderer.data.dataset import generate, iter_frames, load_manifest  # noqa: E402
from neural_renderer.data.render import render_scene  # noqa: E402
from neural_renderer.data.scene import Camera, Material, SceneSpec, Shape, random_scene  # noqa: E402
from neural_renderer.data.styles import all_style_targets, mix_targets, style_target, tonemap  # noqa: E402

EMISSION = (0.7, 0.4, 0.2)


def _emitter_scene() -> SceneSpec:
    """Black world, one emissive sphere and one emissive cube with black BSDFs: every reference pixel is
    emission x (fraction of the pixel square covered by the emitter), up to faint specular glints."""
    black = Material((0.0, 0.0, 0.0), 1.0, 0.0)
    hot = Material((0.0, 0.0, 0.0), 1.0, 0.0, EMISSION)

    def trs(t: tuple[float, float, float], s: float, yaw: float = 0.0) -> list[list[float]]:
        c, sn = math.cos(yaw), math.sin(yaw)
        return [[s * c, 0, s * sn, t[0]], [0, s, 0, t[1]], [-s * sn, 0, s * c, t[2]], [0, 0, 0, 1]]

    shapes = [
        Shape("floor", [[12, 0, 0, 0], [0, 0, 1, 0], [0, -12, 0, 0], [0, 0, 0, 1]], black),
        Shape("sphere", trs((-0.8, 0.7, 0.0), 0.7), hot),
        Shape("cube", trs((0.9, 0.5, 0.2), 0.5, 0.6), hot),
    ]
    cam = [
        Camera((0.3, 1.4, 4.0), (0.0, 0.5, 0.0), (0.0, 1.0, 0.0), math.radians(45)),
        Camera((0.5, 1.45, 3.95), (0.0, 0.5, 0.0), (0.0, 1.0, 0.0), math.radians(45)),
    ]
    return SceneSpec(
        seed=0,
        layout="plane",
        shapes=shapes,
        sun_direction=(0, 1, 0),
        sun_irradiance=(0, 0, 0),
        sky_radiance=(0, 0, 0),
        cameras=cam,
    )


@pytest.fixture(scope="module")
def emitter_frames() -> list[dict[str, np.ndarray]]:
    return render_scene(_emitter_scene(), 64, 48, spp=64)


def test_gbuffers_align_pixel_exactly_with_the_reference(emitter_frames: list[dict[str, np.ndarray]]) -> None:
    f = emitter_frames[0]
    ids = f["object_id"].astype(int)
    hot = np.isin(ids, [2, 3])
    coverage = f["reference"][..., 0] / EMISSION[0]
    pad = np.pad(hot, 1, mode="edge")
    n_hot = sum(
        pad[1 + dy : 1 + dy + hot.shape[0], 1 + dx : 1 + dx + hot.shape[1]]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    interior, exterior = hot & (n_hot == 9), ~hot & (n_hot == 0)
    assert interior.sum() > 200 and exterior.sum() > 1000
    # Pixel squares entirely on an emitter are the emission (plus < 2 % specular glints of the other emitter
    # on the black dielectric); entirely off it (almost) black.
    assert coverage[interior].min() > 0.999 and coverage[interior].max() < 1.02
    assert coverage[exterior].max() < 0.03
    # Boundary pixels: centre on the emitter -> mostly covered; centre off it -> mostly not. A half-pixel
    # shift between the G-buffers and the reference would move both means by ~0.5.
    inside_edge, outside_edge = hot & (n_hot < 9), ~hot & (n_hot > 0)
    assert 0.6 < coverage[inside_edge].mean() < 0.95
    assert 0.05 < coverage[outside_edge].mean() < 0.4
    # Per-pixel G-buffers of the emitters agree with the scene description.
    np.testing.assert_allclose(
        f["emissive"][hot], np.broadcast_to(EMISSION, f["emissive"][hot].shape), atol=1e-6
    )


def test_motion_vectors_point_to_where_the_surface_was_last_frame() -> None:
    spec = random_scene(3, frames=2)
    frames = render_scene(spec, 48, 32, spp=4)
    f1 = frames[1]
    valid = f1["object_id"] > 0
    pix, z = project(spec.cameras[1], f1["position"], 48, 32)
    np.testing.assert_allclose(pix[valid], pixel_centers(48, 32)[valid], atol=2e-3)
    np.testing.assert_allclose(z[valid], f1["linear_depth"][valid], rtol=1e-4)
    prev_pix, _ = project(spec.cameras[0], f1["position"], 48, 32)
    np.testing.assert_allclose(pixel_centers(48, 32) + f1["motion_vectors"], prev_pix, atol=2e-3)
    assert np.abs(f1["motion_vectors"][valid]).max() > 0.1
    assert not frames[0]["motion_vectors"].any()


def test_ids_hardware_depth_and_background_follow_the_protocol(
    emitter_frames: list[dict[str, np.ndarray]],
) -> None:
    f = emitter_frames[0]
    bg = f["object_id"] == 0
    assert bg.any() and f["material_id"].dtype == np.uint16
    assert (f["depth"][bg] == 1.0).all() and (f["depth"][~bg] < 1.0).all()
    assert not f["normals"][bg].any()
    np.testing.assert_allclose(np.linalg.norm(f["normals"][~bg], axis=-1), 1.0, atol=1e-3)
    # sphere and cube share one material: same material id, different object ids
    assert np.unique(f["material_id"][np.isin(f["object_id"], [2, 3])]).size == 1


def test_dataset_is_resumable_deterministic_and_holds_out_scenes(tmp_path: Path) -> None:
    ticks: list[int] = []
    generate(tmp_path, 3, (16, 16), spp=2, holdout_every=3, progress=lambda d, n: ticks.append(d))
    assert ticks == [1, 2, 3]
    first = (tmp_path / "scene_00000_f0.npz").stat().st_mtime_ns
    m = generate(tmp_path, 4, (16, 16), spp=2, holdout_every=3)
    assert (tmp_path / "scene_00000_f0.npz").stat().st_mtime_ns == first  # not re-rendered
    assert sorted(m["scenes"], key=int) == ["0", "1", "2", "3"]
    assert [m["scenes"][k]["split"] for k in ("0", "1", "2", "3")] == ["train", "train", "test", "train"]
    assert [fr[0].scene for fr in iter_frames(tmp_path, "test")] == [2]
    # every frame carries its scene's lights as the constants an engine sends with its G-buffers
    spec = m["scenes"]["2"]["spec"]
    arrays = next(iter_frames(tmp_path, "test"))[0].arrays
    np.testing.assert_allclose(arrays["x_sun_direction"], spec["sun_direction"], rtol=1e-6)
    np.testing.assert_allclose(arrays["x_sun_irradiance"], spec["sun_irradiance"], rtol=1e-6)
    np.testing.assert_allclose(arrays["x_sky_radiance"], spec["sky_radiance"], rtol=1e-6)
    assert json.loads((tmp_path / "manifest.json").read_text()) == load_manifest(tmp_path)
    with pytest.raises(ValueError, match="refusing to resume"):
        generate(tmp_path, 4, (32, 32), spp=2, holdout_every=3)
    other = tmp_path / "again"
    generate(other, 1, (16, 16), spp=2, holdout_every=3)
    with np.load(tmp_path / "scene_00000_f1.npz") as a, np.load(other / "scene_00000_f1.npz") as b:
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_worker_processes_render_the_same_dataset_as_one_process(tmp_path: Path) -> None:
    """``nrb data generate --workers N`` (what a many-core machine uses) must not change a single pixel, and
    the manifest lists every scene in order whatever order the workers finished in."""
    ticks: list[int] = []
    one = generate(tmp_path / "one", 4, (16, 16), spp=2, holdout_every=3)
    many = generate(
        tmp_path / "many",
        4,
        (16, 16),
        spp=2,
        holdout_every=3,
        workers=2,
        progress=lambda d, n: ticks.append(d),
    )
    assert list(many["scenes"]) == ["0", "1", "2", "3"]
    assert ticks[-1] == 4 and ticks == sorted(ticks)
    for k in one["scenes"]:
        assert many["scenes"][k]["files"] == one["scenes"][k]["files"]
        assert many["scenes"][k]["split"] == one["scenes"][k]["split"]
        for fname in one["scenes"][k]["files"]:
            with np.load(tmp_path / "one" / fname) as a, np.load(tmp_path / "many" / fname) as b:
                for name in a.files:
                    np.testing.assert_array_equal(a[name], b[name], err_msg=f"{fname}:{name}")


def _frame_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(1, 3, 16, 16, generator=g), dim=1)
    return {
        "reference": torch.rand(1, 3, 16, 16, generator=g) * 2,
        "normals": n,
        "linear_depth": 1 + torch.rand(1, 1, 16, 16, generator=g),
        "emissive": torch.zeros(1, 3, 16, 16),
        "valid": torch.ones(1, 1, 16, 16, dtype=torch.bool),
    }


def test_every_style_has_a_deterministic_target_in_display_range() -> None:
    t = _frame_tensors()
    a = all_style_targets(**t)
    b = all_style_targets(**t)
    assert a.shape == (1, len(DEFAULT_LIBRARY), 3, 16, 16)
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    for i, name in enumerate(DEFAULT_LIBRARY.names):
        if name in ("identity", "photoreal"):
            assert torch.equal(a[0, i], tonemap(t["reference"])[0])
        else:
            assert not torch.allclose(a[0, i], tonemap(t["reference"])[0], atol=1e-2), name
    noir = style_target(DEFAULT_LIBRARY["noir"], **t)
    assert torch.allclose(noir[:, 0], noir[:, 1], atol=2e-2)  # (almost) grey: tint (0.95, 0.97, 1) remains


def test_a_style_mix_is_the_per_pixel_mix_of_style_targets() -> None:
    t = _frame_tensors()
    targets = all_style_targets(**t)
    w = torch.zeros(1, len(DEFAULT_LIBRARY), 16, 16)
    w[:, DEFAULT_LIBRARY.index("photoreal"), :, :8] = 1.0
    w[:, DEFAULT_LIBRARY.index("toon"), :, 8:] = 0.25
    w[:, DEFAULT_LIBRARY.index("noir"), :, 8:] = 0.75
    mixed = mix_targets(targets, w)
    assert torch.allclose(mixed[..., :8], targets[:, 1, :, :, :8])
    assert torch.allclose(mixed[..., 8:], 0.25 * targets[:, 2, ..., 8:] + 0.75 * targets[:, 3, ..., 8:])
