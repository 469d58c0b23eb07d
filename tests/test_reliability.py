"""Reliability against hostile or clumsy engines (issue 16 items 1-4): a real ``nrb serve`` process, engines played
by this test over real sockets.

* shared memory that the engine shrinks under the server never crashes it: the offending session gets an ERROR and
  a BYE, the other sessions keep rendering;
* no answer is dropped at the ROUTER's high-water mark: every PING gets its PONG, every bad message its ERROR, a
  slow reader every RESULT and its BYE;
* back-pressure (OVERLOADED) is not abuse: an engine that overruns ``max_in_flight`` keeps its session.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from helpers.serverkit import ALBEDO_SPEC, SIZE, albedo_only, helper_renderer, served

from bridge.capture import CaptureReader
from bridge.client import Client
from bridge.protocol import (
    Buffer,
    BufferSpec,
    Bye,
    Error,
    Event,
    Frame,
    Hello,
    Ping,
    Pong,
    Result,
    ShmPool,
    ShmRef,
    Welcome,
    decode,
    encode,
)

SLOT = 65536


def _pool(slots: int = 2) -> tuple[shared_memory.SharedMemory, ShmPool]:
    name = f"nrb-test-{os.getpid()}-{secrets.token_hex(4)}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=slots * SLOT)
    return shm, ShmPool("/" + name, slots, SLOT)


def _renders_in_the_background(c: Client, stop: threading.Event, results: list[Result]) -> None:
    while not stop.is_set():
        results.append(c.render(albedo_only(value=len(results) % 200)))


def _shrink(shm: shared_memory.SharedMemory, size: int) -> None:
    os.ftruncate(shm._fd, size)  # what a buggy or hostile engine does to its own pool


@pytest.mark.parametrize("shrink_to", [0, SLOT // 2])
def test_an_engine_that_shrinks_its_shared_memory_loses_its_session_and_the_server_keeps_serving(
        tmp_path: Path, shrink_to: int) -> None:
    w, h = SIZE
    shm, pool = _pool()
    try:
        with served(tmp_path, "--renderer", "passthrough") as srv, srv.client() as good, srv.client() as bad:
            good.hello(SIZE, ALBEDO_SPEC)
            welcome = bad.hello(SIZE, ALBEDO_SPEC, capabilities=["shm"], shm=pool)
            assert "shm" in welcome.capabilities
            shm.unlink()
            shm.buf[: w * h * 4] = np.full(w * h * 4, 7, np.uint8).tobytes()
            ref = Buffer("albedo", "rgba8_srgb", w, h, w * 4, None, shm=ShmRef(0, 0))
            assert bad.render([ref], result_slot=1).status == "ok"  # the pool works before it shrinks

            stop, results = threading.Event(), []
            worker = threading.Thread(target=_renders_in_the_background, args=(good, stop, results))
            worker.start()
            try:
                _shrink(shm, shrink_to)
                fid = bad.send_frame([ref], result_slot=1)
                answer = bad.recv(timeout=10)
                assert isinstance(answer, Error) and answer.frame == fid, answer
                assert "shared memory" in answer.message
                bye = bad.recv(timeout=10)
                assert isinstance(bye, Bye) and bye.session == welcome.session
                assert srv.proc.poll() is None, "the server died"
                n = len(results)
                while len(results) < n + 5:  # the other session keeps rendering
                    assert worker.is_alive()
                    threading.Event().wait(0.01)
            finally:
                stop.set()
                worker.join(10)
            assert all(r.status == "ok" for r in results)
            assert srv.proc.poll() is None
            with pytest.raises(Exception, match="NO_SESSION"):
                bad.render([ref], result_slot=1)
            good.bye()
    finally:
        shm.close()


# --------------------------------------------------------------------------------------------- no dropped answers
def _dealer(endpoint: str, rcvhwm: int = 1000) -> zmq.Socket[bytes]:
    """A raw engine socket; a small ``rcvhwm`` makes a slow reader whose answers back up into the server."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.connect(endpoint)
    return sock


def _drain(sock: zmq.Socket[bytes], quiet: float = 3.0, pause: float = 0.0) -> list[Any]:
    """Every message that arrives until none has for ``quiet`` seconds, reading one per ``pause`` seconds."""
    got: list[Any] = []
    while sock.poll(int(quiet * 1000)):
        got.append(decode(sock.recv_multipart()))
        if pause:
            time.sleep(pause)
    return got


@pytest.mark.parametrize("n", [100, 2000])
def test_every_ping_of_a_burst_gets_its_pong(tmp_path: Path, n: int) -> None:
    with served(tmp_path, "--renderer", "passthrough") as srv:
        sock = _dealer(srv.endpoint)
        try:
            for i in range(n):
                sock.send_multipart(encode(Ping(i, i)))
            got = _drain(sock)
        finally:
            sock.close()
        assert [m.nonce for m in got if isinstance(m, Pong)] == list(range(n))
        assert srv.proc.poll() is None


