"""The render server as a real process on loopback: handshake, rendering, errors, limits, expiry, metrics."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
from helpers.serverkit import (
    ALBEDO_SPEC,
    MISBEHAVING_RENDERER,
    SCENE_SPECS,
    SIZE,
    RunningServer,
    albedo_only,
    free_port,
    served,
    still_scene,
)

from bridge.client import Client, RemoteError
from bridge.protocol import Buffer, Bye, Error, Frame, Hello, OutputSpec, Result, Welcome, decode, encode


@pytest.fixture(scope="module")
def deferred(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, int]]:
    port = free_port()
    with served(tmp_path_factory.mktemp("deferred"), "--renderer", "deferred", "--metrics", str(port),
                "--max-in-flight", "2") as srv:
        yield srv, port


@pytest.fixture(scope="module")
def misbehaving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("misbehaving"), "--renderer", MISBEHAVING_RENDERER,
                "--max-in-flight", "2") as srv:
        yield srv


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("limited"), "--renderer", "passthrough", "--max-sessions", "2",
                "--idle-timeout", "1.0") as srv:
        yield srv


def test_handshake_then_frame_returns_an_image_with_a_timing_breakdown(deferred: tuple[RunningServer, int]) -> None:
    srv, _ = deferred
    with srv.client() as c:
        welcome = c.hello(SIZE, SCENE_SPECS)
        assert welcome.renderer.startswith("deferred/") and "golden" in welcome.styles
        assert [b.name for b in welcome.required] == ["albedo", "normals", "depth"]
        assert (welcome.output.width, welcome.output.height) == SIZE and welcome.max_in_flight == 2
        bufs, cam = still_scene()
        result = c.render(bufs, camera=cam)
        assert result.status == "ok" and result.output is not None
        img = result.output.array()
        assert img.shape == (SIZE[1], SIZE[0], 4) and img.dtype == np.uint8 and img[..., :3].std() > 10
        t = result.timing
        assert t.render_ms > 0 and t.total_ms >= t.render_ms + t.style_ms and t.decode_ms >= 0 and t.queue_ms >= 0
        assert c.ping() < 5.0
        c.bye()


def test_frames_after_bye_and_for_unknown_sessions_get_no_session(deferred: tuple[RunningServer, int]) -> None:
    srv, _ = deferred
    bufs, cam = still_scene()
    with srv.client() as c:
        c.hello(SIZE, SCENE_SPECS)
        sid = c.session
        c.bye()
        with pytest.raises(RemoteError) as info:
            c.render(bufs, session=sid)
        assert info.value.name == "NO_SESSION" and info.value.error.session == sid
        with pytest.raises(RemoteError, match="NO_SESSION"):
            c.render(bufs, session=12345)


def test_a_hello_the_renderer_cannot_serve_is_refused_with_a_reason(deferred: tuple[RunningServer, int]) -> None:
    srv, _ = deferred
    with srv.client() as c, pytest.raises(RemoteError, match="needs buffers .*normals"):
        c.hello(SIZE, ALBEDO_SPEC)


def test_hostile_client_gets_errors_while_a_good_client_keeps_getting_results(
        deferred: tuple[RunningServer, int]) -> None:
    srv, _ = deferred
    bufs, cam = still_scene()
    good, bad = srv.client(), srv.client()
    good.hello(SIZE, SCENE_SPECS)
    bad.hello(SIZE, SCENE_SPECS)
    valid = [bytes(f) for f in encode(Frame(bad.session or 0, 1, 0, 0.0, 100.0, bufs))]
    deep: object = 1
    for _ in range(18):
        deep = [deep]
    nested = msgpack.packb({"nrb": 1, "type": "PING", "x": deep})
    hostile: list[tuple[list[bytes], str]] = [
        ([b"\xc1garbage"], "MALFORMED"),
        ([b""], "MALFORMED"),
        ([msgpack.packb([1, 2, 3])], "MALFORMED"),
        ([b"\x80" + bytes(70000)], "LIMIT_EXCEEDED"),
        ([nested], "MALFORMED"),
        ([msgpack.packb({"nrb": 1, "type": "TELEPORT"})], "UNKNOWN_TYPE"),
        ([msgpack.packb({"nrb": 9, "type": "PING", "nonce": 1, "time_ns": 1})], "VERSION_UNSUPPORTED"),
        ([valid[0]], "MALFORMED"),  # payload frames missing
        ([valid[0], *valid[1:-1], valid[-1][:-1]], "PAYLOAD_MISMATCH"),
        ([msgpack.packb({"nrb": 1, "type": "FRAME", "session": good.session, "frame": 99})], "NO_SESSION"),
        ([bytes(encode(Hello("x", "1", "y", [], (20000, 10), (10, 10), []))[0])], "LIMIT_EXCEEDED"),
        ([bytes(encode(Welcome(1, "me", [], [], [], OutputSpec("rgba8", 4, 4), 1, []))[0])], "BAD_VALUE"),
    ]
    for i, (frames, code) in enumerate(hostile):
        bad.send_raw(frames)
        answer = bad.recv()
        assert isinstance(answer, Error) and answer.name == code, (i, answer)
        result = good.render(bufs, camera=cam)
        assert result.status == "ok"
    # the hostile client's own session survived too: a valid frame still renders
    assert bad.render(bufs, camera=cam).status == "ok"
    good.close()
    bad.close()


def test_frames_beyond_max_in_flight_are_refused_as_overloaded(misbehaving: RunningServer) -> None:
    with misbehaving.client() as c:
        c.hello(SIZE, ALBEDO_SPEC)
        bufs = albedo_only()
        # 17 renders for 0.4 s. It must be rendering before 18 arrives: a frame still queued is superseded by the
        # next one (latest frame wins, protocol 5.9) instead of counting towards the limit.
        ids = [c.send_frame(bufs, frame=17, deadline_ms=10000)]
        time.sleep(0.2)
        ids += [c.send_frame(bufs, frame=f, deadline_ms=10000) for f in (18, 19, 20)]
        answers = {}
        for _ in ids:
            m = c.recv()
            answers[m.frame] = m  # type: ignore[union-attr]
        assert isinstance(answers[17], Result) and isinstance(answers[18], Result)
        assert [answers[f].name for f in (19, 20)] == ["OVERLOADED", "OVERLOADED"]  # type: ignore[union-attr]
        assert c.render(bufs, frame=21).status == "ok"
        c.bye()


def test_a_frame_past_its_deadline_when_dequeued_is_answered_skipped(misbehaving: RunningServer) -> None:
    with misbehaving.client() as c:
        c.hello(SIZE, ALBEDO_SPEC)
        bufs = albedo_only()
        slow = c.send_frame(bufs, frame=27, deadline_ms=10000)  # takes 0.4 s to render
        time.sleep(0.2)  # rendering, not queued: a queued frame would be superseded by the next (protocol 5.9)
        late = c.send_frame(bufs, frame=28, deadline_ms=50)  # waits behind it for longer than 50 ms
        assert c.result(slow).status == "ok"
        skipped = c.result(late)
        assert skipped.status == "skipped" and skipped.output is None and skipped.timing.queue_ms > 50
        c.bye()


def test_renderer_exceptions_and_bad_output_fail_that_frame_only_and_are_logged_once(
        misbehaving: RunningServer) -> None:
    with misbehaving.client() as c:
        c.hello(SIZE, ALBEDO_SPEC)
        bufs = albedo_only()
        for fid, why in ((3, "boom on purpose"), (4, "expected 96x64"), (5, "NaN"), (13, "boom on purpose")):
            with pytest.raises(RemoteError) as info:
                c.render(bufs, frame=fid)
            assert info.value.name == "RENDER_FAILED" and why in info.value.error.message
            assert info.value.error.frame == fid
        assert c.render(bufs, frame=16).status == "ok"
        c.bye()
    time.sleep(0.2)
    log = misbehaving.log_text()
    assert log.count("raised on session") == 1 and "RuntimeError: boom on purpose" in log
    assert "returned bad output" in log


def test_sessions_beyond_the_limit_are_refused_until_one_closes(limited: RunningServer) -> None:
    a, b, c = limited.client(), limited.client(), limited.client()
    a.hello(SIZE, ALBEDO_SPEC)
    b.hello(SIZE, ALBEDO_SPEC)
    with pytest.raises(RemoteError, match="OVERLOADED"):
        c.hello(SIZE, ALBEDO_SPEC)
    a.bye()
    deadline = time.monotonic() + 3
    while True:
        try:
            c.hello(SIZE, ALBEDO_SPEC)
            break
        except RemoteError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert c.render(albedo_only()).status == "ok"
    for x in (b, c):
        x.bye()
        x.close()
    a.close()


def test_a_quiet_session_expires_with_a_bye_and_then_gets_no_session(limited: RunningServer) -> None:
    with limited.client() as c:
        deadline = time.monotonic() + 4
        while True:  # sessions of the previous test may still be closing
            try:
                c.hello(SIZE, ALBEDO_SPEC)
                break
            except RemoteError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert c.render(albedo_only()).status == "ok"
        bye = c.recv(timeout=5)
        assert isinstance(bye, Bye) and bye.session == c.session and "idle" in (bye.reason or "")
        with pytest.raises(RemoteError, match="NO_SESSION"):
            c.render(albedo_only())


def test_passthrough_returns_the_engine_image_byte_for_byte(limited: RunningServer) -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (SIZE[1], SIZE[0], 4), dtype=np.uint8)
    with limited.client() as c:
        deadline = time.monotonic() + 4
        while True:
            try:
                c.hello(SIZE, [*ALBEDO_SPEC])
                break
            except RemoteError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        out = c.render([Buffer.from_array("albedo", "rgba8_srgb", img)]).output
        assert out is not None and np.array_equal(out.array(), img)
        c.bye()


def test_metrics_endpoint_exposes_prometheus_counters_on_loopback(deferred: tuple[RunningServer, int]) -> None:
    srv, port = deferred
    with srv.client() as c:
        c.hello(SIZE, SCENE_SPECS)
        bufs, cam = still_scene()
        c.render(bufs, camera=cam)
        c.bye()
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    rendered = [line for line in text.splitlines() if line.startswith("nrb_frames_rendered_total ")]
    assert rendered and float(rendered[0].split()[1]) >= 1
    assert "nrb_frame_latency_seconds_bucket" in text and 'nrb_errors_total{code="NO_SESSION"}' in text


def test_listening_beyond_loopback_needs_curve_or_insecure(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bridge.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--insecure" in proc.stderr


def test_the_engines_sun_sent_as_1x1_constants_lights_the_image_and_other_sizes_are_refused(
        deferred: tuple[RunningServer, int]) -> None:
    srv, _ = deferred

    def constant(name: str, v: tuple[float, float, float], size: tuple[int, int] = (1, 1)) -> Buffer:
        return Buffer.from_array(name, "rgba32f", np.tile(np.array([*v, 0], np.float32), (size[1], size[0], 1)))

    with srv.client() as c:
        c.hello(SIZE, SCENE_SPECS)
        bufs, cam = still_scene()
        house = c.render(bufs, camera=cam).output.array().astype(int)  # type: ignore[union-attr]
        low_sun = [constant("x_sun_direction", (0.9, 0.1, 0.0)), constant("x_sun_irradiance", (2.0, 2.0, 2.0)),
                   constant("x_sky_radiance", (0.2, 0.2, 0.25))]
        lit = c.render([*bufs, *low_sun], camera=cam).output.array().astype(int)  # type: ignore[union-attr]
        assert np.abs(lit - house)[..., :3].mean() > 2  # the deferred shader lit it with the engine's sun
        with pytest.raises(RemoteError) as err:  # a vendor buffer that is neither 1x1 nor render-sized
            c.render([*bufs, constant("x_sun_direction", (0.9, 0.1, 0.0), (2, 2))], camera=cam)
        assert err.value.error.name == "BAD_VALUE" and "x_sun_direction" in err.value.error.message
        with pytest.raises(RemoteError) as err:  # a zero sun direction: that frame fails, the session goes on
            c.render([*bufs, constant("x_sun_direction", (0.0, 0.0, 0.0))], camera=cam)
        assert err.value.error.name == "RENDER_FAILED"
        again = c.render([*bufs, *low_sun], camera=cam).output.array().astype(int)  # type: ignore[union-attr]
        assert np.array_equal(again, lit)
        c.bye()


def test_client_library_reports_server_errors_as_typed_exceptions(deferred: tuple[RunningServer, int]) -> None:
    srv, _ = deferred
    with Client(srv.endpoint, timeout=10) as c:
        c.send_raw([b"\x00"])
        msg = c.recv()
        assert isinstance(msg, Error) and msg.name == "MALFORMED"
        assert isinstance(decode(encode(msg)), Error)
