"""``nrb bench cluster``: the render cluster on Ray (docs/cluster.md) — scaling, overhead, failover, a slow session.

Everything runs on this machine: a local Ray instance (small logical resources), a front door
(``bridge.cluster.frontdoor.FrontDoor``) and its worker actors, and engines in this process.

* **Scaling**: 1, 2 and 4 workers (one render thread each) with 2x as many engines (Python clients, closed loop,
  160x90), renderer ``nrb_bench.cluster_renderer`` sleeping ``RENDER_MS`` per frame (sleep-dominated, so the
  machine's two cores are not the limit). Aggregate rendered frames/s, and efficiency = fps(n) / (n x fps(1));
  target at least 0.8.
* **Overhead**: a session's round trip (Python client, send FRAME → RESULT received, 960x540 rgba8 over tcp on
  loopback, renderer sleeping 0 ms) through a placed worker vs the same renderer in a plain ``nrb serve``
  (``--workers 1 --worker-threads 1``, as a worker runs), blocks alternated (in turned order every other block);
  median of each arm, target +0.3 ms at most. Shown too: the relayed path (an engine that does not follow
  redirects), and a placed worker at Ray's default worker niceness (+15, what workers ran at before
  ``ClusterConfig.worker_niceness``), the A/B that found the cause of the overhead.
* **Failover**: libnrb streams at about 60 frames/s with one event per frame into a 2-worker cluster (every worker
  recording); the worker holding the session is killed (Ray kills its process) while the game loop goes on.
  Reported: time from the moment the worker's process is gone to the first image of a frame begun after that
  (only the new worker can have rendered it), the gap since the last image before it, frames shown as the engine's
  own image meanwhile, and whether the events answered
  over both workers' captures are exactly the events fired, in order. Target: under 1 s of frames.
* **Slow session**: 4 engines on 2 workers (4 render threads each); a 5th engine whose frames render 10x slower
  joins and leaves, windows alternated; the 4 engines' frame rate with it vs without, target at least 0.9.

Writes ``cluster.json`` and ``cluster.md``. Ratios only, measured in one run; the machine is shared, so absolute
numbers are noisy. ``--part NAME`` (repeatable) measures only those parts and keeps the others of the report
already in ``--out`` (``measured`` in the JSON says when each part was measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nrb_bench.machine import cpu_name

RENDERER = "nrb_bench.cluster_renderer:make"
RENDER_MS = 20.0
SMALL = (160, 90)
#: Ray starts worker processes at this niceness over its node's unless told (``RAY_worker_niceness``)
RAY_NICENESS = 15
PARTS = ("scaling", "overhead", "failover", "slow_session")


def _door(**kw: Any) -> Any:
    from bridge.cluster.frontdoor import ClusterConfig, FrontDoor

    opts: dict[str, Any] = dict(renderer=RENDERER, renderer_options={"render_ms": RENDER_MS}, port=0,
                                worker_cpus=1, workers=1, report_interval=0.2, idle_s=3600.0,
                                sessions_per_worker=1000)
    opts.update(kw)
    return FrontDoor(ClusterConfig(**opts)).start()


class _Engines:
    """Closed-loop Python engines in threads: each sends a frame and waits for its answer, again and again."""

    def __init__(self, endpoint: str, n: int, size: tuple[int, int] = SMALL) -> None:
        from bridge.client import Client
        from bridge.protocol import Buffer, BufferSpec

        self.stop = threading.Event()
        self.times: list[list[float]] = [[] for _ in range(n)]
        self.clients = [Client(endpoint, timeout=10.0) for _ in range(n)]
        for c in self.clients:
            c.hello(size, [BufferSpec("hudless_color", "rgba8_srgb")])
        img = np.zeros((size[1], size[0], 4), np.uint8)
        self.buf = [Buffer.from_array("hudless_color", "rgba8_srgb", img)]
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _loop(self, i: int) -> None:
        c = self.clients[i]
        while not self.stop.is_set():
            try:
                res = c.render(self.buf, deadline_ms=10_000)
            except Exception:  # noqa: BLE001 - the bench reports what it got
                return
            if res.status == "ok":
                self.times[i].append(time.monotonic())

    def fps(self, t0: float, t1: float) -> list[float]:
        return [sum(1 for t in ts if t0 <= t < t1) / (t1 - t0) for ts in self.times]

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)
        for c in self.clients:
            c.close()


def _window(engines: _Engines, warmup: float, seconds: float) -> list[float]:
    time.sleep(warmup)
    t0 = time.monotonic()
    time.sleep(seconds)
    return engines.fps(t0, time.monotonic())


def _scaling(repeat: int, warmup: float, seconds: float) -> dict[str, Any]:
    runs: dict[int, list[float]] = {1: [], 2: [], 4: []}
    for _ in range(repeat):
        for n in runs:
            door = _door(min_workers=n, max_workers=n, max_sessions=2)
            try:
                eng = _Engines(door.endpoint, 2 * n)
                try:
                    runs[n].append(sum(_window(eng, warmup, seconds)))
                finally:
                    eng.close()
            finally:
                door.stop()
    base = statistics.median(runs[1])
    rows = [{"workers": n, "engines": 2 * n, "fps": statistics.median(v), "fps_runs": v,
             "efficiency": statistics.median(v) / (n * base)} for n, v in runs.items()]
    return {"render_ms": RENDER_MS, "size": list(SMALL), "rows": rows, "target_efficiency": 0.8}


def _rtt_block(c: Any, buf: list[Any], n: int, server: list[float] | None = None) -> list[float]:
    """``n`` round trips (ms); the server's own time of each (RESULT ``timing.total_ms``) into ``server``."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        res = c.render(buf, deadline_ms=10_000)
        out.append((time.perf_counter() - t) * 1e3)
        if server is not None and res.timing is not None:
            server.append(res.timing.total_ms)
    return out


