"""What watches the server's frames (``bridge.server.observers``): each observer sees every frame once, with the
bytes the engine received; the metrics endpoint and the status snapshot read the same counters."""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
import urllib.request
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import pytest
from helpers.serverkit import ALBEDO_SPEC, SIZE, albedo_only

from bridge import Renderer, Server
from bridge.capture import CaptureReader
from bridge.client import Client, RemoteError
from bridge.cluster.worker import WorkerServer
from bridge.hooks import HookSet
from bridge.protocol import Buffer, BufferSpec, Result, ShmPool, ShmRef, parse_header
from bridge.renderer import RenderInputs
from bridge.server import FrameDone, Observer
from bridge.session import QueuedFrame, Session


class SlowEcho(Renderer):
    """Echoes albedo after 0.3 s, so the frames sent behind the first one queue up and supersede each other."""

    name = "slow-echo"

    def required(self) -> list[BufferSpec]:
        return [BufferSpec("albedo", "rgba8_srgb")]

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        time.sleep(0.3)
        return inputs.raw("albedo")


class Collect(Observer):
    """Keeps what it is shown (calls come from the I/O thread and the render workers)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened: list[int] = []
        self.applied: list[int] = []
        self.done: list[FrameDone] = []
        self.closed: list[tuple[int, str]] = []

    def session_opened(self, sess: Session, hello: bytes, welcome: bytes) -> None:
        with self.lock:
            self.opened.append(sess.id)

    def frame_applied(self, sess: Session, item: QueuedFrame, hooks: HookSet | None) -> None:
        with self.lock:
            self.applied.append(item.frame.frame)

    def frame_done(self, done: FrameDone) -> None:
        with self.lock:
            self.done.append(done)

    def session_closed(self, sess: Session, reason: str) -> None:
        with self.lock:
            self.closed.append((sess.id, reason))


def _three_frames(c: Client, seen: Collect) -> None:
    """Frame 1, and once it is rendering, frames 2 and 3: 2 waits behind 1 and is superseded by 3."""
    c.send_frame(albedo_only(), deadline_ms=60_000.0)
    deadline = time.monotonic() + 10
    while 1 not in seen.applied and time.monotonic() < deadline:  # taken by the worker, now rendering
        time.sleep(0.005)
    for _ in range(2):
        c.send_frame(albedo_only(), deadline_ms=60_000.0)


def _answers(c: Client, n: int) -> dict[int, list[bytes]]:
    """The next ``n`` answers on ``c``'s socket, as raw frames, by frame id."""
    got: dict[int, list[bytes]] = {}
    while len(got) < n:
        assert c.sock.poll(10_000), f"only {len(got)} of {n} answers arrived"
        frames = c.sock.recv_multipart()
        got[parse_header(frames[0])["frame"]] = frames
    return got


def test_each_observer_sees_every_frame_once_with_the_bytes_the_engine_received(tmp_path: Any) -> None:
    """Frame 1 renders for 0.3 s; frame 2 queues behind it and is superseded by frame 3 (answered ``skipped`` at
    once, its events applied later); frame 3 renders. Every frame reaches the observer exactly once, in the
    status the engine got, with the very bytes the engine received; the capture holds the same bytes."""
    capture = tmp_path / "c.nrbcap"
    server = Server(port=0, factory=SlowEcho, max_in_flight=3, workers=1, record=str(capture))
    seen = Collect()
    server.add_observer(seen)
    with server:
        with Client(server.endpoint or "", timeout=10) as c:
            sid = c.hello(SIZE, ALBEDO_SPEC).session
            _three_frames(c, seen)
            received = _answers(c, 3)
            c.bye()
        deadline = time.monotonic() + 10
        while (len(seen.done) < 3 or not seen.closed) and time.monotonic() < deadline:
            time.sleep(0.02)
    status = {f: parse_header(w[0]).get("status", parse_header(w[0])["type"]) for f, w in received.items()}
    assert status == {1: "ok", 2: "skipped", 3: "ok"}
    # closed once: by its BYE, or by the disconnect when the socket closed before the BYE went out (linger 0)
    assert seen.opened == [sid] and [s for s, _ in seen.closed] == [sid]
    assert sorted(seen.applied) == [1, 2, 3]
    assert sorted(d.frame for d in seen.done) == [1, 2, 3]  # once each
    for d in seen.done:
        assert d.session == sid and d.status == status[d.frame]
        assert [bytes(w) for w in d.wire] == received[d.frame]
    assert next(d for d in seen.done if d.frame == 1).style_digest is not None  # recording asks for it
    with CaptureReader(capture) as reader:
        recorded = {f.frame: f.result for f in reader.frames(sid)}
    assert {f: r.wire if r else None for f, r in recorded.items()} == received


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("nrb_") and not line.startswith("#")}


