"""``python -m neural_renderer.quantize``: an int8 copy of an exported graph, written only if it keeps the quality.

ONNX Runtime static quantization (``onnxruntime.quantization``, QDQ format, per-channel symmetric int8 weights,
uint8 activations calibrated on training frames fed exactly as the ``neural`` renderer feeds them). Only the
network's main convolutions are quantized; the FiLM γ/β convolutions (7 inputs each, where one code value of
error scales a whole feature map) and the elementwise feature code stay in float. Several candidates are
tried, from the most layers in int8 to the fewest (the first convolution and the head are the usual sensitive
ones); each must pass the **quality guard**: on the benchmark's held-out frames (``nrb bench renderer``'s data),
per style, the mean LDR FLIP of the int8 graph against the style's ground truth may be at most ``max_increase``
(2 %) above the fp32 graph's. Of the candidates that pass, the one measured fastest (interleaved with fp32, at
640x360 with 2 threads, on this machine) is written, with what was measured in its metadata
(``nrb_int8_time_ratio``: int8 / fp32 time; ``nrb_source_sha256``: the fp32 graph it was made from; the
``neural`` renderer's ``precision=auto`` takes the int8 graph only when the ratio is below 1 and the fp32 graph is
still that one). When none passes, nothing is written and the command exits 1.

Works on any graph ``neural_renderer.export`` writes (single-frame or wire temporal, any ``upscale``: an
upscaling model's guard feeds G-buffers subsampled by its factor, as training does)::

    python -m neural_renderer.quantize neural_renderer/weights/default_temporal.onnx   # -> ..._int8.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Largest accepted relative FLIP increase of int8 over fp32, per style, on the benchmark.
MAX_FLIP_INCREASE = 0.02
#: Candidates, tried in this order: convolutions kept in fp32 (by node-name fragment), activation calibration
#: (``minmax``, or ``percentile``: the 99.999th percentile of |x|, which ignores rare outliers that would
#: otherwise coarsen every other value's steps).
CANDIDATES: dict[str, tuple[tuple[str, ...], str]] = {
    "all": ((), "minmax"),
    "fp32_head": (("/head/", "/fuse_"), "minmax"),
    "fp32_head_percentile": (("/head/", "/fuse_"), "percentile"),
    "fp32_head_first": (("/head/", "/fuse_", "/enc0/"), "minmax"),
    "fp32_head_first_percentile": (("/head/", "/fuse_", "/enc0/"), "percentile"),
    "fp32_full_res_ends": (("/head/", "/fuse_", "/enc0/", "/dec0/"), "percentile"),
}
SPEED_SIZE = (640, 360)


class QuantizationRejected(Exception):
    """No int8 candidate kept the benchmark's FLIP within the guard (nothing was written)."""


@dataclass
class Guard:
    """The quality guard's measurements: per style, mean FLIP of fp32 and int8 against the ground truth."""

    frames: int
    fp32: dict[str, float]
    int8: dict[str, float]
    max_increase: float = MAX_FLIP_INCREASE
    increase: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.increase = {s: self.int8[s] / max(self.fp32[s], 1e-9) - 1.0 for s in self.fp32}

    @property
    def worst(self) -> float:
        return max(self.increase.values())

    @property
    def passed(self) -> bool:
        return self.worst <= self.max_increase


def _frames(root: Path, split: str, limit: int | None, upscale: int) -> list[tuple[Any, Any]]:
    """Dataset frames as (frame to render, frame its ground truth comes from), both ``EvalFrame``: the same
    frame, except that for an upscaling model the first has its G-buffers subsampled by ``upscale`` (the ground
    truth stays at full resolution, as in training)."""
    from neural_renderer.evaluate import load_paths

    frames = [f for p in load_paths(root, split, limit) for f in p]
    if upscale == 1:
        return [(f, f) for f in frames]
    out = []
    for f in frames:
        a = {k: (v[::upscale, ::upscale] if np.ndim(v) >= 2 and k != "reference" else v) for k, v in f.arrays.items()}
        a["motion_vectors"] = a["motion_vectors"] / upscale
        out.append((dataclasses.replace(f, arrays=a), f))
    return out


def _renderer(path: Path) -> Any:
    from bridge.renderers.neural import NeuralRenderer

    return NeuralRenderer(model=path, temporal=False, threads=2)


