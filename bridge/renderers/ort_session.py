"""One ONNX Runtime session cache for every ONNX-backed renderer, and the device they run on (``--device``).

Why one module: the ``neural`` renderer and ``.onnx`` renderers load models the same way and must get the same
settings. Every session is created here with full graph optimisation and with busy-waiting worker threads off
(``session.intra_op.allow_spinning=0``: spinning threads collapse throughput when the cores are shared with the
engine or other processes, measured 4x slower at 2 threads), and kept in one cache keyed by (model path,
threads, render worker, device).

Devices (``nrb serve --device``, the renderers' ``device`` option):

* ``cpu``: ONNX Runtime's CPU provider.
* ``cuda`` / ``cuda:N``: ONNX Runtime's CUDA provider on CUDA device N (default 0), which needs the
  ``onnxruntime-gpu`` package (instead of ``onnxruntime``) and a CUDA device. Asked for where either is missing,
  the renderer refuses to start (``DeviceUnavailableError``); it never falls back to the CPU behind the user's back.
* ``tensorrt`` / ``tensorrt:N``: ONNX Runtime's TensorRT provider (nodes it cannot take run on CUDA). Not the
  default on a GPU because TensorRT builds an engine for each new input shape, which stalls the first frame at
  every new resolution (the engines are cached on disk, see ``TRT_CACHE``).
* ``auto`` (``nrb serve``'s default): ``cuda:0`` when ONNX Runtime has the CUDA provider and a CUDA device
  exists, else the CPU; ``DeviceChoice.reason`` says which and why (``nrb serve`` prints it at startup).
* Without ONNX Runtime's CUDA provider but with PyTorch's CUDA and a device, ``auto`` and ``cuda[:N]`` choose
  ``TORCH_CUDA``: the ``neural`` renderer's network in PyTorch (``neural_renderer.runtime``: fp16, CUDA
  graphs); ``with_runtime`` applies a renderer's ``runtime`` option (``torch`` on the CPU: ``TORCH_CPU``).

On a GPU, sessions run through IO binding (``OrtSession.run``): each input is copied host to device once, straight
from the numpy array the renderer built (the views of the shared-memory slot when it hands those over), outputs
are allocated on the device and copied back once. A GPU session is shared by every render worker (one copy of
the weights and one memory arena per model and device; ONNX Runtime's ``Run`` may be called from several threads
at once), where a CPU session exists per worker and thread budget. Inference stays fp32: fp16 is used only where a
measurement on a GPU shows it pays, and none has been taken with this code yet (docs/server.md says what has run
on a GPU).

``choose_device`` is a pure function of the request, the providers ONNX Runtime offers and the number of CUDA
devices, so every branch is tested on machines without a GPU.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bridge.renderer import count_inference

log = logging.getLogger("nrb.renderer")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
#: Not ONNX Runtime providers: the ``neural`` renderer's PyTorch runtime (``neural_renderer.runtime``) on a
#: CUDA device (fp16, CUDA graphs) or on the CPU (``runtime=torch``); named like providers so that one
#: ``DeviceChoice`` says what runs a model and why.
TORCH_CUDA = "PyTorchCUDA"
TORCH_CPU = "PyTorchCPU"
_GPU_PROVIDERS = (CUDA, TENSORRT)
_TORCH = (TORCH_CUDA, TORCH_CPU)
RUNTIMES = ("auto", "onnxruntime", "torch")
#: The PyTorch runtime's session class, loaded by name only when a device choice hands a model to PyTorch: it runs
#: the model's own network, so it lives in the model package with torch, which the rest of the server never needs.
TORCH_RUNTIME = "neural_renderer.runtime:TorchSession"

#: where the TensorRT provider keeps the engines it builds (one per model and input shape), so a restart does not
#: pay the build again
TRT_CACHE = Path(os.environ.get("NRB_TRT_CACHE", Path.home() / ".cache" / "nrb" / "tensorrt"))

_DEVICE_FORMS = "auto, cpu, cuda, cuda:N, tensorrt or tensorrt:N"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|tensorrt)(?::(\d+))?$")


class DeviceError(ValueError):
    """A ``--device`` value that is not one of the accepted forms."""


class DeviceUnavailableError(DeviceError):
    """The device asked for is not there (no GPU provider in ONNX Runtime, no such CUDA device, or the provider
    failed to start): the renderer, and so ``nrb serve``, refuses to start rather than run somewhere else."""


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed ``--device`` value: ``kind`` is auto, cpu, cuda or tensorrt; ``index`` the CUDA device, if given."""

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


