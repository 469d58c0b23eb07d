"""The neural renderer's fast CPU path: the rearranged inference network, the wire-format graph the renderer feeds
with the frame's own bytes, and the int8 copy with its FLIP guard (issue 14, items 4 and 5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.protocol import Buffer, Camera
from bridge.renderer import RenderInputs
from bridge.renderers.neural import INT8_MODEL, NeuralRenderer, default_model, int8_copy
from bridge.style.library import DEFAULT_LIBRARY
from neural_renderer.deploy import DeployNet
from neural_renderer.export import export_onnx
from neural_renderer.models.features import GBuffers
from neural_renderer.models.net import NetConfig, NeuralRendererNet, example_inputs

torch.set_num_threads(2)
S = len(DEFAULT_LIBRARY)
WEIGHTS = Path(__file__).resolve().parents[1] / "neural_renderer" / "weights"


def _net(upscale: int = 1, lighting: bool = True, modulate: bool = True, seed: int = 0) -> NeuralRendererNet:
    torch.manual_seed(seed)
    cfg = NetConfig(styles=S, width=8, embed=4, upscale=upscale, modulate=modulate, lighting=lighting)
    net = NeuralRendererNet(cfg).eval()
    with torch.no_grad():  # FiLM and the head start near the identity; randomise them so every path shows
        for name, p in net.named_parameters():
            if "to_gb" in name or "head" in name:
                p.normal_(0, 0.3)
    return net


@pytest.mark.parametrize(("upscale", "lighting", "modulate"), [(1, True, True), (2, True, True), (1, False, False)])
def test_the_inference_network_computes_what_the_trained_network_computes(
    upscale: int, lighting: bool, modulate: bool
) -> None:
    net = _net(upscale, lighting, modulate)
    fast = DeployNet(net).eval()
    args = example_inputs(S, 24, 40, upscale=upscale, temporal=True, seed=3, lighting=lighting)
    light = torch.cat(args[10:], 1) if lighting else None
    with torch.no_grad():
        g = GBuffers.of(args)
        ref = net(g, args[6], lighting=light)
        got = fast(g, args[6], lighting=light)
        ref_t = net.forward_temporal(g, *args[6:10], light)
        got_t = fast.forward_temporal(g, *args[6:10], light)
    assert got.shape == ref.shape == (1, 3, 24 * upscale, 40 * upscale)
    assert float((got - ref).abs().max()) < 1e-5
    assert float((got_t - ref_t).abs().max()) < 1e-5


def test_no_channel_of_the_first_convolutions_input_widens_its_int8_range() -> None:
    """The int8 graph quantizes the full-resolution input of ``enc0`` with one scale for all its channels: the
    local depth contrast (x4 in the trained features, up to +-6 on training frames, +-7 here) enters scaled to
    the others' range, the scale folded into the weights (the network's output is unchanged: the test above)."""
    net = _net()
    fast = DeployNet(net).eval()
    seen: list[torch.Tensor] = []
    fast.enc0.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    args = example_inputs(S, 64, 64, temporal=True, seed=3, lighting=True)
    with torch.no_grad():
        fast.forward_temporal(GBuffers.of(args), *args[6:10], torch.cat(args[10:], 1))
        plain = net.features(GBuffers.of(args))
    assert float(plain[:, 7].abs().max()) > 4.0  # the trained feature, unscaled
    peak = seen[0].abs().amax((0, 2, 3))
    assert float(peak.max()) <= 2.0, peak


def _inputs(h: int, w: int, seed: int = 0, **extra: tuple[str, np.ndarray]) -> RenderInputs:
    rng = np.random.default_rng(seed)
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    arrays = {
        "albedo": ("rgba8_srgb", rng.integers(0, 255, (h, w, 4), dtype=np.uint8)),
        "normals": ("rgba16f", np.concatenate([n, np.zeros((h, w, 1), np.float32)], -1).astype(np.float16)),
        "linear_depth": ("r32f", rng.uniform(1, 5, (h, w, 1)).astype(np.float32)),
        "roughness": ("r8", rng.integers(0, 255, (h, w, 1), dtype=np.uint8)),
        "metallic": ("r8", (rng.random((h, w, 1)) > 0.7).astype(np.uint8) * 255),
        "emissive": ("rgba16f", np.zeros((h, w, 4), np.float16)),
        "motion_vectors": ("rg16f", np.zeros((h, w, 2), np.float16)),
        **extra,
    }
    return RenderInputs.from_arrays(arrays)


def _style_map(h: int, w: int, style: str = "toon") -> np.ndarray:
    m = np.zeros((h, w, S), np.float32)
    m[..., DEFAULT_LIBRARY.index(style)] = 0.7
    m[..., DEFAULT_LIBRARY.index("photoreal")] += 0.3
    return m


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small lighting model exported as the shipped one is (single-frame float graph + wire temporal graph),
    both parity-checked against PyTorch by the export itself."""
    single, temporal = export_onnx(_net(), tmp_path_factory.mktemp("wire") / "m.onnx", temporal=True)
    return single, temporal


