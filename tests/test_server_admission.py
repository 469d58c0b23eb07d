"""What a HELLO must pass to open a session (``bridge.server.admission``), beyond tests/test_limits.py: a HELLO
refused after its shared-memory pool was mapped leaves nothing of the pool behind in the server."""

from __future__ import annotations

import os
import secrets
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest
from helpers.serverkit import ALBEDO_SPEC, SIZE

from bridge import Renderer, Server
from bridge.client import Client, RemoteError
from bridge.protocol import BufferSpec, ShmPool
from bridge.renderer import RenderInputs


class Upscaler(Renderer):
    """Returns the output size the engine asks for (so the image, not the G-buffers, decides the session's
    memory)."""

    name = "upscaler"

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8_srgb")]

    def output_size(self, render_size: tuple[int, int], requested: tuple[int, int]) -> tuple[int, int]:
        return requested

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        raise AssertionError("never rendered: the session is refused")


def _descriptors_of(name: str) -> list[str]:
    """This process's open descriptors on the shared-memory object ``name``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == f"/dev/shm/{name}":
                found.append(fd)
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc")
def test_a_hello_refused_for_its_image_size_lets_go_of_the_pool_it_offered() -> None:
    """The G-buffers fit the session budget, the 1024x1024 image the renderer would return does not: the HELLO is
    refused LIMIT_EXCEEDED after the server opened the engine's pool, and the server keeps no descriptor of it
    (a refused HELLO must cost the server nothing, however often it comes)."""
    name = f"nrb-test-{os.getpid()}-{secrets.token_hex(4)}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=2 * 65536)
    try:
        with Server(port=0, factory=Upscaler, max_session_bytes=4 << 20) as server:
            with Client(server.endpoint or "", timeout=10) as c:
                before = set(_descriptors_of(name))  # the engine's own (``SharedMemory`` keeps one open)
                with pytest.raises(RemoteError) as refused:
                    c.hello(SIZE, ALBEDO_SPEC, output_size=(1024, 1024), capabilities=["shm"],
                            shm=ShmPool("/" + name, 2, 65536))
                assert refused.value.name == "LIMIT_EXCEEDED" and "1024x1024" in str(refused.value)
                assert set(_descriptors_of(name)) == before
                assert not server.sessions
    finally:
        shm.close()
        shm.unlink()
