"""The neural renderer's speed table on a GPU: ``python -m nrb_bench.renderer_gpu --out bench``.

The CPU benchmark (``nrb_bench.renderer``) runs wherever ``make bench`` runs; this one needs a CUDA device,
so it is run by hand on a machine that has one and writes ``renderer_gpu.json``, which ``renderer.md`` then
shows next to the CPU table (with the device and date it was measured on, since it is not the same run).

Per size (256x256, 960x540, 1920x1080, batch 1): ms per frame of the shipped single-frame graph in PyTorch,
fp32 (TF32 off: true fp32), TF32 and fp16 autocast, timed with CUDA events (median of 50 after 10 warm-ups),
fp16 replayed from a CUDA graph, plus ONNX Runtime when its CUDA provider is installed (``onnxruntime-gpu``): the
very session ``nrb serve --device cuda`` renders with (``bridge.renderers.ort_session``: IO binding, host arrays
in and out, one copy each way), and what the ``neural`` renderer itself gets per frame by runtime (PyTorch's
``TorchSession`` with fp16 and CUDA graphs, ONNX Runtime's CUDA session where installed; host arrays in and out,
history fed back) with each image's distance from the CPU's fp32 image (``serving_runtimes``: the numbers that
decide issue 14's "whichever measures faster"). Fractions of peak are against matrix-multiply peaks
measured in the same run the same way (8192^3 ``torch.mm``: fp32, TF32, fp16), because the datasheet's numbers
are not what a program gets.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SIZES = ((256, 256), (960, 540), (1920, 1080))
MODES = ("fp32", "tf32", "fp16")


def _cuda_ms(fn: Any, warmup: int = 10, repeats: int = 50) -> float:
    """Median milliseconds of ``fn()`` on the current CUDA stream, timed with events."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def _set_mode(mode: str) -> None:
    import torch

    tf32 = mode == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def _graphed(graph: Any, args: list[Any]) -> Any:
    """``graph(*args)`` under fp16 autocast, captured once into a CUDA graph the way the renderer's PyTorch runtime
    captures it (``neural_renderer.runtime.CapturedGraph``); returns its replay."""
    from neural_renderer.runtime import CapturedGraph

    return CapturedGraph(graph, args, fp16=True).graph.replay


def matmul_peaks(n: int = 8192) -> dict[str, float]:
    """FLOP/s of an n^3 matrix multiply per mode (random operands: zeros run faster than real data)."""
    import torch

    peaks = {}
    for mode in MODES:
        _set_mode(mode)
        dtype = torch.float16 if mode == "fp16" else torch.float32
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        ms = _cuda_ms(lambda a=a, b=b: torch.mm(a, b), warmup=3, repeats=10)
        peaks[mode] = 2 * n**3 / (ms / 1e3)
    return peaks


def serving_runtimes(w: int, h: int, frames: int = 20, device: str = "cuda:0") -> dict[str, Any]:
    """What ``nrb serve``'s ``neural`` renderer gets per frame at ``w`` x ``h`` on ``device``, host arrays in and
    out (copies included), history fed back as a game's frames do: PyTorch's runtime (``TorchSession``: fp16, CUDA
    graphs; what ``--device auto`` picks when ONNX Runtime has no CUDA provider) and, when it has one, ONNX Runtime's
    CUDA session; each image's difference from ONNX Runtime's fp32 image on the CPU, in 8-bit steps (fp16's cost in
    exactness: issue 14's "whichever measures faster" is judged with it)."""
    import numpy as np

    from bridge.protocol import Buffer
    from bridge.renderer import RenderInputs
    from bridge.renderers.neural import NeuralRenderer
    from bridge.renderers.ort_session import available_providers
    from bridge.scene import SyntheticScene
    from nrb_bench.serve import FORMATS, _arrays

    _, cam = SyntheticScene(w, h, animate=False).gbuffers(0.0)
    bufs = {n: Buffer.from_array(n, FORMATS[n], a) for n, a in _arrays((w, h)).items()}
    reference = NeuralRenderer(device="cpu", runtime="onnxruntime", precision="fp32")
    style = np.zeros((h, w, reference.styles or 1), np.float32)
    style[..., 0] = 1.0
    inputs = RenderInputs(bufs, size=(w, h), camera=cam)
    exact = reference.render(inputs, style).astype(np.int16)
    out: dict[str, Any] = {}
    ort_here = device == "cpu" or "CUDAExecutionProvider" in available_providers()
    for runtime in ["torch"] + (["onnxruntime"] if ort_here else []):
        r = NeuralRenderer(device=device, runtime=runtime, precision="fp32")
        first = r.render(inputs, style)  # also the CUDA graph's capture at this shape
        steps = np.abs(first.astype(np.int16) - exact)
        times = []
        for _ in range(frames):
            t0 = time.perf_counter()
            r.render(inputs, style)
            times.append((time.perf_counter() - t0) * 1e3)
        out[runtime] = {"device": r.device_description, "ms_with_copies": statistics.median(times),
                        "max_steps_vs_cpu_fp32": int(steps.max()), "mean_steps_vs_cpu_fp32": float(steps.mean()),
                        "over_2_steps_fraction": float((steps > 2).mean())}
    return out


