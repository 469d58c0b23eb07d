"""The render cluster (docs/cluster.md, protocol section 5.10): placement, redirect, relay, failover, scaling.

The placement rules run alone; everything else runs a real Ray cluster of two nodes on this machine
(``ray.cluster_utils.Cluster``), real worker actors serving real sockets, real engines (the Python client and
libnrb). Skipped where Ray is not installed (``pip install '.[cluster]'``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.serverkit import helper_renderer

from bridge.client import Client, RemoteError
from bridge.cluster.placement import PENDING_TTL_S, ScalePolicy, WorkerLoad, choose_worker, still_pending
from bridge.cluster.worker import WorkerServer
from bridge.protocol import Buffer, BufferSpec, StyleCommand

HERE = Path(__file__).resolve().parent
PROBE = helper_renderer("style_probe_renderer.py")
ALBEDO = np.full((32, 48, 4), 90, np.uint8)


def probe_frame(c: Client, **kw: Any) -> int:
    """Render one frame through ``c``; the red value the style probe renders (0: identity, 255: another style)."""
    res = c.render([Buffer.from_array("albedo", "rgba8_srgb", ALBEDO)], **kw)
    assert res.output is not None
    return int(res.output.array()[0, 0, 0])


def probe_pixel(c: Client, **kw: Any) -> tuple[int, int, int]:
    """Render one frame through ``c``; the (R, G, B) of its first pixel: R is the style probe's distance from
    identity (the preset the renderer drew), G and B the albedo's 90 after the style's grading (a run-time style's
    ``gain`` shows here)."""
    res = c.render([Buffer.from_array("albedo", "rgba8_srgb", ALBEDO)], **kw)
    assert res.output is not None
    r, g, b = (int(x) for x in res.output.array()[0, 0, :3])
    return r, g, b


#: run-time styles (docs/protocol.md 5.3): "dusk" draws noir and halves green; "frost" draws identity and halves blue
DUSK = StyleCommand("dusk", 1.0, 0.0, params={"base": "noir", "gain": [1.0, 0.5, 1.0]})
FROST = StyleCommand("frost", 1.0, 0.0, params={"base": "identity", "gain": [1.0, 1.0, 0.5]})


def near(px: tuple[int, int, int], want: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 2 for a, b in zip(px, want))


def wl(name: str, sessions: int = 0, render_ms: float = 0.0, **kw: Any) -> WorkerLoad:
    return WorkerLoad(name, f"tcp://127.0.0.1:1{name[-1]}", "probe/1", sessions, render_ms, **kw)


# ------------------------------------------------------------------------------------------------ placement rules
def test_a_session_goes_to_the_least_loaded_live_worker_with_room() -> None:
    workers = [wl("w1", 3), wl("w2", 1, 9.0), wl("w3", 1, 4.0), wl("w4", 0, alive=False), wl("w5", 2, max_sessions=2)]
    assert choose_worker(workers).name == "w3"  # fewest sessions, then the faster one; not the dead or full ones
    assert choose_worker(workers, can_serve={"w1", "w5"}).name == "w1"
    workers[2].pending = {"t1": 0.0, "t2": 0.0, "t3": 0.0}  # placed since its last report: counts already
    assert choose_worker(workers).name == "w2"
    assert choose_worker([wl("w1", alive=False)]) is None


def test_a_placement_counts_until_a_report_shows_its_session_not_just_until_the_next_report() -> None:
    """A report asked for just before a HELLO is placed arrives just after it, without that session (the engine has
    not reached the worker yet): the placement still counts, so the next HELLO goes to the other worker (the fresh
    clone once put two sessions on one worker of two when a stale report reset the count). Once a report lists the
    session's ticket it counts as a session instead; a placement whose engine never arrives stops counting."""
    pending = {"t-new": 100.0, "t-arrived": 99.0, "t-lost": 100.0 - PENDING_TTL_S - 1}
    assert still_pending(pending, reported={"t-arrived", "t-other"}, now=100.5) == {"t-new": 100.0}
    a, b = wl("w1", 0), wl("w2", 0)
    a.pending = still_pending({"t-new": 100.0}, reported=set(), now=100.5)  # the stale report for w1
    assert choose_worker([a, b]).name == "w2"


