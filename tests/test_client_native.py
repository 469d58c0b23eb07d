"""The engine-side client (libnrb via ``bridge._native.Client``) against real server processes over real sockets.

Two servers are used: the real one (``python -m bridge serve --renderer passthrough``), and, where a test must see
exactly what reached the renderer and when, ``tests/helpers/event_server.py``, a small NRB/1 renderer on the real
codec that logs every answered frame and its events to a file just before answering (so a SIGKILL leaves a log of
exactly what was delivered).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.serverkit import GAME_DEADLINE_MS, GAME_SIZE, free_port, game_client, helper_file

native = pytest.importorskip("bridge._native")
if not hasattr(native, "Client"):
    pytest.skip("bridge._native was built without the client (run `make setup`)", allow_module_level=True)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
W, H = GAME_SIZE
BUDGET_MS = GAME_DEADLINE_MS  # the configured deadline: no client call may take longer


# ------------------------------------------------------------------------------------------------ processes
class ServerProcess:
    """A server subprocess that prints ``... listening on <endpoint>`` first."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                                     env={**os.environ, **(env or {})})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {args}: {line!r}")
        self.endpoint = m.group(1)
        self.port = int(self.endpoint.rsplit(":", 1)[1]) if self.endpoint.startswith("tcp://") else 0

    def kill(self) -> None:
        """SIGKILL: no BYE, no flush, sockets torn down by the kernel."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


def real_server(port: int = 0, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "bridge", "-q", "serve", "--renderer", "passthrough",
                          "--port", str(port), *extra], env)


def event_server(log: Path, port: int = 0, *extra: str) -> ServerProcess:
    return ServerProcess([sys.executable, helper_file("event_server.py"), "--port", str(port),
                          "--log", str(log), *extra])


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Servers started by a test; all are stopped afterwards."""
    started: list[ServerProcess] = []
    yield started
    for s in started:
        s.kill()


# ------------------------------------------------------------------------------------------------ engine side
make_client = game_client


def color(frame_id: int) -> np.ndarray:
    img = np.empty((H, W, 4), np.uint8)
    img[...] = (np.arange(W * 4, dtype=np.uint32).reshape(1, W, 4) + frame_id * 5) % 251
    return img