def _overhead(blocks: int, frames: int, tmp: Path) -> dict[str, Any]:
    from bridge.client import Client
    from bridge.commands.serve import spawn_server, stop_server
    from bridge.protocol import Buffer, BufferSpec

    load_before = os.getloadavg()[0]
    size = (960, 540)
    img = np.random.default_rng(1).integers(0, 255, (size[1], size[0], 4), np.uint8)
    buf = [Buffer.from_array("hudless_color", "rgba8_srgb", img)]
    spec = [BufferSpec("hudless_color", "rgba8_srgb")]
    serve = ["--renderer", RENDERER, "-o", "render_ms=0", "--workers", "1", "--worker-threads", "1"]
    proc, plain_ep = spawn_server(serve, tmp / "plain.log", timeout=120)
    twin, twin_ep = spawn_server(serve, tmp / "plain2.log", timeout=120)  # A/A: the noise floor of this machine
    door = _door(renderer_options={"render_ms": 0.0}, min_workers=1, max_workers=1)
    niced = _door(renderer_options={"render_ms": 0.0}, min_workers=1, max_workers=1, worker_niceness=RAY_NICENESS)
    plain_arm, placed_arm, relayed_arm = "plain nrb serve", "placed worker (redirect)", "relayed by the front door"
    niced_arm = f"placed worker at Ray's default niceness (+{RAY_NICENESS})"
    twin_arm = "a second plain nrb serve (A/A)"
    arms: dict[str, list[float]] = {plain_arm: [], twin_arm: [], placed_arm: [], niced_arm: [], relayed_arm: []}
    inside: dict[str, list[float]] = {k: [] for k in arms}  # the server's own time (RESULT timing.total_ms)
    try:
        clients = {plain_arm: Client(plain_ep), twin_arm: Client(twin_ep), placed_arm: Client(door.endpoint),
                   niced_arm: Client(niced.endpoint), relayed_arm: Client(door.endpoint)}
        for name, c in clients.items():
            c.hello(size, spec, follow_redirect=name != relayed_arm)
        for c in clients.values():
            _rtt_block(c, buf, 20)  # warm-up
        for b in range(blocks):
            for name, c in (list(clients.items()) if b % 2 == 0 else list(clients.items())[::-1]):
                arms[name].extend(_rtt_block(c, buf, frames, inside[name]))
        for c in clients.values():
            c.close()
    finally:
        niced.stop()
        door.stop()
        stop_server(proc)
        stop_server(twin)
    med = {k: statistics.median(v) for k, v in arms.items()}
    p90 = {k: float(np.percentile(v, 90)) for k, v in arms.items()}
    per_block = [statistics.median(arms[placed_arm][i:i + frames]) - statistics.median(arms[plain_arm][i:i + frames])
                 for i in range(0, blocks * frames, frames)]
    return {"size": list(size), "transport": "tcp (loopback)", "frames_per_arm": blocks * frames, "blocks": blocks,
            "load_before": load_before, "load_after": os.getloadavg()[0], "median_ms": med, "p90_ms": p90,
            "server_median_ms": {k: statistics.median(v) if v else None for k, v in inside.items()},
            "placed_minus_plain_ms": med[placed_arm] - med[plain_arm],
            "placed_minus_plain_per_block_ms": per_block,
            "a_a_minus_plain_ms": med[twin_arm] - med[plain_arm],
            "niced_minus_plain_ms": med[niced_arm] - med[plain_arm],
            "relayed_minus_plain_ms": med[relayed_arm] - med[plain_arm],
            "target_ms": 0.3}


