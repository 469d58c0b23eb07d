"""``nrb bench soak``: a long run that must not degrade — 20,000 frames at 960x540 through the shared-memory path,
then 20,000 through tcp with the server restarted every 5,000 frames.

* Engine: libnrb (``bridge._native.Client``) in this process, two frames in flight, tagging a realistic G-buffer
  set each frame (``hudless_color`` rgba8, ``depth`` r32f, ``motion_vectors`` rg16f, ``normals`` rgba16f,
  ``albedo`` rgba8, ``roughness_metallic`` rg8, ``material_id`` r16u: 14.5 MB at 960x540, the transport
  benchmark's set) and acquiring the newest result right after each submit. The game loop waits for a free
  in-flight slot (back-pressure, up to one deadline) and runs at most ``MAX_FPS`` frames per second, so an outage
  costs frames at a game's pace rather than at the speed of a loop with nothing to do.
* Server: the real ``nrb serve --renderer passthrough`` in its own process (ipc:// + shared memory; tcp on
  loopback). On the tcp path it is stopped (SIGTERM: BYE to the engine) and started again on the same port every
  ``--restart-every`` frames; the engine reconnects by itself.
* Reported per path: engine frames per second and rendered frames per second (distinct results shown), latency
  (submit → result received, libnrb's own clock) p50/p99/max over every result shown, fallbacks (frames the engine
  showed its own image), reconnects, and the resident memory (VmRSS) of the engine process and of the server
  process at the start and at the end. RSS is sampled every ``SAMPLE_EVERY`` frames; "start" is the median of the
  samples of the ``WINDOW`` frames after a ``WARMUP`` (shared-memory slots, staging buffers and allocator arenas
  are all touched by then), "end" the median of the last ``WINDOW`` frames' samples: a median, because with
  14.5 MB messages in flight a single sample of a tcp process swings by several MB either way. Growth must stay
  under 5 % (reported, not asserted: a benchmark reports). On the tcp path the server's "end" is the last
  incarnation's; each incarnation's RSS range is listed.

Then the fault rows (``nrb_bench.soak_faults``): **overload** (two engines at twice the renderer's rate for 60 s
with a renderer stall half-way: every event applied exactly once, in order, every FRAME answered once, server RSS)
and **hostile** (engines that shrink their shared-memory pool under the server: ERROR + BYE each, the server and
the game beside them unharmed, server RSS and descriptors).

Writes ``soak.json`` and ``soak.md`` into the output directory. ``--frames`` shortens the run (the report says how
many frames were run); ``--quick`` also shortens the fault rows (10 s, 20 hostile engines).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from nrb_bench.machine import cpu_name, free_port

FRAMES = 20_000
RESTART_EVERY = 5_000
SIZE = (960, 540)
WARMUP = 1000
WINDOW = 1000
SAMPLE_EVERY = 50
MAX_FPS = 500.0
DEADLINE_MS = 100.0
FRAMES_IN_FLIGHT = 2
SHM_SLOTS = 2 * FRAMES_IN_FLIGHT + 4  # libnrb's default pool size
GROWTH_LIMIT = 0.05


# ------------------------------------------------------------------------------------------------ processes
def memory_mb(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, RssShmem) of a process in MiB: resident memory, and the part of it that is shared memory (the pool's
    pages); (0, 0) when the process is gone."""
    rss = shmem = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024.0
            elif line.startswith("RssShmem:"):
                shmem = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return rss, shmem


def rss_mb(pid: int | str = "self") -> float:
    return memory_mb(pid)[0]