class Engine:
    """A game loop: one frame per ``step``; every client call is timed."""

    def __init__(self, client: Any) -> None:
        self.c = client
        self.worst_ms = 0.0
        self.shown: list[int] = []
        self.fired: list[str] = []

    def timed(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        self.worst_ms = max(self.worst_ms, (time.perf_counter() - t0) * 1e3)
        return out

    def step(self, event: str | None = None, use_slot: bool = False, style: str | None = None) -> int:
        fid = self.timed(self.c.begin)
        if use_slot:
            view = self.c.acquire_slot("hudless_color", "rgba8_srgb", W, H)
            view[...] = color(fid)
        else:
            self.timed(self.c.tag_buffer, "hudless_color", "rgba8_srgb", color(fid))
        self.timed(self.c.tag_buffer, "depth", "r32f", np.full((H, W), 0.5, np.float32))
        if event is not None:
            self.timed(self.c.fire_event, event, {"i": len(self.fired)})
            self.fired.append(event)
        if style is not None:
            self.timed(self.c.set_style, style, 0.5, 0.1)
        self.timed(self.c.submit)
        got = self.timed(self.c.acquire_result, with_info=True)
        if got is not None:
            img, info = got
            assert np.array_equal(img, color(info["frame_id"])), "the image is not the one sent for that frame"
            self.shown.append(info["frame_id"])
        return int(fid)

    def run(self, seconds: float, period: float = 0.004, **kw: Any) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step(**kw)
            time.sleep(period)

    def until(self, pred: Callable[[], bool], timeout: float = 5.0, period: float = 0.004) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            self.step()
            time.sleep(period)
        return pred()


def connected(c: Any) -> bool:
    return bool(c.stats()["state"] == "connected")


def log_lines(path: Path, kind: str) -> list[str]:
    if not path.exists():
        return []
    return [ln.split(" ", 1)[1] if " " in ln else "" for ln in path.read_text().splitlines() if ln.split(" ")[0] == kind]


# ------------------------------------------------------------------------------------------------ tests
def test_frames_round_trip_through_the_real_server(servers: list[ServerProcess]) -> None:
    servers.append(srv := real_server())
    with make_client(srv.endpoint) as c:
        e = Engine(c)
        assert e.until(lambda: len(set(e.shown)) >= 10)  # ten distinct results (one may be shown on several ticks)
        c.begin()
        c.set_camera({"view_to_clip": np.eye(4), "position": [1, 2, 3], "near": 0.1, "far": float("inf"),
                      "fov_y": 1.0, "aspect": W / H, "jitter": (0.25, -0.25), "reset": False,
                      "render_size": (W, H)})
        c.tag_buffer("hudless_color", "rgba8_srgb", color(0))
        c.submit()
        s = c.stats()
        assert s["results_received"] >= 10 and s["errors_received"] == 0
        assert s["rtt_p50_ms"] > 0 and s["rtt_p99_ms"] >= s["rtt_p50_ms"]
        assert not s["shm_active"]
        assert e.worst_ms < BUDGET_MS


@pytest.mark.parametrize("transport", ["inline", "shm"])
def test_a_1x1_lighting_constant_travels_with_each_frame(servers: list[ServerProcess], transport: str) -> None:
    """The engine's sun goes out as a 1x1 vendor buffer next to the full-size G-buffers (docs/protocol.md 6.1); the
    server takes it as a per-frame constant instead of refusing its size."""
    servers.append(srv := real_server())
    sun = np.array([[[0.45, 0.8, 0.4, 0.0]]], np.float32)
    buffers = [("hudless_color", "rgba8_srgb"), ("depth", "r32f"), ("x_sun_direction", "rgba32f")]
    with make_client(srv.endpoint, transport=transport, buffers=buffers) as c:
        e = Engine(c)
        assert e.until(lambda: connected(c))
        shown = 0
        end = time.monotonic() + 5
        while shown < 5 and time.monotonic() < end:
            fid = c.begin()
            c.tag_buffer("hudless_color", "rgba8_srgb", color(fid))
            c.tag_buffer("depth", "r32f", np.full((H, W), 0.5, np.float32))
            c.tag_buffer("x_sun_direction", "rgba32f", sun)
            c.submit()
            got = c.acquire_result(with_info=True)
            if got is not None and got[1]["frame_id"] >= fid - 2:
                assert np.array_equal(got[0], color(got[1]["frame_id"]))
                shown += 1
            time.sleep(0.004)
        assert shown >= 5 and c.stats()["errors_received"] == 0
        assert c.stats()["shm_active"] == (transport == "shm")


def test_shared_memory_with_the_real_server(servers: list[ServerProcess]) -> None:
    servers.append(srv := real_server())
    with make_client(srv.endpoint, transport="shm") as c:
        e = Engine(c)
        assert e.until(lambda: connected(c))
        assert c.stats()["shm_active"]
        n = len(e.shown)
        assert e.until(lambda: len(e.shown) >= n + 5, period=0.004)  # tag_buffer copies into the slot
        n = len(e.shown)
        end = time.monotonic() + 5
        while len(e.shown) < n + 5 and time.monotonic() < end:  # the engine writes straight into the slot
            e.step(use_slot=True)
            time.sleep(0.004)
        assert len(e.shown) >= n + 5
        assert c.stats()["errors_received"] == 0


def fifos_of_this_process() -> list[str]:
    """Doorbell FIFOs libnrb created in this process and left in the filesystem (it unlinks them at WELCOME)."""
    found = []
    for d in ("/dev/shm", os.environ.get("TMPDIR") or "/tmp", "/tmp"):
        if os.path.isdir(d):
            found += [f for f in os.listdir(d) if f.startswith(f"nrb-{os.getpid()}-") and "-to-" in f]
    return found


def test_shared_memory_sessions_ring_the_doorbell_and_leave_no_fifo_behind(servers: list[ServerProcess]) -> None:
    servers.append(srv := real_server())
    with make_client(srv.endpoint, transport="shm") as c:
        e = Engine(c)
        assert e.until(lambda: connected(c))
        s = c.stats()
        assert s["shm_active"] and s["doorbell_active"]
        assert fifos_of_this_process() == []
        n = len(e.shown)
        assert e.until(lambda: len(e.shown) >= n + 10)
        s = c.stats()
        assert s["errors_received"] == 0
        # Only the headers travel: no pixels on any socket or pipe.
        assert s["bytes_sent"] < s["frames_sent"] * 4096
    assert fifos_of_this_process() == []


def test_a_server_without_the_doorbell_still_gets_shared_memory_frames(servers: list[ServerProcess]) -> None:
    servers.append(srv := real_server(0, "--no-doorbell"))
    with make_client(srv.endpoint, transport="shm") as c:
        e = Engine(c)
        assert e.until(lambda: len(e.shown) >= 10)
        s = c.stats()
        assert s["shm_active"] and not s["doorbell_active"] and s["errors_received"] == 0
    assert fifos_of_this_process() == []


def test_events_ride_the_doorbell_once_and_in_order_past_frames_that_do_not_fit_the_slots(
        servers: list[ServerProcess], tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    servers.append(srv := real_server(0, "--hooks", helper_file("record_events_hooks.py"),
                                      env={"NRB_TEST_EVENT_LOG": str(log)}))
    with make_client(srv.endpoint, transport="shm") as c:
        e = Engine(c)
        assert e.until(lambda: connected(c))
        assert c.stats()["doorbell_active"]
        dropped0 = c.stats()["frames_dropped"]
        for i in range(60):
            if i % 5 == 2:  # a buffer the slots were not sized for: this frame cannot go through shared memory
                fid = c.begin()
                c.tag_buffer("hudless_color", "rgba8_srgb", color(fid))
                c.tag_buffer("depth", "r32f", np.full((H, W), 0.5, np.float32))
                c.tag_buffer("albedo", "rgba8_srgb", color(fid))
                c.fire_event(f"big{i}", {})
                e.fired.append(f"big{i}")
                c.submit()
            else:
                e.step(event=f"e{i}")
            time.sleep(0.004)
        assert e.until(lambda: c.stats()["events_pending"] == 0)
        s = c.stats()
    assert s["frames_dropped"] - dropped0 >= 12  # the twelve oversized frames, at least
    assert log_lines(log, "EVENT") == e.fired  # their events came with the next frame, once, in order


@pytest.mark.parametrize("method", ["lz4", "zstd"])
def test_negotiated_compression_with_the_real_server(servers: list[ServerProcess], method: str) -> None:
    servers.append(srv := real_server())
    with make_client(srv.endpoint, compression=method) as c:
        e = Engine(c)
        assert e.until(lambda: len(e.shown) >= 5)
        s = c.stats()
        assert s["compression"] == method
        assert s["bytes_sent"] < s["frames_sent"] * W * H * 8  # the constant depth buffer shrinks


def test_events_reach_the_real_server_once_and_in_order_across_disable(servers: list[ServerProcess],
                                                                       tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    servers.append(srv := real_server(0, "--hooks", helper_file("record_events_hooks.py"),
                                      env={"NRB_TEST_EVENT_LOG": str(log)}))
    with make_client(srv.endpoint) as c:
        e = Engine(c)
        assert e.until(lambda: connected(c))
        for i in range(60):
            e.step(event=f"a{i}", style="identity" if i % 7 == 0 else None)
            time.sleep(0.002)
        c.enabled = False
        shown = len(e.shown)
        for i in range(20):  # fired while disabled: queued, delivered after enabling
            e.step(event=f"b{i}")
        assert len(e.shown) == shown and c.acquire_result() is None
        c.enabled = True
        for i in range(40):
            e.step(event=f"c{i}")
            time.sleep(0.002)
        assert e.until(lambda: c.stats()["events_pending"] == 0)
    assert log_lines(log, "EVENT") == e.fired


def test_server_killed_mid_stream_and_restarted_every_event_arrives_exactly_once(
        servers: list[ServerProcess], tmp_path: Path) -> None:
    log = tmp_path / "wire.log"
    servers.append(srv := event_server(log))
    port = srv.port
    with make_client(srv.endpoint) as c:
        e = Engine(c)
        assert e.until(lambda: connected(c))
        i = 0

        def play(seconds: float) -> None:
            nonlocal i
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                e.step(event=f"e{i}")
                i += 1
                time.sleep(0.003)

        play(0.6)
        shown_before = len(e.shown)
        for _ in range(2):
            srv.kill()  # mid-stream: frames in flight are lost with it
            play(0.4)  # the outage: the game keeps running on its own image
            servers.append(srv := event_server(log, port))
            play(0.3)
            assert e.until(lambda: connected(c), timeout=5)
            play(0.5)
        assert e.until(lambda: c.stats()["events_pending"] == 0, timeout=5)
        s = c.stats()
    assert len(e.shown) > shown_before  # neural frames resumed without the game doing anything
    assert s["reconnects"] >= 2 and s["fallbacks"] > 0
    assert log_lines(log, "EVENT") == e.fired  # exactly once, in order, before/during/after both outages
    assert e.worst_ms < BUDGET_MS


def test_real_server_killed_and_restarted_neural_frames_resume(servers: list[ServerProcess]) -> None:
    servers.append(srv := real_server())
    port = srv.port
    with make_client(srv.endpoint) as c:
        e = Engine(c)
        assert e.until(lambda: len(e.shown) >= 5)
        srv.kill()
        e.run(0.5)
        n = len(e.shown)
        assert c.stats()["state"] != "connected"
        servers.append(real_server(port))
        assert e.until(lambda: len(e.shown) >= n + 5, timeout=8)
        assert c.stats()["reconnects"] >= 1
        assert e.worst_ms < BUDGET_MS


def test_slow_server_results_come_late_and_are_never_shown(servers: list[ServerProcess], tmp_path: Path) -> None:
    servers.append(srv := event_server(tmp_path / "wire.log", 0, "--delay-ms", "90"))
    with make_client(srv.endpoint, deadline_ms=30.0, server_timeout_ms=2000) as c:
        e = Engine(c)
        assert e.until(lambda: connected(c))
        e.run(1.0)
        s = c.stats()
        assert e.shown == []
        assert s["results_late"] >= 3 and s["fallbacks"] > 50
        assert s["frames_dropped"] > 50 and s["in_flight"] <= 2  # dropped, not queued
        assert e.worst_ms < BUDGET_MS


def test_garbage_answers_are_ignored_and_a_sane_server_is_picked_up(servers: list[ServerProcess],
                                                                    tmp_path: Path) -> None:
    servers.append(srv := event_server(tmp_path / "g.log", 0, "--garbage"))
    port = srv.port
    with make_client(srv.endpoint) as c:
        e = Engine(c)
        e.run(0.7)
        s = c.stats()
        assert e.shown == [] and s["state"] != "connected" and s["errors_received"] > 0
        srv.kill()
        servers.append(event_server(tmp_path / "ok.log", port))
        assert e.until(lambda: len(e.shown) >= 3, timeout=8)
        assert e.worst_ms < BUDGET_MS


def test_disabling_stops_all_traffic_within_a_frame_and_enabling_resumes(servers: list[ServerProcess],
                                                                         tmp_path: Path) -> None:
    log = tmp_path / "wire.log"
    servers.append(srv := event_server(log))
    with make_client(srv.endpoint) as c:
        e = Engine(c)
        assert e.until(lambda: len(e.shown) >= 3)
        c.enabled = False
        assert c.enabled is False
        e.step()
        end = time.monotonic() + 2.0  # frames already in flight are answered, then BYE
        while not log.read_text().splitlines()[-1].startswith("BYE") and time.monotonic() < end:
            time.sleep(0.01)
        lines = log.read_text().splitlines()
        assert lines[-1].startswith("BYE"), lines[-5:]
        e.run(0.5)
        assert log.read_text().splitlines() == lines, "traffic while disabled"  # not a FRAME, not a PING
        assert c.stats()["state"] == "disabled"
        c.enabled = True
        assert e.until(lambda: len(e.shown) >= 6)
        assert log_lines(log, "HELLO")[-1] != log_lines(log, "HELLO")[0]  # a new session


def test_numpy_in_and_out(servers: list[ServerProcess]) -> None:
    servers.append(srv := real_server())
    logs: list[str] = []
    with make_client(srv.endpoint, log=lambda level, msg: logs.append(msg), log_level="info") as c:
        e = Engine(c)
        assert e.until(lambda: connected(c))
        # Row-strided input (a crop of a wider image) is copied row by row; a transposed one is packed first.
        wide = np.zeros((H, W * 2, 4), np.uint8)
        fid = c.begin()
        wide[:, :W] = color(fid)
        c.tag_buffer("hudless_color", "rgba8_srgb", wide[:, :W])
        c.tag_buffer("depth", "r32f", np.zeros((W, H), np.float32).T)
        c.submit()
        with pytest.raises(TypeError):
            c.tag_buffer("depth", "r32f", np.zeros((H, W), np.float64))
        with pytest.raises(ValueError):
            c.fire_event("", {})
        got = None
        for _ in range(400):
            got = c.acquire_result(with_info=True)
            if got is not None and got[1]["frame_id"] == fid:
                break
            time.sleep(0.005)
        assert got is not None and got[1]["frame_id"] >= fid
        img, info = got
        assert img.shape == (H, W, 4) and img.dtype == np.uint8 and not img.flags.writeable
        assert info["age_frames"] >= 0 and info["format"] == "rgba8_srgb"
        copy = c.acquire_result(copy=True)
        assert copy is None or copy.flags.writeable
    assert img.sum() >= 0  # the view keeps its result (and the client) alive after close
    del img, got
    assert any("session" in m for m in logs)


def test_a_client_without_a_server_never_blocks() -> None:
    with make_client(f"tcp://127.0.0.1:{free_port()}") as c:
        e = Engine(c)
        e.run(0.5, event="lost?")
        s = c.stats()
        assert e.shown == [] and s["frames_sent"] == 0 and s["state"] == "connecting"
        assert s["events_pending"] == len(e.fired)  # kept for when a renderer appears
        assert e.worst_ms < BUDGET_MS


def test_styles_as_data_from_the_python_binding(servers: list[ServerProcess]) -> None:
    """bridge._native.Client: a style written at run time is drawn by the server's grading over the echoed image,
    intensity 0 gives the engine's own image back exactly, and bad values are refused at the call."""
    servers.append(srv := real_server())
    with make_client(srv.endpoint) as c:
        assert native.TONE_MAPPINGS == ("none", "clamp", "reinhard", "aces", "agx", "other")
        with pytest.raises(ValueError, match="gain"):
            c.set_style_params("dim", {"gain": "half"})
        with pytest.raises(ValueError):
            c.set_intensity(2.0)
        with pytest.raises(ValueError):
            c.exclude(None, True)
        image = np.full((H, W, 4), 200, np.uint8)

        def frame() -> np.ndarray | None:
            fid = c.begin()
            c.tag_buffer("hudless_color", "rgba8_srgb", image)
            c.tag_buffer("depth", "r32f", np.full((H, W), 0.5, np.float32))
            c.set_camera({"pre_exposure": 0.5, "tone_mapping": "reinhard"})
            c.submit()
            for _ in range(200):
                got = c.acquire_result(with_info=True, copy=True)
                if got is not None and got[1]["frame_id"] >= fid:
                    return got[0]
                time.sleep(0.005)
            return None

        assert Engine(c).until(lambda: connected(c))
        c.set_style_params("dim", {"gain": (0.5, 0.5, 0.5)}, 1.0, 0.0)
        dim = frame()
        assert dim is not None and int(dim[..., :3].max()) < 160  # 200 scaled by gain 0.5 (display-referred)
        c.exclude(("object", [4]), True)
        c.exclude(None, False)
        c.set_intensity(0.0)
        assert np.array_equal(frame(), image)  # the engine's hudless_color, exactly
        assert c.stats()["errors_received"] == 0
        with pytest.raises(ValueError, match="tone_mapping"):
            c.set_camera({"tone_mapping": "filmic"})