def _captured_events(paths: list[Path]) -> list[str]:
    from bridge.capture import CaptureReader

    out: list[str] = []
    for path in paths:
        if not path.exists():
            continue
        with CaptureReader(path) as r:
            for f in r.frames():
                if f.result is not None:
                    out.extend(e.name for e in f.decode().events)
    return out


def _failover_once(tmp: Path) -> dict[str, Any]:
    from bridge import _native

    rec = Path(tempfile.mkdtemp(prefix="failover-", dir=tmp))
    door = _door(renderer_options={"render_ms": 5.0}, min_workers=2, max_workers=2, max_in_flight=2,
                 record_dir=str(rec), report_interval=0.1)
    w, h = 64, 32
    img = np.zeros((h, w, 4), np.uint8)
    fired: list[str] = []
    shown: list[tuple[float, int]] = []
    fallbacks: list[float] = []
    try:
        c = _native.Client(endpoint=door.endpoint, render_size=(w, h), transport="inline", engine="bench-cluster",
                           buffers=[("hudless_color", "rgba8_srgb")], deadline_ms=50, server_timeout_ms=500,
                           ping_interval_ms=100, handshake_timeout_ms=500, connect_timeout_ms=300,
                           reconnect_backoff_min_ms=20, reconnect_backoff_max_ms=200)

        last_fid = [0]

        def step() -> None:
            last_fid[0] = c.begin()
            c.tag_buffer("hudless_color", "rgba8_srgb", img)
            name = f"e{len(fired)}"
            c.fire_event(name, {"n": len(fired)})
            fired.append(name)
            c.submit()
            got = c.acquire_result(with_info=True)
            now = time.monotonic()
            if got is None:
                fallbacks.append(now)
            elif not shown or shown[-1][1] != got[1]["frame_id"]:
                shown.append((now, got[1]["frame_id"]))
            time.sleep(1 / 60)

        def until(pred: Callable[[], bool], timeout: float) -> None:
            end = time.monotonic() + timeout
            while not pred() and time.monotonic() < end:
                step()

        until(lambda: len(shown) >= 60, 30)
        victim = next(x.name for x in door.loads() if x.sessions > 0)
        dead: list[tuple[float, int]] = []  # (when the worker's process was gone, the last frame begun by then)

        def killer() -> None:
            door.kill_worker(victim)
            dead.append((time.monotonic(), last_fid[0]))

        threading.Thread(target=killer, daemon=True).start()  # the game loop goes on meanwhile
        until(lambda: bool(dead) and sum(f > dead[0][1] for _, f in shown) >= 30, 30)
        until(lambda: c.stats()["events_pending"] == 0, 10)
        end = time.monotonic() + 5
        while c.stats()["in_flight"] and time.monotonic() < end:
            time.sleep(0.01)
        stats = dict(c.stats())
        other = door.placements()[-1][1]  # the worker of the session's last placement
        c.close()
    finally:
        door.stop()
    t_dead, fid_dead = dead[0]
    # the first image of a frame begun after the old worker was gone: only the new worker can have rendered it
    first_after = next(t for t, f in shown if f > fid_dead)
    last_before = max((t for t, f in shown if t < first_after and f <= fid_dead), default=t_dead)
    before = _captured_events([rec / f"{victim}.nrbcap"])
    after = _captured_events([rec / f"{other}.nrbcap"])
    events = before + after
    duplicated = len(events) - len(set(events))
    missing = [e for e in fired if e not in set(events)]
    # Missing events the new worker never saw, all after the dead worker's last record: the engine had their
    # answers (it did not re-send them), so the dead worker applied them and died before its capture record.
    index = {e: i for i, e in enumerate(fired)}
    tail_lost = bool(missing) and all(
        (not before or index[m] > index[before[-1]]) and (not after or index[m] < index[after[0]]) for m in missing)
    return {"gap_ms": (first_after - t_dead) * 1e3, "dark_ms": (first_after - last_before) * 1e3,
            "frames_own_image": sum(1 for t in fallbacks if last_before < t < first_after),
            "events_fired": len(fired), "events_answered": len(events), "events_exactly_once_in_order": events == fired,
            "events_duplicated": duplicated, "events_missing_from_captures": missing,
            "missing_only_at_the_dead_worker_s_capture_tail": tail_lost,
            "reconnects": stats["reconnects"]}


