"""``nrb router``: the cluster's front door (docs/cluster.md).

    nrb router --renderer neural --min-workers 1 --max-workers 4          # a local Ray, workers on this machine
    nrb router --renderer neural=1:4 -o device=cuda --renderer deferred=1:2   # two renderers, each scaled alone
    nrb router --ray-address HEAD:6379 --host 0.0.0.0 --worker-host 0.0.0.0 \\
        --curve-secret keys/server/server.key_secret --allow-dir keys/clients   # a cluster across machines

Engines connect to the printed endpoint as they would to ``nrb serve``; each session is placed on a Ray worker and
the engine is redirected to it (protocol section 5.10). Needs the ``[cluster]`` extra (Ray).
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.renderer import parse_options

if TYPE_CHECKING:
    from bridge.cluster.frontdoor import ClusterConfig

_COUNTS = re.compile(r"(\d+)(?::(\d+))?")


@dataclass
class PoolArg:
    """One ``--renderer NAME[=MIN[:MAX]]`` and the ``-o KEY=VALUE`` options given after it."""

    renderer: str
    min_workers: int | None = None
    max_workers: int | None = None
    options: list[str] = field(default_factory=list)


def parse_pool(text: str) -> PoolArg:
    """``neural`` | ``neural=2`` (at least 2) | ``neural=1:4``. Only digits after the last ``=`` are counts, so a
    renderer spec with an ``=`` of its own still works."""
    name, sep, counts = text.rpartition("=")
    m = _COUNTS.fullmatch(counts) if sep else None
    if m is None:
        return PoolArg(text)
    if not name:
        raise argparse.ArgumentTypeError(f"--renderer {text!r}: NAME before '=MIN[:MAX]' is missing")
    return PoolArg(name, int(m.group(1)), None if m.group(2) is None else int(m.group(2)))


class _RendererAction(argparse.Action):
    """``--renderer`` may be repeated: one pool of workers per renderer."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        try:
            pool = parse_pool(str(values))
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
        pools = list(getattr(namespace, self.dest) or [])
        setattr(namespace, self.dest, [*pools, pool])


class _OptionAction(argparse.Action):
    """``-o KEY=VALUE`` belongs to the ``--renderer`` given before it (the first one when it comes first)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        pools: list[PoolArg] = getattr(namespace, "renderer") or []
        if pools:
            pools[-1].options.append(str(values))
        else:
            namespace.early_options = [*namespace.early_options, str(values)]


def pools_of(args: argparse.Namespace) -> list[PoolArg]:
    """The ``--renderer`` pools as given (``neural`` when none), options given before any ``--renderer`` going to
    the first. A pool's MIN defaults to ``--min-workers``, its MAX to ``--max-workers`` (or MIN, when larger)."""
    pools: Sequence[PoolArg] = args.renderer or [PoolArg("neural")]
    out = []
    for i, p in enumerate(pools):
        low = args.min_workers if p.min_workers is None else p.min_workers
        high = p.max_workers if p.max_workers is not None else max(args.max_workers, low)
        out.append(PoolArg(p.renderer, low, high, [*args.early_options, *p.options] if i == 0 else list(p.options)))
    return out


def cluster_config(args: argparse.Namespace) -> ClusterConfig:
    """The ``ClusterConfig`` of parsed ``nrb router`` arguments; ``ValueError`` for a bad option."""
    from bridge.cluster.frontdoor import ClusterConfig, RendererPool

    pools = [RendererPool(p.renderer, parse_options(p.options), int(p.min_workers or 0), int(p.max_workers or 0))
             for p in pools_of(args)]
    first = pools[0]
    return ClusterConfig(
        renderer=first.renderer, renderer_options=dict(first.renderer_options), host=args.host,
        port=args.port, endpoint=args.endpoint, insecure=args.insecure, curve_secret=args.curve_secret,
        allow_dir=args.allow_dir, hooks=args.hooks, styles=args.styles, worker_host=args.worker_host,
        worker_advertise=args.worker_advertise, worker_cpus=args.worker_cpus, worker_gpus=args.worker_gpus,
        max_sessions=args.worker_sessions, workers=args.worker_threads,
        max_in_flight=args.max_in_flight, min_workers=first.min_workers, max_workers=first.max_workers,
        sessions_per_worker=args.sessions_per_worker, render_ms=args.render_ms, idle_s=args.idle_s,
        ray_address=args.ray_address, record_dir=args.record_dir, pools=pools)


def _positive(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def _run(args: argparse.Namespace) -> int:
    import ray  # noqa: F401 - fail here, with the extra's name, before anything starts (bridge.cli)

    from bridge.cluster.frontdoor import FrontDoor

    try:
        cfg = cluster_config(args)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            door = FrontDoor(cfg)
            for w in caught:
                print(f"nrb router: WARNING: {w.message}", file=sys.stderr, flush=True)
        door.start()
    except (ValueError, TypeError, OSError, RuntimeError) as exc:  # RuntimeError: SecurityError, Ray failures
        print(f"nrb router: {exc}", file=sys.stderr)
        return 2
    pools = ", ".join(f"{p.renderer} {len(door.loads(p.renderer))} ({p.min_workers}..{p.max_workers})"
                      for p in cfg.pools)
    print(f"nrb router: listening on {door.endpoint} ({len(door.loads())} workers: {pools})", flush=True)
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
    p.add_argument("--renderer", action=_RendererAction, default=None, metavar="RENDERER[=MIN[:MAX]]",
                   help="a renderer of the workers, as for nrb serve (default neural); repeat it for workers of "
                        "several renderers, each pool scaled between its own MIN and MAX (default --min-workers, "
                        "--max-workers); a HELLO naming a renderer is placed on its pool")
    p.add_argument("-o", "--renderer-option", action=_OptionAction, metavar="KEY=VALUE",
                   help="an option of the --renderer given before it (of the first, when given before any)")
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
    p.add_argument("--min-workers", type=int, default=1, help="workers at least, per --renderer without MIN")
    p.add_argument("--max-workers", type=int, default=4, help="workers at most, per --renderer without MAX")
    p.add_argument("--sessions-per-worker", type=int, default=4,
                   help="add a worker when the sessions per worker reach this (default 4)")
    p.add_argument("--render-ms", type=float, default=0.0,
                   help="add a worker when the mean render time reaches this many ms (0: off)")
    p.add_argument("--idle-s", type=_positive, default=30.0, help="remove a worker idle this long (seconds)")
    p.add_argument("--ray-address", metavar="HOST:PORT",
                   help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    p.add_argument("--record-dir", metavar="DIR", help="each worker records its sessions to DIR/<worker>.nrbcap")
    p.set_defaults(func=_run, early_options=[])
