"""A minute of training from scratch: the loss falls and the result beats the raster baseline on held-out
scenes; checkpoints resume; engine captures load as training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mitsuba")

from bridge.style.library import DEFAULT_LIBRARY, GRADING_START  # noqa: E402
from neural_renderer.data.dataset import generate  # noqa: E402
from neural_renderer.evaluate import fit_raster, load_paths, one_style_map, psnr, raster  # noqa: E402
from neural_renderer.models.features import GBUFFER_INPUTS, GBuffers  # noqa: E402
from neural_renderer.models.net import load_checkpoint  # noqa: E402
from neural_renderer.train import FrameBank, TrainConfig, load_bank, train  # noqa: E402

PHOTOREAL = DEFAULT_LIBRARY.index("photoreal")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, 12, (64, 64), spp=32, frames=2, holdout_every=6)  # 10 training scenes, 2 held out
    return root


def _photoreal(bank: FrameBank, i: int) -> np.ndarray:
    return bank.frames[i]["targets"][PHOTOREAL].float().permute(1, 2, 0).numpy()


def test_a_short_training_run_lowers_the_loss_and_beats_the_raster_baseline(
    tiny_data: Path, tmp_path: Path
) -> None:
    cfg = TrainConfig(
        data=[tiny_data],
        out=tmp_path / "run",
        steps=2000,  # a step count, not a time budget: the outcome must not depend on how loaded the machine is
        batch=4,
        crop=64,
        width=16,
        lr=3e-3,
        checkpoint_every=10**9,
        eval_every=10**9,
        styles=("photoreal",),
        lighting=True,
    )
    summary = train(cfg, progress=False)
    assert summary["steps"] > 50
    assert summary["final_loss"] < 0.7 * summary["first_loss"]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    net, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    train_frames = [f for p in load_paths(tiny_data, "train") for f in p][:8]
    train_bank = load_bank([tiny_data], "train", 8)
    opts = fit_raster(train_frames, [_photoreal(train_bank, i) for i in range(len(train_frames))])
    held = [f for p in load_paths(tiny_data, "test") for f in p]
    bank = load_bank([tiny_data], "test")
    ours, theirs = [], []
    for i, f in enumerate(held):
        target = _photoreal(bank, i)
        smap = one_style_map(64, 64, "photoreal")
        fr = bank.frames[i]
        g = GBuffers.take({n: fr[n].float()[None] for n, _ in GBUFFER_INPUTS})
        smap_t = torch.from_numpy(smap).permute(2, 0, 1)[None]
        with torch.no_grad():  # both renderers get the scene's lights (render_inputs sends them to the raster)
            out = net(g, smap_t, lighting=fr["lighting"].float()[None])[0].permute(1, 2, 0).numpy()
        ours.append(psnr(target, out))
        theirs.append(psnr(target, raster(f, smap, opts)))
    assert np.mean(ours) > np.mean(theirs), (ours, theirs)


def test_training_resumes_from_its_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        data=[tiny_data],
        out=tmp_path / "run",
        steps=4,
        batch=2,
        crop=32,
        width=8,
        checkpoint_every=2,
        eval_every=2,
        temporal=True,
    )
    first = train(cfg, progress=False)
    assert first["steps"] == 4
    cfg.steps = 6
    again = train(cfg, progress=False)
    assert again["steps"] == 6
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert [s for s, _ in ck["history"]["train"]] == [1, 2, 3, 4, 5, 6]


def test_fine_tuning_starts_from_the_given_checkpoint_and_keeps_its_shape(tiny_data: Path, tmp_path: Path) -> None:
    base = TrainConfig(data=[tiny_data], out=tmp_path / "base", steps=3, batch=2, crop=32, width=8, trunk_blocks=1)
    train(base, progress=False)
    start, _ = load_checkpoint(tmp_path / "base" / "last.pt")
    # width 16 is ignored: the shape is the checkpoint's. lr 0: the weights must come out exactly as they went in.
    tune = TrainConfig(data=[tiny_data], out=tmp_path / "tune", steps=2, batch=2, crop=32, width=16, lr=0.0,
                       init=tmp_path / "base" / "last.pt")
    train(tune, progress=False)
    tuned, ck = load_checkpoint(tmp_path / "tune" / "last.pt")
    assert ck["config"] == start.config.to_dict()
    for (k, a), (_, b) in zip(start.state_dict().items(), tuned.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_fine_tuning_with_lighting_widens_the_network_and_starts_from_its_output(
    tiny_data: Path, tmp_path: Path
) -> None:
    base = TrainConfig(data=[tiny_data], out=tmp_path / "base", steps=3, batch=2, crop=32, width=8, trunk_blocks=1)
    train(base, progress=False)
    start, _ = load_checkpoint(tmp_path / "base" / "last.pt")
    tune = TrainConfig(data=[tiny_data], out=tmp_path / "tune", steps=2, batch=2, crop=32, lr=0.0, lighting=True,
                       init=tmp_path / "base" / "last.pt")
    train(tune, progress=False)
    tuned, ck = load_checkpoint(tmp_path / "tune" / "last.pt")
    assert ck["config"] == start.config.to_dict() | {"lighting": True}
    fr = load_bank([tiny_data], "test").frames[0]
    g = GBuffers.take({n: fr[n].float()[None] for n, _ in GBUFFER_INPUTS})
    smap = torch.from_numpy(one_style_map(64, 64, "photoreal")).permute(2, 0, 1)[None]
    with torch.no_grad():
        before = start(g, smap)
        after = tuned(g, smap, lighting=fr["lighting"].float()[None])
    assert torch.equal(before, after)  # zero weights on the new inputs: the same image until training moves them


def test_fine_tuning_a_styles_model_over_parameters_warm_starts_it_exactly(tiny_data: Path, tmp_path: Path) -> None:
    """``nrb train --init STYLES_MODEL --params --engine``: the run starts from the old network's image on a
    preset map (``params_from_styles``), not from a fresh network."""
    base = TrainConfig(data=[tiny_data], out=tmp_path / "base", steps=3, batch=2, crop=32, width=8, trunk_blocks=1,
                       lighting=True)
    train(base, progress=False)
    start, _ = load_checkpoint(tmp_path / "base" / "last.pt")
    tune = TrainConfig(data=[tiny_data], out=tmp_path / "tune", steps=2, batch=2, crop=32, lr=0.0, lighting=True,
                       params=True, engine=True, init=tmp_path / "base" / "last.pt")
    train(tune, progress=False)
    tuned, ck = load_checkpoint(tmp_path / "tune" / "last.pt")
    assert ck["config"] == start.config.to_dict() | {"params": True, "engine": True}
    fr = load_bank([tiny_data], "test").frames[0]
    g = GBuffers.take({n: fr[n].float()[None] for n, _ in GBUFFER_INPUTS})
    smap = torch.from_numpy(one_style_map(64, 64, "toon")).permute(2, 0, 1)[None]
    table = torch.from_numpy(DEFAULT_LIBRARY.table()[:, :GRADING_START].copy()).float()
    light = fr["lighting"].float()[None]
    with torch.no_grad():
        before = start(g, smap, lighting=light)
        after = tuned(g, torch.einsum("bshw,sp->bphw", smap, table), lighting=light)
    assert (after - before).abs().max() < 1e-4


def test_engine_captures_are_a_training_dataset(tiny_data: Path, tmp_path: Path) -> None:
    from bridge.capture import CaptureWriter
    from bridge.protocol import Frame, encode
    from neural_renderer.data.capture import iter_capture_paths
    from neural_renderer.evaluate import render_inputs

    path = load_paths(tiny_data, "train", 1)[0]
    cap = tmp_path / "game.nrbcap"
    with CaptureWriter(cap) as w:
        for k, f in enumerate(path):
            inputs = render_inputs(f)
            target = (_photoreal(load_bank([tiny_data], "train", 2), k) * 255 + 0.5).astype(np.uint8)
            hud = np.concatenate([target, np.full(target.shape[:2] + (1,), 255, np.uint8)], -1)
            from bridge.protocol import Buffer

            bufs = [*inputs.buffers.values(), Buffer.from_array("hudless_color", "rgba8_srgb", hud)]
            msg = Frame(
                session=1,
                frame=k + 1,
                time_ns=k,
                dt=0.016,
                deadline_ms=50.0,
                buffers=bufs,
                camera=inputs.camera,
            )
            w.frame(1, k + 1, encode(msg), received_ns=k)
    paths = list(iter_capture_paths(cap, split=None))
    assert len(paths) == 1 and len(paths[0]) == len(path)
    got = paths[0][1]
    ref = path[1].arrays
    np.testing.assert_allclose(got["linear_depth"], ref["linear_depth"], rtol=1e-6)
    np.testing.assert_allclose(got["normals"], ref["normals"].astype(np.float32), atol=2e-3)
    np.testing.assert_allclose(got["albedo"], ref["albedo"].astype(np.float32), atol=1e-2)
    np.testing.assert_allclose(got["motion_vectors"], ref["motion_vectors"], atol=1e-5)
    assert got["target"].shape == (64, 64, 3) and 0 <= got["target"].min() and got["target"].max() <= 1
    for name in ("x_sun_direction", "x_sun_irradiance", "x_sky_radiance"):  # the engine's lights come along
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-6)
    bank = FrameBank.from_arrays(paths)
    np.testing.assert_allclose(bank.frames[1]["lighting"].view(9).numpy(), np.concatenate(
        [ref["x_sun_direction"], ref["x_sun_irradiance"], ref["x_sky_radiance"]]), rtol=1e-6)
    assert bank.prev == [-1, 0]
    assert bank.frames[0]["allowed"].tolist() == [
        n in ("identity", "photoreal") for n in DEFAULT_LIBRARY.names
    ]


def test_an_upscaling_model_trains_exports_and_renders_at_twice_the_size(
    tiny_data: Path, tmp_path: Path
) -> None:
    from bridge.renderers.neural import NeuralRenderer
    from neural_renderer.evaluate import render_inputs
    from neural_renderer.export import export_onnx

    cfg = TrainConfig(data=[tiny_data], out=tmp_path / "run", steps=3, batch=2, crop=32, width=8, upscale=2)
    assert train(cfg, progress=False)["config"]["upscale"] == 2
    net, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    paths = export_onnx(net, tmp_path / "up.onnx", temporal=True)
    r = NeuralRenderer(model=paths[1])
    assert r.output_size((64, 48), (128, 96)) == (128, 96)
    frame = load_paths(tiny_data, "test", 1)[0][0]
    for _ in range(2):  # the second frame feeds the 2x history back
        out = r.render(render_inputs(frame), one_style_map(64, 64, "photoreal"))
        assert out.shape == (128, 128, 4)
