"""``nrb bench``: the benchmarks behind ``make bench``.

Each benchmark module in ``nrb_bench/`` exposes ``run(out_dir, *, quick=False) -> dict`` and writes its own JSON
and Markdown report (plus pictures) into ``out_dir``; a module may also expose ``register(bench_subparsers)`` when
it has options of its own. ``nrb bench all`` runs every available benchmark in turn and keeps going when one fails,
so one broken bench does not hide the numbers of the others (the exit code still says it failed).
Speed targets are reported as ratios measured in the same run, never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger("nrb.bench")

#: name → module, in the order ``nrb bench all`` runs them.
BENCHES: dict[str, str] = {
    "transport": "nrb_bench.transport",
    "renderer": "nrb_bench.renderer",
    "soak": "nrb_bench.soak",
    "serve": "nrb_bench.serve",
    "grading": "nrb_bench.grading",
    "remote": "nrb_bench.remote",
    "cluster": "nrb_bench.cluster",
    "looks": "nrb_bench.looks",
}


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(BENCHES[name])
    except ModuleNotFoundError as exc:
        if exc.name is not None and BENCHES[name].startswith(exc.name):
            return None  # that benchmark is not part of this checkout
        raise


def _run_one(name: str, out: Path, quick: bool) -> None:
    module = _module(name)
    if module is None:
        raise RuntimeError(f"benchmark {name!r} is not available")
    module.run(out, quick=quick)


def run_all(args: argparse.Namespace) -> int:
    out = Path(args.out)
    failed: list[str] = []
    for name in BENCHES:
        if _module(name) is None:
            continue
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        try:
            _run_one(name, out, args.quick)
        except Exception:  # noqa: BLE001 - report and continue with the next benchmark
            traceback.print_exc()
            failed.append(name)
            print(f"[bench] {name} FAILED after {time.perf_counter() - t0:.0f} s", flush=True)
        else:
            print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s -> {out / name}.md", flush=True)
    print(f"[bench] reports in {out}/" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _simple(name: str) -> Any:
    def main(args: argparse.Namespace) -> int:
        _run_one(name, Path(args.out), args.quick)
        return 0

    return main


def register(sub: Any) -> None:
    """Add ``nrb bench`` with one subcommand per benchmark plus ``all``."""
    p = sub.add_parser("bench", help="run benchmarks (JSON + Markdown reports under bench/)",
                       description=__doc__.splitlines()[0])
    bench_sub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    pa = bench_sub.add_parser("all", help="every benchmark, one after the other")
    pa.add_argument("--out", default="bench", help="report directory (default bench/)")
    pa.add_argument("--quick", action="store_true", help="fewer iterations and smaller sizes")
    pa.set_defaults(func=run_all)
    for name in BENCHES:
        module = _module(name)
        if module is None:
            continue
        if hasattr(module, "register"):
            module.register(bench_sub)
            continue
        pb = bench_sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
        pb.add_argument("--out", default="bench", help="report directory (default bench/)")
        pb.add_argument("--quick", action="store_true", help="fewer iterations and smaller sizes")
        pb.set_defaults(func=_simple(name))
