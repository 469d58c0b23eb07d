"""``nrb demo``: the whole bridge end to end on one machine, in about a minute.

Starts ``nrb serve --renderer deferred --hooks bridge/demo_hooks.py --record out/demo/demo.nrbcap`` as a real
subprocess on a free loopback port, plays a synthetic engine (ray-cast spheres, ``bridge.scene``) for ~60 frames
with scripted gameplay — the engine sets a photoreal look, a weapon power-up turns the weapon golden, the player is
hit (thermal flash on the hero), the boss enters phase 2 (noir over 2 s), the engine sets the boss material to
toon — and writes PNG frames, an MP4, a timing JSON and the capture under ``out/demo/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bridge.client import Client
from bridge.commands.media import VideoWriter, write_png
from bridge.commands.serve import spawn_server, stop_server
from bridge.protocol import Event, StyleCommand, Target
from bridge.renderer import display_rgba8
from bridge.scene import BOSS_MATERIAL, BUFFERS, HERO_OBJECT, WEAPON_OBJECT, SyntheticScene

DEMO_HOOKS = Path(__file__).resolve().parent.parent / "demo_hooks.py"


def script(i: int, n: int) -> tuple[list[Event], list[StyleCommand]]:
    """Gameplay of frame ``i`` of ``n``: (events, engine style commands)."""
    events: list[Event] = []
    styles: list[StyleCommand] = []
    if i == 0:
        styles.append(StyleCommand("photoreal", 1.0, 0.0))
    if i == n // 6:
        events.append(Event("weapon_powerup", {"over": 0.4}, Target("object", (WEAPON_OBJECT,))))
    if i == int(n * 0.28):
        events.append(Event("player_damaged", {"amount": 0.8}, Target("object", (HERO_OBJECT,))))
    if i == n // 3:
        events.append(Event("boss_phase", {"phase": 2}))
    if i == int(n * 0.75):
        styles.append(StyleCommand("toon", 1.0, 0.5, Target("material", (BOSS_MATERIAL,))))
    return events, styles


def run_demo(out: Path, frames: int = 60, size: tuple[int, int] = (384, 216), renderer: str = "neural",
             dt: float = 0.05, progress: bool = True) -> dict[str, Any]:
    """Run the demo; return the timing summary (also written to ``out/timing.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    capture = out / "demo.nrbcap"
    proc, endpoint = spawn_server(["--renderer", renderer, "--hooks", str(DEMO_HOOKS), "--record", str(capture)],
                                  out / "server.log")
    scene = SyntheticScene(*size, animate=True)
    per_frame: list[dict[str, Any]] = []
    video = VideoWriter(out / "demo.mp4", 1.0 / dt)
    try:
        with Client(endpoint, timeout=30.0) as client:
            welcome = client.hello(size, BUFFERS, engine="nrb-demo", engine_version="0.1")
            bar: Any = range(frames)
            if progress:
                from tqdm import tqdm

                bar = tqdm(bar, unit="frame", desc=f"demo ({welcome.renderer})")
            for i in bar:
                t = i * dt
                bufs, cam = scene.buffers(t)
                events, styles = script(i, frames)
                sent = time.perf_counter()
                result = client.render(bufs, events=events, styles=styles, dt=dt if i else 0.0, camera=cam,
                                       deadline_ms=10000.0, time_ns=int(round(t * 1e9)))
                rtt_ms = (time.perf_counter() - sent) * 1e3
                assert result.output is not None
                rgba = display_rgba8(result.output.array())
                write_png(out / "frames" / f"frame_{i:04d}.png", rgba)
                video.add(rgba)
                per_frame.append({"frame": result.frame, "status": result.status, "rtt_ms": rtt_ms,
                                  "events": [e.name for e in events], "styles": [s.style for s in styles],
                                  **{k: getattr(result.timing, k) for k in ("queue_ms", "decode_ms", "style_ms",
                                                                              "render_ms", "encode_ms", "total_ms")}})
            client.bye("demo finished")
    finally:
        video.close()
        code = stop_server(proc)
    rtts = np.asarray([f["rtt_ms"] for f in per_frame])
    summary = {
        "renderer": renderer, "frames": len(per_frame), "size": list(size), "endpoint": endpoint,
        "server_exit": code,
        "rtt_ms": {"p50": float(np.percentile(rtts, 50)), "p99": float(np.percentile(rtts, 99)),
                   "mean": float(rtts.mean())},
        "server_ms_mean": {k: float(np.mean([f[k] for f in per_frame]))
                           for k in ("queue_ms", "decode_ms", "style_ms", "render_ms", "encode_ms", "total_ms")},
        "per_frame": per_frame,
    }
    (out / "timing.json").write_text(json.dumps(summary, indent=2))
    return summary


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WxH") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"size {text!r} out of range 16..4096")
    return w, h


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        summary = run_demo(out, args.frames, args.size, args.renderer, progress=not args.quiet)
    except (RuntimeError, OSError, TimeoutError) as exc:
        print(f"nrb demo: {exc}", file=sys.stderr)
        return 1
    rtt, srv = summary["rtt_ms"], summary["server_ms_mean"]
    print(f"rendered {summary['frames']} frames at {args.size[0]}x{args.size[1]} with {args.renderer}: "
          f"round trip p50 {rtt['p50']:.1f} ms, p99 {rtt['p99']:.1f} ms "
          f"(server: render {srv['render_ms']:.1f} ms, style {srv['style_ms']:.2f} ms, total {srv['total_ms']:.1f} ms)")
    print(f"  frames:  {out / 'frames'}/")
    print(f"  video:   {out / 'demo.mp4'}")
    print(f"  timing:  {out / 'timing.json'}")
    print(f"  capture: {out / 'demo.nrbcap'}   (try: nrb replay {out / 'demo.nrbcap'} --out {out / 'replay'}")
    print(f"           and: nrb inspect {out / 'demo.nrbcap'} --frame {args.frames * 2 // 3} "
          f"--out {out / 'inspect.png'})")
    print(f"  server log: {out / 'server.log'}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a synthetic engine against a real server; write frames, MP4, timings",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", type=_size, default=(384, 216), help="render size WxH (default 384x216)")
    p.add_argument("--renderer", default="neural")
    p.set_defaults(func=_run)