def test_seventy_bad_messages_get_seventy_errors_then_their_session_gets_a_bye(tmp_path: Path) -> None:
    with served(tmp_path, "--renderer", "passthrough") as srv, srv.client() as c:
        sid = c.hello(SIZE, ALBEDO_SPEC).session
        for _ in range(70):
            c.send_raw([b"\xc1 not msgpack"])
        got: list[Any] = []
        while len(got) < 71:
            got.append(c.recv(timeout=5))
        errors = [m for m in got if isinstance(m, Error)]
        byes = [m for m in got if isinstance(m, Bye)]
        assert len(errors) == 70 and all(e.name == "MALFORMED" for e in errors)
        assert [b.session for b in byes] == [sid]
        assert got.index(byes[0]) == 64  # after the 64th rejected message in a row


def test_a_slow_reader_gets_every_result_and_then_its_bye(tmp_path: Path) -> None:
    """Answers back up into the server (a reader that holds 2 messages and reads one per 20 ms, 1 MiB images): the
    server keeps them queued for that peer instead of dropping them at the high-water mark."""
    size, n = (512, 512), 100
    with served(tmp_path, "--renderer", "passthrough", "--idle-timeout", "2") as srv:
        sock = _dealer(srv.endpoint, rcvhwm=2)
        try:
            sock.send_multipart(encode(Hello("python", "0", "slow-reader", [], size, size, ALBEDO_SPEC)))
            welcome = decode(sock.recv_multipart())
            assert isinstance(welcome, Welcome)
            pixels = albedo_only(size)
            for fid in range(1, n + 1):
                sock.send_multipart(encode(Frame(welcome.session, fid, fid * 16_000_000, 0.016, 5000.0, pixels)))
                time.sleep(0.03)
            got = _drain(sock, pause=0.02)
        finally:
            sock.close()
        answers = [m for m in got if isinstance(m, (Result, Error))]
        assert sorted(m.frame for m in answers) == list(range(1, n + 1))  # each frame exactly one answer
        assert sum(1 for m in answers if isinstance(m, Result) and m.status == "ok") > n // 2
        assert isinstance(got[-1], Bye) and got[-1].session == welcome.session
        assert srv.proc.poll() is None


# ------------------------------------------------------------------------------------------ overload is not abuse
FAULT_RENDERER = helper_renderer("fault_renderer.py")


def _answered_events(capture: Path) -> list[str]:
    """Events of every recorded frame that has a recorded answer, in file order (the server's own record)."""
    with CaptureReader(capture) as r:
        return [e.name for f in r.frames() if f.result is not None for e in f.decode().events]


@pytest.mark.parametrize("n", [200, 400])
def test_an_engine_overrunning_max_in_flight_keeps_its_session_and_every_event_applies_once_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The renderer stalls while the engine sends ``n`` frames without waiting (``max_in_flight`` 2: one rendering,
    one waiting, every further one over the limit): every one is answered once the renderer is back, none of the
    OVERLOADED answers counts as a rejected message, the session stays open, and the events of all ``n`` frames
    apply exactly once, in order (400 is beyond the 258 frames the server queues: the rest are held as
    back-pressure, not dropped)."""
    hang, cap = tmp_path / "hang", tmp_path / "cap.nrbcap"
    monkeypatch.setenv("NRB_FAULT_HANG_FILE", str(hang))
    spec = [BufferSpec("hudless_color", "rgba8_srgb")]
    w, h = SIZE
    pixels = [Buffer.from_array("hudless_color", "rgba8_srgb", np.full((h, w, 4), 9, np.uint8))]
    with served(tmp_path, "--renderer", FAULT_RENDERER, "--record", str(cap), "--max-in-flight", "2") as srv, \
            srv.client() as c:
        sid = c.hello(SIZE, spec).session
        assert c.render(pixels).status == "ok"
        hang.touch()
        fired = []
        for i in range(n):
            fired.append(f"e{i}")
            c.send_frame(pixels, events=[Event(f"e{i}")], deadline_ms=60_000.0)
        time.sleep(0.5)
        hang.unlink()
        answers: dict[int, Any] = {}
        while len(answers) < n:
            m = c.recv(timeout=20)
            assert not isinstance(m, Bye), m
            assert isinstance(m, (Result, Error)) and m.frame not in answers, m
            answers[m.frame] = m
        overloaded = [m for m in answers.values() if isinstance(m, Error)]
        assert {m.name for m in overloaded} == {"OVERLOADED"} and len(overloaded) >= n // 2  # it did overrun
        assert c.render(pixels).status == "ok" and c.session == sid  # the session is still open
        c.bye()
        assert srv.proc.poll() is None
    assert _answered_events(cap) == fired


def test_an_answer_that_cannot_be_delivered_is_counted_and_logged(tmp_path: Path) -> None:
    """The engine disconnects while its frame renders (0.4 s): the RESULT has nowhere to go. It is not silently
    lost: the server logs it and counts it (``nrb_undeliverable_total``), and keeps serving."""
    from helpers.serverkit import MISBEHAVING_RENDERER

    with served(tmp_path, "--renderer", MISBEHAVING_RENDERER) as srv:
        with srv.client() as gone:
            gone.hello(SIZE, ALBEDO_SPEC)
            gone.send_frame(albedo_only(), frame=7)  # frame ids ending in 7 take 0.4 s
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while "could not be delivered" not in srv.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "could not be delivered" in srv.log_text()
        with srv.client() as c:
            c.hello(SIZE, ALBEDO_SPEC)
            assert c.render(albedo_only()).status == "ok"
            c.bye()
