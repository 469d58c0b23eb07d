"""``nrb``: the command line. This module only wires argparse; each command lives in its own module.

A command module exposes ``register(subparsers)``, which adds its subcommand(s) and sets ``func`` on each parser
to a callable taking the parsed namespace and returning an exit code. To add a command, add its module to
``COMMAND_MODULES``; a module that is not installed is skipped (so partial checkouts still run).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES: tuple[str, ...] = (
    "bridge.commands.serve",  # serve, record
    "bridge.commands.replay",  # replay
    "bridge.commands.inspect",  # inspect
    "bridge.commands.demo",  # demo
    "bridge.commands.bench",  # bench transport|renderer|soak|all
    "bridge.commands.keys",  # keys generate|show
    "neural_renderer.cli",  # data, train, export
)


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
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nrb`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.INFO if args.verbose <= 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
