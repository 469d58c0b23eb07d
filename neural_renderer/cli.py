"""``nrb data``, ``nrb train`` and ``nrb export``: argparse subcommands that ``bridge/cli.py`` mounts.

``bridge/cli.py`` calls :func:`register` with its subparsers object; each subcommand sets ``func`` to a
callable taking the parsed namespace and returning an exit code. ``python -m neural_renderer.cli ...`` runs
the same commands without the bridge (handy while the CLI is being assembled).

Heavy imports (torch, Mitsuba) happen inside the handlers so that ``nrb --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path("data/synth")
DEFAULT_RUN = Path("runs/neural")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WxH, e.g. 128x128") from None
    if not (8 <= w <= 4096 and 8 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"size {text!r} out of range 8..4096")
    return w, h


def _cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from neural_renderer.data.dataset import generate

    bar = tqdm(total=args.scenes, unit="scene", desc=f"rendering {args.out}", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    manifest = generate(
        args.out,
        args.scenes,
        args.size,
        spp=args.spp,
        frames=args.frames,
        seed=args.seed,
        holdout_every=args.holdout_every,
        keep_position=args.keep_position,
        progress=progress,
        workers=args.workers,
        threads=args.threads,
        lighting=args.lighting,
        engine_image=args.engine_image,
    )
    bar.close()
    n_test = sum(1 for s in manifest["scenes"].values() if s["split"] == "test")
    n_all = len(manifest["scenes"])
    print(f"{args.out}: {n_all} scenes ({n_test} held out), Mitsuba variant {manifest['variant']}")
    return 0


def add_data_parser(subparsers: Any) -> None:
    """``nrb data generate``."""
    p = subparsers.add_parser("data", help="synthetic training data (Mitsuba 3)")
    sub = p.add_subparsers(dest="data_command", required=True)
    g = sub.add_parser("generate", help="render randomized scenes into a resumable dataset")
    g.add_argument("--scenes", type=int, required=True, help="number of scenes (a rerun resumes / extends)")
    g.add_argument("--size", type=_size, default=(128, 128), help="WxH (default 128x128)")
    g.add_argument(
        "--out", type=Path, default=DEFAULT_DATA, help=f"dataset directory (default {DEFAULT_DATA})"
    )
    g.add_argument("--spp", type=int, default=128, help="reference samples per pixel (default 128)")
    g.add_argument("--frames", type=int, default=2, help="frames per camera path (default 2)")
    g.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    g.add_argument("--holdout-every", type=int, default=10, help="every Nth scene is held out (default 10)")
    g.add_argument("--keep-position", action="store_true", help="also store the world-position buffer")
    g.add_argument(
        "--workers", type=int, default=1, help="scenes rendered at once in worker processes (default 1)"
    )
    g.add_argument(
        "--threads", type=int, default=None, help="render threads per worker (default: CPUs / workers)"
    )
    g.add_argument(
        "--lighting",
        choices=("house", "every", "corridor"),
        default="house",
        help="house: a jittered sun and a sky (default, the shipped model's data); every: point, spot and area "
        "lights, night, indoors; corridor: the held-out scene family (all scenes are test scenes)",
    )
    g.add_argument(
        "--engine-image",
        action="store_true",
        help="also store each frame's engine image (hudless_color: raster-style direct light, varied shadows, "
        "occlusion, tone mapping and exposure, recorded in the manifest)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_cmd_generate)


def _cmd_train(args: argparse.Namespace) -> int:
    from neural_renderer.train import TrainConfig, train

    cfg = TrainConfig(
        data=[Path(d) for d in args.data],
        out=args.out,
        steps=args.steps,
        minutes=args.minutes,
        batch=args.batch,
        crop=args.crop,
        lr=args.lr,
        seed=args.seed,
        width=args.width,
        trunk_blocks=args.trunk_blocks,
        modulate=args.modulate,
        ema=args.ema,
        temporal=not args.no_temporal,
        upscale=args.upscale,
        threads=args.threads,
        device=args.device,
        init=args.init,
        flip_weight=args.flip_weight,
        lighting=args.lighting,
        params=args.params,
        engine=args.engine,
    )
    train(cfg, resume=not args.fresh, progress=not args.quiet)
    return 0


def add_train_parser(subparsers: Any) -> None:
    """``nrb train``."""
    p = subparsers.add_parser("train", help="train the neural renderer (resumes from the last checkpoint)")
    p.add_argument(
        "--data",
        nargs="+",
        default=[str(DEFAULT_DATA)],
        help="dataset directories: synthetic (nrb data generate) or captures (nrb record)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_RUN, help=f"run directory (default {DEFAULT_RUN})")
    p.add_argument("--steps", type=int, default=4000, help="optimizer steps (default 4000)")
    p.add_argument(
        "--minutes", type=float, default=None, help="stop after this wall time, whatever the steps"
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=96, help="random square crop size (multiple of 8)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=32, help="base channel width of the network")
    p.add_argument(
        "--trunk-blocks", type=int, default=2, help="residual blocks at 1/8 resolution (default 2)"
    )
    p.add_argument(
        "--modulate", action="store_true", help="albedo-modulated output head (sharper textures and edges)"
    )
    p.add_argument(
        "--ema", type=float, default=0.999, help="weight-average decay for evaluation and export (0 = off)"
    )
    p.add_argument(
        "--upscale", type=int, default=1, choices=(1, 2), help="output scale (2 = neural upscaling)"
    )
    p.add_argument("--no-temporal", action="store_true", help="train without the temporal (history) path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: robust on a shared CPU; more on a dedicated machine)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda, or auto (cuda when torch sees one); checkpoints load on either",
    )
    p.add_argument(
        "--init",
        type=Path,
        help="fine-tune: start from this checkpoint's weights (e.g. neural_renderer/weights/default.pt); "
        "the network's shape comes from it; with --params --engine a styles-as-weights checkpoint is rebuilt to "
        "take the parameter map and the engine image, rendering exactly as before (the warm start)",
    )
    p.add_argument(
        "--flip-weight",
        type=float,
        default=0.0,
        help="add this weight x differentiable LDR-FLIP (the benchmark's metric) to the loss (default 0)",
    )
    p.add_argument(
        "--lighting",
        action="store_true",
        help="give the network the engine's sun and sky (x_sun_direction, x_sun_irradiance, x_sky_radiance); "
        "with --init from a model without them, it is widened with zero weights for them",
    )
    p.add_argument(
        "--params",
        action="store_true",
        help="styles as parameters (issue 17): condition on the per-pixel style parameter map and train over "
        "random parameter vectors as well as the presets (use with --engine)",
    )
    p.add_argument(
        "--engine",
        action="store_true",
        help="the engine's lit image (hudless_color, datasets made with --engine-image) as an input (issue 15)",
    )
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints in --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)


def _cmd_export(args: argparse.Namespace) -> int:
    from neural_renderer.export import export_onnx

    paths = export_onnx(args.checkpoint, args.out, temporal=args.temporal, check=not args.no_check)
    for p in paths:
        print(p)
    return 0


def add_export_parser(subparsers: Any) -> None:
    """``nrb export``."""
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX (dynamic height and width)")
    p.add_argument("checkpoint", type=Path, help="a .pt checkpoint (nrb train writes RUN/last.pt)")
    p.add_argument("--out", type=Path, required=True, help="output .onnx path")
    p.add_argument(
        "--temporal",
        action="store_true",
        help="also write OUT with suffix _temporal.onnx taking the previous output as input",
    )
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity check")
    p.set_defaults(func=_cmd_export)


def register(subparsers: Any) -> None:
    """Add ``data``, ``train`` and ``export`` to ``nrb``'s subparsers."""
    add_data_parser(subparsers)
    add_train_parser(subparsers)
    add_export_parser(subparsers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neural_renderer.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
