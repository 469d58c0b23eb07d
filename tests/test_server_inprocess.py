"""``Server`` used in-process (start/stop), with a renderer factory of the caller's, on real loopback sockets."""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.serverkit import ALBEDO_SPEC, SIZE, albedo_only

from bridge import Renderer, Server
from bridge.capture import CaptureReader
from bridge.client import Client, RemoteError
from bridge.commands.replay import SessionReplay
from bridge.protocol import BufferSpec, Bye, StyleCommand
from bridge.renderer import RenderInputs, current_worker
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


# ------------------------------------------------------------------------------ statistics under several workers
class FailEveryFifth(Renderer):
    """Echoes albedo; raises on every frame whose id is a multiple of 5 (RENDER_FAILED)."""

    name = "fail-every-fifth"

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        if inputs.frame % 5 == 0:
            raise RuntimeError("every fifth frame fails")
        return inputs.raw("albedo")


class _SwitchingCounter(collections.Counter[str]):
    """A Counter that lets other threads run between reading a count and writing it back (``time.sleep(0)``
    releases the GIL), as an unguarded ``counts[key] += 1`` may at any time: lost updates become the rule."""

    def __getitem__(self, key: str) -> int:
        value = int(super().__getitem__(key))
        time.sleep(0)
        return value


def test_statistics_are_exact_when_several_workers_and_sessions_count_at_once(tmp_path: Path) -> None:
    """Six sessions, each on its own thread, render 120 frames each through four render workers while the I/O
    thread counts their arrivals, and a hook raises on every third frame: every counter (server-wide, per
    session, hook errors, the snapshot) comes out exact. Thread switches are forced as often as the interpreter
    allows, and inside the server-wide counter's read-modify-write, so unguarded counters would lose updates."""
    hooks = tmp_path / "hooks.py"
    hooks.write_text("@every_frame  # noqa: F821\n"
                     "def _fail(style, ctx):\n"
                     "    if ctx.frame % 3 == 0:\n"
                     "        raise ValueError('every third frame')\n")
    sessions, frames = 6, 120
    outcomes: dict[int, collections.Counter[str]] = {}
    failures: list[BaseException] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with Server(port=0, factory=FailEveryFifth, workers=4, hooks=str(hooks)) as server:
            server.stats.counts = _SwitchingCounter()
            ready = threading.Barrier(sessions)
            done = threading.Barrier(sessions + 1)
            close = threading.Event()

            def engine(i: int) -> None:
                got: collections.Counter[str] = collections.Counter()
                try:
                    with Client(server.endpoint or "", timeout=60) as c:
                        welcome = c.hello(SIZE, ALBEDO_SPEC)
                        ready.wait(60)
                        for f in range(1, frames + 1):
                            try:
                                got[c.render(albedo_only(), frame=f, deadline_ms=60_000.0, timeout=60).status] += 1
                            except RemoteError as exc:
                                got[exc.name] += 1
                        outcomes[welcome.session] = got
                        done.wait(120)
                        close.wait(60)  # the session stays open until its stats have been read
                        c.bye()
                except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                    failures.append(exc)
                    done.abort()

            threads = [threading.Thread(target=engine, args=(i,)) for i in range(sessions)]
            for t in threads:
                t.start()
            try:
                done.wait(300)
                snap = server.snapshot()
                stats = {sid: server.sessions[sid].stats for sid in outcomes}
            finally:
                close.set()
                for t in threads:
                    t.join(60)
    finally:
        sys.setswitchinterval(switch)
    assert not failures, failures
    failed_each = frames // 5
    ok_each = frames - failed_each
    assert len(outcomes) == sessions
    for sid, got in outcomes.items():
        assert got == {"ok": ok_each, "RENDER_FAILED": failed_each}
        st = stats[sid]
        assert (st.received, st.rendered, st.render_failed, st.skipped, st.rejected) == (frames, ok_each,
                                                                                          failed_each, 0, 0)
        assert st.hook_errors == frames // 3
    assert snap["rendered"] == sessions * ok_each
    assert snap["render_failed"] == sessions * failed_each
    assert snap["errors"] == {"RENDER_FAILED": sessions * failed_each}
    assert snap["hook_errors"] == sessions * (frames // 3)
    assert snap["counts"]["messages"] == sessions * (1 + frames)  # HELLO + FRAMEs, counted by the I/O thread
    assert snap["skipped"] == 0 and snap["drops"] == sessions * failed_each


# ---------------------------------------------------------------------------------------- per-frame thread budget
def test_thread_budget_is_all_cores_for_a_lone_busy_worker_and_shared_when_several_are_busy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    server = Server(port=0, renderer="passthrough", workers=8)
    assert server.worker_threads == 1
    assert [server.frame_threads(b) for b in range(1, 9)] == [8, 4, 2, 2, 1, 1, 1, 1]
    assert Server(port=0, renderer="passthrough", workers=2).frame_threads(2) == 4
    fixed = Server(port=0, renderer="passthrough", workers=8, worker_threads=3)
    assert [fixed.frame_threads(b) for b in (1, 8)] == [3, 3]
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    two = Server(port=0, renderer="passthrough")  # the default on a 2-core machine: 2 workers
    assert (two.workers, two.worker_threads, two.frame_threads(1), two.frame_threads(2)) == (2, 1, 2, 1)


class BudgetProbe(Renderer):
    """Records ``current_worker()``'s thread budget per frame; frame 7 waits until ``release`` is set."""

    name = "budget-probe"
    budgets: dict[tuple[int, int], int] = {}
    started = threading.Event()
    release = threading.Event()

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        worker = current_worker()
        assert worker is not None
        BudgetProbe.budgets[(inputs.size[0], inputs.frame)] = worker[1]
        if inputs.frame == 7:
            BudgetProbe.started.set()
            BudgetProbe.release.wait(30)
        return inputs.raw("albedo")


def test_a_lone_session_renders_on_every_core_and_two_busy_sessions_share_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    BudgetProbe.budgets.clear()
    BudgetProbe.started.clear()
    BudgetProbe.release.clear()
    big_size = (128, 96)
    with Server(port=0, factory=BudgetProbe, workers=2) as server:
        with Client(server.endpoint or "", timeout=30) as big, Client(server.endpoint or "", timeout=30) as small:
            big.hello(big_size, ALBEDO_SPEC)
            small.hello(SIZE, ALBEDO_SPEC)
            assert small.render(albedo_only(), frame=1, deadline_ms=60000).status == "ok"  # alone: all 4 cores
            held = big.send_frame(albedo_only(big_size), frame=7, deadline_ms=60000)
            assert BudgetProbe.started.wait(30)
            assert small.render(albedo_only(), frame=2, deadline_ms=60000).status == "ok"  # beside frame 7: 2
            BudgetProbe.release.set()
            assert big.result(held).status == "ok"
            assert small.render(albedo_only(), frame=3, deadline_ms=60000).status == "ok"  # alone again: 4
    # frame 7 started alone (4; a budget is fixed when a frame starts), frame 2 beside it (2)
    assert BudgetProbe.budgets == {(SIZE[0], 1): 4, (big_size[0], 7): 4, (SIZE[0], 2): 2, (SIZE[0], 3): 4}
