"""``nrb``: the command line. This module only wires argparse; each command lives in its own module.

A command module exposes ``register(subparsers)``, which adds its subcommand(s) and sets ``func`` on each parser
to a callable taking the parsed namespace and returning an exit code. To add a command, add its module to
``COMMAND_MODULES``; a module that is not installed is skipped (so partial checkouts still run).

Installs are split by role (pyproject.toml extras: the core is the codec and the client; ``[server]``, ``[train]``,
``[panda3d]`` add what those roles need). A command whose role's packages are missing is still listed, and running
it says which extra to install instead of ending in a traceback, so ``nrb`` itself works in every install.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

COMMAND_MODULES: tuple[str, ...] = (
    "bridge.commands.serve",  # serve, record
    "bridge.commands.replay",  # replay
    "bridge.commands.inspect",  # inspect
    "bridge.commands.demo",  # demo
    "bridge.commands.bench",  # bench transport|renderer|soak|all
    "bridge.commands.keys",  # keys generate|show
    "bridge.commands.router",  # router (the cluster's front door)
    "neural_renderer.cli",  # data, train, export
)

#: Third-party packages outside the core install, and the pyproject.toml extra that brings each.
EXTRA_OF: dict[str, str] = {
    "onnxruntime": "server", "prometheus_client": "server", "PIL": "server", "imageio": "server",
    "imageio_ffmpeg": "server", "tqdm": "server",
    "torch": "train", "onnx": "train", "mitsuba": "train", "flip_evaluator": "train", "skimage": "train",
    "matplotlib": "train",
    "panda3d": "panda3d", "direct": "panda3d",
    "ray": "cluster",
}
#: The commands of each module, for listing them when the module cannot be imported in this install.
COMMANDS_OF: dict[str, tuple[str, ...]] = {
    "bridge.commands.serve": ("serve", "record"), "bridge.commands.replay": ("replay",),
    "bridge.commands.inspect": ("inspect",), "bridge.commands.demo": ("demo",), "bridge.commands.bench": ("bench",),
    "bridge.commands.keys": ("keys",), "bridge.commands.router": ("router",),
    "neural_renderer.cli": ("data", "train", "export"),
}


class MissingExtra(RuntimeError):
    """A command needs a package that this install does not have; the message names the extra to install."""

    def __init__(self, command: str, package: str) -> None:
        extra = EXTRA_OF.get(package, "all")
        super().__init__(f"nrb {command} needs the '{package}' package, which is not installed: "
                         f"pip install 'neural-render-bridge[{extra}]'")


def _missing_package(exc: ModuleNotFoundError) -> str | None:
    """The top-level name of an optional third-party package whose absence raised ``exc``, else None."""
    top = (exc.name or "").split(".")[0]
    return top if top in EXTRA_OF else None


def _register_unavailable(sub: Any, module: str, package: str) -> None:
    for command in COMMANDS_OF.get(module, ()):
        p = sub.add_parser(command, help=f"(needs pip install 'neural-render-bridge[{EXTRA_OF[package]}]')",
                           add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)

        def fail(args: argparse.Namespace, command: str = command) -> int:
            raise MissingExtra(command, package)

        p.set_defaults(func=fail)


def build_parser() -> argparse.ArgumentParser:
    """The ``nrb`` parser with every available command registered."""
    parser = argparse.ArgumentParser(prog="nrb", description="Neural Render Bridge: serve, record, replay and "
                                     "inspect engine G-buffer streams rendered by pluggable renderers.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # the command's package is not part of this checkout
            package = _missing_package(exc)
            if package is None:
                raise
            _register_unavailable(sub, name, package)
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nrb`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.INFO if args.verbose <= 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except MissingExtra as exc:
        print(exc, file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a command importing an optional package only when it needs it
        package = _missing_package(exc)
        if package is None:
            raise
        print(MissingExtra(args.command, package), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
