"""The network: shapes, style conditioning, temporal reprojection, cost accounting, ONNX export and the
renderer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.renderer import RenderInputs, load_renderer
from bridge.style.library import DEFAULT_LIBRARY
from neural_renderer.export import PARITY_TOLERANCE, FloatGraph, export_onnx, input_names, parity
from neural_renderer.models.features import GBUFFER_INPUTS, GBuffers, Reproject
from neural_renderer.models.net import NetConfig, NeuralRendererNet, count_macs, example_inputs

torch.set_num_threads(2)
S = len(DEFAULT_LIBRARY)
WEIGHTS = Path(__file__).resolve().parents[1] / "neural_renderer" / "weights"


def _net(upscale: int = 1, seed: int = 0) -> NeuralRendererNet:
    torch.manual_seed(seed)
    net = NeuralRendererNet(NetConfig(styles=S, width=8, embed=4, upscale=upscale)).eval()
    with torch.no_grad():  # FiLM starts as the identity; randomise it so style conditioning is observable
        for name, p in net.named_parameters():
            if "to_gb" in name:
                p.normal_(0, 0.3)
    return net


@pytest.mark.parametrize("upscale", [1, 2])
def test_output_is_display_rgb_at_input_size_times_upscale(upscale: int) -> None:
    net = _net(upscale)
    a = example_inputs(S, 24, 40, batch=2)
    out = net(GBuffers.of(a), a[6])
    assert out.shape == (2, 3, 24 * upscale, 40 * upscale)
    assert out.min() >= 0 and out.max() <= 1
    t = example_inputs(S, 24, 40, batch=2, upscale=upscale, temporal=True)
    out_t = net.forward_temporal(GBuffers.of(t), *t[6:10])
    assert out_t.shape == out.shape


def test_styles_mix_per_pixel_and_interpolate_smoothly() -> None:
    net = _net()
    args = list(example_inputs(S, 32, 32))
    outs = []
    for t in np.linspace(0, 1, 11):
        smap = torch.zeros(1, S, 32, 32)
        smap[:, 1], smap[:, 3] = 1 - t, t
        with torch.no_grad():
            outs.append(net(GBuffers.of(args), smap))
    steps = [float((b - a).abs().mean()) for a, b in zip(outs[:-1], outs[1:], strict=True)]
    total = float((outs[-1] - outs[0]).abs().mean())
    assert total > 1e-3  # the style changes the image
    assert max(steps) < 0.35 * total  # ... gradually: no step of 10 % jumps more than a third of the way
    # per-pixel conditioning: a style map that differs on the left half changes the left half most
    smap = torch.zeros(1, S, 32, 32)
    smap[:, 1] = 1
    smap2 = smap.clone()
    smap2[:, :, :, :16] = 0
    smap2[:, 3, :, :16] = 1
    with torch.no_grad():
        d = (net(GBuffers.of(args), smap2) - net(GBuffers.of(args), smap)).abs().mean((0, 1, 2))
    assert d[:12].mean() > 5 * d[20:].mean()


def test_reprojection_follows_motion_vectors_and_masks_disocclusions() -> None:
    rp = Reproject()
    prev = torch.rand(1, 3, 8, 10)
    depth = torch.full((1, 1, 8, 10), 4.0)
    still = rp(prev, depth, torch.zeros(1, 2, 8, 10), depth)
    assert torch.allclose(still[:, :3], prev, atol=1e-6) and bool((still[:, 3] == 1).all())
    mv = torch.zeros(1, 2, 8, 10)
    mv[:, 0] = 1.0  # everything was one pixel to the right last frame
    moved = rp(prev, depth, mv, depth)
    assert torch.allclose(moved[:, :3, :, :-1], prev[..., 1:], atol=1e-6)
    assert bool((moved[:, 3, :, -1] == 0).all())  # came from off screen
    occluded = depth.clone()
    occluded[..., :4] = 2.0  # now a nearer surface covers the left part
    m = rp(prev, depth, torch.zeros(1, 2, 8, 10), occluded)
    assert bool((m[:, 3, :, :4] == 0).all()) and bool((m[:, 3, :, 4:] == 1).all())
    assert not rp(prev, torch.zeros_like(depth), torch.zeros(1, 2, 8, 10), depth).any()  # no history


def test_multiply_adds_are_counted_from_the_convolutions_that_run() -> None:
    net = _net()
    w, s = 8, S
    w1, w2 = w * 3 // 2, w * 2
    h, wd = 32, 48
    p2, p4, p8 = h * wd // 4, h * wd // 16, h * wd // 64
    convs = (
        72 * w * 9 * p2
        + w * w1 * 9 * p4
        + w1 * w2 * 9 * p8
        + 2 * 2 * w2 * w2 * 9 * p8
        + (w2 + w1) * w1 * 9 * p4
        + (w1 + w) * w * 9 * p2
        + (w + 4 * s + 72) * w * p2
        + w * 12 * 9 * p2
    )
    emb = s * 4 * (p2 + p4 + p8)
    film = 4 * 2 * (w * p2 * 2 + w1 * p4 * 2 + w2 * p8 * (1 + 2))
    assert count_macs(net, h, wd) == convs + emb + film


def test_onnx_export_has_protocol_inputs_dynamic_size_and_matches_torch(tmp_path: Path) -> None:
    import onnx

    net = _net()
    paths = export_onnx(net, tmp_path / "m.onnx", temporal=True)
    model = onnx.load(str(paths[0]))
    names = [i.name for i in model.graph.input]
    assert names == [n for n, _ in GBUFFER_INPUTS] + ["style_map"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param  # dynamic H and W
    assert (
        parity(FloatGraph(net), paths[0], input_names(S, False), sizes=((27, 45), (64, 32)))
        < PARITY_TOLERANCE
    )
    # the server's generic ONNX renderer runs it as is
    r = load_renderer(str(paths[0]))
    inputs = _render_inputs(20, 28)
    img = r.render(inputs, _style_map(20, 28))
    assert img.shape == (20, 28, 3) and img.dtype == np.float32 and np.isfinite(img).all()


def _render_inputs(h: int, w: int, seed: int = 0) -> RenderInputs:
    rng = np.random.default_rng(seed)
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    arrays = {
        "albedo": ("rgba8_srgb", rng.integers(0, 255, (h, w, 4), dtype=np.uint8)),
        "normals": ("rgba16f", np.concatenate([n, np.zeros((h, w, 1), np.float32)], -1).astype(np.float16)),
        "linear_depth": ("r32f", rng.uniform(1, 5, (h, w, 1)).astype(np.float32)),
        "roughness": ("r8", rng.integers(0, 255, (h, w, 1), dtype=np.uint8)),
        "metallic": ("r8", np.zeros((h, w, 1), np.uint8)),
        "emissive": ("rgba16f", np.zeros((h, w, 4), np.float16)),
        "motion_vectors": ("rg16f", np.zeros((h, w, 2), np.float16)),
    }
    return RenderInputs.from_arrays(arrays)


def _style_map(h: int, w: int, style: str = "photoreal") -> np.ndarray:
    m = np.zeros((h, w, S), np.float32)
    m[..., DEFAULT_LIBRARY.index(style)] = 1
    return m


def test_shipped_model_is_small_and_renders_through_the_neural_renderer() -> None:
    onnx_path, pt_path = WEIGHTS / "default_temporal.onnx", WEIGHTS / "default.pt"
    assert onnx_path.is_file() and (WEIGHTS / "default.onnx").is_file() and pt_path.is_file()
    total = sum(p.stat().st_size for p in WEIGHTS.iterdir() if p.is_file())
    assert total < 10 * 2**20  # 1x fp32 (single frame, temporal), its int8 copy, the 2x model, checkpoints
    r = load_renderer("bridge.renderers.neural:factory")
    assert r.check_offer({"albedo": "rgba8_srgb", "normals": "rgba16f", "linear_depth": "r32f"}) is None
    assert r.check_offer({"albedo": "rgba8_srgb"}) is not None
    first = r.render(_render_inputs(36, 52), _style_map(36, 52))
    assert first.shape == (36, 52, 4) and first.dtype == np.uint8
    # second frame, same G-buffers, zero motion: history is used and the image stays put
    second = r.render(_render_inputs(36, 52), _style_map(36, 52))
    assert np.abs(second.astype(int) - first.astype(int)).mean() < 8
    r.reset()
    assert r._prev is None  # noqa: SLF001 - reset forgets history
    # the shipped model takes the engine's lights; the generic ONNX renderer runs it too, given every input
    assert r.house_lighting is not None  # type: ignore[attr-defined]
    generic = load_renderer(str(WEIGHTS / "default.onnx"))
    lit = _with(_render_inputs(36, 52), _sun((0.45, 0.8, 0.4)))
    assert {"x_sun_direction", "x_sun_irradiance", "x_sky_radiance"} <= {b.name for b in generic.required()}
    img = generic.render(lit, _style_map(36, 52))
    assert img.shape == (36, 52, 3) and np.isfinite(img).all()


def test_albedo_modulated_head_stays_in_display_range_and_exports(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = NeuralRendererNet(NetConfig(styles=S, width=8, embed=4, modulate=True)).eval()
    with torch.no_grad():
        for p in net.head.parameters():
            p.normal_(0, 2.0)  # push the gain and offset far out: the output must still be clamped
    args = example_inputs(S, 24, 40, batch=2)
    out = net(GBuffers.of(args), args[6])
    assert out.shape == (2, 3, 24, 40) and out.min() >= 0 and out.max() <= 1
    # the clamp lets gradients through (a pixel that overshoots can come back)
    x = args[0].clone().requires_grad_(True)
    net(GBuffers(x, *args[1:6]), args[6]).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for path in export_onnx(net, tmp_path / "mod.onnx", temporal=True):  # parity-checked against torch
        assert path.is_file()


def test_a_model_trained_on_another_style_library_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """The server's library grew a style (or the model is older): rendering must fail loudly, which the server
    turns into RENDER_FAILED (the engine keeps its own image), never read weights as the wrong styles."""
    from bridge.renderers.neural import NeuralRenderer

    net = NeuralRendererNet(NetConfig(styles=S - 1, width=8, embed=4)).eval()
    (path,) = export_onnx(net, tmp_path / "old.onnx")
    r = NeuralRenderer(model=path)
    assert r.styles == S - 1
    with pytest.raises(ValueError, match=f"trained on {S - 1} styles .* has {S}"):
        r.render(_render_inputs(16, 16), _style_map(16, 16))


def _lighting_net() -> NeuralRendererNet:
    torch.manual_seed(0)
    net = NeuralRendererNet(NetConfig(styles=S, width=8, embed=4, modulate=True, lighting=True)).eval()
    with torch.no_grad():
        for p in net.head.parameters():
            p.normal_(0, 0.3)  # a head that passes more than the albedo through, so the lights show
    return net


def _sun(
    direction: object, irradiance: object = (2.3, 2.23, 2.07), sky: object = (0.26, 0.31, 0.42)
) -> dict[str, tuple[str, np.ndarray]]:
    def c(v: object) -> np.ndarray:
        return np.array([[[*np.asarray(v, np.float32)[:3], 0.0]]], np.float32)

    return {
        "x_sun_direction": ("rgba32f", c(direction)),
        "x_sun_irradiance": ("rgba32f", c(irradiance)),
        "x_sky_radiance": ("rgba32f", c(sky)),
    }


def _with(inputs: RenderInputs, constants: dict[str, tuple[str, np.ndarray]]) -> RenderInputs:
    from bridge.protocol import Buffer

    bufs = dict(inputs.buffers) | {n: Buffer.from_array(n, f, a) for n, (f, a) in constants.items()}
    return RenderInputs(bufs, size=inputs.size, camera=inputs.camera)


def test_widening_for_lighting_keeps_the_image_until_training_moves_the_new_weights() -> None:
    from neural_renderer.models.net import widen_for_lighting

    net = _net()
    wide = widen_for_lighting(net).eval()
    assert wide.config.lighting and not net.config.lighting
    args = example_inputs(S, 32, 40, lighting=True)
    with torch.no_grad():
        g = GBuffers.of(args)
        assert torch.equal(net(g, args[6]), wide(g, args[6], lighting=torch.cat(args[7:], 1)))


def test_a_lighting_model_exports_the_lighting_inputs_and_the_renderer_feeds_them(tmp_path: Path) -> None:
    """The engine's sun reaches the network through the 1x1 lighting constants; a frame without them renders
    under the house lighting recorded in the model."""
    import onnx

    from bridge.renderers.neural import NeuralRenderer
    from neural_renderer.models.features import house_lighting

    net = _lighting_net()
    paths = export_onnx(net, tmp_path / "lit.onnx", temporal=True)  # parity-checked with random lighting
    names = [i.name for i in onnx.load(str(paths[1])).graph.input]
    assert names[-3:] == ["x_sun_direction", "x_sun_irradiance", "x_sky_radiance"]
    r = NeuralRenderer(model=paths[1], temporal=False)
    assert {"x_sun_direction", "x_sun_irradiance", "x_sky_radiance"} <= {b.name for b in r.optional()}
    base = _render_inputs(24, 32)
    house = house_lighting().view(9).numpy()
    d0 = house[:3]
    plain = r.render(base, _style_map(24, 32)).astype(int)
    as_house = r.render(_with(base, _sun(d0, house[3:6], house[6:9])), _style_map(24, 32)).astype(int)
    other_sun = r.render(_with(base, _sun((0.0, 0.3, -1.0), house[3:6], house[6:9])), _style_map(24, 32))
    brighter = r.render(_with(base, _sun(d0, house[3:6] * 1.15, house[6:9])), _style_map(24, 32))
    assert np.abs(as_house - plain).max() <= 1  # no constants = the house lighting
    assert np.abs(other_sun.astype(int) - plain).mean() > 0.5
    assert np.abs(brighter.astype(int) - plain).mean() > 0.5
    with pytest.raises(ValueError, match="x_sun_direction must be a 1x1 buffer"):
        bad = _sun(d0)
        bad["x_sun_direction"] = ("rgba32f", np.zeros((2, 1, 4), np.float32))
        r.render(_with(base, bad), _style_map(24, 32))
    with pytest.raises(ValueError, match="non-finite"):
        r.render(_with(base, _sun((float("nan"), 1.0, 0.0))), _style_map(24, 32))