@dataclass(frozen=True)
class DeviceChoice:
    """Where a model runs and why: ``device`` is ``cpu`` or ``cuda:N``, ``provider`` the ONNX Runtime execution
    provider that runs it first, ``reason`` one line for the log and the startup banner."""

    device: str
    provider: str
    reason: str
    requested: str

    @property
    def on_gpu(self) -> bool:
        return self.device != "cpu"

    @property
    def index(self) -> int:
        """The CUDA device index (0 on the CPU)."""
        return int(self.device.partition(":")[2] or 0)

    @property
    def ort_device(self) -> str:
        """ONNX Runtime's name for where the outputs are bound (``cpu`` or ``cuda``)."""
        return "cuda" if self.on_gpu else "cpu"

    @property
    def torch(self) -> bool:
        """Whether PyTorch runs the model (``TORCH_CUDA`` / ``TORCH_CPU``), not ONNX Runtime."""
        return self.provider in _TORCH

    def providers(self) -> list[str | tuple[str, dict[str, Any]]]:
        """The ``providers`` argument of ``ort.InferenceSession``, in order of precedence (the CPU for a model
        PyTorch runs: ONNX Runtime then only reads the graph's contract)."""
        if not self.on_gpu or self.torch:
            return [CPU]
        cuda: tuple[str, dict[str, Any]] = (CUDA, {"device_id": self.index})
        if self.provider == TENSORRT:
            trt = {"device_id": self.index, "trt_engine_cache_enable": True,
                   "trt_engine_cache_path": str(TRT_CACHE), "trt_fp16_enable": False}
            return [(TENSORRT, trt), cuda, CPU]
        return [cuda, CPU]

    def describe(self) -> str:
        """``cpu (CPUExecutionProvider): auto: ...``: what ``nrb serve`` prints after the renderer label."""
        return f"{self.device} ({self.provider}): {self.reason}"


def parse_device(text: str) -> DeviceRequest:
    """``"cuda:1"`` → DeviceRequest("cuda", 1); anything but the accepted forms raises ``DeviceError``."""
    m = _DEVICE_RE.match(str(text).strip().lower())
    if m is None or (m.group(2) is not None and m.group(1) in ("auto", "cpu")):
        raise DeviceError(f"device {text!r} is not one of {_DEVICE_FORMS}")
    return DeviceRequest(m.group(1), None if m.group(2) is None else int(m.group(2)))


def _short(providers: Sequence[str]) -> str:
    return ", ".join(providers) or "none"