class Server:
    """``nrb serve --renderer passthrough`` on a fixed endpoint; ``restart()`` stops it (BYE) and starts anew."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.proc: subprocess.Popen[str] | None = None
        self.incarnations: list[dict[str, Any]] = []
        self.start()

    def start(self) -> None:
        cmd = [sys.executable, "-m", "bridge", "-q", "serve", "--renderer", "passthrough", "--endpoint",
               self.endpoint, "--max-in-flight", "4", "--no-status"]
        deadline = time.monotonic() + 30
        while True:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "listening on" in line:
                break
            proc.wait()
            if time.monotonic() > deadline:  # e.g. the port still held by the previous incarnation
                raise RuntimeError(f"the server did not start on {self.endpoint}: {line!r}")
            time.sleep(0.1)
        self.proc = proc
        self.incarnations.append({"pid": proc.pid, "first_frame": 0, "frames": 0})

    @property
    def current(self) -> dict[str, Any]:
        return self.incarnations[-1]

    def rss(self) -> float:
        return rss_mb(self.proc.pid) if self.proc is not None else 0.0

    def memory(self) -> tuple[float, float]:
        return memory_mb(self.proc.pid) if self.proc is not None else (0.0, 0.0)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


# ------------------------------------------------------------------------------------------------ the game
class Progress:
    """One status line, redrawn in place on a terminal, or a line per ``every`` frames otherwise."""

    def __init__(self, label: str, total: int, every: int = 1000) -> None:
        self.label, self.total, self.every = label, total, every
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0

    def update(self, done: int, extra: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (now - self.last < 0.5 if self.tty else done % self.every):
            return
        self.last = now
        width = 30
        bar = "#" * int(width * done / self.total) + "-" * (width - int(width * done / self.total))
        line = f"[soak {self.label}] [{bar}] {done}/{self.total} frames, {now - self.t0:5.0f} s, {extra}"
        sys.stderr.write(("\r" + line + "   ") if self.tty else line + "\n")
        if force and self.tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


def soak(label: str, server: Server, transport: str, arrays: dict[str, np.ndarray], formats: dict[str, str],
         frames: int, restart_every: int | None) -> dict[str, Any]:
    """Run ``frames`` engine frames against ``server``; return the path's numbers."""
    from bridge import _native

    h, w = next(iter(arrays.values())).shape[:2]
    c = _native.Client(endpoint=server.endpoint, transport=transport, render_size=(w, h),
                       frames_in_flight=FRAMES_IN_FLIGHT, buffers=[(n, formats[n]) for n in arrays],
                       deadline_ms=DEADLINE_MS, engine="soak", connect_timeout_ms=1000, handshake_timeout_ms=2000,
                       server_timeout_ms=2000, reconnect_backoff_min_ms=20, reconnect_backoff_max_ms=250)
    latencies = array("d")
    shown = 0
    fallbacks = 0
    last_shown = -1
    samples: list[dict[str, float]] = []
    held: list[Any] = []  # shm warm-up: results kept acquired, so that every slot of the pool gets used (touched)
    progress = Progress(label, frames)
    period = 1.0 / MAX_FPS
    try:
        end = time.monotonic() + 30
        while c.stats()["state"] != "connected":
            if time.monotonic() > end:
                raise RuntimeError(f"libnrb did not connect to {server.endpoint}: {c.last_error}")
            time.sleep(0.01)
        t_start = time.monotonic()
        t_measure = t_start
        shown_at_measure = 0
        for i in range(frames):
            t_frame = time.monotonic()
            if restart_every and i and i % restart_every == 0:
                server.current["frames"] = restart_every
                server.restart()
                server.current["first_frame"] = i
            c.begin()
            for name, a in arrays.items():
                c.tag_buffer(name, formats[name], a)
            c.submit()
            got = c.acquire_result(with_info=True)
            if got is None:
                fallbacks += 1
            else:
                info = got[1]
                if transport == "shm" and i < WARMUP // 2:
                    held = [*held[-(SHM_SLOTS - 1):], got[0]]
                elif held:
                    held = []
                del got
                if info["frame_id"] != last_shown:
                    last_shown = info["frame_id"]
                    shown += 1
                    if i >= WARMUP:
                        latencies.append(info["round_trip_ms"])
            if i + 1 == WARMUP:
                t_measure, shown_at_measure = time.monotonic(), shown
            if (i + 1) % SAMPLE_EVERY == 0:
                (e_rss, e_shm), (s_rss, s_shm) = memory_mb(), server.memory()
                samples.append({"frame": i + 1, "engine_rss_mb": e_rss, "engine_shmem_mb": e_shm,
                                "server_rss_mb": s_rss, "server_shmem_mb": s_shm,
                                "server": len(server.incarnations) - 1})
            progress.update(i + 1, f"shown {shown}, fallbacks {fallbacks}, engine {rss_mb():.0f} MB, "
                                   f"server {server.rss():.0f} MB")
            # back-pressure: a free in-flight slot (at most one deadline), and no faster than MAX_FPS
            wait_until = time.monotonic() + DEADLINE_MS / 1e3
            while c.stats()["in_flight"] >= FRAMES_IN_FLIGHT and time.monotonic() < wait_until:
                time.sleep(0.0005)
            spare = period - (time.monotonic() - t_frame)
            if spare > 0:
                time.sleep(spare)
        t_end = time.monotonic()
        server.current["frames"] = frames - ((frames - 1) // restart_every) * restart_every if restart_every else frames
        stats = c.stats()
        progress.update(frames, f"shown {shown}, fallbacks {fallbacks}", force=True)
    finally:
        c.close()
    measured = t_end - t_measure
    memory = _memory_report(samples, frames, server.incarnations)
    lat = np.asarray(latencies) if len(latencies) else np.zeros(1)
    return {
        "transport": transport, "endpoint": server.endpoint, "frames": frames, "seconds": t_end - t_start,
        "engine_fps": (frames - WARMUP) / measured if measured > 0 else 0.0,
        "rendered_fps": (shown - shown_at_measure) / measured if measured > 0 else 0.0,
        "shown": shown, "fallbacks": fallbacks, "client_fallbacks": stats["fallbacks"],
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                       "max": float(lat.max()), "samples": len(latencies)},
        "client": {k: stats[k] for k in ("frames_submitted", "frames_sent", "frames_dropped", "results_received",
                                         "results_late", "frames_lost", "errors_received", "reconnects",
                                         "shm_active", "bytes_sent")},
        "restart_every": restart_every, "restarts": len(server.incarnations) - 1,
        **memory,
        "samples": samples,
    }