def test_the_scaler_adds_at_the_threshold_and_removes_an_idle_worker() -> None:
    p = ScalePolicy(min_workers=1, max_workers=3, sessions_per_worker=2, render_ms=20.0, idle_s=5.0)
    assert p.decide([], now=0.0) == (1, None)  # below the minimum
    assert p.decide([wl("w1", 1)], now=0.0) == (0, None)
    assert p.decide([wl("w1", 2)], now=0.0) == (1, None)  # sessions per worker reached
    assert p.decide([wl("w1", 1, 25.0)], now=0.0) == (1, None)  # render time reached
    assert p.decide([wl("w1", 2), wl("w2", 2), wl("w3", 2)], now=0.0) == (0, None)  # at the maximum
    idle = [wl("w1", 1), wl("w2", 0, idle_since=0.0)]
    assert p.decide(idle, now=4.0) == (0, None)  # not idle long enough
    assert p.decide(idle, now=6.0) == (-1, "w2")
    with pytest.raises(ValueError):
        ScalePolicy(min_workers=3, max_workers=2)


def test_a_session_brought_to_another_worker_with_its_ticket_renders_in_its_old_style() -> None:
    """Two workers in-process: the style state one reports for a ticket, placed on the other, is the state the
    engine's next session there renders with (the front door does exactly this after a worker dies)."""
    with WorkerServer(renderer=PROBE, port=0) as a, WorkerServer(renderer=PROBE, port=0) as b:
        assert a.endpoint is not None and b.endpoint is not None
        a.place("t-1", None)
        with Client(a.endpoint) as c:
            c.ticket = "t-1"
            c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
            assert probe_frame(c, styles=[StyleCommand("noir", 1.0, 0.0)]) == 255
            blob = a.load()["styles"]["t-1"]
        b.place("t-2", blob)
        b.place("t-3", None)
        with Client(b.endpoint) as moved, Client(b.endpoint) as fresh:
            moved.ticket, fresh.ticket = "t-2", "t-3"
            moved.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
            fresh.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
            assert probe_frame(moved) == 255
            assert probe_frame(fresh) == 0


def test_a_run_time_style_moves_with_its_session_even_onto_a_full_library(caplog: pytest.LogCaptureFixture) -> None:
    """A session in a style it defined at run time is restored on a worker whose library already holds the 64
    run-time styles it may: the style cannot be defined there, so the session renders the preset that style draws
    (its ``base``) without its grading, and the worker says so in its log, naming the style and the limit."""
    import logging

    specs = [BufferSpec("albedo", "rgba8_srgb")]
    with WorkerServer(renderer=PROBE, port=0) as a, WorkerServer(renderer=PROBE, port=0) as b:
        assert a.endpoint is not None and b.endpoint is not None
        a.place("t-1", None)
        with Client(a.endpoint) as c:
            c.ticket = "t-1"
            c.hello((48, 32), specs)
            assert near(probe_pixel(c, styles=[DUSK]), (255, 45, 90))
            blob = a.load()["styles"]["t-1"]
        with Client(b.endpoint) as filler:
            filler.hello((48, 32), specs)
            probe_pixel(filler, styles=[StyleCommand(f"s{i}", 1.0, 0.0, params={"hue": float(i)}) for i in range(64)])
        b.place("t-2", blob)
        with caplog.at_level(logging.WARNING, logger="nrb.cluster.worker"), Client(b.endpoint) as moved:
            moved.ticket = "t-2"
            moved.hello((48, 32), specs)
            assert near(probe_pixel(moved), (255, 90, 90))  # noir drawn, no gain
        assert "'dusk'" in caplog.text and "64" in caplog.text, caplog.text


