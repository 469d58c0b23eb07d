"""``nrb bench renderer``: the neural renderer against the raster baseline and the path-traced reference.

Writes into ``out_dir``: ``renderer.json`` (every number), ``renderer.md`` (tables),
``renderer_grid_<style>.png`` (per style: rows = held-out frames; columns = albedo, normals, depth, raster,
neural, reference, raster FLIP error, neural FLIP error).

* Quality: every held-out scene of the recipe's dataset (never trained on), re-rendered with a converged
  reference (``REFERENCE_SPP``, ``data/heldout-128-spp512``; rendered here when absent), per style, PSNR /
  SSIM / FLIP (LDR, 67 ppd) of the raster baseline (the server's deferred shader, given each scene's lights as
  the lighting constants an engine sends, see ``neural_renderer.evaluate``) and of the neural renderer (shipped
  ONNX model, single frame, the same G-buffers and lighting constants), each against
  that style's ground truth (``neural_renderer.data.styles``).
* Temporal stability: the 6-frame held-out camera paths (``data/paths-128``). Warping error = mean |out_k −
  warp(out_{k−1})| over pixels the disocclusion mask keeps, the warp and mask being the model's own
  ``Reproject`` (motion vectors + depth test). Neural with and without the temporal path, and the reference's
  own.
* CPU fast path (issue 14 items 4 and 5): the ``neural`` renderer's whole time per frame (``render``: input
  conversion, ``session.run``, output packing) at 640x360 and 320x180 with 2 threads, for today's path (the wire
  graph, and the int8 graph when one is shipped) against the path before it (the float32 temporal graph of the
  plain network, exported from the same checkpoint in this run and fed by the numpy conversions), interleaved in
  one run; the Python time around the model is ``render`` minus ``session.run`` on the same frame. Wall-clock
  ratios plus process CPU-time ratios, which a machine shared with other work disturbs far less.
* Speed: ms per frame at 256x256, 960x540 and 1920x1080 in PyTorch and ONNX Runtime (this CPU), the
  multiply-adds per frame (counted from the convolutions), achieved FLOP/s (2 per multiply-add) and its
  fraction of this CPU's fp32 matrix-multiply peak, measured in the same run with ``torch.mm`` on 2048x2048
  matrices, with 1 and with 2 threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from nrb_bench.machine import cpu_name

DATA = Path("data")
SPEED_SIZES = ((256, 256), (960, 540), (1920, 1080))
GRID_FRAMES = 3


#: Samples per pixel of the benchmark's references: the held-out scenes are re-rendered this converged, so
#: that the metrics measure rendering error rather than the reference's own Monte Carlo noise.
REFERENCE_SPP = 512
#: The benchmark's scenes: the held-out ones (every 10th) of the first this many house-lit seeds.
HELDOUT_SCENES = 320


def ensure_data(data: Path, quick: bool = False) -> tuple[Path, Path, Path]:
    """(training scenes for fitting the raster baseline, held-out scenes at ``REFERENCE_SPP``, held-out camera
    paths); renders whatever is missing, with the recipe's settings (so the scenes are exactly the
    recipe's)."""
    from neural_renderer.data.dataset import MANIFEST, generate, load_manifest
    from neural_renderer.recipe import DEFAULTS, QUICK

    p: dict[str, Any] = dict(QUICK if quick else DEFAULTS)
    w, h = p["size"]
    # the held-out scenes and paths carry the engine image the model reads (hudless_color, issue 15); the
    # held-out scenes are the house-lit ones of the first HELDOUT_SCENES seeds, every 10th
    synth = data / f"synth-{w}"
    heldout, paths = data / f"heldout-engine-{w}-spp{REFERENCE_SPP}", data / f"paths-engine-{w}"
    common: dict[str, Any] = {"size": (w, h), "frames": p["frames"], "seed": p["seed"]}
    scenes = 12 if quick else HELDOUT_SCENES
    if (
        not (synth / MANIFEST).exists()
        or sum(s["split"] == "train" for s in load_manifest(synth)["scenes"].values()) < 8
    ):
        generate(synth, 9, spp=p["spp"], only_split="train", **common)
    if not (heldout / MANIFEST).exists() or len(load_manifest(heldout)["scenes"]) < scenes // 10:
        generate(heldout, scenes, spp=REFERENCE_SPP if not quick else 64, only_split="test", engine_image=True,
                 **common)
    if not (paths / MANIFEST).exists():
        generate(
            paths, p["path_scenes"], (w, h), spp=p["spp"], frames=p["path_frames"], seed=1, holdout_every=1,
            engine_image=True,
        )
    return synth, heldout, paths


