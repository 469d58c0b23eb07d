"""Shared helpers of the server tests: real ``nrb serve`` processes on loopback, a synthetic engine's buffers.

Not a test module (no ``test_`` prefix); the tests import it from their own directory.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.client import Client
from bridge.commands.serve import spawn_server, stop_server
from bridge.protocol import Buffer, BufferSpec, Camera
from bridge.scene import BUFFERS, SyntheticScene

HERE = Path(__file__).resolve().parent
TEST_RENDERERS = HERE / "renderers_for_tests.py"
SIZE = (96, 64)


@dataclass
class RunningServer:
    proc: subprocess.Popen[str]
    endpoint: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text()

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.endpoint, timeout=timeout)


@contextmanager
def served(log_dir: Path, *args: str, name: str = "server") -> Iterator[RunningServer]:
    """``nrb serve --port 0 ARGS`` in a subprocess for the duration of the block (stopped with SIGINT)."""
    proc, endpoint = spawn_server(list(args), log_dir / f"{name}.log")
    try:
        yield RunningServer(proc, endpoint, log_dir / f"{name}.log")
    finally:
        stop_server(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_SCENES: dict[tuple[int, int], tuple[list[Buffer], Camera]] = {}


def still_scene(size: tuple[int, int] = SIZE) -> tuple[list[Buffer], Camera]:
    """The static synthetic scene's buffers (cached: every frame of a test sends the same pixels)."""
    if size not in _SCENES:
        _SCENES[size] = SyntheticScene(*size, animate=False).buffers(0.0)
    return _SCENES[size]


def scene_arrays(size: tuple[int, int] = SIZE) -> dict[str, np.ndarray]:
    bufs, _ = still_scene(size)
    return {b.name: b.array() for b in bufs}


def albedo_only(size: tuple[int, int] = SIZE, value: int = 100) -> list[Buffer]:
    w, h = size
    return [Buffer.from_array("albedo", "rgba8_srgb", np.full((h, w, 4), value, np.uint8))]


ALBEDO_SPEC = [BufferSpec("albedo", "rgba8_srgb")]
SCENE_SPECS = BUFFERS