def test_nrb_router_takes_one_pool_of_workers_per_renderer_option() -> None:
    """``--renderer NAME[=MIN[:MAX]]`` repeated: one pool per renderer with its own bounds (the missing ones from
    --min-workers/--max-workers), each ``-o`` belonging to the --renderer before it; bad bounds are refused naming
    the renderer."""
    from bridge.cli import build_parser
    from bridge.cluster.frontdoor import ClusterConfig, FrontDoor, RendererPool
    from bridge.commands.router import cluster_config

    def pools(*argv: str) -> list[tuple[str, dict[str, Any], int, int]]:
        cfg = cluster_config(build_parser().parse_args(["router", *argv]))
        return [(p.renderer, p.renderer_options, p.min_workers, p.max_workers) for p in cfg.pools]

    assert pools() == [("neural", {}, 1, 4)]
    assert pools("--renderer", "deferred", "-o", "ambient=0.2", "--min-workers", "2") == [
        ("deferred", {"ambient": 0.2}, 2, 4)]
    assert pools("-o", "device=cpu", "--renderer", "neural=1:3", "--renderer", "deferred=2", "-o", "ambient=0.5",
                 "--renderer", f"{PROBE}=6", "--max-workers", "5") == [
        ("neural", {"device": "cpu"}, 1, 3), ("deferred", {"ambient": 0.5}, 2, 5), (PROBE, {}, 6, 6)]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["router", "--renderer", "=2"])
    with pytest.raises(ValueError, match="'deferred'.*min_workers"):
        FrontDoor(ClusterConfig(pools=[RendererPool("neural"), RendererPool("deferred", {}, 3, 2)]))
    with pytest.raises(ValueError, match="twice"):
        FrontDoor(ClusterConfig(pools=[RendererPool("deferred"), RendererPool("deferred", {}, 1, 2)]))


# ------------------------------------------------------------------------------------------------ libnrb, no Ray
class RedirectingDoor:
    """A minimal front door (protocol section 5.10) in a thread: it answers every HELLO with a redirect to
    ``target`` and keeps the HELLOs it got, so a test sees what libnrb brings back to the front door."""

    def __init__(self, target: str) -> None:
        import threading

        import zmq

        from bridge.protocol import OutputSpec, Redirect, Welcome, decode, encode

        self.target = target
        self.hellos: list[Any] = []
        self._stop = threading.Event()
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"

        def loop() -> None:
            while not self._stop.is_set():
                if not self.sock.poll(20):
                    continue
                rid, *frames = self.sock.recv_multipart()
                hello = decode(frames)
                self.hellos.append(hello)
                ticket = f"t-{len(self.hellos)}"
                self.sock.send_multipart([rid, *encode(Welcome(
                    1, "door/0", [], [], [], OutputSpec("rgba8_srgb", 48, 32), 1, ["identity"],
                    redirect=Redirect(self.target, ticket)))])

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close(0)


def test_libnrb_goes_back_to_the_front_door_with_its_ticket_when_its_worker_goes() -> None:
    """libnrb follows a redirect to a worker (the same HELLO, plus the ticket), and when that worker goes away it
    returns to the front door, not to the worker, bringing the ticket so the front door can restore its style."""
    from bridge import _native

    worker = WorkerServer(renderer=PROBE, port=0).start()
    assert worker.endpoint is not None
    door = RedirectingDoor(worker.endpoint)
    c = _native.Client(endpoint=door.endpoint, render_size=(48, 32), transport="inline", engine="redirect-test",
                       buffers=[("albedo", "rgba8_srgb")], deadline_ms=200, handshake_timeout_ms=2000,
                       server_timeout_ms=500, ping_interval_ms=100, reconnect_backoff_min_ms=20)

    def shown_frames(n: int) -> bool:
        shown, end = 0, time.monotonic() + 20
        while shown < n and time.monotonic() < end:
            c.begin()
            c.tag_buffer("albedo", "rgba8_srgb", ALBEDO)
            c.submit()
            shown += c.acquire_result() is not None
            time.sleep(0.01)
        return shown >= n

    try:
        assert shown_frames(3), c.stats()
        first = door.hellos[0]
        assert "redirect" in first.capabilities and first.ticket is None
        assert len(worker.tickets) == 1 and list(worker.tickets.values()) == ["t-1"]  # the worker got the ticket
        worker.stop()
        end = time.monotonic() + 20
        while len(door.hellos) < 2 and time.monotonic() < end:
            c.begin()
            c.tag_buffer("albedo", "rgba8_srgb", ALBEDO)
            c.submit()
            c.acquire_result()
            time.sleep(0.01)
        assert len(door.hellos) >= 2, c.stats()
        assert door.hellos[1].ticket == "t-1"  # back at the front door, with the last ticket
    finally:
        c.close()
        door.close()
        worker.stop()


# ------------------------------------------------------------------------------------------------ on Ray
try:
    import ray
except ModuleNotFoundError:  # the tests below skip; the ones above run without Ray
    ray = None


