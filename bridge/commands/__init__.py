"""Implementations of the ``nrb`` subcommands, one module per command (``bridge.cli`` only wires argparse)."""