def _failover(repeat: int, tmp: Path) -> dict[str, Any]:
    runs = [_failover_once(tmp) for _ in range(repeat)]
    return {"engine_fps": 60, "runs": runs, "median_gap_ms": statistics.median(r["gap_ms"] for r in runs),
            "all_events_exactly_once": all(r["events_exactly_once_in_order"] for r in runs), "target_ms": 1000}


def _slow_session(repeat: int, warmup: float, seconds: float) -> dict[str, Any]:
    slow_w = SMALL[0] + 1
    door = _door(renderer_options={"render_ms": RENDER_MS, "slow_width": slow_w, "slow_factor": 10.0},
                 min_workers=2, max_workers=2, workers=4, max_sessions=8)
    without: list[float] = []
    with_slow: list[float] = []
    try:
        eng = _Engines(door.endpoint, 4)
        try:
            for _ in range(repeat):
                slow = _Engines(door.endpoint, 1, (slow_w, SMALL[1]))
                try:
                    with_slow.append(statistics.mean(_window(eng, warmup, seconds)))
                    slow_fps = slow.fps(time.monotonic() - seconds, time.monotonic())[0]
                finally:
                    slow.close()
                without.append(statistics.mean(_window(eng, warmup, seconds)))
        finally:
            eng.close()
    finally:
        door.stop()
    ratio = statistics.median(with_slow) / statistics.median(without)
    return {"render_ms": RENDER_MS, "slow_factor": 10.0, "others_fps_without": without, "others_fps_with": with_slow,
            "slow_session_fps": slow_fps, "ratio": ratio, "target_ratio": 0.9}


def run(out_dir: Path, *, quick: bool = False, parts: tuple[str, ...] = PARTS,
        overhead_blocks: int | None = None) -> dict[str, Any]:
    """Measure ``parts`` (all by default) and write the report; parts not measured now are kept from the report
    already in ``out_dir`` (if it has them)."""
    import ray

    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; parts: {', '.join(PARTS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] = {}
    if set(parts) != set(PARTS) and (out_dir / "cluster.json").is_file():
        old = json.loads((out_dir / "cluster.json").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="nrb-bench-cluster-"))
    started = not ray.is_initialized()
    if started:  # small logical resources: the machine is small and shared; the renderer sleeps
        ray.init(address="local", num_cpus=6, include_dashboard=False, log_to_driver=False)
    repeat = 1 if quick else 2
    warmup, seconds = (1.0, 2.0) if quick else (1.5, 4.0)
    measure: dict[str, Callable[[], dict[str, Any]]] = {
        "scaling": lambda: _scaling(repeat, warmup, seconds),
        "overhead": lambda: _overhead(overhead_blocks or (3 if quick else 6), 50 if quick else 100, tmp),
        "failover": lambda: _failover(1 if quick else 3, tmp),
        "slow_session": lambda: _slow_session(repeat + 1, warmup, seconds),
    }
    try:
        rep: dict[str, Any] = {
            "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "ray": ray.__version__, "note": "shared machine: absolute numbers are noisy; ratios are "
                                                        "measured in one run"},
            "measured": dict(old.get("measured", {})),
        }
        for part in PARTS:
            if part in parts:
                rep[part] = measure[part]()
                rep["measured"][part] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            elif part in old:
                rep[part] = old[part]
                rep["measured"].setdefault(part, "an earlier full run")
    finally:
        if started:
            ray.shutdown()
    (out_dir / "cluster.json").write_text(json.dumps(rep, indent=1) + "\n")
    (out_dir / "cluster.md").write_text(_markdown(rep))
    return rep


def register(bench_sub: Any) -> None:
    """``nrb bench cluster [--part NAME]...``."""
    p = bench_sub.add_parser("cluster", help=__doc__.strip().splitlines()[0])
    p.add_argument("--out", default="bench", help="report directory (default bench/)")
    p.add_argument("--quick", action="store_true", help="fewer iterations")
    p.add_argument("--part", action="append", choices=PARTS, metavar="PART",
                   help=f"measure only this part ({', '.join(PARTS)}; repeatable), keeping the others of the report "
                        "in --out")
    p.add_argument("--overhead-blocks", type=int, metavar="N",
                   help="alternated blocks of 100 frames per overhead arm (default 6, quick 3)")

    def main(args: argparse.Namespace) -> int:
        run(Path(args.out), quick=args.quick, parts=tuple(args.part or PARTS), overhead_blocks=args.overhead_blocks)
        return 0

    p.set_defaults(func=main)


