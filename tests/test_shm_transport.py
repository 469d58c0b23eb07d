"""Frames whose pixels live in the engine's shared-memory pool are rendered in place; the result goes back into
the pool's result slot."""

from __future__ import annotations

import os
import secrets
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
from helpers.serverkit import ALBEDO_SPEC, SIZE, served

from bridge.protocol import Buffer, ShmPool, ShmRef

SLOT = 65536


def test_shared_memory_frames_are_served_and_answered_in_the_result_slot(tmp_path: Path) -> None:
    w, h = SIZE
    img = np.random.default_rng(5).integers(0, 255, (h, w, 4), dtype=np.uint8)
    name = f"nrb-test-{os.getpid()}-{secrets.token_hex(4)}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=2 * SLOT)
    try:
        with served(tmp_path, "--renderer", "passthrough") as srv, srv.client() as c:
            welcome = c.hello(SIZE, ALBEDO_SPEC, capabilities=["shm"], shm=ShmPool("/" + name, 2, SLOT))
            assert "shm" in welcome.capabilities
            shm.unlink()  # the engine unlinks once WELCOME arrives; both mappings stay valid
            shm.buf[: img.nbytes] = img.tobytes()
            frame = Buffer("albedo", "rgba8_srgb", w, h, w * 4, None, shm=ShmRef(0, 0))
            result = c.render([frame], result_slot=1)
            assert result.output is not None and result.output.shm == ShmRef(1, 0)
            out = np.frombuffer(bytes(shm.buf[SLOT:SLOT + img.nbytes]), np.uint8).reshape(h, w, 4)
            assert np.array_equal(out, img)
            c.bye()
    finally:
        shm.close()


def test_a_pool_the_server_cannot_map_is_declined_and_inline_frames_still_work(tmp_path: Path) -> None:
    with served(tmp_path, "--renderer", "passthrough") as srv, srv.client() as c:
        welcome = c.hello(SIZE, ALBEDO_SPEC, capabilities=["shm"], shm=ShmPool("/nrb-does-not-exist", 1, SLOT))
        assert "shm" not in welcome.capabilities
        w, h = SIZE
        assert c.render([Buffer.from_array("albedo", "rgba8_srgb", np.zeros((h, w, 4), np.uint8))]).status == "ok"
        c.bye()
