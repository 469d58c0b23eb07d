"""PyTorch as the ``neural`` renderer's runtime: the model's own network, on a CUDA GPU in fp16 replayed from CUDA
graphs, or on the CPU in fp32.

It lives in the model package, not in ``bridge``: the render server must not need torch or this package unless a
device choice hands the model to PyTorch (``tests/test_package_layers.py``), and then
``bridge.renderers.ort_session`` loads it by name (``TORCH_RUNTIME``), as ``nrb``'s command table loads
``neural_renderer.cli``.

Why a second runtime: ONNX Runtime reaches a GPU only as the ``onnxruntime-gpu`` package, which a machine with
PyTorch's CUDA build often lacks (and which cannot be installed next to ``onnxruntime``); PyTorch runs the very
network the graph was exported from (``neural_renderer.export.WireTemporalGraph`` of the checkpoint next to the
graph, ``NAME.pt`` for ``NAME_temporal.onnx``), with fp16 autocast and the whole frame's kernels captured once per
input shape into a CUDA graph (batch 1 at game resolutions is launch-bound: replaying a graph takes the CPU out of
the loop). ``neural_renderer/weights/default.pt`` is what ``default_temporal.onnx`` was exported from, and the
export checks their parity, so both runtimes render the same frame (on the CPU to within one 8-bit step).

A :class:`TorchSession` stands where an :class:`~bridge.renderers.ort_session.OrtSession` would: ``run(None,
feed)`` takes the same feed (numpy arrays named after the graph's inputs) and returns the same outputs (``rgba8``
(1, uH, uW, 4) uint8, ``x_output_srgb`` (1, 3, uH, uW) float32); everything else (``get_inputs``,
``get_modelmeta``) is the graph's, read from a CPU ONNX Runtime session of the same file, so the renderer reads one
contract whichever runtime computes it. On a GPU, inputs are copied from the arrays the renderer hands over (views
of the frame's shared-memory slot) into pinned host buffers and from there to the device without blocking, and an
``x_prev_output`` that is the array this session returned for the previous frame is taken from the device where it
already is (the renderer feeds its own output back every frame: at 1920x1080 that is 25 MB each way saved).
One session per model and device serves every render worker; on a GPU its frames run one at a time (a lock: the
graph's static buffers are shared), which is what the GPU does anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bridge.renderer import count_inference


class TorchRuntimeError(ValueError):
    """The PyTorch runtime cannot run this model here (no checkpoint next to the graph, not a wire graph, no
    PyTorch, or a checkpoint that does not match the graph)."""


def checkpoint_for(graph: str | Path) -> Path:
    """The checkpoint a graph was exported from: ``NAME.pt`` for ``NAME.onnx`` and ``NAME_temporal.onnx``
    (``nrb export`` writes both graphs from one checkpoint, ``python -m neural_renderer.recipe`` keeps it next to
    them)."""
    p = Path(graph)
    stem = p.stem[: -len("_temporal")] if p.stem.endswith("_temporal") else p.stem
    return p.with_name(stem + ".pt")


class TorchSession:
    """The wire graph's computation in PyTorch (module docstring): ``device`` is ``cpu`` or ``cuda:N``; ``fp16`` and
    ``cuda_graphs`` default to on for a GPU (off on the CPU, where neither exists); ``threads`` sizes PyTorch's
    intra-op pool on the CPU (process-wide in PyTorch: the last session made sets it)."""

    def __init__(self, path: str | Path, device: str = "cpu", *, threads: int | None = None,
                 fp16: bool | None = None, cuda_graphs: bool | None = None) -> None:
        try:
            import torch
        except ImportError as exc:  # the server's own environment may not have it: say what to install
            raise TorchRuntimeError(f"the PyTorch runtime needs the torch package ({exc})") from exc
        import onnxruntime as ort

        from neural_renderer.export import WireTemporalGraph
        from neural_renderer.models.net import load_checkpoint

        self.path = Path(path)
        self.meta = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        custom = self.meta.get_modelmeta().custom_metadata_map
        if custom.get("nrb_inputs") != "wire" or "x_prev_output" not in [i.name for i in self.meta.get_inputs()]:
            raise TorchRuntimeError(f"{self.path.name}: the PyTorch runtime runs the wire-format temporal graphs "
                                    "(NAME_temporal.onnx, neural_renderer.export); use runtime=onnxruntime")
        ckpt = checkpoint_for(self.path)
        if not ckpt.is_file():
            raise TorchRuntimeError(f"{self.path.name}: the PyTorch runtime needs the checkpoint it was exported "
                                    f"from, {ckpt} (nrb export writes the graphs from it)")
        net, _ = load_checkpoint(ckpt)
        cfg = net.config
        if str(cfg.upscale) != custom.get("nrb_upscale", "1") or \
                ("nrb_styles" in custom and str(cfg.styles) != custom["nrb_styles"]):
            raise TorchRuntimeError(f"{ckpt.name} (upscale {cfg.upscale}, {cfg.styles} styles) is not the model "
                                    f"of {self.path.name} (its metadata: {dict(custom)}); re-export both")
        self.device = torch.device(device)
        self.on_gpu = self.device.type == "cuda"
        self.fp16 = self.on_gpu if fp16 is None else bool(fp16) and self.on_gpu
        self.cuda_graphs = self.on_gpu if cuda_graphs is None else bool(cuda_graphs) and self.on_gpu
        if threads and not self.on_gpu:
            torch.set_num_threads(int(threads))
        self.input_names = [i.name for i in self.meta.get_inputs()]
        self.output_names = [o.name for o in self.meta.get_outputs()]
        self.module = WireTemporalGraph(net).eval().to(self.device)
        self._lock = threading.Lock()
        self._graphs: dict[tuple[Any, ...], CapturedGraph] = {}
        #: the outputs of the last frame, as returned (numpy) and on the device: an input that *is* one of those
        #: arrays (the history fed back) is taken from the device copy
        self._resident: list[tuple[np.ndarray, Any]] = []

    def __getattr__(self, name: str) -> Any:  # get_inputs, get_outputs, get_modelmeta: the graph's contract
        if name == "meta":
            raise AttributeError(name)
        return getattr(self.meta, name)

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs for ``feed`` (numpy, as ``InferenceSession.run``); counted as the frame's inference
        (``bridge.renderer.count_inference``)."""
        import torch

        t0 = time.perf_counter()
        try:
            missing = [n for n in self.input_names if n not in feed]
            if missing:
                raise ValueError(f"{self.path.name}: inputs {missing} not fed")
            with self._lock, torch.inference_mode():
                outs = self._run_gpu(feed) if self.on_gpu else self._run_cpu(feed)
            wanted = output_names or self.output_names
            return [outs[self.output_names.index(n)] for n in wanted]
        finally:
            count_inference((time.perf_counter() - t0) * 1e3)

    def _run_cpu(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in self.input_names]
        return [o.numpy() for o in self.module(*args)]  # fp32: this CPU has no fast half precision

    def _device_input(self, name: str, value: np.ndarray) -> Any:
        """``value`` on the device: the resident copy when it is an output of the last frame, else through a
        pinned host buffer (one host copy, then a non-blocking transfer)."""
        import torch

        for arr, dev in self._resident:
            if arr is value:
                return dev
        host = torch.from_numpy(np.ascontiguousarray(value))
        pinned = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
        pinned.copy_(host)
        return pinned.to(self.device, non_blocking=True)

    def _run_gpu(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        args = [self._device_input(n, feed[n]) for n in self.input_names]
        if self.cuda_graphs:
            key = tuple((tuple(a.shape), a.dtype) for a in args)
            captured = self._graphs.get(key)
            if captured is None:
                captured = self._graphs[key] = CapturedGraph(self.module, args, self.fp16)
            dev_outs = captured.replay(args)
        else:
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
                dev_outs = self.module(*args)
        outs = [o.float() if o.dtype == torch.float16 else o for o in dev_outs]
        host = [o.contiguous().to("cpu").numpy() for o in outs]  # one dense copy back (rgba8 is a permuted view)
        # clones: a graph's outputs are its static buffers, overwritten by the next replay
        self._resident = [(h, o.clone()) for h, o in zip(host, outs, strict=True)]
        return host


class CapturedGraph:
    """One input shape's CUDA graph: static inputs the frame is copied into, the module's kernels captured once
    (after warm-up on a side stream, as PyTorch requires), replayed per frame (``replay``; ``graph.replay()`` alone
    reruns it on the inputs it holds, which is how ``nrb_bench.renderer_gpu`` times it)."""

    def __init__(self, module: Any, example: list[Any], fp16: bool) -> None:
        import torch

        self.inputs = [a.clone() for a in example]
        self.fp16 = fp16
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._forward(module)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = self._forward(module)

    def _forward(self, module: Any) -> Any:
        import torch

        # cache_enabled=False: autocast's weight cache must not outlive the capture
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16, cache_enabled=False):
            return module(*self.inputs)

    def replay(self, args: list[Any]) -> Any:
        for static, a in zip(self.inputs, args, strict=True):
            static.copy_(a, non_blocking=True)
        self.graph.replay()
        return self.outputs
