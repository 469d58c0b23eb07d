"""The neural renderer on PyTorch (``runtime=torch``, ``neural_renderer/runtime.py``): what a user with
PyTorch but without ``onnxruntime-gpu`` gets. On this CPU-only machine its CPU path is checked against ONNX Runtime
frame by frame (history included), through ``nrb serve`` too; the CUDA path (fp16, CUDA graphs) is what ``auto``
picks on a GPU ONNX Runtime cannot use (tests/test_device_selection.py covers that choice; its speed is in
``python -m nrb_bench.renderer_gpu`` on a GPU machine)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from helpers.serverkit import SIZE, served  # noqa: E402

from bridge.protocol import Buffer, BufferSpec  # noqa: E402
from bridge.renderer import RenderInputs, take_inference_ms  # noqa: E402
from bridge.renderers.neural import DEFAULT_MODEL, NeuralRenderer  # noqa: E402
from bridge.renderers.ort_session import DeviceUnavailableError  # noqa: E402
from bridge.scene import SyntheticScene  # noqa: E402
from neural_renderer.runtime import TorchSession, checkpoint_for  # noqa: E402


def _frames(size: tuple[int, int], n: int) -> list[tuple[dict[str, Buffer], object]]:
    scene = SyntheticScene(*size, animate=True)
    out = []
    for k in range(n):
        bufs, cam = scene.buffers(0.1 * k)
        out.append(({b.name: b for b in bufs}, cam))
    return out


def test_pytorch_renders_the_same_frames_as_onnx_runtime_history_included() -> None:
    """Three frames of a moving camera, each renderer feeding its own output back: every pixel of PyTorch's image
    within one 8-bit step of ONNX Runtime's, and each frame's model run counted as its inference."""
    w, h = 96, 64
    ort_r = NeuralRenderer(runtime="onnxruntime", threads=2)
    torch_r = NeuralRenderer(runtime="torch", threads=2)
    assert isinstance(torch_r.session, TorchSession) and "PyTorchCPU" in torch_r.device_description
    assert torch_r.input_names == ort_r.input_names  # one contract: the graph's
    for bufs, cam in _frames((w, h), 3):
        images = []
        for r in (ort_r, torch_r):
            sm = np.zeros((h, w, r.styles or 1), np.float32)
            sm[..., 0] = 1.0
            take_inference_ms()
            images.append(r.render(RenderInputs(bufs, size=(w, h), camera=cam), sm).astype(int))  # type: ignore[arg-type]
            ms = take_inference_ms()
            assert ms is not None and ms > 0
        assert images[0].shape == images[1].shape == (h, w, 4)
        assert np.abs(images[0] - images[1]).max() <= 1


def test_nrb_serve_renders_with_runtime_torch_and_the_engine_gets_the_onnx_runtime_image(tmp_path: Path) -> None:
    """``nrb serve -o runtime=torch``: a session renders, and its image matches a server on ONNX Runtime to one
    step."""
    from bridge.client import Client

    bufs, cam = _frames(SIZE, 1)[0]
    images = []
    for runtime in ("onnxruntime", "torch"):
        with served(tmp_path, "--renderer", "neural", "-o", f"runtime={runtime}", name=runtime) as srv:
            with Client(srv.endpoint, timeout=60) as c:
                c.hello(SIZE, [BufferSpec(b.name, b.format) for b in bufs.values()])
                res = c.render(list(bufs.values()), camera=cam)  # type: ignore[arg-type]
                assert res.status == "ok" and res.output is not None
                images.append(res.output.array().astype(int))
                c.bye()
    assert np.abs(images[0] - images[1]).max() <= 1


def test_runtime_torch_without_the_checkpoint_or_with_int8_is_a_clear_error(tmp_path: Path) -> None:
    """PyTorch runs the checkpoint a graph was exported from (``NAME.pt`` next to ``NAME_temporal.onnx``): a graph
    copied without it is refused with the path it looked for; the int8 graph is ONNX Runtime's alone; an unknown
    runtime is named as such."""
    alone = tmp_path / "copy_temporal.onnx"
    shutil.copy(DEFAULT_MODEL, alone)
    assert checkpoint_for(alone) == tmp_path / "copy.pt"
    with pytest.raises(DeviceUnavailableError, match="copy.pt"):
        NeuralRenderer(model=alone, runtime="torch")
    with pytest.raises(ValueError, match="precision=int8"):
        NeuralRenderer(runtime="torch", precision="int8")
    with pytest.raises(ValueError, match="runtime must be one of"):
        NeuralRenderer(runtime="pytorch")


def test_the_gpu_benchs_serving_table_measures_each_runtime_and_its_distance_from_the_cpu_image() -> None:
    """``nrb_bench.renderer_gpu.serving_runtimes`` (run on a GPU by hand) on this CPU: both runtimes render at
    the size asked, with a time and their distance in 8-bit steps from ONNX Runtime's fp32 image (ONNX Runtime on
    the CPU is that image: 0 steps; PyTorch within one)."""
    from nrb_bench.renderer_gpu import serving_runtimes

    got = serving_runtimes(64, 48, frames=2, device="cpu")
    assert set(got) == {"torch", "onnxruntime"}
    assert got["onnxruntime"]["max_steps_vs_cpu_fp32"] == 0
    assert got["torch"]["max_steps_vs_cpu_fp32"] <= 1 and "PyTorchCPU" in got["torch"]["device"]
    assert all(v["ms_with_copies"] > 0 for v in got.values())