def run(model_dir: Path | None = None) -> dict[str, Any]:
    """Measure the table; raises ``RuntimeError`` without a CUDA device."""
    import onnxruntime as ort
    import torch

    from bridge.renderers.neural import WEIGHTS
    from neural_renderer.export import FloatGraph, graph_example_inputs
    from neural_renderer.models.net import count_macs, load_checkpoint

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: this benchmark only runs on a GPU machine")
    model_dir = Path(model_dir) if model_dir is not None else WEIGHTS
    net, _ = load_checkpoint(model_dir / "default.pt")
    macs = {(w, h): count_macs(net, (h + 7) // 8 * 8, (w + 7) // 8 * 8) for w, h in SIZES}  # on the CPU
    graph = FloatGraph(net).eval().cuda()
    peaks = matmul_peaks()
    providers = ort.get_available_providers()
    ort_cuda = None
    ort_device = None
    if "CUDAExecutionProvider" in providers:
        from bridge.renderers.ort_session import get_session, select_device

        ort_device = select_device("cuda")
        ort_cuda = get_session(model_dir / "default.onnx", threads=1, device=ort_device)
    rows = []
    for w, h in SIZES:
        args = [a.cuda() for a in graph_example_inputs(net, h, w)]
        row: dict[str, Any] = {"width": w, "height": h, "macs_per_frame": macs[w, h]}
        with torch.no_grad():
            for mode in MODES:
                _set_mode(mode)
                if mode == "fp16":

                    def fn() -> Any:
                        with torch.autocast("cuda", dtype=torch.float16):
                            return graph(*args)

                else:

                    def fn() -> Any:
                        return graph(*args)

                ms = _cuda_ms(fn)
                row[f"torch_{mode}_ms"] = ms
                row[f"torch_{mode}_fraction_of_peak"] = 2 * macs[w, h] / (ms / 1e3) / peaks[mode]
            # Batch 1 at small sizes is launch-bound (dozens of small kernels): a CUDA graph replays them
            # without the CPU in the loop, which is how a renderer would run the network every frame.
            _set_mode("fp16")
            ms = _cuda_ms(_graphed(graph, args))
            row["torch_fp16_graph_ms"] = ms
            row["torch_fp16_graph_fraction_of_peak"] = 2 * macs[w, h] / (ms / 1e3) / peaks["fp16"]
        if ort_cuda is not None:
            names = [i.name for i in ort_cuda.get_inputs()]
            feed = {n: a.cpu().numpy() for n, a in zip(names, args, strict=True)}
            ort_cuda.run(None, feed)
            t = []
            for _ in range(20):
                t0 = time.perf_counter()
                ort_cuda.run(None, feed)
                t.append((time.perf_counter() - t0) * 1e3)
            row["onnxruntime_cuda_ms_with_copies"] = statistics.median(t)
        if model_dir == WEIGHTS:  # the renderer's own graph and checkpoint: the shipped model
            row["serving"] = serving_runtimes(w, h)
        rows.append(row)
    props = torch.cuda.get_device_properties(0)
    return {
        # speed depends on the architecture, not on the weights: renderer.md checks this against its model's
        "model_config": net.config.to_dict(),
        "model_sha256": hashlib.sha256((model_dir / "default.pt").read_bytes()).hexdigest(),
        "device": props.name,
        "multiprocessors": props.multi_processor_count,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": providers,
        # the ONNX Runtime row's device as ``nrb serve --device`` names it, and the provider that ran it
        "onnxruntime_device": None if ort_device is None else ort_device.describe(),
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "matmul_peak_tflops": {k: v / 1e12 for k, v in peaks.items()},
        "rows": rows,
    }


def markdown_section(res: dict[str, Any]) -> list[str]:
    """The GPU table for ``renderer.md``."""
    pk = ", ".join(f"{k} {v:.0f}" for k, v in res["matmul_peak_tflops"].items())
    lines = [
        f"## Speed on a GPU ({res['device']}, measured {res['measured'][:10]} with "
        "`python -m nrb_bench.renderer_gpu`, not in this run)",
        "",
        f"Single-frame graph, batch 1, CUDA events, median of 50. Matrix-multiply peaks measured in that run "
        f"(8192^3 `torch.mm`, TFLOP/s): {pk}. PyTorch {res['torch']}.",
        "",
        "| size | multiply-adds/frame | fp32 ms | TF32 ms | fp16 ms | fp16 + CUDA graph ms | fp32 % of peak "
        "| TF32 % of peak | fp16 % of peak | fp16 + graph % of peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['width']}x{r['height']} | {r['macs_per_frame'] / 1e9:.2f} G | {r['torch_fp32_ms']:.2f} | "
            f"{r['torch_tf32_ms']:.2f} | {r['torch_fp16_ms']:.2f} | {r['torch_fp16_graph_ms']:.2f} | "
            f"{100 * r['torch_fp32_fraction_of_peak']:.0f}% | {100 * r['torch_tf32_fraction_of_peak']:.0f}% | "
            f"{100 * r['torch_fp16_fraction_of_peak']:.0f}% | {100 * r['torch_fp16_graph_fraction_of_peak']:.0f}% |"
        )
    if any("onnxruntime_cuda_ms_with_copies" in r for r in res["rows"]):
        ms = ", ".join(
            f"{r['width']}x{r['height']} {r['onnxruntime_cuda_ms_with_copies']:.1f} ms" for r in res["rows"]
        )
        where = res.get("onnxruntime_device") or "CUDA provider"
        lines += ["", f"ONNX Runtime as `nrb serve --device cuda` runs it ({where}; IO binding, host arrays in and "
                  f"out, copies included): {ms}."]
    else:
        lines += [
            "",
            f"ONNX Runtime on that machine had no CUDA provider (providers: "
            f"{', '.join(res['onnxruntime_providers'])}), so it has no GPU row.",
        ]
    serving = [r for r in res["rows"] if r.get("serving")]
    if serving:
        lines += ["", "What `nrb serve`'s neural renderer gets per frame on that GPU (the wire graph's inputs from host "
                  "arrays and its image back, history fed back, median of 20), by runtime, and how far its image is "
                  "from ONNX Runtime's fp32 image on the CPU (8-bit steps):", "",
                  "| size | runtime | device | ms with copies | max steps | mean steps | pixels > 2 steps |",
                  "|---|---|---|---|---|---|---|"]
        for r in serving:
            for name, v in r["serving"].items():
                lines.append(f"| {r['width']}x{r['height']} | {name} | {v['device']} | {v['ms_with_copies']:.2f} | "
                             f"{v['max_steps_vs_cpu_fp32']} | {v['mean_steps_vs_cpu_fp32']:.3f} | "
                             f"{100 * v['over_2_steps_fraction']:.2f} % |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nrb_bench.renderer_gpu", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("bench"), help="where renderer_gpu.json goes")
    ap.add_argument("--model-dir", type=Path, default=None, help="directory with default.pt/.onnx")
    args = ap.parse_args(argv)
    res = run(args.model_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "renderer_gpu.json").write_text(json.dumps(res, indent=1))
    print("\n".join(markdown_section(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
