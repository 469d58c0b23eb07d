"""Where the ONNX Runtime renderers run (``nrb serve --device``) and the one session cache they share.

This machine has no GPU and the CPU build of onnxruntime: ``auto`` must pick the CPU and say why, ``cuda`` must be
refused at startup with a clear message, and the GPU branches are covered through ``choose_device``, the pure
function that decides from the providers ONNX Runtime offers and the number of CUDA devices.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bridge.renderer import RenderInputs, worker_context
from bridge.renderers import ort_session
from bridge.renderers.neural import NeuralRenderer
from bridge.renderers.onnx_renderer import OnnxRenderer, example_model
from bridge.renderers.ort_session import (
    CPU,
    CUDA,
    TENSORRT,
    TORCH_CPU,
    TORCH_CUDA,
    DeviceChoice,
    DeviceError,
    DeviceUnavailableError,
    OrtSession,
    choose_device,
    get_session,
    parse_device,
    select_device,
    with_runtime,
)
from bridge.style import DEFAULT_LIBRARY, StyleState, build_style_map

GPU_BUILD = [TENSORRT, CUDA, CPU]  # what onnxruntime-gpu offers


def _no_gpu_here() -> None:
    if CUDA in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider: the CPU-only behaviour cannot be observed")
    if ort_session.cuda_device_count() > 0 and ort_session.torch_cuda_available():
        pytest.skip("PyTorch sees a CUDA device: the neural renderer runs there (neural_renderer.runtime)")


def _serve(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "serve", "--port", "0", "--no-status", *args],
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------------------- choice (pure function)


def test_auto_picks_the_first_gpu_when_onnx_runtime_has_cuda_and_a_device_exists() -> None:
    choice = choose_device("auto", GPU_BUILD, 2)
    assert (choice.device, choice.provider, choice.on_gpu) == ("cuda:0", CUDA, True)
    assert "auto" in choice.reason and "2 CUDA devices" in choice.reason
    # CUDA first with the device index, the CPU behind it for nodes CUDA cannot run; not TensorRT (engine builds)
    assert choice.providers() == [(CUDA, {"device_id": 0}), CPU]


@pytest.mark.parametrize(("providers", "devices", "why"), [
    ([CPU], 0, "no CUDA execution provider"),
    (["AzureExecutionProvider", CPU], 4, "install onnxruntime-gpu"),
    (GPU_BUILD, 0, "no CUDA device was found"),
])
def test_auto_falls_back_to_the_cpu_and_says_why(providers: list[str], devices: int, why: str) -> None:
    choice = choose_device("auto", providers, devices)
    assert (choice.device, choice.provider, choice.on_gpu) == ("cpu", CPU, False)
    assert why in choice.reason and choice.providers() == [CPU]


def test_an_explicit_cuda_device_and_tensorrt_get_their_index_and_provider_chain() -> None:
    c1 = choose_device("cuda:1", GPU_BUILD, 2)
    assert (c1.device, c1.index, c1.providers()) == ("cuda:1", 1, [(CUDA, {"device_id": 1}), CPU])
    trt = choose_device("tensorrt", GPU_BUILD, 1)
    names = [p[0] if isinstance(p, tuple) else p for p in trt.providers()]
    assert trt.device == "cuda:0" and names == [TENSORRT, CUDA, CPU]
    assert trt.providers()[0][1]["trt_fp16_enable"] is False  # type: ignore[index]  # fp16 only once measured
    assert choose_device("cpu", GPU_BUILD, 8).device == "cpu"  # asked for: the GPU stays unused


@pytest.mark.parametrize(("request_", "providers", "devices", "message"), [
    ("cuda", [CPU], 0, "no CUDA execution provider"),
    ("cuda", GPU_BUILD, 0, "no CUDA device was found"),
    ("cuda:2", GPU_BUILD, 2, "only 2 CUDA device(s)"),
    ("tensorrt", [CUDA, CPU], 1, "no TensorRT execution provider"),
])
def test_a_gpu_that_is_not_there_is_refused_not_replaced_by_the_cpu(
        request_: str, providers: list[str], devices: int, message: str) -> None:
    with pytest.raises(DeviceUnavailableError, match="device") as err:
        choose_device(request_, providers, devices)
    assert message in str(err.value)


def test_a_gpu_onnx_runtime_cannot_use_goes_to_pytorchs_cuda_and_onnx_runtimes_cuda_wins_when_both_exist() -> None:
    """A machine with PyTorch's CUDA build and the CPU onnxruntime (what a PyTorch user has): ``auto`` and ``cuda:N``
    run the neural model through PyTorch (fp16, CUDA graphs) on that device, saying so; ONNX Runtime's own CUDA
    provider is preferred where it exists; TensorRT and a device that is not there are still refused."""
    auto = choose_device("auto", [CPU, TORCH_CUDA], 2)
    assert (auto.device, auto.provider, auto.on_gpu, auto.torch) == ("cuda:0", TORCH_CUDA, True, True)
    assert "PyTorch's CUDA runs the model" in auto.reason and auto.providers() == [CPU]  # ORT reads the contract
    c1 = choose_device("cuda:1", [CPU, TORCH_CUDA], 2)
    assert (c1.device, c1.provider) == ("cuda:1", TORCH_CUDA)
    assert choose_device("auto", [*GPU_BUILD, TORCH_CUDA], 1).provider == CUDA
    assert choose_device("auto", [CPU, TORCH_CUDA], 0).device == "cpu"  # PyTorch without a device: the CPU
    with pytest.raises(DeviceUnavailableError, match="only 1 CUDA device"):
        choose_device("cuda:1", [CPU, TORCH_CUDA], 1)
    with pytest.raises(DeviceUnavailableError, match="no TensorRT execution provider"):
        choose_device("tensorrt", [CPU, TORCH_CUDA], 1)


def test_the_runtime_option_moves_a_choice_between_onnx_runtime_and_pytorch() -> None:
    """``runtime=torch`` on the CPU is PyTorch's CPU path; ``runtime=onnxruntime`` refuses PyTorch's CUDA when the
    GPU was asked for and falls back to ONNX Runtime on the CPU under ``auto``; ``auto`` keeps the choice; anything
    else is a clear error."""
    cpu = choose_device("cpu", [CPU], 0)
    torch_cpu = with_runtime(cpu, "torch")
    assert (torch_cpu.device, torch_cpu.provider, torch_cpu.torch) == ("cpu", TORCH_CPU, True)
    assert with_runtime(cpu, "auto") is cpu and with_runtime(cpu, "onnxruntime") is cpu
    on_torch = DeviceChoice("cuda:0", TORCH_CUDA, "auto: ...", "auto")
    back = with_runtime(on_torch, "onnxruntime")
    assert (back.device, back.provider) == ("cpu", CPU) and "runtime=onnxruntime" in back.reason
    with pytest.raises(DeviceUnavailableError, match="runtime=onnxruntime"):
        with_runtime(DeviceChoice("cuda:0", TORCH_CUDA, "asked for", "cuda"), "onnxruntime")
    with pytest.raises(ValueError, match="runtime must be one of auto, onnxruntime, torch"):
        with_runtime(cpu, "tensorflow")


def test_an_onnx_model_of_the_users_stays_on_onnx_runtime_where_pytorch_would_take_the_gpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the neural model has a PyTorch twin (its checkpoint): where ``auto`` chose PyTorch's CUDA, a ``.onnx``
    renderer runs on ONNX Runtime on the CPU and says why, and an explicit ``cuda`` is refused for it."""
    monkeypatch.setattr(ort_session, "_CHOICES", {
        "auto": DeviceChoice("cuda:0", TORCH_CUDA, "auto: ...", "auto"),
        "cuda": DeviceChoice("cuda:0", TORCH_CUDA, "asked for", "cuda")})
    r = OnnxRenderer(example_model(tmp_path / "example.onnx"), device="auto")
    assert r.device == "cpu" and "runtime=onnxruntime" in r.device_description
    with pytest.raises(DeviceUnavailableError, match="runtime=onnxruntime"):
        OnnxRenderer(example_model(tmp_path / "example2.onnx"), device="cuda")