def _markdown(rep: dict[str, Any]) -> str:
    s, o, f, w = rep["scaling"], rep["overhead"], rep["failover"], rep["slow_session"]
    m = rep["machine"]
    lines = ["# Cluster benchmark (`nrb bench cluster`)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Ray {m['ray']}. {m['note']}.",
             "Everything on one machine: a local Ray instance, the front door, worker actors, engines.", ""]
    if rep.get("measured"):
        lines += ["Measured: " + "; ".join(f"{k} {v}" for k, v in rep["measured"].items())
                  + " (`nrb bench cluster --part` re-measures one part).", ""]
    lines += [
             f"## Scaling (renderer sleeps {s['render_ms']:.0f} ms per frame, {s['size'][0]}x{s['size'][1]}, "
             "one render thread per worker, 2 closed-loop engines per worker)", "",
             "| workers | engines | frames/s | efficiency (fps / (n x fps(1))) |", "|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['engines']} | {r['fps']:.1f} | {r['efficiency']:.2f} |" for r in s["rows"]]
    lines += ["", f"Target: efficiency at least {s['target_efficiency']}.", "",
              f"## Overhead (round trip, {o['size'][0]}x{o['size'][1]} rgba8, {o['transport']}, "
              f"{o['frames_per_arm']} frames per arm, blocks alternated)", "",
              "| path | median ms | p90 ms | in the server (RESULT timing, median ms) |", "|---|---|---|---|"]
    inside = o.get("server_median_ms", {})
    lines += [f"| {k} | {v:.2f} | {o['p90_ms'][k]:.2f} | "
              f"{'' if inside.get(k) is None else format(inside[k], '.2f')} |" for k, v in o["median_ms"].items()]
    lines += ["", f"Placed worker minus plain `nrb serve`: **{o['placed_minus_plain_ms']:+.2f} ms** "
              f"(target at most +{o['target_ms']} ms); relayed minus plain: {o['relayed_minus_plain_ms']:+.2f} ms."]
    if "niced_minus_plain_ms" in o:
        lines += ["", f"Placed worker at Ray's default worker niceness minus plain: {o['niced_minus_plain_ms']:+.2f} "
                  f"ms. A second plain `nrb serve` minus the first (the same code: this machine's noise floor): "
                  f"{o.get('a_a_minus_plain_ms', float('nan')):+.2f} ms. Placed minus plain per block of 100 frames: "
                  f"{', '.join(f'{x:+.2f}' for x in o['placed_minus_plain_per_block_ms'])} ms. Load average "
                  f"(1 min) {o['load_before']:.1f} before, {o['load_after']:.1f} after."]
    lines += [
              "", f"## Failover (libnrb at {f['engine_fps']} frames/s, one event per frame, the session's worker "
              "killed)", "", "| worker gone → first frame it could not have rendered shown (ms) | last image → that one (ms) | frames on the "
              "engine's own image | events fired | answered | exactly once, in order | duplicated | missing from the captures "
              "(only at the dead worker's capture tail?) | reconnects |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['gap_ms']:.0f} | {r['dark_ms']:.0f} | {r['frames_own_image']} | {r['events_fired']} | "
              f"{r['events_answered']} | {r['events_exactly_once_in_order']} | {r['events_duplicated']} | "
              f"{len(r['events_missing_from_captures'])}"
              f"{' (' + str(r['missing_only_at_the_dead_worker_s_capture_tail']) + ')' if r['events_missing_from_captures'] else ''}"
              f" | {r['reconnects']} |" for r in f["runs"]]
    lines += ["", f"Target: under {f['target_ms']} ms of frames; median {f['median_gap_ms']:.0f} ms.", "",
              f"## One slow session (renderer {w['slow_factor']:.0f}x slower for it)", "",
              "| 4 engines' mean frames/s | without the slow session | with it |", "|---|---|---|",
              f"| per window | {', '.join(f'{x:.1f}' for x in w['others_fps_without'])} | "
              f"{', '.join(f'{x:.1f}' for x in w['others_fps_with'])} |", "",
              f"Ratio with / without: **{w['ratio']:.3f}** (target at least {w['target_ratio']}); the slow session "
              f"itself: {w['slow_session_fps']:.1f} frames/s.", ""]
    return "\n".join(lines)
