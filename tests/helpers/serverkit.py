"""Shared helpers of the server tests: real ``nrb serve`` processes on loopback, a synthetic engine's buffers, the
libnrb game client with the short timeouts the fault tests need, and the paths of the helper renderers and hooks.

Imported as ``helpers.serverkit`` (see ``helpers/__init__.py``).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bridge.client import Client
from bridge.commands.serve import spawn_server, stop_server
from bridge.protocol import Buffer, BufferSpec, Camera
from bridge.scene import BUFFERS, SyntheticScene

HELPERS = Path(__file__).resolve().parent
SIZE = (96, 64)


def helper_file(name: str) -> str:
    """The path of a helper file (a renderer or hooks file ``nrb serve`` loads by path), as a string."""
    path = HELPERS / name
    assert path.is_file(), path
    return str(path)


def helper_renderer(name: str) -> str:
    """``--renderer`` for a helper renderer file: ``helper_renderer("fault_renderer.py")`` → ``.../fault_renderer.py:make``."""
    return f"{helper_file(name)}:make"


#: The misbehaving renderer (raises, wrong sizes, NaNs, slow frames by frame id: ``misbehaving_renderer.py``).
MISBEHAVING_RENDERER = helper_renderer("misbehaving_renderer.py")


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


# ------------------------------------------------------------------------------------------------ the game's client
#: The libnrb game client's defaults in the client and fault tests: a 64x32 frame of hudless_color and depth, a 50 ms
#: deadline, and timeouts short enough that a lost server is noticed within a test's seconds.
GAME_SIZE = (64, 32)
GAME_DEADLINE_MS = 50.0
GAME_CLIENT_DEFAULTS: dict[str, Any] = dict(
    render_size=GAME_SIZE, transport="inline", buffers=[("hudless_color", "rgba8_srgb"), ("depth", "r32f")],
    deadline_ms=GAME_DEADLINE_MS, server_timeout_ms=500, ping_interval_ms=100, handshake_timeout_ms=500,
    connect_timeout_ms=300, reconnect_backoff_min_ms=20, reconnect_backoff_max_ms=200, engine="pytest")


def game_client(endpoint: str, **kw: Any) -> Any:
    """A ``bridge._native.Client`` (libnrb) with ``GAME_CLIENT_DEFAULTS``, overridden by ``kw``."""
    from bridge import _native

    return _native.Client(**{**GAME_CLIENT_DEFAULTS, "endpoint": endpoint, **kw})


def connected_client(endpoint: str, timeout_s: float = 20.0, **kw: Any) -> Any:
    """A ``bridge._native.Client`` (libnrb) on ``endpoint`` with ``kw``, returned once it is connected; the test fails
    with libnrb's last error when it is not within ``timeout_s``."""
    from bridge import _native

    c = _native.Client(endpoint=endpoint, **kw)
    end = time.monotonic() + timeout_s
    while c.stats()["state"] != "connected":
        assert time.monotonic() < end, c.last_error
        time.sleep(0.01)
    return c


def tiled_image(seed: int, w: int, h: int) -> np.ndarray:
    """A rendered-looking rgba8 image: flat 16x16 tiles with a little noise, so it compresses, but not to nothing."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] // 16
    img = np.empty((h, w, 4), np.uint8)
    img[..., 0] = (xx * 13 + seed) % 256
    img[..., 1] = (yy * 29) % 256
    img[..., 2] = rng.integers(0, 4, (h, w)) + 100
    img[..., 3] = 255
    return img


def image_of(client: Any, frame_id: int, timeout_s: float = 20.0) -> np.ndarray:
    """A copy of the image libnrb hands back for ``frame_id`` (polled: libnrb has no blocking wait); the test fails
    with the client's statistics when it does not come within ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while True:
        got = client.acquire_result(with_info=True)
        if got is not None and got[1]["frame_id"] == frame_id:
            return np.array(got[0], copy=True)
        assert time.monotonic() < end, client.stats()
        time.sleep(0.002)