def choose_device(request: DeviceRequest | str, providers: Sequence[str], cuda_devices: int) -> DeviceChoice:
    """Where a model runs, given the request, ONNX Runtime's available providers and the number of CUDA devices.

    Pure (no ONNX Runtime, no driver), so the GPU branches are tested on a machine without one. Raises
    ``DeviceUnavailableError`` when an explicit ``cuda``/``tensorrt`` request cannot be met; ``auto`` never raises.
    """
    req = parse_device(request) if isinstance(request, str) else request
    asked = str(req)
    torch_cuda = TORCH_CUDA in providers and cuda_devices > 0
    providers = [p for p in providers if p not in _TORCH]
    if req.kind == "cpu":
        return DeviceChoice("cpu", CPU, "asked for", asked)
    if req.kind == "auto":
        if CUDA not in providers and torch_cuda:
            return DeviceChoice("cuda:0", TORCH_CUDA, f"auto: ONNX Runtime has no CUDA execution provider "
                                f"(providers: {_short(providers)}), PyTorch's CUDA runs the model (fp16, CUDA "
                                f"graphs) on {cuda_devices} CUDA device{'s' if cuda_devices > 1 else ''}", asked)
        if CUDA not in providers:
            return DeviceChoice("cpu", CPU, f"auto: ONNX Runtime has no CUDA execution provider (providers: "
                                f"{_short(providers)}; install onnxruntime-gpu to use a GPU)", asked)
        if cuda_devices < 1:
            return DeviceChoice("cpu", CPU, "auto: ONNX Runtime has the CUDA execution provider but no CUDA "
                                "device was found", asked)
        return DeviceChoice("cuda:0", CUDA, f"auto: ONNX Runtime's CUDA execution provider and {cuda_devices} "
                            f"CUDA device{'s' if cuda_devices > 1 else ''} found", asked)
    provider = TENSORRT if req.kind == "tensorrt" else CUDA
    index = req.index or 0
    if provider == CUDA and CUDA not in providers and torch_cuda:
        if index >= cuda_devices:
            raise DeviceUnavailableError(f"device {asked!r}: only {cuda_devices} CUDA device(s) found; use "
                                         "--device cpu or auto")
        return DeviceChoice(f"cuda:{index}", TORCH_CUDA, "asked for; ONNX Runtime has no CUDA execution provider, "
                            "PyTorch's CUDA runs the model (fp16, CUDA graphs)", asked)
    if provider not in providers:
        name = "TensorRT" if provider == TENSORRT else "CUDA"
        raise DeviceUnavailableError(
            f"device {asked!r}: ONNX Runtime has no {name} execution provider (providers: {_short(providers)}); "
            "install onnxruntime-gpu (in place of onnxruntime), or PyTorch with CUDA for the neural renderer, on a "
            "machine with an NVIDIA GPU, or use --device cpu or auto")
    if index >= cuda_devices:
        found = "no CUDA device was found" if cuda_devices < 1 else f"only {cuda_devices} CUDA device(s) found"
        raise DeviceUnavailableError(f"device {asked!r}: {found}; use --device cpu or auto")
    return DeviceChoice(f"cuda:{index}", provider, "asked for", asked)


def available_providers() -> list[str]:
    """The execution providers this ONNX Runtime build offers (``onnxruntime-gpu`` adds CUDA and TensorRT)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def torch_cuda_available() -> bool:
    """Whether PyTorch is installed as a CUDA build (its ``lib/libtorch_cuda.so``) and the driver sees a device.
    Read from the files, without importing torch: the server never imports it unless PyTorch then runs a model."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    libs = Path(spec.origin).parent / "lib"
    cuda_build = any(libs.glob("libtorch_cuda*.so*")) or any(libs.glob("torch_cuda*.dll"))
    return cuda_build and cuda_device_count() > 0