def test_the_temporal_graph_takes_the_engines_wire_formats_and_returns_packed_rgba(exported: tuple[Path, Path]) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(exported[1]), providers=["CPUExecutionProvider"])
    types = {i.name: (i.type, i.shape[-1]) for i in sess.get_inputs()}
    assert types["albedo"] == ("tensor(uint8)", 4)  # rgba8_srgb
    assert types["normals"] == ("tensor(float16)", 4)  # rgba16f
    assert types["roughness"] == types["metallic"] == ("tensor(uint8)", 1)  # r8
    assert types["motion_vectors"] == ("tensor(float16)", 2)  # rg16f
    assert types["linear_depth"] == ("tensor(float)", 1)  # r32f
    assert [o.type for o in sess.get_outputs()] == ["tensor(uint8)", "tensor(float)"]
    r = NeuralRenderer(model=exported[1])
    assert r.wire and r.styles == S
    img = r.render(_inputs(20, 28), _style_map(20, 28))
    assert img.shape == (20, 28, 4) and img.dtype == np.uint8 and bool((img[..., 3] == 255).all())


def test_the_wire_graph_renders_what_the_float_graph_renders(exported: tuple[Path, Path]) -> None:
    """Same frame through the float single-frame graph (converted in numpy) and the wire graph (converted in the
    graph): the same image, to one code value."""
    single = NeuralRenderer(model=exported[0])
    wire = NeuralRenderer(model=exported[1], temporal=False)
    for seed, (h, w) in enumerate(((20, 28), (45, 80))):
        a = single.render(_inputs(h, w, seed), _style_map(h, w)).astype(int)
        b = wire.render(_inputs(h, w, seed), _style_map(h, w)).astype(int)
        assert np.abs(a - b).max() <= 1 and np.abs(a - b).mean() < 0.01


def test_the_wire_renderer_feeds_the_frames_own_bytes_without_copying(exported: tuple[Path, Path]) -> None:
    r = NeuralRenderer(model=exported[1])
    inputs = _inputs(20, 28)
    feed = r.feed(inputs, _style_map(20, 28))
    for name in ("albedo", "normals", "linear_depth", "roughness", "metallic", "emissive", "motion_vectors"):
        assert np.shares_memory(feed[name], inputs.raw(name)), name
    r.render(inputs, _style_map(20, 28))
    assert r._prev is not None  # noqa: SLF001 - history kept ...
    assert not np.shares_memory(r._prev[1], inputs.raw("linear_depth"))  # noqa: SLF001 - ... as a copy, not a view
    # of a shared-memory slot that the next frame overwrites