def _windows(samples: list[dict[str, float]], first: int, last: int, who: str) -> dict[str, float] | None:
    """Median VmRSS (and VmRSS minus RssShmem: private memory) of ``who`` over the first ``WINDOW`` frames after a
    ``WARMUP`` counted from frame ``first``, and over the ``WINDOW`` frames ending at frame ``last``; None when the
    span is too short for both windows."""
    if last - first < WARMUP + 2 * WINDOW:
        return None
    a = [s for s in samples if first + WARMUP < s["frame"] <= first + WARMUP + WINDOW]
    b = [s for s in samples if last - WINDOW < s["frame"] <= last]
    if not a or not b:
        return None

    def med(rows: list[dict[str, float]], private: bool) -> float:
        vals = [r[f"{who}_rss_mb"] - (r[f"{who}_shmem_mb"] if private else 0.0) for r in rows]
        return float(np.median(vals))

    out = {"start_mb": med(a, False), "end_mb": med(b, False), "private_start_mb": med(a, True),
           "private_end_mb": med(b, True)}
    out["growth"] = _growth(out["start_mb"], out["end_mb"])
    out["private_growth"] = _growth(out["private_start_mb"], out["private_end_mb"])
    return out


def _memory_report(samples: list[dict[str, float]], frames: int,
                   incarnations: list[dict[str, Any]]) -> dict[str, Any]:
    """Engine: one process over the whole run. Server: each incarnation on its own (its RSS is only comparable with
    itself), and the worst of them."""
    engine = _windows(samples, 0, frames, "engine")
    per_server = []
    for k, inc in enumerate(incarnations):
        mine = [s for s in samples if s["server"] == k]
        win = _windows(mine, inc["first_frame"], inc["first_frame"] + inc["frames"], "server")
        per_server.append({"pid": inc["pid"], "frames": inc["frames"], **(win or {}),
                           "rss_min_mb": min((s["server_rss_mb"] for s in mine), default=0.0),
                           "rss_max_mb": max((s["server_rss_mb"] for s in mine), default=0.0)})
    measured = [s for s in per_server if "growth" in s]
    worst = max(measured, key=lambda s: s["growth"]) if measured else None
    return {"memory": {"engine": engine, "server": worst, "server_incarnations": per_server},
            "rss_growth": {"engine": engine["growth"] if engine else float("nan"),
                           "server": worst["growth"] if worst else float("nan")}}


