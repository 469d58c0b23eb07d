"""The smallest real round trip: a real ``nrb serve`` process, a FRAME from each encoder, a RESULT back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from helpers.serverkit import helper_renderer

from bridge import _wire_testing
from bridge import protocol as p
from bridge.commands.serve import spawn_server, stop_server

W, H = 16, 8


def scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    albedo = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    n = rng.normal(size=(H, W, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    normals = np.concatenate([n, np.zeros((H, W, 1), np.float32)], axis=-1)
    return albedo, normals


def recv(sock: zmq.Socket[bytes], timeout_s: float = 20.0) -> p.Message:
    assert sock.poll(int(timeout_s * 1000)), "no answer from the server"
    return p.decode(sock.recv_multipart(copy=False))


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    proc, endpoint = spawn_server(["--renderer", helper_renderer("lambert_renderer.py")], tmp_path / "srv.log")
    yield endpoint
    stop_server(proc)


def test_frames_from_the_cpp_and_the_python_encoder_both_come_back_shaded(server: str) -> None:
    from helpers.lambert_renderer import shade

    albedo, normals = scene()
    expected = shade(albedo, normals)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(server)
    try:
        hello = p.Hello("pytest", "1", "nrb-py/0.1.0", [], (W, H), (W, H),
                        [p.BufferSpec("albedo", "rgba8"), p.BufferSpec("normals", "rgba32f")])
        sock.send_multipart(p.encode(hello))
        welcome = recv(sock)
        assert isinstance(welcome, p.Welcome), welcome
        assert (welcome.output.width, welcome.output.height) == (W, H)

        # Frame 1: the C++ encoder inside libnrb, through bridge._wire_testing.
        header = {"nrb": 1, "type": "FRAME", "session": welcome.session, "frame": 1,
                  "time_ns": time.monotonic_ns(), "dt": 0.0, "deadline_ms": 5000.0,
                  "buffers": [{"name": "albedo", "format": "rgba8", "width": W, "height": H, "stride": W * 4},
                              {"name": "normals", "format": "rgba32f", "width": W, "height": H,
                               "stride": W * 16}],
                  "events": [], "styles": []}
        cpp_frame = _wire_testing.wire_encode(json.dumps(header), [albedo.tobytes(), normals.tobytes()])
        # Frame 2: the Python encoder.
        frame = p.Frame(welcome.session, 2, time.monotonic_ns(), 1 / 60, 5000.0,
                        [p.Buffer.from_array("albedo", "rgba8", albedo),
                         p.Buffer.from_array("normals", "rgba32f", normals)])

        # One at a time: a frame still queued when the next arrives is superseded (latest frame wins, protocol 5.9).
        for frame_id, wire in ((1, cpp_frame), (2, p.encode(frame))):
            sock.send_multipart(wire)
            result = recv(sock)
            assert isinstance(result, p.Result), result
            assert (result.frame, result.status) == (frame_id, "ok")
            assert result.output is not None
            assert (result.output.width, result.output.height) == (W, H)
            np.testing.assert_array_equal(result.output.array(), expected)
            assert result.timing.total_ms >= result.timing.render_ms > 0
        sock.send_multipart(p.encode(p.Bye(welcome.session, "done")))
    finally:
        sock.close()