def test_buffers_in_other_formats_are_converted_to_what_the_graph_takes(exported: tuple[Path, Path]) -> None:
    """An engine that sends float albedo, packed normal+roughness and raw depth with a camera gets the same image
    as one sending the usual formats."""
    h, w = 24, 32
    usual = _inputs(h, w)
    lin_albedo = usual["albedo"].astype(np.float16)  # linear, as rgba16f
    normal_roughness = np.concatenate([usual["normals"][..., :3], usual["roughness"]], -1).astype(np.float16)
    near, far = 0.1, 100.0
    z = usual["linear_depth"][..., 0].astype(np.float64)
    depth = ((far - near * far / z) / (far - near)).astype(np.float32)[..., None]  # D3D-style [0, 1]
    bufs = {n: b for n, b in usual.buffers.items() if n not in ("albedo", "normals", "roughness", "linear_depth")}
    bufs |= {
        "albedo": Buffer.from_array("albedo", "rgba16f", lin_albedo),
        "normal_roughness": Buffer.from_array("normal_roughness", "rgba16f", normal_roughness),
        "depth": Buffer.from_array("depth", "r32f", depth),
    }
    other = RenderInputs(bufs, size=(w, h), camera=Camera(near=near, far=far))
    r = NeuralRenderer(model=exported[1], temporal=False)
    a = r.render(usual, _style_map(h, w)).astype(int)
    b = r.render(other, _style_map(h, w)).astype(int)
    assert np.abs(a - b).mean() < 0.5 and np.abs(a - b).max() <= 8  # float16 depth/roughness rounding only


def test_an_upscaling_model_exports_a_wire_graph_at_twice_the_size(tmp_path: Path) -> None:
    _, temporal = export_onnx(_net(upscale=2), tmp_path / "up.onnx", temporal=True)
    r = NeuralRenderer(model=temporal)
    assert r.upscale == 2 and r.output_size((28, 20), (56, 40)) == (56, 40)
    first = r.render(_inputs(20, 28), _style_map(20, 28))
    second = r.render(_inputs(20, 28), _style_map(20, 28))  # history at the output size is fed back
    assert first.shape == second.shape == (40, 56, 4)