def _growth(start: float, end: float) -> float:
    return (end - start) / start if start > 0 else 0.0


# ------------------------------------------------------------------------------------------------ report
def markdown(res: dict[str, Any]) -> str:
    w, h = res["size"]
    lines = [
        "# Soak benchmark (`nrb bench soak`)",
        "",
        f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores (shared), Python "
        f"{res['machine']['python']}. {res['frames']} frames per path at {w}x{h} "
        f"({res['gbuffer_mb']:.1f} MB of G-buffers per frame: {', '.join(res['buffers'])}); libnrb engine in the "
        f"benchmark process, {FRAMES_IN_FLIGHT} frames in flight, deadline {DEADLINE_MS:g} ms, at most "
        f"{MAX_FPS:g} engine frames/s; server `nrb serve --renderer passthrough` in its own process.",
        "",
    ]
    if res["frames"] != FRAMES:
        lines += [f"**Shortened run: {res['frames']} frames per path instead of {FRAMES}.**", ""]
    lines += [
        "| path | frames | engine fps | rendered fps | latency p50 ms | p99 ms | max ms | fallbacks | reconnects "
        "| engine RSS start → end MB | server RSS start → end MB | RSS growth engine / server |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]

    def span(m: dict[str, Any] | None) -> str:
        return "n/a" if not m else f"{m['start_mb']:.1f} → {m['end_mb']:.1f}"

    for name, p in res["paths"].items():
        m, g = p["memory"], p["rss_growth"]
        ok = "ok" if max(g["engine"], g["server"]) < GROWTH_LIMIT else "**over 5 %**"
        desc = {"shm": "shared memory (ipc)", "tcp": f"tcp, server restarted every {p['restart_every']} frames"}
        lines.append(
            f"| {desc.get(name, name)} | {p['frames']} | {p['engine_fps']:.1f} | {p['rendered_fps']:.1f} | "
            f"{p['latency_ms']['p50']:.2f} | {p['latency_ms']['p99']:.2f} | {p['latency_ms']['max']:.2f} | "
            f"{p['fallbacks']} | {p['client']['reconnects']} | {span(m['engine'])} | {span(m['server'])} | "
            f"{g['engine'] * 100:+.2f} % / {g['server'] * 100:+.2f} % ({ok}) |")
    lines += ["", f"RSS = VmRSS, sampled every {SAMPLE_EVERY} frames; start = median over the {WINDOW} frames after a "
              f"{WARMUP}-frame warm-up (shm path: during its first half the engine keeps up to {SHM_SLOTS} results "
              f"acquired, so that every shared-memory slot is used once), end = median over the last {WINDOW} frames. On "
              "the tcp path each server incarnation is measured against itself (its own warm-up, its own last "
              f"{WINDOW} frames) and the worst is shown. Latency = submit → result received (libnrb's clock), over every result shown "
              f"after the warm-up. Fallbacks = frames on which the engine had no fresh result and showed its own "
              "image (the client's own counter agrees: "
              + ", ".join(f"{n} {p['client_fallbacks']}" for n, p in res["paths"].items()) + ")."]
    lines += ["", "Private memory (VmRSS minus RssShmem, the shared pool's pages), start → end:", ""]
    for name, p in res["paths"].items():
        for who in ("engine", "server"):
            m = p["memory"][who]
            if m:
                lines.append(f"* {name} {who}: {m['private_start_mb']:.1f} → {m['private_end_mb']:.1f} MB "
                             f"({m['private_growth'] * 100:+.2f} %)")
    tcp = res["paths"].get("tcp")
    if tcp and len(tcp["memory"]["server_incarnations"]) > 1:
        lines += ["", "tcp server incarnations (RSS start → end of each; min / max of all its samples):", ""]
        for s in tcp["memory"]["server_incarnations"]:
            growth = f"{s['start_mb']:.1f} → {s['end_mb']:.1f} MB ({s['growth'] * 100:+.2f} %)" if "growth" in s \
                else "too short to measure"
            lines.append(f"* pid {s['pid']}: {s['frames']} frames, {growth}; {s['rss_min_mb']:.1f} / "
                         f"{s['rss_max_mb']:.1f} MB")
    lines += ["", "RSS every 1000 frames (engine / server, MB):", ""]
    for name, p in res["paths"].items():
        seq = ", ".join(f"{s['engine_rss_mb']:.0f}/{s['server_rss_mb']:.0f}" for s in p["samples"]
                        if s["frame"] % 1000 == 0)
        lines.append(f"* {name}: {seq}")
    from nrb_bench.soak_faults import markdown as fault_rows

    lines += fault_rows(res.get("faults", {}))
    return "\n".join(lines) + "\n"


ALL_PATHS = ("shm", "tcp", "overload", "hostile")


def run(out_dir: Path | str = "bench", *, quick: bool = False, frames: int | None = None,
        restart_every: int | None = None, paths: tuple[str, ...] = ALL_PATHS) -> dict[str, Any]:
    """Run the soak; write ``soak.json`` / ``soak.md`` into ``out_dir``."""
    from nrb_bench.transport import STANDARD, gbuffers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = frames or (4000 if quick else FRAMES)
    if frames < WARMUP + 2 * WINDOW:
        raise ValueError(f"--frames must be at least {WARMUP + 2 * WINDOW} (warm-up plus two measuring windows)")
    restart_every = restart_every or (RESTART_EVERY if frames == FRAMES else max(WARMUP + 2 * WINDOW, frames // 4))
    arrays = gbuffers(*SIZE)
    formats = dict(STANDARD)
    res: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
        "frames": frames, "size": list(SIZE), "buffers": [f"{n} {formats[n]}" for n in arrays],
        "gbuffer_mb": sum(a.nbytes for a in arrays.values()) / 1e6, "quick": quick, "paths": {},
        "growth_limit": GROWTH_LIMIT,
    }
    tmp = tempfile.mkdtemp(prefix="nrb-soak-")
    if "shm" in paths:
        server = Server(f"ipc://{tmp}/soak.sock")
        try:
            res["paths"]["shm"] = soak("shm", server, "shm", arrays, formats, frames, None)
        finally:
            server.stop()
    if "tcp" in paths:
        server = Server(f"tcp://127.0.0.1:{free_port()}")
        try:
            res["paths"]["tcp"] = soak("tcp", server, "inline", arrays, formats, frames, restart_every)
        finally:
            server.stop()
    if "overload" in paths or "hostile" in paths:
        from nrb_bench.soak_faults import run_rows

        res["faults"] = run_rows(paths, quick)
    (out / "soak.json").write_text(json.dumps(res, indent=1))
    (out / "soak.md").write_text(markdown(res))
    return res


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(p: Any) -> None:
    p.add_argument("--out", default="bench", help="output directory (soak.json, soak.md)")
    p.add_argument("--quick", action="store_true", help="4,000 frames per path")
    p.add_argument("--frames", type=int, default=None, help=f"frames per path (default {FRAMES})")
    p.add_argument("--restart-every", type=int, default=None,
                   help=f"restart the tcp server every N frames (default {RESTART_EVERY} for {FRAMES} frames: a "
                        "quarter of the run)")
    p.add_argument("--path", action="append", choices=ALL_PATHS, help="only these rows (default all: shm, tcp, "
                   "overload, hostile)")


def main(args: Any) -> int:
    res = run(args.out, quick=args.quick, frames=args.frames, restart_every=args.restart_every,
              paths=tuple(args.path) if args.path else ALL_PATHS)
    if res["paths"]:
        worst = max(max(p["rss_growth"].values()) for p in res["paths"].values())
        print(f"soak bench: {Path(args.out) / 'soak.md'} (worst RSS growth {worst * 100:+.2f} %, limit "
              f"{GROWTH_LIMIT * 100:.0f} %)")
    else:
        print(f"soak bench: {Path(args.out) / 'soak.md'}")
    return 0


def register(bench_sub: Any) -> None:
    """``nrb bench soak`` with this benchmark's own options (``bridge.commands.bench`` calls this)."""
    p = bench_sub.add_parser("soak", help="20,000 frames at 960x540 via shm and via tcp with server restarts: fps, "
                                          "latency, fallbacks, memory growth", description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=main)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m nrb_bench.soak")
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