def test_metrics_endpoint_and_status_snapshot_report_the_same_counts() -> None:
    """One place counts: after frames rendered, superseded and refused (a FRAME for a session that is not open),
    the Prometheus counters are exactly the server's own counters, and the histograms saw each rendered frame."""
    server = Server(port=0, factory=SlowEcho, max_in_flight=3, workers=1, metrics_port=0)
    seen = Collect()
    server.add_observer(seen)
    with server:
        assert server.metrics_port is not None
        with Client(server.endpoint or "", timeout=10) as c:
            c.hello(SIZE, ALBEDO_SPEC)
            _three_frames(c, seen)
            assert c.result(3).status == "ok"
            try:
                c.render(albedo_only(), session=12345)
            except RemoteError as exc:
                assert exc.name == "NO_SESSION"
            else:
                raise AssertionError("a FRAME for a session that is not open must be refused")
            metrics = _scrape(server.metrics_port)
            counts = server.snapshot()["counts"]
            c.bye()
    assert counts["received"] == 3 and counts["rendered"] == 2 and counts["skipped"] == 1
    assert metrics["nrb_frames_received_total"] == counts["received"]
    assert metrics["nrb_frames_rendered_total"] == counts["rendered"]
    assert metrics["nrb_frames_skipped_total"] == counts["skipped"]
    assert metrics['nrb_errors_total{code="NO_SESSION"}'] == counts["error_NO_SESSION"] == 1
    assert metrics["nrb_sessions"] == 1
    assert metrics["nrb_frame_latency_seconds_count"] == metrics["nrb_render_seconds_count"] == counts["rendered"]
    # the renderer's own call, of each rendered frame's render time (the rest is grading and post)
    assert metrics["nrb_model_seconds_count"] == counts["rendered"]
    assert 0 < metrics["nrb_model_seconds_sum"] <= metrics["nrb_render_seconds_sum"]


def test_metrics_split_a_neural_frame_into_the_models_inference_and_the_servers_own_work() -> None:
    """With the neural renderer, each rendered frame's ONNX Runtime run is observed (``nrb_inference_seconds``):
    one sample per rendered frame, within the renderer's own call, itself within the frame's latency (the rest is
    the server's own work, what ``nrb bench serve`` holds under 5 %). A renderer without a model counts none."""
    from helpers.serverkit import still_scene

    for renderer, has_model in (("neural", True), ("passthrough", False)):
        with Server(port=0, renderer=renderer, metrics_port=0) as server:
            assert server.metrics_port is not None
            bufs, cam = still_scene()
            with Client(server.endpoint or "", timeout=30) as c:
                c.hello(SIZE, [BufferSpec(b.name, b.format) for b in bufs])
                for _ in range(3):
                    assert c.render(bufs, camera=cam).status == "ok"
                c.bye()
            metrics = _scrape(server.metrics_port)
        assert metrics["nrb_model_seconds_count"] == 3
        if has_model:
            assert metrics["nrb_inference_seconds_count"] == 3
            assert 0 < metrics["nrb_inference_seconds_sum"] <= metrics["nrb_model_seconds_sum"]
            assert metrics["nrb_model_seconds_sum"] <= metrics["nrb_frame_latency_seconds_sum"]
        else:
            assert metrics["nrb_inference_seconds_count"] == 0


def test_a_shared_memory_session_is_recorded_with_its_pixels_inline(tmp_path: Any) -> None:
    """The engine's G-buffer comes through its shared-memory pool and the image goes back into its result slot:
    the capture still holds both, inline (copied before the slot went back to the engine), so that ``nrb replay``
    and ``nrb inspect`` need no pool; the recorded answer is the RESULT the engine got, with the pixels inline."""
    w, h = SIZE
    img = np.random.default_rng(7).integers(0, 255, (h, w, 4), dtype=np.uint8)
    slot = 65536
    name = f"nrb-test-{os.getpid()}-{secrets.token_hex(4)}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=2 * slot)
    pool = shm.buf
    assert pool is not None
    capture = tmp_path / "shm.nrbcap"
    try:
        with Server(port=0, renderer="passthrough", record=str(capture)) as server:
            with Client(server.endpoint or "", timeout=10) as c:
                sid = c.hello(SIZE, ALBEDO_SPEC, capabilities=["shm"], shm=ShmPool("/" + name, 2, slot)).session
                pool[: img.nbytes] = img.tobytes()
                frame = Buffer("albedo", "rgba8_srgb", w, h, w * 4, None, shm=ShmRef(0, 0))
                got = c.render([frame], result_slot=1)
                assert got.output is not None and got.output.shm == ShmRef(1, 0)
                pool[slot:slot + img.nbytes] = bytes(img.nbytes)  # the engine reuses its slot at once
                c.bye()
    finally:
        del pool
        shm.close()
        shm.unlink()
    with CaptureReader(capture) as reader:
        (recorded,) = reader.frames(sid)
        sent = recorded.decode().buffer("albedo")
        answer = recorded.decode_result()
    assert sent is not None and sent.shm is None and np.array_equal(sent.array(), img)
    assert isinstance(answer, Result) and answer.output is not None and answer.output.shm is None
    assert np.array_equal(answer.output.array(), img)
    assert (answer.session, answer.frame, answer.status, answer.timing) == (got.session, got.frame, "ok", got.timing)


def test_a_capture_disk_that_fills_up_on_the_hooks_record_stops_recording_and_serving_goes_on(tmp_path: Any) -> None:
    """A server that writes its capture as it goes (as a cluster worker does), with a hooks file larger than the
    capture's disk (a 64 KiB tmpfs): the first frame's record of the hooks in effect fails. Recording stops, once,
    and every frame is still rendered and answered."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("needs to mount a small tmpfs (root)")
    hooks = tmp_path / "hooks.py"
    noise = "".join(f"# {secrets.token_hex(48)}\n" for _ in range(2048))  # ~200 KiB lz4 cannot shrink
    hooks.write_text(noise + "@every_frame  # noqa: F821\ndef _nothing(style, ctx):\n    pass\n")
    try:
        # a cluster worker records synchronously (it may be killed at any moment): the write fails in the frame
        with WorkerServer(port=0, renderer="passthrough", hooks=str(hooks), record=str(disk / "c.nrbcap")) as server:
            with Client(server.endpoint or "", timeout=10) as c:
                c.hello(SIZE, ALBEDO_SPEC)
                assert [c.render(albedo_only(), timeout=10).status for _ in range(3)] == ["ok"] * 3
                c.bye()
            assert server.snapshot()["counts"].get("recording_failed") == 1
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