def _targets(frame: Any, params: bool = False) -> np.ndarray:
    """(S, H, W, 3) ground truth of every style for one frame; with ``params`` (a parameter-conditioned model)
    each preset's target is that of its parameter row (``param_target``: ``photoreal`` with its own grade)."""
    import torch

    from neural_renderer.data.styles import all_style_targets, param_target

    a = frame.arrays

    def t(name: str) -> torch.Tensor:
        x = np.asarray(a[name], np.float32)
        x = x[..., None] if x.ndim == 2 else x
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    valid = t("normals").abs().sum(1, keepdim=True) > 0.1
    if params:
        from bridge.style.library import DEFAULT_LIBRARY, GRADING_START

        table = torch.from_numpy(DEFAULT_LIBRARY.table()[:, :GRADING_START].copy())
        h, w = valid.shape[-2:]
        tg = torch.cat([
            param_target(row.view(1, -1, 1, 1).expand(1, -1, h, w), t("reference"), t("normals"),
                         t("linear_depth"), t("emissive"), valid)
            for row in table
        ])
        return tg.permute(0, 2, 3, 1).numpy()
    tg = all_style_targets(t("reference"), t("normals"), t("linear_depth"), t("emissive"), valid)[0]
    return tg.permute(0, 2, 3, 1).numpy()


def _neural(renderer: Any, frame: Any, style_map: np.ndarray) -> np.ndarray:
    from neural_renderer.evaluate import render_inputs

    return renderer.render(render_inputs(frame), style_map)[..., :3].astype(np.float32) / 255.0