@pytest.fixture(scope="module")
def hang_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """While this file exists, the fault renderer of every worker hangs (tests/helpers/fault_renderer.py). Workers
    are Ray actors, which inherit the environment of the Ray nodes, so it is set before the cluster starts."""
    path = tmp_path_factory.mktemp("fault") / "hang"
    old = os.environ.get("NRB_FAULT_HANG_FILE")
    os.environ["NRB_FAULT_HANG_FILE"] = str(path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        if old is None:
            del os.environ["NRB_FAULT_HANG_FILE"]
        else:
            os.environ["NRB_FAULT_HANG_FILE"] = old


@pytest.fixture(scope="module")
def ray_cluster(hang_file: Path) -> Iterator[Any]:
    """A real Ray cluster of two nodes on this machine (a head and one more), small: the machine is shared."""
    if ray is None:
        pytest.skip("the cluster tests need Ray: pip install '.[cluster]'")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def door(ray_cluster: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    from bridge.cluster.frontdoor import ClusterConfig, FrontDoor

    options: dict[str, Any] = dict(renderer=PROBE, port=0, min_workers=2, max_workers=2, worker_cpus=1,
                                   report_interval=0.1, record_dir=str(tmp_path))
    options.update(getattr(request, "param", {}))  # indirect parametrisation: other ClusterConfig options
    fd = FrontDoor(ClusterConfig(**options))
    fd.start()
    try:
        yield fd
    finally:
        fd.stop()


def test_hello_at_the_front_door_is_redirected_and_frames_go_to_the_worker(door: Any) -> None:
    with Client(door.endpoint) as c:
        w = c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
        workers = {x.endpoint for x in door.loads()}
        assert c.endpoint in workers and c.endpoint != door.endpoint and c.ticket
        assert w.renderer.startswith("style-probe/")
        for _ in range(5):
            assert probe_frame(c) == 0
    assert door.counts["placed"] == 1 and door.counts["relayed"] == 0


def test_sessions_spread_over_the_workers(door: Any) -> None:
    clients = [Client(door.endpoint) for _ in range(4)]
    try:
        for c in clients:
            c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
        assert sorted(sum(c.endpoint == x.endpoint for c in clients) for x in door.loads()) == [2, 2]
    finally:
        for c in clients:
            c.close()


def test_an_engine_that_does_not_follow_redirects_is_relayed(door: Any) -> None:
    with Client(door.endpoint) as c:
        c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")], follow_redirect=False)
        assert c.endpoint == door.endpoint
        assert probe_frame(c, styles=[StyleCommand("noir", 1.0, 0.0)]) == 255
        assert probe_frame(c) == 255
    assert door.counts["relayed"] == 1
    end = time.monotonic() + 10  # the engine went away without BYE: its relay closes, its worker frees the session
    while (door.counts["relays_closed"] < 1 or sum(x.sessions for x in door.loads())) and time.monotonic() < end:
        time.sleep(0.05)
    assert door.counts["relays_closed"] == 1 and sum(x.sessions for x in door.loads()) == 0


def test_a_hello_no_worker_can_serve_is_refused_with_the_reason(door: Any) -> None:
    with Client(door.endpoint) as c, pytest.raises(RemoteError) as exc:
        c.hello((48, 32), [BufferSpec("depth", "r32f")])
    assert exc.value.name == "BAD_VALUE" and "albedo" in str(exc.value)


@pytest.mark.parametrize("door", [dict(min_workers=1, max_workers=2)], indirect=True, ids=["one-probe-worker"])
def test_a_hello_naming_a_renderer_is_placed_only_on_a_worker_that_has_it(door: Any) -> None:
    """Two workers with different renderers (protocol section 5.11): each HELLO lands on the one it names, whatever
    the load; a renderer no worker has is refused UNSUPPORTED (naming what the cluster has), and libnrb's
    ``renderer`` option asks the same way."""
    from bridge import _native
    from bridge.protocol import ErrorCode

    passthrough = door.add_worker(renderer="passthrough")
    ends = {x.name: x.endpoint for x in door.loads()}
    probe = next(n for n in ends if n != passthrough)
    specs = [BufferSpec("albedo", "rgba8_srgb")]
    with Client(door.endpoint) as a, Client(door.endpoint) as b, Client(door.endpoint) as c:
        assert a.hello((48, 32), specs, renderer="passthrough").renderer.startswith("passthrough/")
        assert a.endpoint == ends[passthrough]
        assert b.hello((48, 32), specs, renderer="passthrough/0.1.0").renderer.startswith("passthrough/")
        assert b.endpoint == ends[passthrough], "placed by renderer, not on the idle worker"
        assert c.hello((48, 32), specs, renderer="style-probe").renderer.startswith("style-probe/")
        assert c.endpoint == ends[probe]
        assert probe_frame(a) == 90 and probe_frame(c) == 0  # passthrough shows the albedo; the probe, identity
    with Client(door.endpoint) as d, pytest.raises(RemoteError) as exc:
        d.hello((48, 32), specs, renderer="neural")
    assert exc.value.error.code == ErrorCode.UNSUPPORTED
    assert "'neural'" in str(exc.value) and "passthrough/0.1.0" in str(exc.value)

    engine = _native.Client(endpoint=door.endpoint, render_size=(48, 32), transport="inline", engine="cluster-test",
                            buffers=[("albedo", "rgba8_srgb")], renderer="neural", handshake_timeout_ms=2000)
    try:
        end = time.monotonic() + 10
        while engine.stats()["state"] != "refused" and time.monotonic() < end:
            time.sleep(0.02)
        assert engine.stats()["refusal_code"] == ErrorCode.UNSUPPORTED, engine.stats()
    finally:
        engine.close()


def test_nrb_router_options_run_two_renderers_each_scaled_on_its_own(ray_cluster: Any) -> None:
    """The front door ``nrb router --renderer PROBE=1:1 --renderer passthrough=1:2`` builds: one worker of each; a
    HELLO naming a renderer lands on its pool; one session per worker makes the passthrough pool grow to its
    maximum while the probe pool, at its own, does not; a passthrough session whose worker dies comes back without
    naming a renderer and stays on passthrough; idle, the passthrough pool shrinks back to one."""
    import dataclasses

    from bridge.cli import build_parser
    from bridge.cluster.frontdoor import FrontDoor
    from bridge.commands.router import cluster_config

    args = build_parser().parse_args(["router", "--port", "0", "--renderer", f"{PROBE}=1:1", "--renderer",
                                      "passthrough=1:2", "--sessions-per-worker", "1", "--idle-s", "0.5"])
    door = FrontDoor(dataclasses.replace(cluster_config(args), report_interval=0.1)).start()
    specs = [BufferSpec("albedo", "rgba8_srgb")]

    def until(check: Any, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while not check() and time.monotonic() < end:
            time.sleep(0.1)
        return bool(check())

    try:
        assert [len(door.loads(PROBE)), len(door.loads("passthrough"))] == [1, 1]
        with Client(door.endpoint, timeout=3.0) as a, Client(door.endpoint, timeout=3.0) as b:
            assert a.hello((48, 32), specs, renderer="passthrough").renderer.startswith("passthrough/")
            assert probe_frame(a) == 90
            assert until(lambda: len(door.loads("passthrough")) == 2)  # one session per worker reached
            assert b.hello((48, 32), specs, renderer="style-probe").renderer.startswith("style-probe/")
            assert b.endpoint == door.loads(PROBE)[0].endpoint and probe_frame(b) == 0
            time.sleep(1.0)  # ten report periods: the probe pool is at its maximum, and stays there
            assert len(door.loads(PROBE)) == 1
            b.bye()  # the probe worker idle: the least loaded of all, and first by name
            assert until(lambda: door.loads(PROBE)[0].sessions == 0)
            first = a.endpoint
            door.kill_worker(next(x.name for x in door.loads("passthrough") if x.endpoint == first))
            with pytest.raises((TimeoutError, RemoteError)):
                probe_frame(a, timeout=1.0)
            assert a.hello((48, 32), specs).renderer.startswith("passthrough/")  # its ticket: the same renderer
            assert a.endpoint != first and probe_frame(a) == 90
            assert until(lambda: len(door.loads("passthrough")) == 2)  # its one worker has a session: grows again
            a.bye()
        assert until(lambda: len(door.loads("passthrough")) == 1)  # idle: back to the pool's minimum
        assert len(door.loads(PROBE)) == 1 and door.counts["workers_removed"] >= 1
    finally:
        door.stop()


def test_workers_run_at_the_front_door_s_priority_not_ray_s_lowered_one(door: Any) -> None:
    """Ray starts worker processes 15 nice levels down unless told; a render worker is latency-bound, so it runs
    at the niceness of the node that hosts it, as ``nrb serve`` runs at its own (bench/cluster.md: the lowered
    one costs the round trip's tail on a busy machine)."""
    handle = door.worker_handle(door.loads()[0].name)
    assert ray.get(handle.__ray_call__.remote(lambda actor: os.nice(0)), timeout=30) == os.nice(0)


def test_a_frame_sent_to_the_front_door_gets_no_session(door: Any) -> None:
    with Client(door.endpoint) as c:
        c.session = 42
        with pytest.raises(RemoteError) as exc:
            probe_frame(c)
    assert exc.value.name == "NO_SESSION"


@pytest.mark.parametrize("transport", ["inline", "shm"])
def test_libnrb_follows_the_redirect(door: Any, transport: str) -> None:
    """libnrb offers "redirect", follows it, and renders at the worker; on the engine's host the worker maps the
    engine's shared-memory pool (and doorbell) as nrb serve would."""
    from bridge import _native

    c = _native.Client(endpoint=door.endpoint, render_size=(48, 32), transport=transport, engine="cluster-test",
                       buffers=[("albedo", "rgba8_srgb")], deadline_ms=200, handshake_timeout_ms=2000)
    try:
        shown = 0
        end = time.monotonic() + 20
        while shown < 5 and time.monotonic() < end:
            c.begin()
            c.tag_buffer("albedo", "rgba8_srgb", ALBEDO)
            c.submit()
            shown += c.acquire_result() is not None
            time.sleep(0.01)
        assert shown >= 5, c.stats()
        assert c.stats()["shm_active"] == (transport == "shm")
    finally:
        c.close()
    assert door.counts["placed"] >= 1 and door.counts["relayed"] == 0


def test_a_dead_worker_s_session_is_placed_again_with_its_style(door: Any) -> None:
    """The worker is killed (Ray kills its process). The engine's next HELLO, with its ticket, is placed on the
    other worker, which renders it in the style it had: the front door's copy of its style state."""
    with Client(door.endpoint, timeout=3.0) as c:
        c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
        assert probe_frame(c, styles=[StyleCommand("noir", 1.0, 0.0)]) == 255
        first = c.endpoint
        end = time.monotonic() + 10
        while c.ticket not in door.styles and time.monotonic() < end:
            time.sleep(0.05)
        victim = next(x.name for x in door.loads() if x.endpoint == first)
        door.kill_worker(victim)
        with pytest.raises((TimeoutError, RemoteError)):
            probe_frame(c, timeout=1.0)
        c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
        assert c.endpoint != first
        assert probe_frame(c) == 255
    assert door.counts["restored"] >= 1


@pytest.mark.parametrize("door", [dict(min_workers=1, max_workers=2)], indirect=True, ids=["no-replacement"])
def test_a_style_defined_at_run_time_is_rendered_by_the_next_worker(door: Any) -> None:
    """A game defines a style through the protocol (stylecmd ``params``) and switches to it; its worker dies. The
    next worker, whose library already holds another run-time style at that position, renders the session in the
    style it defined, with its parameters, and keeps rendering its own sessions' style unchanged."""
    door.add_worker()  # two workers; with min_workers=1 the scaler does not replace the dead one
    specs = [BufferSpec("albedo", "rgba8_srgb")]
    with Client(door.endpoint, timeout=3.0) as c, Client(door.endpoint, timeout=3.0) as other:
        c.hello((48, 32), specs)
        other.hello((48, 32), specs)
        assert c.endpoint != other.endpoint
        assert near(probe_pixel(other, styles=[FROST]), (0, 90, 45))  # frost: identity drawn, blue halved
        assert near(probe_pixel(c, styles=[DUSK]), (255, 45, 90))  # dusk: noir drawn, green halved
        end = time.monotonic() + 10
        while c.ticket not in door.styles and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.5)  # five report periods: the copy was taken after the dusk frame
        first = c.endpoint
        door.kill_worker(next(x.name for x in door.loads() if x.endpoint == first))
        with pytest.raises((TimeoutError, RemoteError)):
            probe_frame(c, timeout=1.0)
        w = c.hello((48, 32), specs)
        assert c.endpoint == other.endpoint
        assert "dusk" in w.styles
        assert near(probe_pixel(c), (255, 45, 90))
        assert near(probe_pixel(c, styles=[StyleCommand("dusk", 1.0, 0.0)]), (255, 45, 90))  # named, no params
        assert near(probe_pixel(other), (0, 90, 45))
    assert door.counts["restored"] >= 1


def test_the_panda3d_plugin_client_follows_the_redirect_and_brings_its_ticket_back(door: Any) -> None:
    """The Panda3D plugin's client (libnrb through ``bridge._native.Client``) talks to its worker directly, and
    after its worker dies it comes back through the front door with its ticket, so its session is placed again in
    the style it had (no style command re-sent)."""
    from nrb_panda3d.client import ClientConfig, make_client

    c = make_client(ClientConfig(endpoint=door.endpoint, render_size=(48, 32), buffers=[("albedo", "rgba8_srgb")],
                                 deadline_ms=500, handshake_timeout_ms=2000, server_timeout_ms=1000))

    def red_until(value: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            c.frame_begin()
            c.tag_buffer("albedo", "rgba8_srgb", ALBEDO)
            c.submit()
            r = c.acquire_result()
            if r is not None and int(r.pixels[0, 0, 0]) == value:
                return True
            time.sleep(0.02)
        return False

    try:
        c.set_style("noir", 1.0)
        assert red_until(255, 20), (c.stats(), c.last_error())
        assert door.counts["relayed"] == 0 and door.counts["placed"] >= 1, door.counts  # (a slow handshake: again)
        # the session's ticket and worker: the newest placement (after a slow handshake libnrb asked again, and the
        # front door placed it again; the session that rendered noir is the last one)
        ticket, first = door.placements()[-1]
        end = time.monotonic() + 10
        while ticket not in door.styles and time.monotonic() < end:  # the front door's copy of the style state
            time.sleep(0.05)
        time.sleep(1.0)  # ten report periods: a copy taken before the noir frame rendered has been replaced
        reconnects = c.stats().reconnects
        door.kill_worker(first)
        end = time.monotonic() + 20
        while c.stats().reconnects <= reconnects and time.monotonic() < end:
            red_until(255, 0.2)
        assert c.stats().reconnects > reconnects, (c.stats(), c.last_error())
        assert red_until(255, 20), (c.stats(), c.last_error())
    finally:
        c.close()
    assert door.counts["relayed"] == 0 and door.counts["restored"] >= 1, door.counts


def test_a_relayed_engine_whose_worker_dies_gets_bye_and_its_style_back(door: Any) -> None:
    """An engine that does not follow redirects (so brings no ticket) is told BYE when its worker dies; its next
    HELLO on the same connection is placed again with the style state it had."""
    from bridge.protocol import Bye

    with Client(door.endpoint, timeout=3.0) as c:
        c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")], follow_redirect=False)
        assert probe_frame(c, styles=[StyleCommand("noir", 1.0, 0.0)]) == 255
        worker = next(x.name for x in door.loads() if x.sessions > 0 or x.placed > 0)
        end = time.monotonic() + 10
        while not door.styles and time.monotonic() < end:
            time.sleep(0.05)
        door.kill_worker(worker)
        assert isinstance(c.recv(timeout=10.0), Bye)
        c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")], follow_redirect=False)
        assert probe_frame(c) == 255
    assert door.counts["restored"] >= 1


@pytest.mark.parametrize("door", [dict(renderer=helper_renderer("fault_renderer.py"), max_in_flight=2)],
                         indirect=True, ids=["fault-renderer"])
def test_failover_under_load_delivers_every_event_once_in_order(door: Any, hang_file: Path, tmp_path: Path) -> None:
    """libnrb streams frames and one event per frame; its worker stalls with frames in flight and is killed. The
    game falls back to its own image, libnrb comes back through the front door, and the events of every frame the
    dead worker never answered reach the next worker: over both workers' captures each event is answered once, in
    order. (The worker is killed while its renderer stalls so that no answer is in transit at that moment: an
    answer that dies in transit is the one window where events are applied twice, docs/protocol.md 5.9.)"""
    from test_fault_matrix import Game, answered_events, make_client

    with make_client(door.endpoint, handshake_timeout_ms=2000) as c:
        g = Game(c)
        assert g.until(lambda: len(g.shown) >= 20, timeout=20)
        first = next(x.name for x in door.loads() if x.sessions > 0 or x.placed > 0)
        hang_file.touch()
        try:
            assert g.until(lambda: c.stats()["in_flight"] >= 1 and c.stats()["events_pending"] > 3)
            g.play(0.3)  # everything answered before the stall has arrived; the frames in flight are stuck
            door.kill_worker(first)
        finally:
            hang_file.unlink()
        n, fallbacks = len(g.shown), g.fallbacks
        assert g.until(lambda: len(g.shown) >= n + 20, timeout=20), c.stats()
        stats = g.settle()
    assert stats["reconnects"] >= 1 and g.fallbacks > fallbacks
    second = next(x.name for x in door.loads() if x.name != first)
    assert answered_events(tmp_path / f"{first}.nrbcap", tmp_path / f"{second}.nrbcap") == g.fired


def test_curve_keys_and_the_allow_list_guard_the_workers_too(ray_cluster: Any, tmp_path: Path) -> None:
    """With CurveZMQ the workers use the front door's key pair and allow-list: an allowed engine is placed and
    renders (redirected, and relayed), while a key that is not on the list gets nothing from a worker even when it
    knows the worker's endpoint."""
    from bridge.cluster.frontdoor import ClusterConfig, FrontDoor
    from bridge.security import client_curve_options, generate_keys

    generate_keys(tmp_path / "server", "server")
    generate_keys(tmp_path / "clients", "alice")
    generate_keys(tmp_path / "outside", "mallory")
    server_key = tmp_path / "server" / "server.key"
    alice = client_curve_options(server_key, tmp_path / "clients" / "alice.key_secret")
    mallory = client_curve_options(server_key, tmp_path / "outside" / "mallory.key_secret")
    fd = FrontDoor(ClusterConfig(renderer=PROBE, port=0, min_workers=1, max_workers=1, report_interval=0.1,
                                 curve_secret=str(tmp_path / "server" / "server.key_secret"),
                                 allow_dir=str(tmp_path / "clients")))
    fd.start()
    try:
        worker = fd.loads()[0].endpoint
        with Client(fd.endpoint, **alice) as c:
            c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
            assert c.endpoint == worker
            assert probe_frame(c) == 0
        with Client(fd.endpoint, **alice) as old:
            old.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")], follow_redirect=False)
            assert probe_frame(old, styles=[StyleCommand("noir", 1.0, 0.0)]) == 255
        for keys in (mallory, {}):
            with Client(worker, timeout=1.0, **keys) as intruder, pytest.raises(TimeoutError):
                intruder.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")], follow_redirect=False)
    finally:
        fd.stop()


@pytest.mark.parametrize("door", [dict(min_workers=1, max_workers=2, sessions_per_worker=1, idle_s=0.5)],
                         indirect=True, ids=["scaling"])
def test_a_worker_is_added_under_load_and_removed_when_idle(door: Any) -> None:
    def live_until(n: int) -> bool:
        end = time.monotonic() + 60
        while len(door.loads()) != n and time.monotonic() < end:
            time.sleep(0.1)
        return len(door.loads()) == n

    assert len(door.loads()) == 1
    with Client(door.endpoint) as c:
        c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
        assert live_until(2)  # one session per worker reached: a second worker
        with Client(door.endpoint) as d:
            d.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
            assert d.endpoint != c.endpoint  # placed on the new, empty worker
            d.bye()
        c.bye()
    assert live_until(1)  # idle: back to the minimum
    assert door.counts["workers_added"] == 2 and door.counts["workers_removed"] == 1


def test_nrb_router_serves_engines_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """``nrb router`` as a user runs it: it starts Ray and its workers, prints where it listens, places an engine's
    session, and on Ctrl-C stops its workers and exits 0."""
    if ray is None:
        pytest.skip("nrb router needs Ray: pip install '.[cluster]'")
    import os
    import signal
    import subprocess
    import sys

    log = tmp_path / "router.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "router", "--port", "0", "--renderer", PROBE,
                                 "--min-workers", "1", "--max-workers", "1"], stdout=subprocess.PIPE, stderr=err,
                                text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until it serves (or exits)
        assert "listening on" in line, log.read_text()[-2000:]
        endpoint = line.split("listening on", 1)[1].split()[0]
        with Client(endpoint, timeout=10.0) as c:
            c.hello((48, 32), [BufferSpec("albedo", "rgba8_srgb")])
            assert c.endpoint != endpoint
            assert probe_frame(c, styles=[StyleCommand("noir", 1.0, 0.0)]) == 255
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
