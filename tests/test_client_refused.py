"""Issue #13: a renderer that refuses the session (an ERROR answers HELLO) is surfaced, not retried silently.

Against real ``nrb serve`` processes: ``--renderer deferred`` needs ``albedo``, ``normals`` and ``depth``, and the
engine here offers ``hudless_color`` and ``depth`` only, so the server answers HELLO with ERROR ``BAD_VALUE`` (6)
``buffers: renderer 'deferred' needs buffers [...], which the engine does not offer``. The engine client (libnrb,
through ``bridge._native.Client``, which the Panda3D plugin also uses) must then report the state
``refused`` with that code and message, send nothing more (no reconnect loop), and connect once asked again
(``retry()``, or the player's toggle: disabled then enabled) to a server that accepts. A WELCOME that never comes is
not a refusal: the client keeps retrying and says why. The Panda3D overlay shows ``REFUSED: <message>``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.serverkit import free_port

from bridge.commands.serve import spawn_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "engine_plugins" / "panda3d"

W, H = 64, 32
BUFFERS = [("hudless_color", "rgba8_srgb"), ("depth", "r32f")]
BAD_VALUE = 6


class Servers:
    """``nrb serve`` subprocesses started by a test; all are stopped afterwards."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> str:
        proc, endpoint = spawn_server(list(args), self.log_dir / f"server{len(self.procs)}.log")
        self.procs.append(proc)
        return endpoint

    def stop_all(self) -> None:
        for p in self.procs:
            stop_server(p)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    s = Servers(tmp_path)
    yield s
    s.stop_all()


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


# ------------------------------------------------------------------------------------------------ the client
class NativeEngine:
    """libnrb through ``bridge._native.Client``: stats are a dict."""

    def __init__(self, endpoint: str, **kw: Any) -> None:
        native = pytest.importorskip("bridge._native")
        if not hasattr(native, "Client"):
            pytest.skip("bridge._native was built without the client (run `make setup`)")
        opts: dict[str, Any] = dict(endpoint=endpoint, render_size=(W, H), transport="inline", buffers=BUFFERS,
                                    deadline_ms=500.0, handshake_timeout_ms=300, connect_timeout_ms=300,
                                    reconnect_backoff_min_ms=20, reconnect_backoff_max_ms=100, engine="pytest")
        opts.update(kw)
        self.c = native.Client(**opts)

    def stats(self) -> dict[str, Any]:
        return dict(self.c.stats())

    def last_error(self) -> str:
        return str(self.c.last_error)

    def retry(self) -> None:
        self.c.retry()

    def set_enabled(self, on: bool) -> None:
        self.c.enabled = on

    def frame(self) -> bool:
        """One engine frame; True when a rendered image came back."""
        self.c.begin()
        self.c.tag_buffer("hudless_color", "rgba8_srgb", np.full((H, W, 4), 90, np.uint8))
        self.c.tag_buffer("depth", "r32f", np.full((H, W), 0.5, np.float32))
        self.c.submit()
        return self.c.acquire_result() is not None

    def close(self) -> None:
        self.c.close()


# ------------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("ask_again", ["retry", "toggle"])
def test_a_refused_session_is_surfaced_not_retried_and_asked_again_on_request(servers: Servers,
                                                                             ask_again: str) -> None:
    port = free_port()
    endpoint = servers.start("--renderer", "deferred", "--port", str(port))
    e = NativeEngine(endpoint)
    try:
        assert wait_until(lambda: e.stats()["state"] == "refused", 5.0), (e.stats(), e.last_error())
        s = e.stats()
        assert s["refusal_code"] == BAD_VALUE
        assert "needs buffers ['albedo'" in s["refusal_message"]
        assert s["refusal_message"].startswith("buffers: renderer 'deferred' needs buffers")
        assert "albedo" in e.last_error() and "refused the session: BAD_VALUE (6)" in e.last_error()
        assert endpoint in e.last_error()

        # No reconnect storm: in a second of game frames nothing more is asked (one ERROR, the first one, and not
        # one more byte on the wire), and the game falls back to its own image.
        before = e.stats()
        assert before["errors_received"] == 1
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            assert not e.frame()
            time.sleep(0.01)
        after = e.stats()
        assert after["state"] == "refused"
        assert after["errors_received"] == 1 and after["reconnects"] == 0 and after["frames_sent"] == 0
        assert after["bytes_sent"] == before["bytes_sent"]

        # The operator fixes the server (one that accepts these buffers, on the same endpoint); the game asks again.
        stop_server(servers.procs[-1])
        assert servers.start("--renderer", "passthrough", "--port", str(port)) == endpoint
        time.sleep(0.3)
        assert e.stats()["state"] == "refused", "asked again by itself"
        if ask_again == "retry":
            e.retry()
        else:
            e.set_enabled(False)
            assert wait_until(lambda: e.stats()["state"] == "disabled")
            e.set_enabled(True)
        assert wait_until(lambda: e.stats()["state"] == "connected", 8.0), (e.stats(), e.last_error())
        assert wait_until(e.frame, 5.0), "no rendered frame after asking again"
        s = e.stats()
        assert s["refusal_code"] == 0 and s["refusal_message"] == "" and e.last_error() == ""
    finally:
        e.close()