def test_precision_option_picks_the_shipped_graph() -> None:
    assert default_model("fp32") == WEIGHTS / "default_temporal.onnx"
    with pytest.raises(ValueError, match="precision must be one of"):
        default_model("fp8")
    if INT8_MODEL.is_file():
        assert default_model("int8") == INT8_MODEL
        assert NeuralRenderer(precision="int8").path == INT8_MODEL
    assert default_model("auto") in (INT8_MODEL, WEIGHTS / "default_temporal.onnx")
    assert default_model("auto", gpu=True) == WEIGHTS / "default_temporal.onnx"  # int8 was timed on a CPU


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few path-traced scenes (training and held-out splits) for calibration and the guard."""
    from neural_renderer.data.dataset import generate

    root = tmp_path_factory.mktemp("quant") / "data"
    generate(root, 4, (48, 32), spp=8, frames=2, holdout_every=2)
    return root


def test_quantize_refuses_to_write_a_model_that_fails_its_flip_guard(
    exported: tuple[Path, Path], tiny_data: Path, tmp_path: Path
) -> None:
    from neural_renderer.quantize import QuantizationRejected, quantize

    out = tmp_path / "m_temporal_int8.onnx"
    with pytest.raises(QuantizationRejected, match="was not written"):  # an unreachable guard: int8 half of fp32
        quantize(exported[1], out, calibration=tiny_data, heldout=tiny_data, max_increase=-0.5,
                 candidates=("all",), log=lambda *_: None)
    assert not out.exists()


def test_quantize_writes_an_int8_wire_graph_with_its_guard_and_the_renderer_runs_it(
    exported: tuple[Path, Path], tiny_data: Path, tmp_path: Path
) -> None:
    import hashlib

    import onnx

    from neural_renderer.quantize import quantize

    out = tmp_path / "m_temporal_int8.onnx"
    report = quantize(exported[1], out, calibration=tiny_data, heldout=tiny_data, max_increase=1.0,
                      candidates=("fp32_head",), log=lambda *_: None)
    assert report["chosen"] == "fp32_head" and out.is_file()
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["nrb_inputs"] == "wire" and meta["nrb_styles"] == str(S)  # the renderer's metadata, copied
    assert meta["nrb_source_sha256"] == hashlib.sha256(exported[1].read_bytes()).hexdigest()
    assert json_loads(meta["nrb_flip_guard"])["frames"] == report["guard_frames"] > 0
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    heads = [n for n in model.graph.node if n.op_type == "Conv" and "/head/" in n.name]
    assert heads and all(not i.endswith("_DequantizeLinear_Output") for i in heads[0].input)  # head kept fp32
    r = NeuralRenderer(model=out)
    img = r.render(_inputs(20, 28), _style_map(20, 28))
    assert img.shape == (20, 28, 4) and img.dtype == np.uint8

    # Any model with its int8 copy next to it (where quantize puts it by default), e.g. the demo's 2x model: a
    # named model runs as named unless a precision is asked for; int8 only from the fp32 graph it was made from.
    named = tmp_path / "named" / exported[1].name
    named.parent.mkdir()
    shutil.copy(exported[1], named)
    shutil.copy(out, int8_copy(named))
    assert NeuralRenderer(model=named).path == named
    assert NeuralRenderer(model=named, precision="int8").path == int8_copy(named)
    faster = float(meta["nrb_int8_time_ratio"]) < 1.0
    assert NeuralRenderer(model=named, precision="auto").path == (int8_copy(named) if faster else named)
    shutil.copy(exported[0], named)  # another fp32 graph under the same name: its int8 copy is stale
    with pytest.raises(ValueError, match="quantized from another"):
        NeuralRenderer(model=named, precision="int8")
    assert NeuralRenderer(model=named, precision="auto").path == named


def json_loads(text: str) -> dict[str, object]:
    import json

    out: dict[str, object] = json.loads(text)
    return out


def test_the_shipped_int8_graph_passed_the_flip_guard_on_the_benchmark() -> None:
    """What the quantize step measured on the benchmark's held-out frames (64 frames x 7 styles, 512-spp
    references) is recorded in the shipped int8 graph; it was made from the shipped fp32 graph."""
    import hashlib

    import onnx

    if not INT8_MODEL.is_file():
        pytest.skip("no int8 graph is shipped")
    meta = {p.key: p.value for p in onnx.load(str(INT8_MODEL)).metadata_props}
    guard = json_loads(meta["nrb_flip_guard"])
    assert guard["frames"] == 64
    fp32, int8 = guard["fp32"], guard["int8"]
    assert isinstance(fp32, dict) and isinstance(int8, dict) and set(fp32) == set(DEFAULT_LIBRARY.names)
    assert all(int8[s] <= 1.02 * fp32[s] for s in fp32)
    assert meta["nrb_source_sha256"] == hashlib.sha256((WEIGHTS / "default_temporal.onnx").read_bytes()).hexdigest()


def test_quantize_guards_an_upscaling_model_against_full_resolution_ground_truth(
    tiny_data: Path, tmp_path: Path
) -> None:
    """The 2x model renders subsampled G-buffers; its guard compares with the full-resolution targets."""
    from neural_renderer.quantize import quantize

    _, temporal = export_onnx(_net(upscale=2), tmp_path / "up.onnx", temporal=True)
    out = tmp_path / "up_temporal_int8.onnx"
    report = quantize(temporal, out, calibration=tiny_data, heldout=tiny_data, max_increase=1.0,
                      candidates=("fp32_head",), log=lambda *_: None)
    assert out.is_file() and report["guard_frames"] > 0
    assert NeuralRenderer(model=out).render(_inputs(16, 24), _style_map(16, 24)).shape == (32, 48, 4)


def test_the_fast_path_benchmark_runs_only_the_sizes_asked_for() -> None:
    """``nrb bench renderer --fast-path-only --fast-path-sizes 640x360`` (the issue's target size alone)."""
    from nrb_bench.renderer import parse_sizes

    assert parse_sizes("640x360") == ((640, 360),)
    assert parse_sizes("640x360, 320X180") == ((640, 360), (320, 180))
    for bad in ("640", "640x", "x360", "640x360x2", "4x4", "-640x360"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_sizes(bad)
