"""The exported inference graph of a network with the engine image and style parameters (issues 15 + 17) runs
every convolution in ONNX Runtime's blocked NCHWc layout, as the shipped graph does: its 31 input channels and
19 parameter features, padded with zero channels by ``DeployNet``, no longer leave ``enc0`` (a quarter of the
frame's work), ``fuse`` and the parameter embedding on the slow unblocked kernels (1.7x the shipped graph's time
per frame at 640x360 before the padding, measured with ``nrb bench renderer``'s frames)."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch

from bridge.style.library import DEFAULT_LIBRARY, GRADING_START
from neural_renderer.deploy import CHANNEL_BLOCK, DeployNet
from neural_renderer.export import export_onnx
from neural_renderer.models.features import GBuffers
from neural_renderer.models.net import NetConfig, NeuralRendererNet, example_inputs, params_from_styles


def _convs_after_ort(path: Path, tmp: Path) -> dict[str, str]:
    """Conv node name -> its domain in the graph ONNX Runtime actually runs on this CPU."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp / "optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp / "optimized.onnx")).graph
    return {n.name: n.domain for n in graph.node if n.op_type in ("Conv", "FusedConv")}


def _params_engine_net() -> NeuralRendererNet:
    torch.manual_seed(0)
    styles = NeuralRendererNet(NetConfig(styles=len(DEFAULT_LIBRARY), width=16, modulate=True, lighting=True))
    table = torch.from_numpy(DEFAULT_LIBRARY.table()[:, :GRADING_START].copy()).float()
    net = params_from_styles(styles, table).eval()
    with torch.no_grad():  # every weight moved, the engine's and the FiLMs' included (they start at zero)
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def test_every_convolution_of_the_engine_and_parameter_graph_runs_blocked(tmp_path: Path) -> None:
    paths = export_onnx(_params_engine_net(), tmp_path / "pe.onnx", temporal=True)  # parity-checked
    convs = _convs_after_ort(paths[1], tmp_path)
    if not any(d == "com.microsoft.nchwc" for d in convs.values()):
        pytest.skip("ONNX Runtime uses no blocked layout on this CPU")
    assert {n: d for n, d in convs.items() if d != "com.microsoft.nchwc"} == {}


def test_the_zero_padded_inference_network_computes_what_the_trained_one_does() -> None:
    net = _params_engine_net()
    deploy = DeployNet(net)
    assert deploy.x_pad > 0 and deploy.s_pad > 0  # 31 input channels, 19 parameter features: both padded
    assert (31 + deploy.x_pad) % CHANNEL_BLOCK == 0 and (19 + deploy.s_pad) % CHANNEL_BLOCK == 0
    args = example_inputs(len(DEFAULT_LIBRARY), 24, 40, lighting=True, params=True, engine=True, seed=5)
    g, light = GBuffers.of(args), torch.cat(args[7:10], 1)
    with torch.no_grad():
        for engine in (None, args[10]):
            assert (deploy(g, args[6], lighting=light, engine=engine)
                    - net(g, args[6], lighting=light, engine=engine)).abs().max() < 1e-5
