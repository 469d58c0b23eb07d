"""Serving as a player sees it: a 60 fps game loop through libnrb against ``nrb serve --renderer neural``.

Each engine session is a thread running a game loop at its own 60 fps pace through libnrb
(``bridge._native.Client``) with its default settings (adaptive frames in flight, 100 ms deadline, shared memory):
per tick it writes the G-buffers into the slots libnrb hands out, submits, and asks for the newest result. A tick
that gets a result it has not shown before counts as a *fresh* frame; a tick that gets none is a *fallback* (the
game shows its own image). Latency is libnrb's round trip (submit to RESULT received) of each fresh result.

Scenarios, each run against the server under test (and, with ``--baseline DIR``, against the server of an older
checkout — e.g. ``git worktree add /tmp/nrb-before <commit>`` — with libnrb's old default of 2 frames in flight, in
the same run, interleaved and repeated):

* **closed loop**: one session alone, submit, wait for the result, submit again (the renderer's own rate), at
  320x180 and at 1280x720: the rate a game loop is judged against, and each size's own render time;
* **1 session**: the game loop at 320x180: shown-frame rate vs the closed-loop rate, fallbacks, p50/p99 latency;
* **4 sessions**: three 320x180 and one 1280x720 game loops at once: per-session fresh rate, its share of a 1-of-4
  fair share (a quarter of its size's closed-loop rate), p99 latency vs its render time alone (closed loop) and
  vs its render time in that run (libnrb's ``service_ms``: what the renderer took per frame without queueing);
* **server overhead** at 640x360: the closed loop's server time per frame (RESULT ``timing.total_ms``; its queue wait is
  about 0 in a closed loop) against the model's own time, ``session.run`` of the same renderer, model and thread count on the
  same G-buffers in this process, timed before and after each server run while the server is idle (so the two
  never share the cores), in ``OVERHEAD_ROUNDS`` alternating rounds; each round's model time is the mean of the
  model runs around it (a linear drift cancels), and the overhead is the median of the rounds' ratios (the
  machine's speed drifts by more than the 5 % judged between minutes, not within a round). What is left is the
  server's Python: shared-memory copy, decode, style map, hooks, input conversion, grading, encode; and the model
  running slower among the engine's and the server's other threads than alone. The same rounds are also split in
  the server, frame by frame, from its metrics (``nrb_inference_seconds`` against ``nrb_frame_latency_seconds``:
  the same frames, so no drift): the server's own work against its model's inference.

* **GPU** (``--part gpu``, also run by the default ``--part all``): the issue's GPU targets, through ``nrb serve
  --device`` on the same host with shared memory: 1920x1080 output (closed-loop rate >= 60 fps; a 60 fps game loop's
  p50 round trip under 16.7 ms) and 3840x2160 output with the 2x model from 1920x1080 G-buffers (closed-loop rate
  >= 30 fps). It asks ONNX Runtime where ``--device auto`` would run (``select_device``, the server's own rule): on
  a machine without a GPU it measures nothing and its report (``serve_gpu.md``) says so and why. Its own files, so
  a GPU run on another machine never overwrites this machine's CPU report.

Ratios are what to compare: the machine is shared and noisy, so every scenario of both servers runs in one
invocation, alternating, ``--repeat`` times, and the report keeps the median of the repeats. Each of issue 14's
targets is also judged on every repeat (``_verdicts``): in one afternoon on this 2-core machine the same 1-session
scenario gave 1.2 % and 19 % fallbacks, so a median of a few repeats passes or fails by chance where the repeats fall
on both sides of a target, and the report says so rather than give a verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bridge.commands.serve import spawn_server, stop_server
from bridge.scene import BUFFERS, SyntheticScene
from nrb_bench.machine import cpu_name, free_port
from nrb_bench.verdicts import of_repeats

FPS = 60.0
#: How often the closed loop asks libnrb for its answer (its latency figure is libnrb's own receive time, so
#: the poll interval only adds idle time between frames, about half of it on average).
CLOSED_LOOP_POLL_S = 0.002
#: Rounds of the server-overhead measurement: server closed loop and model alone alternate, this many times.
OVERHEAD_ROUNDS = 7
#: Seconds of each overhead run (server closed loop, model alone): short, so the machine drifts little within a round.
OVERHEAD_SECONDS = 3.0
SMALL = (320, 180)
LARGE = (1280, 720)
MEDIUM = (640, 360)
FULL_HD = (1920, 1080)
UHD = (3840, 2160)
#: The issue's GPU targets: closed-loop fps per output, and the 1080p game loop's p50 round trip.
GPU_FPS_TARGETS = {"1920x1080": 60.0, "3840x2160 from 1920x1080": 30.0}
GPU_P50_TARGET_MS = 1000.0 / FPS
FORMATS = {s.name: s.format for s in BUFFERS} | {"hudless_color": "rgba8_srgb"}


def _arrays(size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The synthetic scene's G-buffers plus an engine image (``hudless_color``, which every plugin sends by default
    and a model that takes the engine's image reads; the scene's albedo stands in for it: the bytes and the work
    are what count here)."""
    arrays, _ = SyntheticScene(*size, animate=False).gbuffers(0.0)
    out = {n: np.ascontiguousarray(a) for n, a in arrays.items() if n in FORMATS}
    out["hudless_color"] = out["albedo"].copy()
    return out