def cuda_device_count() -> int:
    """CUDA devices the driver sees (honouring ``CUDA_VISIBLE_DEVICES``); 0 without a driver. Asks the driver
    (``libcuda``) directly, so it needs neither PyTorch nor a CUDA toolkit."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    return 0


_CHOICES: dict[str, DeviceChoice] = {}
_LOCK = threading.Lock()


def select_device(text: str) -> DeviceChoice:
    """``choose_device`` for this machine, remembered per request so every renderer instance of a server agrees
    (and an ``auto`` that had to fall back to the CPU stays there)."""
    req = parse_device(text)
    with _LOCK:
        choice = _CHOICES.get(str(req))
    if choice is None:
        providers = available_providers()
        # the driver is asked only when ONNX Runtime or PyTorch could use a GPU at all (cuInit is not free), and
        # PyTorch (slow to import) only when the driver has a device ONNX Runtime cannot use
        gpu = any(p in providers for p in _GPU_PROVIDERS) or (req.kind != "cpu" and _torch_installed())
        devices = cuda_device_count() if gpu else 0
        if devices and CUDA not in providers and req.kind in ("auto", "cuda") and torch_cuda_available():
            providers.append(TORCH_CUDA)
        choice = choose_device(req, providers, devices)
        with _LOCK:
            choice = _CHOICES.setdefault(str(req), choice)
    return choice


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def with_runtime(choice: DeviceChoice, runtime: str) -> DeviceChoice:
    """``choice`` for a renderer that asks for a runtime (the ``neural`` renderer's ``runtime`` option): ``auto``
    keeps it; ``onnxruntime`` refuses a choice PyTorch would run (``auto`` falls back to the CPU, saying why);
    ``torch`` runs on the same device through PyTorch (the CPU: fp32; a GPU: needs PyTorch's CUDA)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "auto":
        return choice
    if runtime == "onnxruntime":
        if not choice.torch:
            return choice
        if choice.requested != "auto":
            raise DeviceUnavailableError(f"device {choice.requested!r} with runtime=onnxruntime: ONNX Runtime has no "
                                         "CUDA execution provider (install onnxruntime-gpu)")
        return DeviceChoice("cpu", CPU, "auto with runtime=onnxruntime: ONNX Runtime has no CUDA execution "
                            "provider", choice.requested)
    if choice.torch:
        return choice
    if not choice.on_gpu:
        return DeviceChoice("cpu", TORCH_CPU, f"runtime=torch; {choice.reason}", choice.requested)
    if not torch_cuda_available():
        raise DeviceUnavailableError(f"device {choice.device!r} with runtime=torch: PyTorch does not see a CUDA "
                                     "device (a CPU-only torch build, or no driver)")
    return DeviceChoice(choice.device, TORCH_CUDA, f"runtime=torch; {choice.reason}", choice.requested)


class ModelSession(Protocol):
    """What a renderer runs its graph through: an ``OrtSession``, or ``neural_renderer.runtime.TorchSession`` where
    PyTorch runs it (loaded by name, ``TORCH_RUNTIME``, so this package never imports it). Both answer the graph's
    contract (inputs, outputs, metadata) as ONNX Runtime does and ``run`` as ``InferenceSession.run``."""

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...

    def get_inputs(self) -> Any: ...

    def get_outputs(self) -> Any: ...

    def get_modelmeta(self) -> Any: ...


class OrtSession:
    """An ``ort.InferenceSession`` with ``run`` through IO binding on a GPU (see the module docstring); every other
    attribute (``get_inputs``, ``get_modelmeta``, ...) is the session's own."""

    def __init__(self, session: Any, device: DeviceChoice, *, io_binding: bool | None = None) -> None:
        self.inner = session
        self.device = device
        #: IO binding: on by default on a GPU (where it saves a copy each way); on the CPU only when asked (tests)
        self.io_binding = device.on_gpu if io_binding is None else bool(io_binding)
        self._output_names = [o.name for o in session.get_outputs()]

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Like ``InferenceSession.run``; on a GPU, each input goes host → device once (from the array as given,
        no staging copy here) and each output device → host once. Its time counts as the frame's inference
        (``bridge.renderer.count_inference``: what ``nrb serve`` separates from its own work)."""
        t0 = time.perf_counter()
        try:
            if not self.io_binding:
                return list(self.inner.run(output_names, dict(feed)))
            binding = self.inner.io_binding()
            for name, arr in feed.items():
                binding.bind_cpu_input(name, np.ascontiguousarray(arr))
            for name in output_names or self._output_names:
                binding.bind_output(name, self.device.ort_device, self.device.index)
            self.inner.run_with_iobinding(binding)
            return list(binding.copy_outputs_to_cpu())
        finally:
            count_inference((time.perf_counter() - t0) * 1e3)


_SESSIONS: dict[tuple[str, int, int, str], Any] = {}


def _create(path: str, threads: int, device: DeviceChoice, io_binding: bool | None) -> Any:
    if device.torch:
        from bridge.renderer import _resolve

        try:  # a ValueError: the runtime cannot run this model here (no torch, no checkpoint, not a wire graph)
            return _resolve(TORCH_RUNTIME)(path, device.device, threads=threads or None)
        except ValueError as exc:
            raise DeviceUnavailableError(f"device {device.device!r} through PyTorch: {exc}") from exc
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not device.on_gpu:
        return OrtSession(ort.InferenceSession(path, sess_options=opts, providers=device.providers()), device,
                          io_binding=io_binding)
    if device.provider == TENSORRT:
        TRT_CACHE.mkdir(parents=True, exist_ok=True)
    try:
        # enable_fallback=0: ONNX Runtime would otherwise retry on the CPU, silently, when the GPU provider fails
        sess = ort.InferenceSession(path, sess_options=opts, providers=device.providers(), enable_fallback=0)
    except (RuntimeError, ValueError) as exc:  # onnxruntime raises its own subclasses of these
        raise DeviceUnavailableError(f"device {device.device!r}: ONNX Runtime could not start {device.provider} "
                                     f"for {Path(path).name}: {exc}") from exc
    got = list(sess.get_providers())
    if not got or got[0] not in _GPU_PROVIDERS:
        # a provider library that fails to load (missing CUDA/cuDNN libraries) may only log and leave the CPU
        raise DeviceUnavailableError(f"device {device.device!r}: ONNX Runtime did not start {device.provider} for "
                                     f"{Path(path).name} (it runs on {_short(got)}); check the CUDA and cuDNN "
                                     "libraries onnxruntime-gpu needs")
    return OrtSession(sess, device, io_binding=io_binding)


def get_session(path: str | Path, *, threads: int, worker: int = -1, device: DeviceChoice | None = None,
                io_binding: bool | None = None) -> ModelSession:
    """The session for (model, threads, render worker, device), created on first use and shared by every renderer
    instance that asks for the same: sessions are read-only, and a render worker runs one frame at a time, so a
    CPU session's thread pool is never used by two frames at once. A worker's thread budget changes with the
    number of busy workers (``nrb serve``), so it may hold a few CPU sessions of different sizes. On a GPU the
    threads and the worker do not matter (one session per model and device, see the module docstring); nor with
    PyTorch, whose thread pool is the process's (one ``TorchSession`` per model and device, frames in turn).
    Returns an ``OrtSession``, or a ``TorchSession`` where PyTorch runs the model (the same ``run``)."""
    device = device or select_device("cpu")
    if device.torch:  # PyTorch sizes its own pool (the process's): one session per model and device
        threads, worker = 0, -1
    elif device.on_gpu:
        threads, worker = 1, -1
    key = (str(Path(path).resolve()), int(threads), int(worker), f"{device.device}/{device.provider}")
    if io_binding is not None:
        key = (key[0], key[1], key[2], f"{key[3]}/binding={io_binding}")
    with _LOCK:
        found = _SESSIONS.get(key)
    if found is not None:
        return found
    made = _create(key[0], key[1], device, io_binding)  # outside the lock: loading a model takes a while
    with _LOCK:
        return _SESSIONS.setdefault(key, made)


def open_model(path: str | Path, device: str, *, threads: int, worker: int = -1,
               runtime: str = "auto") -> tuple[ModelSession, DeviceChoice]:
    """A renderer's first session and the device it settled on (``runtime``: see ``with_runtime``). ``auto`` that
    chose a GPU whose provider then fails to start falls back to the CPU, says why in the choice's reason and in
    the log, and stays on the CPU for the rest of the process; an explicit GPU request raises
    ``DeviceUnavailableError`` instead."""
    choice = with_runtime(select_device(device), runtime)
    try:
        return get_session(path, threads=threads, worker=worker, device=choice), choice
    except DeviceUnavailableError as exc:
        if choice.requested != "auto" or not choice.on_gpu:
            raise
        cpu = DeviceChoice("cpu", CPU, f"auto: {exc}", choice.requested)
        log.warning("renderer falls back to the CPU: %s", exc)
        with _LOCK:
            _CHOICES["auto"] = cpu
        return get_session(path, threads=threads, worker=worker, device=cpu), cpu


def cached_sessions() -> dict[tuple[str, int, int, str], Any]:
    """A snapshot of the cache: (model path, threads, worker, device/provider) → session (for tests and tools)."""
    with _LOCK:
        return dict(_SESSIONS)


__all__ = [
    "RUNTIMES", "TORCH_CPU", "TORCH_CUDA", "DeviceChoice", "DeviceError", "DeviceRequest", "DeviceUnavailableError",
    "OrtSession", "available_providers", "cached_sessions", "choose_device", "cuda_device_count", "get_session",
    "open_model", "parse_device", "select_device", "torch_cuda_available", "with_runtime",
]
