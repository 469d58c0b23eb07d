"""``nrb router``: the cluster's front door (docs/cluster.md).

    nrb router --renderer neural --min-workers 1 --max-workers 4          # a local Ray, workers on this machine
    nrb router --ray-address HEAD:6379 --host 0.0.0.0 --worker-host 0.0.0.0 \\
        --curve-secret keys/server/server.key_secret --allow-dir keys/clients   # a cluster across machines

Engines connect to the printed endpoint as they would to ``nrb serve``; each session is placed on a Ray worker and
the engine is redirected to it (protocol section 5.10). Needs the ``[cluster]`` extra (Ray).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from bridge.renderer import parse_options


def _positive(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def _run(args: argparse.Namespace) -> int:
    import ray  # noqa: F401 - fail here, with the extra's name, before anything starts (bridge.cli)

    from bridge.cluster.frontdoor import ClusterConfig, FrontDoor

    try:
        cfg = ClusterConfig(
            renderer=args.renderer, renderer_options=parse_options(args.renderer_option), host=args.host,
            port=args.port, endpoint=args.endpoint, insecure=args.insecure, curve_secret=args.curve_secret,
            allow_dir=args.allow_dir, hooks=args.hooks, styles=args.styles, worker_host=args.worker_host,
            worker_advertise=args.worker_advertise, worker_cpus=args.worker_cpus, worker_gpus=args.worker_gpus,
            max_sessions=args.worker_sessions, workers=args.worker_threads,
            max_in_flight=args.max_in_flight, min_workers=args.min_workers, max_workers=args.max_workers,
            sessions_per_worker=args.sessions_per_worker, render_ms=args.render_ms, idle_s=args.idle_s,
            ray_address=args.ray_address, record_dir=args.record_dir)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            door = FrontDoor(cfg)
            for w in caught:
                print(f"nrb router: WARNING: {w.message}", file=sys.stderr, flush=True)
        door.start()
    except (ValueError, TypeError, OSError, RuntimeError) as exc:  # RuntimeError: SecurityError, Ray failures
        print(f"nrb router: {exc}", file=sys.stderr)
        return 2
    print(f"nrb router: listening on {door.endpoint} ({len(door.loads())} workers, "
          f"{cfg.min_workers}..{cfg.max_workers})", flush=True)
    try:
        door.serve_forever()
    finally:
        door.stop()
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("router", help="the cluster's front door: place sessions on Ray workers",
                       description="Run the front door of a render cluster on Ray: engines connect here, each "
                                   "session is placed on the least-loaded worker and the engine is redirected to it "
                                   "(docs/cluster.md).")
    p.add_argument("--renderer", default="neural", metavar="NAME|MODEL.onnx|MODULE:FACTORY",
                   help="the workers' renderer, as for nrb serve")
    p.add_argument("-o", "--renderer-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--hooks", metavar="FILE", help="style hooks file for every worker")
    p.add_argument("--styles", metavar="FILE.toml", help="style file for every worker")
    p.add_argument("--host", default="127.0.0.1", help="front door host (beyond loopback: CurveZMQ or --insecure)")
    p.add_argument("--port", type=int, default=5555, help="front door TCP port (0: pick a free one)")
    p.add_argument("--endpoint", help="full ZeroMQ endpoint instead of --host/--port")
    p.add_argument("--insecure", action="store_true", help="allow listening beyond loopback without CurveZMQ")
    p.add_argument("--curve-secret", metavar="FILE",
                   help="CurveZMQ secret key, shared by the front door and every worker (.key_secret)")
    p.add_argument("--allow-dir", metavar="DIR", help="allowed client public keys, for the front door and workers")
    p.add_argument("--worker-host", default="127.0.0.1", help="address workers bind (0.0.0.0 across machines)")
    p.add_argument("--worker-advertise", metavar="HOST",
                   help="host engines use to reach workers (default: the Ray node's address when binding 0.0.0.0)")
    p.add_argument("--worker-cpus", type=_positive, default=1.0, help="Ray CPUs each worker declares (default 1)")
    p.add_argument("--worker-gpus", type=float, default=0.0, help="Ray GPU fraction each worker declares")
    p.add_argument("--worker-sessions", type=int, default=16, help="sessions per worker at most (default 16)")
    p.add_argument("--worker-threads", type=int, default=0,
                   help="render threads per worker (0: one per declared CPU)")
    p.add_argument("--max-in-flight", type=int, default=4, help="frames a session may have queued (1..64)")
    p.add_argument("--min-workers", type=int, default=1)
    p.add_argument("--max-workers", type=int, default=4)
    p.add_argument("--sessions-per-worker", type=int, default=4,
                   help="add a worker when the sessions per worker reach this (default 4)")
    p.add_argument("--render-ms", type=float, default=0.0,
                   help="add a worker when the mean render time reaches this many ms (0: off)")
    p.add_argument("--idle-s", type=_positive, default=30.0, help="remove a worker idle this long (seconds)")
    p.add_argument("--ray-address", metavar="HOST:PORT",
                   help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    p.add_argument("--record-dir", metavar="DIR", help="each worker records its sessions to DIR/<worker>.nrbcap")
    p.set_defaults(func=_run)