class _Calibration:
    """``onnxruntime.quantization.CalibrationDataReader``: training frames (whole camera paths, so with history)
    in turn in each style, fed as the renderer feeds them."""

    def __init__(self, model: Path, frames: list[Any]) -> None:
        self.model, self.frames = model, frames
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _feeds(self) -> Iterator[dict[str, np.ndarray]]:
        from bridge.renderers.neural import NeuralRenderer
        from bridge.style.library import DEFAULT_LIBRARY
        from neural_renderer.evaluate import one_style_map, render_inputs

        r = NeuralRenderer(model=self.model, temporal=True, threads=2)
        names = DEFAULT_LIBRARY.names
        for k, f in enumerate(self.frames):
            inputs = render_inputs(f)
            w, h = inputs.size
            smap = one_style_map(h, w, names[(k // 2) % len(names)])
            if f.index == 0:
                r.reset()  # a new camera path: no history
            yield r.feed(inputs, smap)  # later frames of a path carry the history a game's frames do
            r.render(inputs, smap)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._feeds()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def flip_per_style(model: Path, frames: list[tuple[Any, Any]]) -> dict[str, float]:
    """Mean LDR FLIP of ``model`` (through the ``neural`` renderer, single frame) per style on ``frames``."""
    from bridge.style.library import DEFAULT_LIBRARY
    from neural_renderer.evaluate import flip, one_style_map, render_inputs
    from nrb_bench.renderer import _targets

    r = _renderer(model)
    per: dict[str, list[float]] = {s: [] for s in DEFAULT_LIBRARY.names}
    for f, truth in frames:
        targets = _targets(truth, params=r.style_params)
        inputs = render_inputs(f)
        w, h = inputs.size
        for si, style in enumerate(DEFAULT_LIBRARY.names):
            out = r.render(inputs, one_style_map(h, w, style))[..., :3].astype(np.float32) / 255.0
            per[style].append(flip(targets[si], out)[0])
    return {s: float(np.mean(v)) for s, v in per.items()}


def time_ratio(fp32: Path, int8: Path, size: tuple[int, int] = SPEED_SIZE, repeats: int = 9) -> dict[str, float]:
    """Median ms per ``session.run`` of both graphs at ``size`` with 2 threads, interleaved, and the int8 / fp32
    ratios of wall and process CPU time."""
    from bridge.renderer import RenderInputs
    from bridge.style.library import DEFAULT_LIBRARY

    w, h = size
    rng = np.random.default_rng(0)
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    inputs = RenderInputs.from_arrays({
        "albedo": ("rgba8_srgb", rng.integers(0, 255, (h, w, 4), dtype=np.uint8)),
        "normals": ("rgba16f", np.concatenate([n, np.zeros((h, w, 1), np.float32)], -1).astype(np.float16)),
        "linear_depth": ("r32f", rng.uniform(1, 5, (h, w, 1)).astype(np.float32)),
        "motion_vectors": ("rg16f", np.zeros((h, w, 2), np.float16)),
    })
    smap = np.zeros((h, w, len(DEFAULT_LIBRARY)), np.float32)
    smap[..., DEFAULT_LIBRARY.index("photoreal")] = 1
    runs = {}
    for key, path in (("fp32", fp32), ("int8", int8)):
        r = _renderer(path)
        feed = r.feed(inputs, smap)
        r.session.run(None, feed)
        runs[key] = (r.session, feed)
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    cpu: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(repeats):
        for key, (sess, feed) in runs.items():
            c, t = time.process_time(), time.perf_counter()
            sess.run(None, feed)
            times[key].append(time.perf_counter() - t)
            cpu[key].append(time.process_time() - c)
    med = {k: statistics.median(v) for k, v in times.items()}
    wall = med["int8"] / med["fp32"]
    work = statistics.median(cpu["int8"]) / statistics.median(cpu["fp32"])
    # on a shared machine wall time swings with other work; CPU time (both threads) is the steadier measure of
    # what a frame costs. "ratio" (what precision=auto goes by) is the less favourable of the two
    return {"fp32_ms": med["fp32"] * 1e3, "int8_ms": med["int8"] * 1e3, "wall_ratio": wall, "cpu_ratio": work,
            "ratio": max(wall, work)}


def quantize_candidate(
    model: Path, out: Path, calibration: _Calibration, keep_fp32: tuple[str, ...], method: str = "minmax"
) -> None:
    """Static QDQ quantization of ``model``'s main convolutions, except those whose name contains one of
    ``keep_fp32``, activations calibrated with ``method`` (see :data:`CANDIDATES`)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre))
        convs = [
            n.name for n in graph.graph.node
            if n.op_type == "Conv" and "/film/" not in n.name and "_film/" not in n.name
            and not any(k in n.name for k in keep_fp32)
        ]
        calibration.rewind()
        quantize_static(
            str(pre), str(out), calibration,
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"], nodes_to_quantize=convs,
            calibrate_method=CalibrationMethod.Percentile if method == "percentile" else CalibrationMethod.MinMax,
            extra_options={"CalibPercentile": 99.999} if method == "percentile" else {},
        )


def _metadata(path: Path, source: Path, extra: dict[str, str]) -> None:
    """Copy ``source``'s ``nrb_*`` metadata (the renderer reads it) and add ``extra``."""
    import onnx

    src = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    model = onnx.load(str(path))
    have = {p.key for p in model.metadata_props}
    for key, value in {**src, **extra}.items():
        if key in have:
            next(p for p in model.metadata_props if p.key == key).value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))


def quantize(
    model: Path,
    out: Path | None = None,
    *,
    data: Path = Path("data"),
    calibration: Path | None = None,
    heldout: Path | None = None,
    calibration_frames: int = 32,
    guard_limit: int | None = None,
    max_increase: float = MAX_FLIP_INCREASE,
    candidates: tuple[str, ...] = tuple(CANDIDATES),
    log: Any = print,
) -> dict[str, Any]:
    """Quantize ``model`` (see the module docstring) into ``out`` (default: ``model`` with ``_int8`` before the
    suffix). ``data``: the benchmark's dataset root (training frames for calibration, the 512-spp held-out
    frames for the guard; rendered when missing, as ``nrb bench renderer`` does), unless ``calibration`` and
    ``heldout`` name other dataset roots (their train / test splits are used). ``guard_limit``: held-out
    paths to use (None = all: the benchmark). Returns the report; raises :class:`QuantizationRejected` when no
    candidate passes the guard."""
    import onnx

    from nrb_bench.renderer import ensure_data

    model = Path(model)
    out = Path(out) if out is not None else model.with_name(model.stem + "_int8" + model.suffix)
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    upscale = int(meta.get("nrb_upscale", "1"))
    if calibration is None or heldout is None:
        synth, bench_heldout, _ = ensure_data(Path(data))
        calibration, heldout = calibration or synth, heldout or bench_heldout
    calib = _Calibration(model, [f for f, _ in _frames(calibration, "train", None, upscale)][:calibration_frames])
    guard_frames = _frames(heldout, "test", guard_limit, upscale)
    t0 = time.perf_counter()
    fp32 = flip_per_style(model, guard_frames)
    log(f"fp32 FLIP per style on {len(guard_frames)} held-out frames: {json.dumps(fp32)}")
    tried: dict[str, Any] = {}
    best: tuple[float, str, Path] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in candidates:
            path = Path(tmp) / f"{name}.onnx"
            keep, method = CANDIDATES[name]
            quantize_candidate(model, path, calib, keep, method)
            guard = Guard(len(guard_frames), fp32, flip_per_style(path, guard_frames), max_increase)
            speed = time_ratio(model, path)
            tried[name] = {"keep_fp32": list(keep), "calibration": method, "int8_flip": guard.int8, "increase": guard.increase,
                           "worst_increase": guard.worst, "passed": guard.passed, **speed}
            log(f"candidate {name}: worst FLIP increase {100 * guard.worst:+.2f}% "
                f"({'passed' if guard.passed else 'FAILED'} the {100 * max_increase:.0f}% guard), "
                f"int8/fp32 time {speed['ratio']:.2f}x")
            if guard.passed and (best is None or speed["ratio"] < best[0]):
                best = (speed["ratio"], name, path)
        report: dict[str, Any] = {"model": str(model), "fp32_flip": fp32, "candidates": tried,
                                  "guard_frames": len(guard_frames), "max_increase": max_increase,
                                  "seconds": time.perf_counter() - t0}
        if best is None:
            worst = ", ".join(f"{k} {100 * v['worst_increase']:+.2f}%" for k, v in tried.items())
            raise QuantizationRejected(
                f"no int8 candidate kept FLIP within {100 * max_increase:.0f}% of fp32 on the benchmark "
                f"(worst increases: {worst}); "
                f"{out} was not written"
            )
        ratio, name, path = best
        _metadata(path, model, {
            "nrb_source_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
            "nrb_quantized": f"int8 QDQ per-channel U8S8, {CANDIDATES[name][1]} calibration, fp32 kept: "
                             f"{', '.join(CANDIDATES[name][0]) or 'none'}",
            "nrb_int8_time_ratio": f"{ratio:.3f}",
            "nrb_flip_guard": json.dumps({"frames": len(guard_frames), "fp32": fp32, "int8": tried[name]["int8_flip"],
                                          "worst_increase": tried[name]["worst_increase"]}),
        })
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(path.read_bytes())
    report["chosen"] = name
    report["out"] = str(out)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m neural_renderer.quantize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="an exported .onnx (nrb export)")
    ap.add_argument("--out", type=Path, default=None, help="default: MODEL with _int8 before the suffix")
    ap.add_argument("--data", type=Path, default=Path("data"), help="benchmark dataset root (default data/)")
    ap.add_argument("--calibration", type=Path, default=None, help="dataset root for calibration (train split)")
    ap.add_argument("--heldout", type=Path, default=None, help="dataset root for the guard (test split)")
    ap.add_argument("--calibration-frames", type=int, default=32)
    ap.add_argument("--guard-paths", type=int, default=None, help="held-out scenes for the guard (default: all)")
    ap.add_argument("--max-flip-increase", type=float, default=MAX_FLIP_INCREASE)
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help=f"of {', '.join(CANDIDATES)}")
    ap.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")
    args = ap.parse_args(argv)
    try:
        report = quantize(args.model, args.out, data=args.data, calibration=args.calibration,
                          heldout=args.heldout, calibration_frames=args.calibration_frames,
                          guard_limit=args.guard_paths, max_increase=args.max_flip_increase,
                          candidates=tuple(c for c in args.candidates.split(",") if c))
    except QuantizationRejected as exc:
        print(f"quantize: {exc}", file=sys.stderr)
        return 1
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=1))
    print(f"wrote {report['out']} (candidate {report['chosen']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