class _Session:
    """One engine: a libnrb client and the loop that feeds it."""

    def __init__(self, endpoint: str, size: tuple[int, int], frames_in_flight: int | None,
                 deadline_ms: float | None = None, output_size: tuple[int, int] | None = None) -> None:
        from bridge import _native

        self.size = size
        self.arrays = _arrays(size)
        kw: dict[str, Any] = {}
        if output_size is not None:  # larger than the G-buffers: the renderer upscales (the 2x model)
            kw["output_size"] = output_size
        if frames_in_flight is not None:
            kw["frames_in_flight"] = frames_in_flight
        if deadline_ms is not None:
            kw["deadline_ms"] = deadline_ms
        self.client = _native.Client(endpoint=endpoint, render_size=size, engine="bench-serve",
                                     buffers=[(n, FORMATS[n]) for n in self.arrays], handshake_timeout_ms=20_000,
                                     server_timeout_ms=30_000, **kw)
        self.ticks = self.fallbacks = self.fresh = 0
        self.latencies: list[float] = []
        self.server_ms: list[float] = []
        self.limits: list[int] = []
        self.service: list[float] = []  # libnrb's renderer service time (stats service_ms), sampled
        self.result_size = (0, 0)  # the last answered image's (w, h) in the closed loop: the output size

    def wait_connected(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while self.client.stats()["state"] != "connected":
            if time.monotonic() > end:
                raise RuntimeError(f"libnrb did not connect: {self.client.last_error}")
            time.sleep(0.01)

    def _frame(self) -> int:
        w, h = self.size
        fid = int(self.client.begin())
        if self.client.frame_live():  # as an engine does: no readback or copy for a frame that will not be sent
            for name, a in self.arrays.items():
                view = self.client.acquire_slot(name, FORMATS[name], w, h)
                np.copyto(view.reshape(a.shape), a)
                del view
        self.client.submit()
        return fid

    def game_loop(self, until: float, measure_from: float) -> None:
        """60 fps at its own pace until ``until``; counts from ``measure_from``."""
        period = 1.0 / FPS
        next_tick = time.perf_counter()
        last_shown = -1
        while True:
            now = time.perf_counter()
            if now >= until:
                return
            self._frame()
            got = self.client.acquire_result(with_info=True)
            counting = now >= measure_from
            if got is None:
                if counting:
                    self.fallbacks += 1
            else:
                info = got[1]
                del got
                if info["frame_id"] != last_shown:
                    last_shown = info["frame_id"]
                    if counting:
                        self.fresh += 1
                        self.latencies.append(info["round_trip_ms"])
                        self.server_ms.append(info["server_ms"])
            if counting:
                self.ticks += 1
                if self.ticks % 30 == 0:
                    st = self.client.stats()
                    self.limits.append(int(st.get("in_flight_limit", 0)))
                    if st.get("service_ms", 0.0) > 0.0:
                        self.service.append(float(st["service_ms"]))
            next_tick += period
            delay = next_tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_tick = time.perf_counter()  # behind: do not try to catch up with a burst

    def closed_loop(self, until: float, measure_from: float) -> None:
        """Submit, wait until that frame is answered, submit again."""
        while time.perf_counter() < until:
            sent_before = self.client.stats()["frames_sent"]
            fid = self._frame()
            end = time.monotonic() + 30
            while True:
                got = self.client.acquire_result(with_info=True)
                if got is not None and got[1]["frame_id"] == fid:
                    info = got[1]
                    self.result_size = (int(got[0].shape[1]), int(got[0].shape[0]))  # (w, h) of the image shown
                    del got
                    if time.perf_counter() >= measure_from:
                        self.fresh += 1
                        self.latencies.append(info["round_trip_ms"])
                        self.server_ms.append(info["server_ms"])
                    break
                del got
                st = self.client.stats()
                if st["frames_sent"] > sent_before and st["in_flight"] == 0:
                    break  # answered without an image to show (skipped or late): go on
                if time.monotonic() > end:
                    raise RuntimeError(f"no answer for frame {fid}: {st}")
                # libnrb has no blocking wait: poll, but seldom enough that the polling thread does not take CPU
                # from the renderer on the same cores (at 0.5 ms it measurably slowed the 640x360 frames)
                time.sleep(CLOSED_LOOP_POLL_S)

    def report(self, seconds: float) -> dict[str, Any]:
        lat = np.asarray(self.latencies) if self.latencies else np.zeros(1)
        s = self.client.stats()
        return {
            "size": f"{self.size[0]}x{self.size[1]}",
            "result_size": f"{self.result_size[0]}x{self.result_size[1]}",
            "fresh_fps": self.fresh / seconds,
            "ticks": self.ticks,
            "fallback_pct": 100.0 * self.fallbacks / self.ticks if self.ticks else 0.0,
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "server_p50_ms": float(np.median(self.server_ms)) if self.server_ms else 0.0,
            # this session's render time in this run (without queueing), as libnrb sees it from the answers
            "service_ms": float(np.median(self.service)) if self.service else 0.0,
            "in_flight_limit": statistics.median(self.limits) if self.limits else s.get("in_flight_limit", 0),
            "results_received": s["results_received"],
            "results_late": s["results_late"],
            "rtt_p50_ms": s["rtt_p50_ms"],
            "frames_dropped": s["frames_dropped"],
        }

    def close(self) -> None:
        self.client.close()


def _run(endpoint: str, sizes: list[tuple[int, int]], mode: str, seconds: float, warmup: float,
         frames_in_flight: int | None, output_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    # The closed loop measures the renderer, not what a player would see: no deadline gets in its way.
    deadline = 60_000.0 if mode == "closed_loop" else None
    sessions = [_Session(endpoint, s, frames_in_flight, deadline, output_size) for s in sizes]
    try:
        for s in sessions:
            s.wait_connected()
        start = time.perf_counter()
        measure_from, until = start + warmup, start + warmup + seconds
        threads = [threading.Thread(target=getattr(s, mode), args=(until, measure_from)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [s.report(seconds) for s in sessions]
    finally:
        for s in sessions:
            s.close()


def _model_only(size: tuple[int, int], seconds: float, threads: int) -> dict[str, float]:
    """The model's own time per frame: ``session.run`` of the server's default renderer (``neural``) on the bench's
    G-buffers, with the thread budget a lone session gets in ``nrb serve`` (every core)."""
    from bridge.protocol import Buffer
    from bridge.renderer import RenderInputs
    from bridge.renderers.neural import NeuralRenderer

    w, h = size
    _, cam = SyntheticScene(w, h, animate=False).gbuffers(0.0)
    bufs = {n: Buffer.from_array(n, FORMATS[n], a) for n, a in _arrays(size).items()}
    renderer = NeuralRenderer(threads=threads)
    style_map = np.zeros((h, w, renderer.styles or 1), np.float32)
    style_map[..., 0] = 1.0
    feed = renderer.feed(RenderInputs(bufs, size=size, camera=cam), style_map)
    session = renderer.session
    for _ in range(3):
        session.run(None, feed)
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"model_p50_ms": float(np.median(times)), "model_runs": float(len(times))}


def _scrape(port: int) -> dict[str, float]:
    """The server's Prometheus metrics (``nrb serve --metrics``), by sample name with its labels."""
    from bridge.server.observers import read_metrics

    return read_metrics(f"http://127.0.0.1:{port}/metrics")


def _own_work(before: dict[str, float], after: dict[str, float]) -> dict[str, float] | None:
    """Between two scrapes, per rendered frame (means over the same frames): the latency (received to RESULT
    sent), the model's inference (``nrb_inference_seconds``) and the server's own work, their difference; None
    when the server does not report its inference (an older one) or rendered nothing."""
    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    n = delta("nrb_inference_seconds_count")
    if "nrb_inference_seconds_count" not in after or n <= 0 or delta("nrb_frame_latency_seconds_count") != n:
        return None
    latency = 1e3 * delta("nrb_frame_latency_seconds_sum") / n
    inference = 1e3 * delta("nrb_inference_seconds_sum") / n
    return {"frames": n, "latency_ms": latency, "inference_ms": inference, "own_ms": latency - inference,
            "own_of_inference": (latency - inference) / max(inference, 1e-9)}


def _baseline_env(tree: Path, tmp: Path) -> dict[str, str]:
    """Environment that makes ``python -m bridge.cli`` import the ``bridge`` of another checkout (bypassing this
    one's editable install). ``PYTHONSAFEPATH``: ``-m`` would otherwise put the working directory first on
    ``sys.path``, so run from this checkout's root the "baseline" server would be this checkout's."""
    shim = tmp / "sitecustomize.py"
    shim.write_text("import sys\n"
                    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
                    f"sys.path.insert(0, {str(tree)!r})\n")
    return {"PYTHONPATH": str(tmp), "PYTHONSAFEPATH": "1"}


def _serve(args: list[str], log: Path, env: dict[str, str] | None) -> tuple[Any, str]:
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        return spawn_server(args, log, timeout=120)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(out_dir: Path, *, quick: bool = False, baseline: str | None = None, repeat: int = 3,
        seconds: float | None = None, serve_args: list[str] | None = None, gpu: bool = True) -> dict[str, Any]:
    """The CPU scenarios (``serve.md``), then, with ``gpu``, the GPU part (``serve_gpu.md``; ``make bench``)."""
    from bridge import _native

    if not hasattr(_native, "Client"):
        raise RuntimeError("bridge._native was built without the client (run `make setup`)")
    seconds = seconds or (4.0 if quick else 10.0)
    warmup = 1.5 if quick else 3.0
    repeat = 1 if quick else repeat
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="nrb-bench-serve-"))
    servers: dict[str, tuple[dict[str, str] | None, int | None]] = {"after": (None, None)}
    if baseline:
        servers = {"before": (_baseline_env(Path(baseline).resolve(), tmp), 2), **servers}
    scenarios = {
        "closed_loop_320x180": ([SMALL], "closed_loop"),
        "closed_loop_1280x720": ([LARGE], "closed_loop"),
        "game_loop_1_session": ([SMALL], "game_loop"),
        "game_loop_4_sessions": ([SMALL, SMALL, SMALL, LARGE], "game_loop"),
    }
    runs: dict[str, dict[str, list[list[dict[str, Any]]]]] = {k: {s: [] for s in scenarios} for k in servers}
    overhead: dict[str, list[dict[str, Any]]] = {k: [] for k in servers}
    model_only: list[dict[str, float]] = []
    procs: dict[str, tuple[Any, str]] = {}
    # this checkout's server reports its model's inference per frame (nrb_inference_seconds): the overhead rounds
    # also split each frame into the model's time and the server's own, on the same frames (_own_work)
    metrics_port = {"after": free_port()}
    own: dict[str, list[dict[str, float] | None]] = {k: [] for k in servers}
    try:
        for label, (env, _) in servers.items():
            extra = ["--metrics", str(metrics_port[label])] if label in metrics_port else []
            procs[label] = _serve(["--renderer", "neural", *extra, *(serve_args or [])], tmp / f"{label}.log", env)
        for r in range(repeat):
            for scen, (sizes, mode) in scenarios.items():
                for label, (_, fif) in servers.items():
                    print(f"[serve] {r + 1}/{repeat} {scen} {label}", flush=True)
                    runs[label][scen].append(_run(procs[label][1], sizes, mode, seconds, warmup, fif))
        # Server overhead at 640x360: the model alone and the server's closed loop alternate in short rounds
        # (the machine's speed drifts by more than the 5 % being judged over a minute), each server run bracketed
        # by a model-alone run before and after it, so that a linear drift cancels; one ratio per round.
        rounds = 2 if quick else OVERHEAD_ROUNDS
        span = OVERHEAD_SECONDS if not quick else 2.0
        model_only.append(_model_only(MEDIUM, span, os.cpu_count() or 2))
        for r in range(rounds):
            for label in servers:
                print(f"[serve] overhead round {r + 1}/{rounds} {label}", flush=True)
                port = metrics_port.get(label)
                m0 = _scrape(port) if port else {}
                overhead[label].append(_run(procs[label][1], [MEDIUM], "closed_loop", span, 1.0, None)[0])
                own[label].append(_own_work(m0, _scrape(port)) if port else None)
            print(f"[serve] overhead round {r + 1}/{rounds} model only", flush=True)
            model_only.append(_model_only(MEDIUM, span, os.cpu_count() or 2))
    finally:
        for proc, _ in procs.values():
            stop_server(proc)

    def median_runs(rs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        out = []
        for i in range(len(rs[0])):
            row = dict(rs[0][i])
            for k, v in rs[0][i].items():
                if isinstance(v, (int, float)):
                    row[k] = float(statistics.median(float(x[i][k]) for x in rs))
            out.append(row)
        return out

    model_ms = float(statistics.median(m["model_p50_ms"] for m in model_only))
    # the model-alone time of round r: the mean of the runs just before and just after that round's server runs
    bracket = [(a["model_p50_ms"] + b["model_p50_ms"]) / 2 for a, b in zip(model_only, model_only[1:])]
    results: dict[str, Any] = {}
    for label in servers:
        res = {scen: median_runs(rs) for scen, rs in runs[label].items()}
        closed_small = res["closed_loop_320x180"][0]
        closed_large = res["closed_loop_1280x720"][0]
        one = res["game_loop_1_session"][0]
        summary: dict[str, Any] = {
            "closed_loop_fps_320x180": closed_small["fresh_fps"],
            "closed_loop_fps_1280x720": closed_large["fresh_fps"],
            "render_ms_320x180": closed_small["server_p50_ms"],
            "render_ms_1280x720": closed_large["server_p50_ms"],
            "server_ms_640x360": float(statistics.median(o["server_p50_ms"] for o in overhead[label])),
            "model_ms_640x360": model_ms,
            # per round: the server's p50 over the model's p50 around it; the median of the rounds
            "server_overhead_640x360": float(statistics.median(
                o["server_p50_ms"] / max(m, 1e-9) - 1.0 for o, m in zip(overhead[label], bracket, strict=True))),
            "overhead_rounds": [o["server_p50_ms"] / max(m, 1e-9) - 1.0
                                for o, m in zip(overhead[label], bracket, strict=True)],
            # the same frames split in the server: its own work over its model's inference, per round
            "own_work_rounds": own[label],
            "one_session": {
                "shown_fps": one["fresh_fps"],
                "p50_ms": one["p50_ms"], "p99_ms": one["p99_ms"],
                # the medians' ratios, as each repeat's below (a p50 of 0, no frame shown, reads 0x)
                "p50_vs_closed_loop_round_trip": 0.0,
                **_one_session_round(one, closed_small),
                # the least a game loop can get: the frame that goes out when the renderer frees up was submitted
                # on the last tick, on average half a game frame earlier (see _markdown)
                "p50_floor_ms": closed_small["p50_ms"] + 500.0 / FPS,
                "p50_vs_floor": one["p50_ms"] / max(closed_small["p50_ms"] + 500.0 / FPS, 1e-9),
                "in_flight_limit": one["in_flight_limit"],
                # each repeat's ratios against the closed loop of the same repeat: what the verdicts judge
                "rounds": [_one_session_round(g[0], c[0]) for g, c in
                           zip(runs[label]["game_loop_1_session"], runs[label]["closed_loop_320x180"], strict=True)],
            },
            "four_sessions": [],
        }
        for s in res["game_loop_4_sessions"]:
            closed = closed_small if s["size"] == "320x180" else closed_large
            summary["four_sessions"].append({
                "size": s["size"], "fallback_pct": s["fallback_pct"],
                "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"],
                "fair_share_fps": closed["fresh_fps"] / 4,
                **_four_sessions_round(s, closed),  # shown_fps, of_fair_share, p99_vs_render (0 when none shown)
                "service_ms": s["service_ms"],
                "p99_vs_service": s["p99_ms"] / s["service_ms"] if s["service_ms"] > 0 and s["fresh_fps"] > 0 else 0.0,
            })
        for i, sess in enumerate(summary["four_sessions"]):
            key = "closed_loop_320x180" if sess["size"] == "320x180" else "closed_loop_1280x720"
            sess["rounds"] = [_four_sessions_round(g[i], c[0]) for g, c in
                              zip(runs[label]["game_loop_4_sessions"], runs[label][key], strict=True)]
        summary["verdicts"] = _verdicts(summary)
        results[label] = {"summary": summary, "scenarios": res, "repeats": runs[label]}
    report = {
        "bench": "serve", "cpu": cpu_name(), "cores": os.cpu_count(), "device": "cpu",
        "python": sys.version.split()[0], "seconds_per_run": seconds, "warmup_s": warmup, "repeat": repeat,
        "baseline": baseline, "serve_args": serve_args or [], "servers": results, "model_only_640x360": model_only,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (out_dir / "serve.json").write_text(json.dumps(report, indent=1))
    (out_dir / "serve.md").write_text(_markdown(report))
    if gpu:
        run_gpu(out_dir, quick=quick, repeat=repeat, seconds=seconds, serve_args=serve_args)
    return report


def run_gpu(out_dir: Path, *, quick: bool = False, repeat: int = 2, seconds: float | None = None,
            serve_args: list[str] | None = None, device: str = "auto") -> dict[str, Any]:
    """The GPU targets through ``nrb serve --device``; on a machine without a GPU, a report that says so and why.

    ``device`` is resolved by the server's own rule (``select_device``), so the bench and ``nrb serve`` agree on
    whether there is a GPU; an explicit ``cuda[:N]`` that cannot be met raises ``DeviceUnavailableError`` rather
    than measuring the CPU under a GPU heading.
    """
    from bridge.renderers.ort_session import select_device

    choice = select_device(device)
    report: dict[str, Any] = {
        "bench": "serve_gpu", "cpu": cpu_name(), "cores": os.cpu_count(), "device": choice.device,
        "where": choice.describe(), "available": choice.device != "cpu", "targets_fps": GPU_FPS_TARGETS,
        "target_p50_ms": GPU_P50_TARGET_MS, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": [],
    }
    if report["available"]:
        x2 = Path(__file__).resolve().parents[1] / "neural_renderer" / "weights" / "default_x2_temporal.onnx"
        # each output served as a game would: 4K from 1080p G-buffers by the 2x model (as `make demo` serves it)
        cases = {"1920x1080": (FULL_HD, None, []),
                 "3840x2160 from 1920x1080": (FULL_HD, UHD, ["-o", f"model={x2}"])}
        for row in measure_outputs(choice.device, cases, seconds=seconds or (4.0 if quick else 10.0),
                                   warmup=1.5 if quick else 3.0, repeat=1 if quick else repeat,
                                   serve_args=serve_args):
            target = GPU_FPS_TARGETS[row["output"]]
            report["rows"].append({**row, "target_fps": target, "fps_met": row["closed_loop_fps"] >= target})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "serve_gpu.json").write_text(json.dumps(report, indent=1))
    (out_dir / "serve_gpu.md").write_text(_markdown_gpu(report))
    return report


def measure_outputs(device: str, cases: dict[str, tuple[tuple[int, int], tuple[int, int] | None, list[str]]], *,
                    seconds: float, warmup: float, repeat: int,
                    serve_args: list[str] | None = None) -> list[dict[str, Any]]:
    """Per case (G-buffer size, output size or None, extra ``nrb serve`` arguments): one ``nrb serve --device
    DEVICE`` and one session on it, closed loop then a 60 fps game loop, ``repeat`` times; medians per case."""
    tmp = Path(tempfile.mkdtemp(prefix="nrb-bench-serve-gpu-"))
    rows: list[dict[str, Any]] = []
    for case, (size, output, extra) in cases.items():
        got: dict[str, list[dict[str, Any]]] = {"closed_loop": [], "game_loop": []}
        proc, endpoint = _serve(["--renderer", "neural", "--device", device, *extra, *(serve_args or [])],
                                tmp / f"serve_{len(rows)}.log", None)
        try:
            for r in range(repeat):
                for mode in got:
                    print(f"[serve gpu] {r + 1}/{repeat} {case} {mode}", flush=True)
                    got[mode].append(_run(endpoint, [size], mode, seconds, warmup, None, output)[0])
        finally:
            stop_server(proc)
        closed, game = ({k: float(statistics.median(run[k] for run in got[m]))
                         for k in ("fresh_fps", "p50_ms", "p99_ms", "fallback_pct", "server_p50_ms")}
                        for m in ("closed_loop", "game_loop"))
        rows.append({
            "output": case, "result_size": got["closed_loop"][0]["result_size"],
            "closed_loop_fps": closed["fresh_fps"], "server_ms": closed["server_p50_ms"],
            "closed_loop_p50_ms": closed["p50_ms"], "game_loop_shown_fps": game["fresh_fps"],
            "game_loop_p50_ms": game["p50_ms"], "game_loop_p99_ms": game["p99_ms"],
            "game_loop_fallback_pct": game["fallback_pct"],
        })
    return rows


def _markdown_gpu(rep: dict[str, Any]) -> str:
    lines = ["# `nrb bench serve --part gpu`: the GPU targets through `nrb serve --device`", "",
             f"Machine: {rep['cpu']}, {rep['cores']} cores. Device: {rep['where']}. Measured {rep['when']}.", ""]
    if not rep["available"]:
        targets = ", ".join(f"{k} at {v:g} fps or more" for k, v in rep["targets_fps"].items())
        return "\n".join(lines + [
            f"**No GPU here, so nothing was measured**: {targets}, and a 1080p game loop's p50 round trip under "
            f"{rep['target_p50_ms']:.1f} ms, are the targets. Run `nrb bench serve --part gpu` on a machine with "
            "an NVIDIA GPU and `onnxruntime-gpu`.", ""])
    lines += ["| output | closed-loop fps | target | met? | server ms | game loop: shown fps | p50 ms | p99 ms | "
              "fallbacks |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        lines.append(f"| {r['output']} | {r['closed_loop_fps']:.1f} | {r['target_fps']:g} | "
                     f"{'yes' if r['fps_met'] else 'no'} | {r['server_ms']:.1f} | {r['game_loop_shown_fps']:.1f} | "
                     f"{r['game_loop_p50_ms']:.1f} | {r['game_loop_p99_ms']:.1f} | "
                     f"{r['game_loop_fallback_pct']:.1f} % |")
    lines += ["", f"Round-trip target at 1920x1080: p50 under {rep['target_p50_ms']:.1f} ms (the game loop's p50 "
              "column, which includes the transport).", ""]
    return "\n".join(lines)


def _one_session_round(game: dict[str, Any], closed: dict[str, Any]) -> dict[str, float]:
    """One repeat of the 1-session game loop, judged against the closed loop of the same repeat (the machine's speed
    drifts between repeats by more than some targets allow)."""
    out = {"fallback_pct": game["fallback_pct"], "shown_vs_closed_loop": game["fresh_fps"] / max(closed["fresh_fps"], 1e-9)}
    if game["fresh_fps"] > 0:  # no frame shown, no latency (its p50 reads 0): not a repeat that meets the target
        out["p50_vs_closed_loop_round_trip"] = game["p50_ms"] / max(closed["p50_ms"], 1e-9)
    return out


def _four_sessions_round(game: dict[str, Any], closed: dict[str, Any]) -> dict[str, float]:
    """One session of one repeat of the 4-session game loop against its size's closed loop in the same repeat."""
    return {"of_fair_share": game["fresh_fps"] / max(closed["fresh_fps"] / 4, 1e-9),
            "p99_vs_render": game["p99_ms"] / max(closed["server_p50_ms"], 1e-9) if game["fresh_fps"] > 0 else 0.0,
            "shown_fps": game["fresh_fps"]}


#: Issue 14's CPU targets for the two game-loop scenarios, in its words ("at least", "under", "at most", "not
#: exceed"): (what, which sessions, the summary key, the comparison, the bound).
TARGETS: list[tuple[str, str, str, str, float]] = [
    ("1 session: shown / closed-loop rate", "one", "shown_vs_closed_loop", ">=", 0.9),
    ("1 session: fallbacks (%)", "one", "fallback_pct", "<", 2.0),
    ("1 session: p50 / closed-loop round trip", "one", "p50_vs_closed_loop_round_trip", "<=", 1.3),
    ("4 sessions: each 320x180 session's share of its fair share", "small", "of_fair_share", ">=", 0.8),
    ("4 sessions: p99 / render time alone, sessions shown a frame", "shown", "p99_vs_render", "<=", 3.0),
]
_COMPARE = {">=": lambda v, b: v >= b, "<": lambda v, b: v < b, "<=": lambda v, b: v <= b}


def _verdicts(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target judged on every repeat: ``met`` when every repeat meets it, ``not met`` when none does, and ``no
    verdict`` when the repeats fall on both sides (the spread is larger than the distance to the target; a median
    alone would then pass or fail by chance). Four-session targets take each repeat's worst session."""
    out = []
    for what, where, key, op, bound in TARGETS:
        if where == "one":
            values = [r[key] for r in summary["one_session"].get("rounds", []) if key in r]
        else:
            sessions = [s for s in summary["four_sessions"] if where != "small" or s["size"] == "320x180"]
            per_round = list(zip(*(s.get("rounds", []) for s in sessions)))
            if where == "shown":
                per_round = [tuple(x for x in rnd if x["shown_fps"] > 0) for rnd in per_round]
            worst = min if op == ">=" else max
            values = [worst(x[key] for x in rnd) for rnd in per_round if rnd]
        ok = [_COMPARE[op](v, bound) for v in values]
        out.append({"target": what, "op": op, "bound": bound, "rounds": values, "verdict": of_repeats(ok)})
    return out


def _markdown(rep: dict[str, Any]) -> str:
    lines = [
        "# `nrb bench serve`: a 60 fps game loop through libnrb against `nrb serve --renderer neural`", "",
        f"Machine: {rep['cpu']}, {rep['cores']} cores; the neural renderer on the CPU (the GPU targets: "
        f"`serve_gpu.md`). {rep['seconds_per_run']:g} s per run after "
        f"{rep['warmup_s']:g} s warm-up; median of {rep['repeat']} interleaved repeats. Generated by "
        "`nrb bench serve" + (f" --baseline {rep['baseline']}" if rep["baseline"] else "") + "`; see "
        "`nrb_bench/serve.py` for what each number means.", "",
    ]
    if rep["baseline"]:
        lines += ["`before`: the server of the baseline checkout (one render thread, round-robin, no superseding) "
                  "with libnrb at its old default of 2 frames in flight; `after`: this checkout with libnrb's "
                  "defaults.", ""]
    judged = {label: r["summary"].get("verdicts") for label, r in rep["servers"].items()}
    judged = {label: v for label, v in judged.items() if v}
    if judged:
        lines += ["## Targets (issue 14), judged on every repeat", "",
                  "Each repeat's ratio against the closed loop of the same repeat; four-session targets take each "
                  "repeat's worst session. `met`: every repeat meets the target; `not met`: none does; `no verdict`: "
                  "the repeats fall on both sides of it, so the machine's noise is larger than the distance to the "
                  "target and the median alone would pass or fail by chance.", "",
                  "| server | target | bound | repeats | verdict |", "|---|---|---|---|---|"]
        for label, verdicts in judged.items():
            for v in verdicts:
                bound = {">=": "≥", "<": "<", "<=": "≤"}[v["op"]] + f" {v['bound']:g}"
                each = ", ".join(f"{x:.2f}" for x in v["rounds"])
                lines.append(f"| {label} | {v['target']} | {bound} | {each} | {v['verdict']} |")
        lines.append("")
    lines += ["## 1 session, 320x180", "",
              "| server | closed-loop fps | shown fps | shown / closed loop | fallbacks | p50 ms | p99 ms | "
              "p50 / closed-loop round trip | p50 / (round trip + half a frame) | frames in flight |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rep["servers"].items():
        s, o = r["summary"], r["summary"]["one_session"]
        lines.append(f"| {label} | {s['closed_loop_fps_320x180']:.1f} | {o['shown_fps']:.1f} | "
                     f"{o['shown_vs_closed_loop']:.2f}x | {o['fallback_pct']:.1f} % | {o['p50_ms']:.1f} | "
                     f"{o['p99_ms']:.1f} | {o['p50_vs_closed_loop_round_trip']:.2f}x | "
                     f"{o.get('p50_vs_floor', 0.0):.2f}x | {o['in_flight_limit']:g} |")
    lines += ["", "A game loop cannot get the closed loop's latency: when the renderer frees up, the newest frame it "
              "can take was submitted on the game's last tick, on average half a game frame (8.3 ms at 60 fps) "
              "earlier, and waiting for a fresher one would lose throughput. So p50 is at least the closed-loop "
              "round trip plus half a frame; the column before the last compares with that floor."]
    lines += ["", "## 4 sessions: three 320x180, one 1280x720", "",
              "| server | session | shown fps | fair share fps | of fair share | fallbacks | p50 ms | p99 ms | "
              "p99 / render time alone | render ms in this run | p99 / render time in this run |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rep["servers"].items():
        for i, s in enumerate(r["summary"]["four_sessions"]):
            lines.append(f"| {label} | {i + 1}: {s['size']} | {s['shown_fps']:.1f} | {s['fair_share_fps']:.1f} | "
                         f"{s['of_fair_share']:.2f}x | {s['fallback_pct']:.1f} % | {s['p50_ms']:.1f} | "
                         f"{s['p99_ms']:.1f} | {s['p99_vs_render']:.1f}x | {s.get('service_ms', 0.0):.1f} | "
                         f"{s.get('p99_vs_service', 0.0):.1f}x |")
    lines += ["", "`render time alone`: the closed loop's server time at that size, one session with every core; "
              "`in this run`: the session's own render time while the four share the cores (libnrb's "
              "`service_ms`: the renderer's time per frame without queueing), so the last column is what waiting "
              "behind other sessions adds. A session with no frame shown has no latency (0)."]
    lines += ["", "Render times (closed loop, server total per frame, p50): " + "; ".join(
        f"{label}: {r['summary']['render_ms_320x180']:.1f} ms at 320x180, "
        f"{r['summary']['render_ms_1280x720']:.1f} ms at 1280x720" for label, r in rep["servers"].items()), ""]
    lines += ["## Server overhead at 640x360", "",
              "Server time per frame (closed loop, RESULT `timing.total_ms`, p50) against the model's own time "
              "(`session.run` of the same renderer on the same G-buffers with the same threads, server idle), "
              "alternating in rounds, each server run between two model runs (their mean is that round's model "
              "time); overhead = median of the rounds' ratios (each round's in the last column):",
              "", "| server | server ms | model ms | overhead | rounds |", "|---|---|---|---|---|"]
    for label, r in rep["servers"].items():
        s = r["summary"]
        each = ", ".join(f"{100 * v:.1f}" for v in s.get("overhead_rounds", []))
        lines.append(f"| {label} | {s['server_ms_640x360']:.1f} | {s['model_ms_640x360']:.1f} | "
                     f"{100 * s['server_overhead_640x360']:.1f} % | {each} |")
    split = {label: [x for x in r["summary"].get("own_work_rounds", []) if x] for label, r in rep["servers"].items()}
    split = {label: xs for label, xs in split.items() if xs}
    if split:
        lines += ["", "The same rounds split in the server, frame by frame (`nrb serve --metrics`: each frame's "
                  "latency, received to RESULT sent, and its model's inference, ONNX Runtime's `run`, "
                  "`nrb_inference_seconds`; means over the same frames, so the machine's drift between a server run "
                  "and a model run does not enter): the server's own work per frame (shared-memory copy, decode, "
                  "style map, feed, grading, encode) against the model's inference. What it cannot show: the model "
                  "running slower inside the server than alone (the other threads of the engine and the server "
                  "taking a core from ONNX Runtime's); the table above includes that, with the drift.", "",
                  "| server | frames | latency ms | inference ms | own work ms | own work / inference | rounds (%) |",
                  "|---|---|---|---|---|---|---|"]
        for label, xs in split.items():
            med = statistics.median
            lines.append(f"| {label} | {sum(x['frames'] for x in xs):.0f} | {med(x['latency_ms'] for x in xs):.1f} | "
                         f"{med(x['inference_ms'] for x in xs):.1f} | {med(x['own_ms'] for x in xs):.2f} | "
                         f"{100 * med(x['own_of_inference'] for x in xs):.1f} % | "
                         + ", ".join(f"{100 * x['own_of_inference']:.1f}" for x in xs) + " |")
    lines.append("")
    return "\n".join(lines)


def register(bench_sub: Any) -> None:
    p = bench_sub.add_parser("serve", help=__doc__.strip().splitlines()[0])
    p.add_argument("--out", default="bench", help="report directory (default bench/)")
    p.add_argument("--quick", action="store_true", help="shorter runs, one repeat")
    p.add_argument("--baseline", metavar="DIR", help="also measure the server of this checkout (a git worktree of "
                                                     "an older commit), with libnrb's old 2 frames in flight")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repeats per scenario (default 3: a median "
                   "of two is a mean, and each target is also judged on every repeat)")
    p.add_argument("--seconds", type=float, help="measured seconds per run (default 10, quick 4)")
    p.add_argument("--serve-arg", action="append", default=[], help="extra `nrb serve` argument (repeatable)")
    p.add_argument("--part", choices=("all", "cpu", "gpu"), default="all",
                   help="cpu: the CPU scenarios (serve.md); gpu: the GPU targets (serve_gpu.md: says so when there "
                        "is no GPU); all (default): both")
    p.add_argument("--device", default="auto", help="the GPU part's `nrb serve --device` (default auto)")

    def main(args: argparse.Namespace) -> int:
        if args.part in ("all", "cpu"):
            run(Path(args.out), quick=args.quick, baseline=args.baseline, repeat=args.repeat, seconds=args.seconds,
                serve_args=args.serve_arg, gpu=False)
        if args.part in ("all", "gpu"):
            run_gpu(Path(args.out), quick=args.quick, repeat=args.repeat, seconds=args.seconds,
                    serve_args=args.serve_arg, device=args.device)
        return 0

    p.set_defaults(func=main)
