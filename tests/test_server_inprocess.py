"""``Server`` used in-process (start/stop), with a renderer factory of the caller's, on real loopback sockets."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from serverkit import ALBEDO_SPEC, SIZE, albedo_only

from bridge import Renderer, Server
from bridge.capture import CaptureReader
from bridge.client import Client, RemoteError
from bridge.commands.replay import SessionReplay
from bridge.protocol import BufferSpec, Bye, StyleCommand
from bridge.renderer import RenderInputs
from bridge.style import DEFAULT_LIBRARY


class SlowEcho(Renderer):
    """Echoes albedo after 0.3 s, so a second frame arrives while the first is still rendering."""

    name = "slow-echo"

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        time.sleep(0.3)
        return inputs.raw("albedo")


def test_in_process_server_serves_reports_status_and_says_bye_when_stopped() -> None:
    server = Server(port=0, renderer="passthrough").start()
    client = Client(server.endpoint or "", timeout=10)
    try:
        client.hello(SIZE, ALBEDO_SPEC)
        assert client.render(albedo_only()).status == "ok"
        line = server.status_line()
        assert "sessions 1" in line and "p50" in line and "p99" in line and "drops 0" in line
        assert server.snapshot()["rendered"] == 1
    finally:
        server.stop()
    bye = client.recv(timeout=5)
    assert isinstance(bye, Bye) and bye.reason == "server shutting down"
    client.close()


def test_a_frame_refused_for_overload_still_applies_its_style_commands(tmp_path: Path) -> None:
    capture = tmp_path / "c.nrbcap"
    with Server(port=0, factory=SlowEcho, max_in_flight=1, record=str(capture)) as server:
        with Client(server.endpoint or "", timeout=10) as c:
            c.hello(SIZE, ALBEDO_SPEC)
            first = c.send_frame(albedo_only())
            second = c.send_frame(albedo_only(), styles=[StyleCommand("noir", 1.0, 0.0)])
            assert c.result(first).status == "ok"
            with pytest.raises(RemoteError, match="OVERLOADED"):
                c.result(second)
            assert c.render(albedo_only()).status == "ok"
            c.bye()
    with CaptureReader(capture) as reader:
        maps = {rf.frame.frame: rf.style_map for rf in SessionReplay(reader)}
    noir = DEFAULT_LIBRARY.index("noir")
    assert maps[2] is None  # refused: not rendered, no map
    assert maps[3] is not None and (maps[3][..., noir] == 1).all()  # ...but its command took effect