def quality(
    synth: Path, heldout: Path, model_dir: Path, limit: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-style metrics over the held-out frames of ``heldout``; also returns what the grids need."""
    from bridge.renderers.neural import NeuralRenderer
    from bridge.style.library import DEFAULT_LIBRARY
    from neural_renderer.data.dataset import load_manifest
    from neural_renderer.evaluate import fit_raster, flip, load_paths, one_style_map, psnr, raster, ssim

    neural = NeuralRenderer(model=model_dir / "default.onnx")
    params = neural.style_params  # a parameter-conditioned model: each preset's target is its row's
    fit_frames = [f for p in load_paths(synth, "train", 8) for f in p][:16]
    raster_opts = fit_raster(
        fit_frames, [_targets(f, params)[DEFAULT_LIBRARY.index("photoreal")] for f in fit_frames]
    )
    frames = [f for p in load_paths(heldout, "test", limit) for f in p]
    per: dict[str, dict[str, list[float]]] = {
        s: {
            k: []
            for k in (
                "raster_psnr",
                "raster_ssim",
                "raster_flip",
                "neural_psnr",
                "neural_ssim",
                "neural_flip",
            )
        }
        for s in DEFAULT_LIBRARY.names
    }
    grid: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in DEFAULT_LIBRARY.names}
    for fi, f in enumerate(frames):
        tg = _targets(f, params)
        h, w = tg.shape[1:3]
        for si, style in enumerate(DEFAULT_LIBRARY.names):
            smap = one_style_map(h, w, style)
            ref = tg[si]
            ras = raster(f, smap, raster_opts)
            neu = _neural(neural, f, smap)
            rf, rmap = flip(ref, ras)
            nf, nmap = flip(ref, neu)
            m = per[style]
            m["raster_psnr"].append(psnr(ref, ras))
            m["raster_ssim"].append(ssim(ref, ras))
            m["raster_flip"].append(rf)
            m["neural_psnr"].append(psnr(ref, neu))
            m["neural_ssim"].append(ssim(ref, neu))
            m["neural_flip"].append(nf)
            if fi < GRID_FRAMES * 2 and fi % 2 == 0:  # frame 0 of the first paths
                grid[style].append(
                    {
                        "albedo": f.arrays["albedo"],
                        "normals": f.arrays["normals"],
                        "depth": f.arrays["linear_depth"],
                        "raster": ras,
                        "neural": neu,
                        "reference": ref,
                        "raster_flip": rmap,
                        "neural_flip": nmap,
                    }
                )
    table = {}
    for style, m in per.items():
        row = {k: float(np.mean(v)) for k, v in m.items()}
        row["flip_ratio_raster_over_neural"] = row["raster_flip"] / max(row["neural_flip"], 1e-9)
        table[style] = row
    spp = load_manifest(heldout)["settings"]["spp"]
    return {
        "frames": len(frames),
        "scenes": len({f.scene for f in frames}),
        "reference_spp": spp,
        "raster_options": raster_opts,
        "per_style": table,
    }, grid


def temporal(
    paths_root: Path, model_dir: Path, styles: tuple[str, ...] = ("photoreal", "toon")
) -> dict[str, Any]:
    """Warping error of neural (temporal path on / off) and of the reference, per style."""
    import torch

    from bridge.renderers.neural import NeuralRenderer
    from bridge.style.library import DEFAULT_LIBRARY
    from neural_renderer.evaluate import load_paths, one_style_map
    from neural_renderer.models.features import Reproject

    rp = Reproject()
    paths = load_paths(paths_root, "test")

    def chw(x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x, np.float32)
        x = x[..., None] if x.ndim == 2 else x
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    def warp_err(seq: list[np.ndarray], path: list[Any]) -> list[float]:
        errs = []
        for k in range(1, len(seq)):
            a, b = path[k - 1].arrays, path[k].arrays
            wm = rp(chw(seq[k - 1]), chw(a["linear_depth"]), chw(b["motion_vectors"]), chw(b["linear_depth"]))
            mask = wm[:, 3:4]
            diff = ((chw(seq[k]) - wm[:, :3]).abs() * mask).sum() / (3 * mask.sum().clamp_min(1.0))
            errs.append(float(diff))
        return errs

    out: dict[str, Any] = {"paths": len(paths), "frames_per_path": len(paths[0]) if paths else 0}
    for style in styles:
        res: dict[str, list[float]] = {"neural_temporal": [], "neural_single_frame": [], "reference": []}
        for path in paths:
            h, w = path[0].arrays["linear_depth"].shape
            smap = one_style_map(h, w, style)
            on = NeuralRenderer(temporal=True)
            off = NeuralRenderer(model=model_dir / "default.onnx")
            res["neural_temporal"] += warp_err([_neural(on, f, smap) for f in path], path)
            res["neural_single_frame"] += warp_err([_neural(off, f, smap) for f in path], path)
            res["reference"] += warp_err([_targets(f, on.style_params)[DEFAULT_LIBRARY.index(style)] for f in path],
                                         path)
        out[style] = {k: float(np.mean(v)) for k, v in res.items()}
    return out


def matmul_peak(threads: int, n: int = 2048, repeats: int = 7) -> float:
    """Best fp32 FLOP/s of an n x n matrix multiply with ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def speed(model_dir: Path, thread_counts: tuple[int, ...] = (1, 2), quick: bool = False) -> dict[str, Any]:
    """Per thread count: this CPU's matmul peak, then ms/frame of PyTorch and ONNX Runtime at each size.

    Both thread counts are reported because on a shared CPU they behave very differently: OpenMP workers that
    busy-wait for a descheduled sibling can make 2 threads slower than 1 (ONNX Runtime runs with spinning off,
    as in the ``neural`` renderer; PyTorch's OpenMP pool cannot be switched once torch is loaded)."""
    import onnxruntime as ort
    import torch

    from neural_renderer.export import FloatGraph, graph_example_inputs
    from neural_renderer.models.net import count_macs, load_checkpoint

    net, _ = load_checkpoint(model_dir / "default.pt")
    graph = FloatGraph(net).eval()
    rows = []
    peaks: dict[int, list[float]] = {}
    sizes = SPEED_SIZES[:1] if quick else SPEED_SIZES
    for threads in thread_counts:
        torch.set_num_threads(threads)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as in bridge.renderers.neural
        sess = ort.InferenceSession(
            str(model_dir / "default.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in sess.get_inputs()]
        peaks[threads] = [matmul_peak(threads)]
        for w, h in sizes:
            args = graph_example_inputs(net, h, w)
            feed = {n: a.numpy() for n, a in zip(names, args, strict=True)}
            reps = 5 if w * h <= 256 * 256 else 3
            times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
            with torch.no_grad():
                graph(*args)
                for _ in range(reps):
                    t = time.perf_counter()
                    graph(*args)
                    times["torch"].append(time.perf_counter() - t)
            sess.run(None, feed)
            for _ in range(reps):
                t = time.perf_counter()
                sess.run(None, feed)
                times["onnxruntime"].append(time.perf_counter() - t)
            macs = count_macs(net, (h + 7) // 8 * 8, (w + 7) // 8 * 8)
            row: dict[str, Any] = {
                "width": w,
                "height": h,
                "threads": threads,
                "macs_per_frame": macs,
                "macs_per_pixel": macs / (w * h),
            }
            for k, v in times.items():
                med = statistics.median(v)
                row[f"{k}_ms"] = med * 1e3
                row[f"{k}_gflops"] = 2 * macs / med / 1e9
            rows.append(row)
        peaks[threads].append(matmul_peak(threads))
    for row in rows:
        peak = max(peaks[row["threads"]])
        row["matmul_peak_gflops"] = peak / 1e9
        for k in ("torch", "onnxruntime"):
            row[f"{k}_fraction_of_peak"] = row[f"{k}_gflops"] * 1e9 / peak
    torch.set_num_threads(max(thread_counts))
    return {
        "thread_counts": list(thread_counts),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "matmul_peak_gflops": {str(t): max(v) / 1e9 for t, v in peaks.items()},
        "matmul_peak_gflops_before_after": {str(t): [x / 1e9 for x in v] for t, v in peaks.items()},
        "rows": rows,
        "gpu": "none available to this run (CPU only)",
    }


FAST_PATH_SIZES = ((640, 360), (320, 180))


def _engine_frame(w: int, h: int, seed: int) -> Any:
    """A frame as the engine plugins send it: albedo rgba8_srgb, normals rgba16f, depth r32f with the camera's
    near/far (linearised by the renderer), roughness/metallic r8, emissive rgba16f, motion vectors rg16f, and the
    lighting constants."""
    from bridge.protocol import Camera
    from bridge.renderer import RenderInputs

    rng = np.random.default_rng(seed)
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    sun = np.zeros((1, 1, 4), np.float32)
    sun[0, 0, :3] = (0.45, 0.8, 0.4)
    return RenderInputs.from_arrays(
        {
            "albedo": ("rgba8_srgb", rng.integers(0, 255, (h, w, 4), dtype=np.uint8)),
            "normals": ("rgba16f", np.concatenate([n, np.zeros((h, w, 1), np.float32)], -1).astype(np.float16)),
            "depth": ("r32f", rng.uniform(0.9, 0.999, (h, w, 1)).astype(np.float32)),
            "roughness": ("r8", rng.integers(0, 255, (h, w, 1), dtype=np.uint8)),
            "metallic": ("r8", rng.integers(0, 2, (h, w, 1), dtype=np.uint8) * 255),
            "emissive": ("rgba16f", np.zeros((h, w, 4), np.float16)),
            "motion_vectors": ("rg16f", rng.normal(0, 0.5, (h, w, 2)).astype(np.float16)),
            "x_sun_direction": ("rgba32f", sun),
        },
        camera=Camera(near=0.1, far=100.0, mv_scale=(1.0, 1.0)),
    )


def _float_temporal_graph(model_dir: Path, out: Path) -> Path:
    """The temporal graph as it was before the fast path: the plain network, float32 NCHW inputs."""
    from neural_renderer.export import FloatGraph, _export, _tag, input_names
    from neural_renderer.models.net import example_inputs, load_checkpoint

    net, _ = load_checkpoint(model_dir / "default.pt")
    c = net.config
    path = out / "before_temporal.onnx"
    args = example_inputs(c.styles, 64, 64, upscale=c.upscale, temporal=True, lighting=c.lighting, params=c.params,
                          engine=c.engine)
    _export(FloatGraph(net, temporal=True).eval(), args, path, input_names(c.styles, True, c.lighting, c.engine),
            ["output", "x_output_srgb"])
    _tag(path, net)
    return path


class _TimedSession:
    """A session whose ``run`` adds its wall time to ``spent`` (so ``render`` minus it is the Python around it)."""

    def __init__(self, inner: Any, spent: list[float]) -> None:
        self.inner, self.spent = inner, spent

    def run(self, names: Any, feed: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.inner.run(names, feed)
        finally:
            self.spent.append(time.perf_counter() - t0)


def _timed_renderer(path: Path, threads: int) -> Any:
    """A ``NeuralRenderer`` whose ``session.run`` calls are timed into ``.spent``."""
    from bridge.renderers.neural import NeuralRenderer

    class Timed(NeuralRenderer):
        spent: list[float] = []

        @property
        def session(self) -> Any:
            return _TimedSession(super().session, self.spent)

    r = Timed(model=path, threads=threads)
    r.spent = []
    return r


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"640x360,320x180"`` -> ((640, 360), (320, 180)); ValueError on anything else."""
    sizes = []
    for part in text.split(","):
        w, sep, h = part.strip().lower().partition("x")
        if not sep or not w.isdigit() or not h.isdigit() or int(w) < 8 or int(h) < 8:
            raise ValueError(f"size {part!r} is not WIDTHxHEIGHT (at least 8x8)")
        sizes.append((int(w), int(h)))
    return tuple(sizes)


def fast_path(model_dir: Path, quick: bool = False, threads: int = 2,
              sizes: tuple[tuple[int, int], ...] | None = None, repeats: int | None = None) -> dict[str, Any]:
    """Renderer time per frame, today's path(s) against the float path before them (see the module docstring);
    ``sizes`` (default :data:`FAST_PATH_SIZES`, the smaller one only with ``quick``) and ``repeats`` (default 15,
    5 with ``quick``) narrow the run."""
    import tempfile

    from bridge.renderers.neural import default_model
    from bridge.style.library import DEFAULT_LIBRARY

    sizes = sizes or (FAST_PATH_SIZES[1:] if quick else FAST_PATH_SIZES)
    repeats = repeats or (5 if quick else 15)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32 before (float inputs)": _float_temporal_graph(model_dir, Path(tmp)),
                 "fp32 wire graph": model_dir / "default_temporal.onnx"}
        if (model_dir / "default_temporal_int8.onnx").is_file():
            paths["int8 wire graph"] = model_dir / "default_temporal_int8.onnx"
        renderers = {k: _timed_renderer(p, threads) for k, p in paths.items()}
        for w, h in sizes:
            frames = [_engine_frame(w, h, k) for k in range(2)]
            smap = np.zeros((h, w, len(DEFAULT_LIBRARY)), np.float32)
            smap[..., DEFAULT_LIBRARY.index("photoreal")] = 0.6
            smap[..., DEFAULT_LIBRARY.index("toon")] = 0.4
            for r in renderers.values():
                r.reset()
                r.render(frames[1], smap)
            wall: dict[str, list[float]] = {k: [] for k in renderers}
            cpu: dict[str, list[float]] = {k: [] for k in renderers}
            run: dict[str, list[float]] = {k: [] for k in renderers}
            for rep in range(repeats):
                for k, r in renderers.items():  # interleaved: each repeat runs every path once
                    frame = frames[rep % 2]
                    r.spent.clear()
                    c0, t0 = time.process_time(), time.perf_counter()
                    r.render(frame, smap)
                    wall[k].append(time.perf_counter() - t0)
                    cpu[k].append(time.process_time() - c0)
                    run[k].append(sum(r.spent))
            base = "fp32 before (float inputs)"
            for k in renderers:
                med, mrun, mcpu = (statistics.median(v[k]) for v in (wall, run, cpu))
                py = statistics.median(a - b for a, b in zip(wall[k], run[k], strict=True))
                rows.append({
                    "width": w, "height": h, "threads": threads, "path": k, "repeats": repeats,
                    "render_ms": med * 1e3, "render_best_ms": min(wall[k]) * 1e3, "session_run_ms": mrun * 1e3,
                    "python_ms": py * 1e3, "python_fraction": py / med, "cpu_ms": mcpu * 1e3,
                    "ratio_vs_before": med / statistics.median(wall[base]),
                    "best_ratio_vs_before": min(wall[k]) / min(wall[base]),
                    "cpu_ratio_vs_before": mcpu / statistics.median(cpu[base]),
                })
    return {"rows": rows, "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()), "default_precision_model": default_model("auto").name}


def fast_path_markdown(fp: dict[str, Any]) -> list[str]:
    lines = [
        f"## CPU fast path: renderer time per frame ({fp['rows'][0]['threads']} threads)",
        "",
        "The `neural` renderer's `render` (inputs as the plugins send them, `depth` linearised with the camera, "
        "output packed as uint8 RGBA) per path, interleaved in one run "
        f"({fp['rows'][0]['repeats']} repeats; load average at start {fp['load_average_at_start'][0]:.1f}, "
        "the machine is shared, so the ratios are what compare). *Before* = the float32 temporal graph of the "
        "plain network with the numpy conversions (the path before issue 14); *wire graph* = the shipped "
        "`default_temporal.onnx` (G-buffers in wire formats, rearranged network). Python = `render` minus "
        "`session.run` inside it (median over frames). CPU ratio = process CPU time, less disturbed by other work. "
        f"`precision=auto` runs `{fp['default_precision_model']}`.",
        "",
        "| size | path | render ms (median) | best | session.run ms | Python ms | ratio vs before | best ratio "
        "| CPU-time ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in fp["rows"]:
        lines.append(
            f"| {r['width']}x{r['height']} | {r['path']} | {r['render_ms']:.1f} | {r['render_best_ms']:.1f} | "
            f"{r['session_run_ms']:.1f} | {r['python_ms']:.1f} | {r['ratio_vs_before']:.2f}x | "
            f"{r['best_ratio_vs_before']:.2f}x | {r['cpu_ratio_vs_before']:.2f}x |"
        )
    return lines + ["", "Target (issue 14): at most 0.5x at 640x360."]


def _to_rgb8(img: np.ndarray, kind: str) -> np.ndarray:
    x = np.asarray(img, np.float32)
    if kind == "normals":
        x = x * 0.5 + 0.5
    elif kind == "depth":
        d = np.log(np.clip(x, 1e-3, None))
        lo, hi = np.percentile(d, 1), np.percentile(d, 99)
        x = 1 - np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1)
    elif kind == "albedo":
        x = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(np.clip(x, 0, 1), 1 / 2.4) - 0.055)
    elif kind == "flip":
        import matplotlib

        x = matplotlib.colormaps["magma"](np.clip(x, 0, 1))[..., :3]
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, -1)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


COLUMNS = (
    ("albedo", "albedo"),
    ("normals", "normals"),
    ("depth", "depth"),
    ("raster", "raster"),
    ("neural", "neural"),
    ("reference", "reference"),
    ("raster_flip", "flip"),
    ("neural_flip", "flip"),
)


def write_grid(rows: list[dict[str, np.ndarray]], path: Path, title: str, scale: int = 2) -> None:
    from PIL import Image, ImageDraw

    tiles = [[_to_rgb8(r[name], kind) for name, kind in COLUMNS] for r in rows]
    h, w = tiles[0][0].shape[:2]
    H, W = h * scale, w * scale
    header = 18
    canvas = Image.new("RGB", (W * len(COLUMNS), header * 2 + H * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill=(0, 0, 0))
    for c, (name, _) in enumerate(COLUMNS):
        draw.text((c * W + 4, header + 2), name.replace("_", " "), fill=(0, 0, 0))
    for r, row in enumerate(tiles):
        for c, t in enumerate(row):
            canvas.paste(
                Image.fromarray(t).resize((W, H), Image.Resampling.NEAREST), (c * W, header * 2 + r * H)
            )
    canvas.save(path)


def markdown(res: dict[str, Any]) -> str:
    q, t, s = res["quality"], res["temporal"], res["speed"]
    lines = [
        "# Neural renderer benchmark",
        "",
        f"Generated by `nrb_bench.renderer.run` ({res['seconds']:.0f} s). Model: `{res['model']}` "
        f"({res['params']} parameters). CPU: {s['cpu']} ({s['cpu_count']} cores); load average at start "
        f"{s['load_average_at_start'][0]:.1f} (this machine is shared, so timings are noisy). "
        + (
            f"GPU: none in this run; the GPU table at the end was measured on a {res['gpu']['device']} with "
            "`python -m nrb_bench.renderer_gpu` (its own `renderer_gpu.json`)."
            if res.get("gpu")
            else "GPU: none was available to this run, and no `renderer_gpu.json` was found, so there is no "
            "GPU table."
        ),
        "",
        f"## Quality on held-out scenes ({q['scenes']} scenes, {q['frames']} frames, 128x128, references at "
        f"{q['reference_spp']} spp)",
        "",
        "Each renderer against the style's ground truth (`neural_renderer.data.styles`). "
        "Both renderers get the same G-buffers and each scene's lights as lighting constants "
        "(`x_sun_direction`, `x_sun_irradiance`, `x_sky_radiance`). "
        "Raster = the server's deferred shader "
        "(options fitted on training scenes: "
        f"`{json.dumps(q['raster_options'])}`). Higher PSNR/SSIM and lower FLIP are better.",
        "",
        "| style | raster PSNR | neural PSNR | raster SSIM | neural SSIM | raster FLIP | neural FLIP "
        "| FLIP ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for style, r in q["per_style"].items():
        lines.append(
            f"| {style} | {r['raster_psnr']:.2f} | {r['neural_psnr']:.2f} | {r['raster_ssim']:.3f} | "
            f"{r['neural_ssim']:.3f} | {r['raster_flip']:.4f} | {r['neural_flip']:.4f} | "
            f"{r['flip_ratio_raster_over_neural']:.2f}x |"
        )
    pr = q["per_style"]["photoreal"]["flip_ratio_raster_over_neural"]
    lines += [
        "",
        f"Target: photoreal FLIP at least 2x lower than raster: **{pr:.2f}x** "
        f"({'met' if pr >= 2 else 'not met'}).",
        "",
        f"## Temporal stability ({t['paths']} held-out paths x {t['frames_per_path']} frames)",
        "",
        "Warping error: mean |out_k - warp(out_k-1)| (display sRGB, 0..1) over pixels the disocclusion mask "
        "keeps. The reference's own includes its Monte Carlo noise, which differs frame to frame.",
        "",
        "| style | neural, temporal path | neural, single frame | reference |",
        "|---|---|---|---|",
    ]
    for style in (k for k in t if isinstance(t[k], dict)):
        r = t[style]
        lines.append(
            f"| {style} | {r['neural_temporal']:.4f} | {r['neural_single_frame']:.4f} | "
            f"{r['reference']:.4f} |"
        )
    peaks = ", ".join(
        f"{t} thread{'s' if t != '1' else ''}: {v:.0f} GFLOP/s" for t, v in s["matmul_peak_gflops"].items()
    )
    lines += [
        "",
        "## Speed (single frame, batch 1, this CPU)",
        "",
        f"fp32 matrix-multiply peak measured in this run (torch.mm 2048x2048, best of 7, before and after "
        f"the timings): {peaks}. % of peak = achieved FLOP/s (2 per multiply-add) / that peak.",
        "",
        "| size | threads | multiply-adds/frame | PyTorch ms | ONNX Runtime ms | PyTorch % of peak | "
        "ORT % of peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in s["rows"]:
        lines.append(
            f"| {r['width']}x{r['height']} | {r['threads']} | {r['macs_per_frame'] / 1e9:.2f} G | "
            f"{r['torch_ms']:.1f} | {r['onnxruntime_ms']:.1f} | {100 * r['torch_fraction_of_peak']:.0f}% | "
            f"{100 * r['onnxruntime_fraction_of_peak']:.0f}% |"
        )
    if res.get("fast_path"):
        lines += ["", *fast_path_markdown(res["fast_path"])]
    lines += [
        "",
        f"Multiply-adds per pixel: {s['rows'][0]['macs_per_pixel']:.0f} (counted from the convolutions; "
        "1 multiply-add = 2 FLOP). Target: at least 30% of the matmul peak.",
        "",
        "## Comparison grids",
        "",
    ]
    for style in q["per_style"]:
        lines.append(f"* `{style}`: ![{style}](renderer_grid_{style}.png)")
    if res.get("gpu"):
        from nrb_bench.renderer_gpu import markdown_section

        lines += ["", *markdown_section(res["gpu"])]
        if res["gpu"].get("model_config") != res.get("model_config"):
            lines += ["", "**Stale:** that GPU table was measured on another architecture than this run's model."]
    return "\n".join(lines) + "\n"


def run(
    out_dir: Path | str,
    *,
    data: Path | str = DATA,
    model_dir: Path | None = None,
    quick: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """Run the whole benchmark; writes the JSON, Markdown and PNG grids into ``out_dir`` and returns the
    dict."""
    import torch

    from neural_renderer.models.net import load_checkpoint

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from bridge.renderers.neural import WEIGHTS

    model_dir = Path(model_dir) if model_dir is not None else WEIGHTS
    synth, heldout, paths = ensure_data(Path(data), quick)
    q, grid = quality(synth, heldout, model_dir, limit=2 if quick else None)
    tm = temporal(paths, model_dir)
    fp = fast_path(model_dir, quick=quick)
    sp = speed(model_dir, quick=quick)
    net, ck = load_checkpoint(model_dir / "default.pt")
    try:
        model_label = str((model_dir / "default.onnx").resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        model_label = str(model_dir / "default.onnx")
    res = {
        "quality": q,
        "temporal": tm,
        "speed": sp,
        "fast_path": fp,
        "model": model_label,
        "params": sum(p.numel() for p in net.parameters()),
        "training": ck.get("summary"),
        "model_config": net.config.to_dict(),
        "model_sha256": hashlib.sha256((model_dir / "default.pt").read_bytes()).hexdigest(),
        "seconds": time.perf_counter() - t0,
        # measured on another machine by nrb_bench.renderer_gpu (this one may have no GPU): shown, not re-run
        "gpu": json.loads((out / "renderer_gpu.json").read_text()) if (out / "renderer_gpu.json").is_file() else None,
    }
    for style, rows in grid.items():
        if rows:
            write_grid(rows, out / f"renderer_grid_{style}.png", f"style: {style}  (held-out scenes)")
    (out / "renderer.json").write_text(json.dumps(res, indent=1))
    (out / "renderer.md").write_text(markdown(res))
    return res


def run_fast_path(out_dir: Path | str, model_dir: Path | None = None, quick: bool = False,
                  sizes: tuple[tuple[int, int], ...] | None = None, repeats: int | None = None) -> dict[str, Any]:
    """Only the fast-path rows: rerun them into an existing ``renderer.json`` and rewrite ``renderer.md``."""
    from bridge.renderers.neural import WEIGHTS

    out = Path(out_dir)
    res = json.loads((out / "renderer.json").read_text())
    res["fast_path"] = fast_path(Path(model_dir) if model_dir is not None else WEIGHTS, quick=quick, sizes=sizes,
                                 repeats=repeats)
    (out / "renderer.json").write_text(json.dumps(res, indent=1))
    (out / "renderer.md").write_text(markdown(res))
    return res


def _main(args: Any) -> int:
    if args.fast_path_only:
        sizes = parse_sizes(args.fast_path_sizes) if args.fast_path_sizes else None
        fp = run_fast_path(args.out, args.model_dir, args.quick, sizes, args.repeats)["fast_path"]
        print("\n".join(fast_path_markdown(fp)))
        return 0
    res = run(args.out, data=args.data, model_dir=args.model_dir, quick=args.quick)
    ratio = res["quality"]["per_style"]["photoreal"]["flip_ratio_raster_over_neural"]
    print(f"renderer bench: {Path(args.out) / 'renderer.md'} (photoreal FLIP raster/neural {ratio:.2f}x)")
    return 0


def register(bench_sub: Any) -> None:
    """``nrb bench renderer`` with this benchmark's own options (``bridge.commands.bench`` calls this)."""
    p = bench_sub.add_parser("renderer", help="neural renderer vs raster baseline vs path-traced reference")
    p.add_argument("--out", type=Path, default=Path("bench"), help="report directory (default bench/)")
    p.add_argument("--quick", action="store_true", help="64x64 data, 2 held-out paths, 256x256 speed only")
    p.add_argument(
        "--data", type=Path, default=DATA, help="dataset root; missing sets are rendered (default data/)"
    )
    p.add_argument(
        "--model-dir", type=Path, default=None, help="directory with default.onnx/.pt (default: shipped)"
    )
    p.add_argument(
        "--fast-path-only",
        action="store_true",
        help="rerun only the CPU fast-path rows (640x360 and 320x180) into an existing renderer.json (1-3 min)",
    )
    p.add_argument("--fast-path-sizes", default=None, metavar="WxH[,WxH]",
                   help="with --fast-path-only: these sizes only (e.g. 640x360, the issue's target size)")
    p.add_argument("--repeats", type=int, default=None, help="with --fast-path-only: interleaved repeats (default 15)")
    p.set_defaults(func=_main)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m nrb_bench.renderer")
    ap.add_argument("--out", type=Path, default=Path("bench"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    r = run(a.out, data=a.data, model_dir=a.model_dir, quick=a.quick)
    print(markdown(r))