@pytest.mark.parametrize("text", ["gpu", "cuda:x", "cuda:-1", "", "cpu:0", "auto:1", "cuda:0:1"])
def test_a_bad_device_string_is_a_clear_error(text: str) -> None:
    with pytest.raises(DeviceError, match="auto, cpu, cuda, cuda:N"):
        parse_device(text)
    with pytest.raises(ValueError):  # DeviceError is a ValueError: nrb serve prints it instead of a traceback
        NeuralRenderer(device=text)


def test_device_strings_are_case_and_space_tolerant() -> None:
    assert str(parse_device(" CUDA:3 ")) == "cuda:3" and str(parse_device("Auto")) == "auto"


# ------------------------------------------------------------------------------------------- on this machine


def test_auto_runs_both_renderers_on_the_cpu_here_and_says_why(tmp_path: Path) -> None:
    _no_gpu_here()
    neural = NeuralRenderer(device="auto")
    onnx_r = OnnxRenderer(example_model(tmp_path / "example.onnx"), device="auto")
    for r in (neural, onnx_r):
        assert r.device == "cpu" and r.session.get_providers() == [CPU]
        assert r.device_description is not None and "auto" in r.device_description
        assert "CUDA" in r.device_description  # the reason names what is missing
        assert "@" not in r.label  # a CPU renderer's WELCOME label is unchanged: name/version
    assert neural.label == "neural/0.1.0"