def test_retry_is_a_no_op_unless_refused(servers: Servers) -> None:
    endpoint = servers.start("--renderer", "passthrough")
    e = NativeEngine(endpoint)
    try:
        assert wait_until(lambda: e.stats()["state"] == "connected", 8.0), (e.stats(), e.last_error())
        session = e.stats()["session"]
        e.retry()
        time.sleep(0.2)
        assert e.stats()["state"] == "connected" and e.stats()["session"] == session
    finally:
        e.close()


def test_no_welcome_is_not_a_refusal_the_client_keeps_trying_and_says_why() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    e = NativeEngine(endpoint)
    try:
        assert wait_until(lambda: "no WELCOME from" in e.last_error() and "2 attempts" in e.last_error(), 5.0), \
            e.last_error()
        assert e.last_error().startswith(f"no WELCOME from {endpoint} within 300 ms (is `nrb serve` running there?)")
        s = e.stats()
        assert s["state"] == "connecting" and s["refusal_code"] == 0 and s["refusal_message"] == ""
    finally:
        e.close()


def test_overlay_text_shows_the_refusal() -> None:
    pytest.importorskip("panda3d")
    from nrb_panda3d.plugin import overlay_text

    base = dict(source="raster", fps=60.0, rtt_p50_ms=0.0, rtt_p95_ms=0.0, frames_sent=0, results_received=0,
                fallbacks=12, reconnects=0, last_error="")
    text = overlay_text({**base, "state": "connecting", "refusal_message": ""})
    assert "REFUSED" not in text
    msg = "buffers: renderer 'deferred' needs buffers ['albedo', 'normals', 'depth'], which the engine does not offer"
    text = overlay_text({**base, "state": "refused", "refusal_message": msg})
    lines = text.splitlines()
    assert lines[0] == "RASTER  60 fps  [refused]"
    assert lines[1].startswith("REFUSED: buffers: renderer 'deferred'")
    assert " ".join(ln.strip() for ln in lines[1:-2]) == f"REFUSED: {msg}"
    assert all(len(ln) <= 72 for ln in lines)


OVERLAY_GAME = r"""
import json, sys, time
from nrb_panda3d.demo import GameSession
g = GameSession(sys.argv[1], (160, 120), show_stats=True)
end = time.monotonic() + 20.0
while g.client.stats().state != "refused" and time.monotonic() < end:
    g.step(capture=False)
    time.sleep(0.01)
for _ in range(30):
    info = g.step(capture=False)
    time.sleep(0.01)
s = g.client.stats()
print(json.dumps({"state": s.state, "errors": s.errors_received, "overlay": g.nrb.overlay.getText(),
                  "source": info.source, "client": type(g.client).__name__}))
g.close()
"""


def test_the_panda3d_overlay_shows_the_refusal(servers: Servers) -> None:
    """The sample game, headless, against a server that refuses its 160x120 session (``--max-pixels``): the
    plugin's client (libnrb) reports the refusal through ``ClientStats`` and the overlay shows it."""
    pytest.importorskip("panda3d")
    endpoint = servers.start("--renderer", "deferred", "--max-pixels", "100")
    proc = subprocess.run([sys.executable, "-c", OVERLAY_GAME, endpoint], cwd=PLUGIN_DIR,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["client"] == "NativeClient" and out["state"] == "refused"
    assert out["errors"] == 1  # asked once, not again during 30 more frames
    assert out["source"] == "raster"
    assert "[refused]" in out["overlay"]
    assert "REFUSED: render_size 160x120 is more than this server's --max-pixels 100" in out["overlay"]


def test_a_full_server_is_not_a_refusal_the_client_waits_for_a_free_session(servers: Servers) -> None:
    """OVERLOADED (the server is at --max-sessions) passes when another session ends: the client backs off, says
    why, and connects once a session is free, without the player having to toggle anything."""
    endpoint = servers.start("--renderer", "passthrough", "--max-sessions", "1")
    first = NativeEngine(endpoint)
    try:
        assert wait_until(lambda: first.stats()["state"] == "connected"), first.last_error()
        second = NativeEngine(endpoint)
        try:
            assert wait_until(lambda: "OVERLOADED" in second.last_error()), second.last_error()
            s = second.stats()
            assert s["state"] == "connecting" and s["refusal_code"] == 0, s
            assert "busy" in second.last_error() and "1 sessions" in second.last_error()
            first.close()
            assert wait_until(lambda: second.stats()["state"] == "connected", timeout=10.0), second.last_error()
            assert wait_until(second.frame, timeout=5.0)
        finally:
            second.close()
    finally:
        first.close()