def test_asking_for_cuda_without_a_gpu_fails_with_the_typed_error(tmp_path: Path) -> None:
    _no_gpu_here()
    with pytest.raises(DeviceUnavailableError, match="onnxruntime-gpu"):
        NeuralRenderer(device="cuda")
    with pytest.raises(DeviceUnavailableError, match="cuda:1"):
        OnnxRenderer(example_model(tmp_path / "example.onnx"), device="cuda:1")


def test_nrb_serve_device_cuda_exits_non_zero_with_the_reason_and_no_traceback(tmp_path: Path) -> None:
    _no_gpu_here()
    proc = _serve("--device", "cuda", "--renderer", str(example_model(tmp_path / "example.onnx")))
    assert proc.returncode == 2, proc.stderr
    assert "nrb serve: device 'cuda'" in proc.stderr and "onnxruntime-gpu" in proc.stderr
    assert "Traceback" not in proc.stderr and "listening on" not in proc.stdout


def test_nrb_serve_refuses_a_bad_device_string_and_a_device_for_a_renderer_without_one() -> None:
    bad = _serve("--device", "gpu")
    assert bad.returncode == 2 and "device 'gpu' is not one of" in bad.stderr and "Traceback" not in bad.stderr
    other = _serve("--device", "cpu", "--renderer", "passthrough")
    assert other.returncode == 2 and "does not run on ONNX Runtime" in other.stderr


def test_nrb_serve_auto_says_which_device_it_chose_and_why(tmp_path: Path) -> None:
    _no_gpu_here()
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--port", "0", "--no-status",
                             "--renderer", str(example_model(tmp_path / "example.onnx"))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(15)
    assert "listening on tcp://127.0.0.1:" in line
    assert "(renderer onnx:example.onnx/0.1.0; on cpu (CPUExecutionProvider): auto: ONNX Runtime has no CUDA" in line


# --------------------------------------------------------------------------------------------- the one cache


def test_both_renderers_share_one_cache_with_spinning_off_and_full_optimisation(tmp_path: Path) -> None:
    neural = NeuralRenderer(device="cpu", threads=2)
    onnx_r = OnnxRenderer(example_model(tmp_path / "example.onnx"), threads=2)
    cached = ort_session.cached_sessions().values()
    for r in (neural, onnx_r):
        sess = r.session
        assert isinstance(sess, OrtSession) and any(sess is c for c in cached)
        opts = sess.get_session_options()
        # busy-waiting threads: measured 4x slower when the cores are shared (the .onnx renderer lacked this)
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        assert opts.intra_op_num_threads == 2
    # a second instance (the next engine session) reuses the model's session instead of loading it again
    assert NeuralRenderer(device="cpu", threads=2).session is neural.session
    assert get_session(neural.path, threads=2, device=select_device("cpu")) is neural.session


def test_sessions_are_per_render_worker_and_thread_budget(tmp_path: Path) -> None:
    r = OnnxRenderer(example_model(tmp_path / "example.onnx"))
    with worker_context(0, 2):
        w0 = r.session
    with worker_context(1, 2):
        w1 = r.session
    with worker_context(0, 1):
        w0_small = r.session
    with worker_context(0, 2):
        assert r.session is w0
    assert len({id(w0), id(w1), id(w0_small)}) == 3
    assert w0_small.get_session_options().intra_op_num_threads == 1


def test_io_binding_gives_the_same_images_as_a_plain_run(tmp_path: Path) -> None:
    """The GPU path binds inputs and outputs (``OrtSession.run``); on the CPU the same code runs with outputs bound
    on the host, so it is checked here against ONNX Runtime's plain ``run`` on the shipped model."""
    r = NeuralRenderer(device="cpu", temporal=False)
    rng = np.random.default_rng(1)
    w, h = 40, 24
    inputs = RenderInputs.from_arrays({
        "albedo": ("rgba8_srgb", rng.integers(0, 255, (h, w, 4), dtype=np.uint8)),
        "normals": ("rgba16f", rng.uniform(-1, 1, (h, w, 4)).astype(np.float16)),
        "linear_depth": ("r32f", rng.uniform(1, 9, (h, w, 1)).astype(np.float32)),
    })
    state = StyleState()
    state.set(DEFAULT_LIBRARY.names[1], 0.7)
    feed = r.feed(inputs, build_style_map(state.snapshot(), (w, h)))
    plain = r.session.run(None, feed)
    bound = get_session(r.path, threads=2, device=r.device_choice, io_binding=True)
    assert bound.io_binding and not r.session.io_binding  # the CPU default: no binding
    outs = bound.run(None, feed)
    assert len(outs) == len(plain)
    for a, b in zip(outs, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    named = bound.run([bound.get_outputs()[0].name], feed)
    assert len(named) == 1 and np.array_equal(named[0], plain[0])
