"""Remote sessions (issue 19): fewer bytes both ways, and the bench that measures them on a real shaped link.

What a user would check: libnrb sends only the buffers the renderer asked for in WELCOME; the returned image comes
back compressed (both codecs) and exact; the passthrough renderer's 2x upscale returns each pixel 2x2; and
``nrb bench remote`` builds its namespaces, measures, and leaves nothing behind, also when interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.serverkit import RunningServer, connected_client, image_of, served

from bridge.protocol import Buffer, BufferSpec

native = pytest.importorskip("bridge._native")

W, H = 128, 64
REPO = Path(__file__).resolve().parent.parent


def _image(seed: int = 0) -> np.ndarray:
    """A compressible engine image: flat 8x8 tiles of colour, like a rendered frame's large flat areas."""
    yy, xx = np.mgrid[0:H, 0:W] // 8
    img = np.empty((H, W, 4), np.uint8)
    img[..., 0] = (xx * 16 + seed) % 256
    img[..., 1] = (yy * 24) % 256
    img[..., 2] = np.where((xx + yy) % 2 == 0, 40, 200)
    img[..., 3] = 255
    return img


@pytest.fixture(scope="module")
def passthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("remote"), "--renderer", "passthrough") as srv:
        yield srv


@pytest.fixture(scope="module")
def passthrough_wants_depth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("remote-depth"), "--renderer", "passthrough", "-o",
                'wants=["depth"]') as srv:
        yield srv


def _client(endpoint: str, **kw: Any) -> Any:
    opts: dict[str, Any] = {"transport": "inline", "render_size": (W, H), "frames_in_flight": 1,
                            "deadline_ms": 10_000.0, "server_timeout_ms": 20_000, "handshake_timeout_ms": 10_000}
    return connected_client(endpoint, **{**opts, **kw})


def _frame(c: Any, buffers: dict[str, tuple[str, np.ndarray]]) -> np.ndarray:
    """Send one frame, wait for its image (a copy)."""
    fid = c.begin()
    for name, (fmt, a) in buffers.items():
        c.tag_buffer(name, fmt, a)
    c.submit()
    return image_of(c, fid)


def _set(seed: int = 0) -> dict[str, tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {"hudless_color": ("rgba8_srgb", _image(seed)),
            "depth": ("r32f", rng.random((H, W), np.float32)),
            "normals": ("rgba16f", rng.random((H, W, 4)).astype(np.float16))}


def _bytes_per_frame(endpoint: str, frames: int = 3) -> float:
    specs = [(n, f) for n, (f, _) in _set().items()]
    with _client(endpoint, buffers=specs) as c:
        s0 = c.stats()
        for i in range(frames):
            _frame(c, _set(i))
        s1 = c.stats()
    return (s1["bytes_sent"] - s0["bytes_sent"]) / (s1["frames_sent"] - s0["frames_sent"])


def test_libnrb_sends_only_the_buffers_the_renderer_asked_for(passthrough: RunningServer,
                                                              passthrough_wants_depth: RunningServer) -> None:
    """The passthrough renderer asks for hudless_color / albedo only: depth and normals (12 of 16 bytes a pixel)
    never cross the link. Asked for depth too, depth comes (and normals still do not)."""
    color = W * H * 4
    only_color = _bytes_per_frame(passthrough.endpoint)
    assert color <= only_color < color + 4096
    with_depth = _bytes_per_frame(passthrough_wants_depth.endpoint)
    assert color + W * H * 4 <= with_depth < color + W * H * 4 + 4096


@pytest.mark.parametrize("method", ["lz4", "zstd"])
def test_the_image_comes_back_compressed_and_exact(passthrough: RunningServer, method: str) -> None:
    """A session that negotiated a codec gets its image back through it: byte-exact, and fewer bytes than raw."""
    with _client(passthrough.endpoint, buffers=[("hudless_color", "rgba8_srgb")], compression=method) as c:
        assert c.stats()["compression"] == method
        s0 = c.stats()
        for i in range(3):
            img = _image(i)
            out = _frame(c, {"hudless_color": ("rgba8_srgb", img)})
            assert np.array_equal(out.reshape(img.shape), img)
        s1 = c.stats()
    per_result = (s1["bytes_received"] - s0["bytes_received"]) / (s1["results_received"] - s0["results_received"])
    assert per_result < W * H * 4 / 2


def test_the_passthrough_upscale_returns_each_pixel_two_by_two(tmp_path: Path) -> None:
    from bridge.client import Client

    img = _image(3)
    with served(tmp_path, "--renderer", "passthrough", "-o", "upscale=2") as srv, Client(srv.endpoint) as c:
        welcome = c.hello((W, H), [BufferSpec("hudless_color", "rgba8_srgb")], output_size=(2 * W, 2 * H))
        assert (welcome.output.width, welcome.output.height) == (2 * W, 2 * H)
        out = c.render([Buffer.from_array("hudless_color", "rgba8_srgb", img)]).output
        assert out is not None
        assert np.array_equal(out.array(), np.repeat(np.repeat(img, 2, 0), 2, 1))
        c.bye()


# ------------------------------------------------------------------------------------------------ the bench
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="nrb bench remote builds network namespaces: root only")


def _our_namespaces(pid: int) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(f"nrbbench{pid % 100000}")]


def _bench(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bridge", "bench", "remote", "--out", str(out), "--size", "320x180",
                             "--set", "compact", "--codec", "none", "--in-flight", "2", "--seconds", "1", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@root_only
def test_bench_remote_measures_a_shaped_link_and_deletes_its_network(tmp_path: Path) -> None:
    """A 100 Mbit/s link with 2 ms RTT: the raw cell's bytes match the compact set's, the fps stays under the link's
    limit for them, the raw-TCP floor is there, the engine's default (compression left unset, as the plugins leave
    it) compresses with lz4, and no namespace is left."""
    proc = _bench(tmp_path, "--link", "100:2", "--codec", "default")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert not _our_namespaces(proc.pid)
    res = json.loads((tmp_path / "remote.json").read_text())
    cells = {c["codec"]: c for c in res["cells"]}
    assert set(cells) == {"none", "default"}
    cell = cells["none"]
    assert "error" not in cell, cell
    assert cell["up_mb"] == pytest.approx(320 * 180 * 22 / 1e6, rel=0.05)  # 4+2+4+4+4+2+2 bytes a pixel
    assert 0 < cell["fps"] <= cell["limit_fps"] * 1.1
    assert cell["floor"]["fps"] > 0
    default = cells["default"]
    assert default["compression"] == "lz4" and 0 < default["up_mb"] < cell["up_mb"] / 2, default
    report = (tmp_path / "remote.md").read_text()
    assert "| 100 Mbit/s, 2 ms RTT |" in report and "| default (lz4) |" in report
    assert (tmp_path / "remote.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the report as a picture


def test_bench_remote_plots_each_link_and_size_with_the_issue_target_shaded(tmp_path: Path) -> None:
    """The committed report's cells as a picture: one panel per link and size, with 1920x1080 at 1 Gbit/s shaded
    where issue 19's target (30 fps, p50 under 60 ms) is met, so a reader sees how far each cell is from it."""
    from PIL import Image

    from nrb_bench.remote import plot

    res = json.loads((REPO / "bench" / "remote_in_flight.json").read_text())
    plot(res, tmp_path / "r.png")
    with Image.open(tmp_path / "r.png") as im:
        w, h = im.size
        px = np.asarray(im.convert("RGB"))
    assert w >= 800 and h >= 500
    # the shaded target (matplotlib's tab:green at alpha 0.12 over white) covers part of the panel
    green = (np.abs(px.astype(int) - (230, 244, 230)) <= 3).all(-1)
    assert 0.005 < green.mean() < 0.5


@root_only
def test_the_bench_tells_retransmissions_of_reordered_segments_from_losses_at_10_gbit() -> None:
    """The report counts TCP retransmissions as the link's losses. A veth pair reorders a flow whenever its sender
    moves between CPUs, and at 10 Gbit/s TCP retransmits about a thousand segments a second that were never lost:
    the receiver's DSACKs say so, and the bench counts those as ``spurious``, so nearly all of them are."""
    from nrb_bench.remote import Link, Network, tcp_floor

    with closing(Network(Link("10 Gbit/s", 10_000))) as net:
        result = tcp_floor(net, 7001, 8_000_000, 6_000_000, 2, 2.0)  # the namespaces are new: any port is free
        assert result["fps"] > 0
        losses = net.losses()
    assert losses["tbf_dropped"] == 0 and 0 <= losses["spurious"] <= losses["retransmitted"]
    assert losses["retransmitted"] - losses["spurious"] <= 20 + losses["retransmitted"] // 10, losses


def test_bench_remote_judges_issue_19s_targets_on_every_round() -> None:
    """A cell meets its link's target only when each round does: rounds on both sides of it get no verdict (a median
    would pass or fail by chance), and a 60 Hz loop is not judged against a 60 fps target it cannot exceed."""
    from nrb_bench.remote import markdown, target_verdicts

    def cell(rate: int, game_fps: int, rounds: list[tuple[float, float]]) -> dict[str, Any]:
        return {"rate_mbit": rate, "output": [1920, 1080], "render": [960, 540], "game_fps": game_fps,
                "link": f"{rate} Mbit/s", "set": "compact", "codec": "lz4", "in_flight": 0,
                "samples": [{"fps": f, "p50_ms": p} for f, p in rounds]}

    res = {"cells": [cell(1000, 60, [(35.0, 55.0), (31.0, 59.9)]), cell(1000, 0, [(38.0, 56.0), (36.0, 60.0)]),
                     cell(1000, 0, [(25.0, 50.0), (44.0, 70.0)]), cell(10_000, 0, [(61.0, 30.0), (59.0, 31.0)]),
                     cell(10_000, 60, [(59.5, 25.0), (59.8, 24.0)]), cell(100, 0, [(5.0, 300.0)])]}
    verdicts = [v["verdict"] for v in target_verdicts(res)]
    assert verdicts == ["met", "no verdict", "not met", "no verdict", "not judged: the 60 Hz loop caps fps at 60"]
    res |= {"machine": {"cpu": "x", "cores": 2, "kernel": "k", "python": "3"}, "started": "now",
            "options": {"seconds": 4.0, "warmup": 1.5, "repeat": 2}}
    for c in res["cells"]:
        c |= {"fps": 1.0, "fps_spread": 0.0, "p50_ms": 1.0, "p99_ms": 1.0, "up_mb": 1.0, "down_mb": 1.0,
              "limit_fps": 1.0, "fraction": 1.0, "engine_cpu_ms_per_frame": 1.0, "server_cpu_ms_per_frame": 1.0,
              "write_ms": 1.0, "in_flight_limit": 2, "engine_threads_ms": {}, "server_threads_ms": {}}
    assert "| >= 30 fps, p50 < 60 ms | 35.0 / 55.0, 31.0 / 59.9 | met |" in markdown(res)


@root_only
def test_bench_remote_paces_a_game_loop_and_says_where_the_latency_goes(tmp_path: Path) -> None:
    """``--game-fps 10`` against an unpaced cell on a 1 Gbit/s link: the paced loop offers one frame per tick, so it
    shows at most about 10 frames a second while the unpaced one shows more; each cell reports libnrb's round trip
    and the renderer's own time, the round trip within the latency and the renderer's time within the round trip."""
    proc = _bench(tmp_path, "--link", "1000", "--game-fps", "10", "--game-fps", "0", "--no-floor", "--seconds", "2")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    cells = {c["game_fps"]: c for c in json.loads((tmp_path / "remote.json").read_text())["cells"]}
    assert set(cells) == {10, 0} and all("error" not in c for c in cells.values()), cells
    assert 0 < cells[10]["fps"] <= 11 < cells[0]["fps"]
    for c in cells.values():
        assert 0 < c["server_ms"] < c["round_trip_ms"] <= c["p50_ms"] * 1.05
    md = (tmp_path / "remote.md").read_text()
    assert "| 10 Hz |" in md and "| unpaced |" in md


@root_only
def test_bench_remote_interrupted_leaves_no_namespace_behind(tmp_path: Path) -> None:
    proc = _bench(tmp_path, "--link", "1000:2", "--seconds", "30")
    assert proc.stdout is not None
    for line in proc.stdout:  # the network is up once it says where it is
        if "<->" in line:
            break
    assert _our_namespaces(proc.pid)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert not _our_namespaces(proc.pid)


def test_a_corrupt_compressed_payload_is_answered_from_the_render_worker_and_the_server_keeps_serving(
        passthrough: RunningServer) -> None:
    """Decompression happens on the render worker now: a FRAME whose lz4 payload is garbage still gets its
    PAYLOAD_MISMATCH (naming the buffer), and the next good frame of the same session renders."""
    from bridge.client import Client, RemoteError
    from bridge.protocol import Frame, encode

    img = _image(5)
    with Client(passthrough.endpoint) as c:
        c.hello((W, H), [BufferSpec("hudless_color", "rgba8_srgb")], capabilities=["lz4"])
        good = Buffer.from_array("hudless_color", "rgba8_srgb", img, compression="lz4")
        fid = c.next_frame
        c.next_frame += 1
        wire = encode(Frame(c.session, fid, time.monotonic_ns(), 0.016, 1000.0, [good]))
        wire[1] = bytes(wire[1])[:20] + b"\x00" * 40  # a broken lz4 frame
        c.send_raw(wire)
        with pytest.raises(RemoteError, match="PAYLOAD_MISMATCH") as err:
            c.result(fid, timeout=10)
        assert "hudless_color" in str(err.value)
        out = c.render([good]).output
        assert out is not None and np.array_equal(out.array(), img)
        c.bye()


@root_only
def test_libnrb_compresses_on_a_slow_link_and_not_on_a_fast_one() -> None:
    """The same session settings (lz4 negotiated) and frames that compression shrinks by about a tenth, over a
    10 Mbit/s link and a 10 Gbit/s one shaped in network namespaces: on the slow link saving a tenth of the bytes is
    worth far more than the time to compress them, so libnrb compresses; on the fast one it is not, so after
    measuring it sends the frames raw (every 16th is compressed anyway, to measure again)."""
    from nrb_bench import remote

    up: dict[int, float] = {}
    raw = 0
    for rate in (10, 10_000):
        with remote.network(remote.Link(f"{rate} Mbit/s", rate)) as net:
            srv = remote.Server(net, 1, 47900 + rate % 97)
            try:
                spec = {"endpoint": srv.endpoint, "render": (160, 90), "output": (160, 90), "buffer_set": "compact",
                        "codec": "lz4", "in_flight": 1, "seconds": 3.0, "warmup": 2.0, "content": "mostly_noise"}
                r = remote._in_namespace(net, net.engine_ns, ["--engine-cell", json.dumps(spec)], timeout=120)
            finally:
                srv.close()
        assert r["frames"] >= 2, r
        up[rate] = r["up_bytes"]
        raw = 160 * 90 * 22
    assert up[10] < 0.95 * raw  # compressed
    assert up[10_000] > 0.97 * raw  # raw but for the probes


# ------------------------------------------------------------------------------------------------ remote defaults
def test_the_link_rule_calls_loopback_and_this_hosts_addresses_local_and_other_hosts_remote() -> None:
    """nrb.h's rule (nrb_endpoint_link), as an engine would ask it: no DNS, no traffic."""
    import socket

    assert native.endpoint_link("tcp://127.0.0.1:5555") == "local"
    assert native.endpoint_link("tcp://localhost:5555") == "local"
    assert native.endpoint_link("ipc:///tmp/nrb.sock") == "local"
    assert native.endpoint_link("tcp://203.0.113.7:5555") == "remote"  # TEST-NET-3: never this host
    assert native.endpoint_link("tcp://gpu-box.studio.example:5555") == "remote"
    own = [a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    for address in own:  # this host's own (non-loopback) addresses are the same machine: local
        assert native.endpoint_link(f"tcp://{address}:5555") == "local"


def _recorded_frames(path: Path) -> list[Any]:
    from bridge.capture import CaptureReader

    with CaptureReader(path) as r:
        return [f.decode() for f in r.frames()]


@pytest.mark.parametrize("link", ["remote", "auto"])
def test_a_remote_link_sends_the_compact_set_at_half_the_output_size_and_gets_the_output_size_back(
        tmp_path: Path, link: str) -> None:
    """The engine offers and tags what it renders (float normals, r32f depth, at the output size) and sets no render
    size. Forced remote (over loopback, the one link a test here can reach), libnrb sends octahedral rg16f normals
    and r16f depth at half the size and the renderer's 2x upscale brings the output size back; on loopback (auto)
    the same engine code sends exactly what it tagged."""
    from bridge.renderer import RenderInputs

    ow, oh = 2 * W, 2 * H
    rng = np.random.default_rng(5)
    n = rng.normal(size=(oh, ow, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    normals = np.concatenate([n, np.zeros((oh, ow, 1), np.float32)], -1).astype(np.float16)
    depth = rng.random((oh, ow), np.float32)
    color = np.repeat(np.repeat(_image(2), 2, 0), 2, 1)  # output-size engine image
    capture = tmp_path / "frames.nrbcap"
    with served(tmp_path, "--renderer", "passthrough", "-o", "upscale=2", "-o", 'wants=["depth", "normals"]',
                "--record", str(capture)) as srv:
        specs = [("hudless_color", "rgba8_srgb"), ("normals", "rgba16f"), ("depth", "r32f")]
        with _client(srv.endpoint, buffers=specs, render_size=(0, 0), output_size=(ow, oh), link=link) as c:
            remote = link == "remote"
            assert c.link == {"link": "remote" if remote else "local",
                              "render_size": (W, H) if remote else (ow, oh)}
            out = _frame(c, {"hudless_color": ("rgba8_srgb", color), "normals": ("rgba16f", normals),
                             "depth": ("r32f", depth)})
    frame = _recorded_frames(capture)[-1]
    sent = {b.name: b for b in frame.buffers}
    if remote:
        assert {n: (b.format, b.width, b.height) for n, b in sent.items()} == {
            "hudless_color": ("rgba8_srgb", W, H), "normals_oct": ("rg16f", W, H), "depth": ("r16f", W, H)}
        inputs = RenderInputs(sent, size=(W, H))
        kept = n[::2, ::2]  # nearest: the top-left pixel of each 2x2
        cos = np.sum(inputs["normals"] * kept, -1)
        assert float(np.degrees(np.arccos(np.clip(cos, -1, 1))).max()) < 0.2
        assert np.allclose(inputs["depth"][..., 0], depth[::2, ::2], atol=1e-3)
        assert np.array_equal(out.reshape(oh, ow, 4), np.repeat(np.repeat(color[::2, ::2], 2, 0), 2, 1))
    else:
        assert {n: (b.format, b.width, b.height) for n, b in sent.items()} == {
            "hudless_color": ("rgba8_srgb", ow, oh), "normals": ("rgba16f", ow, oh), "depth": ("r32f", ow, oh)}


_ENGINE_ON_A_REMOTE_LINK = """
import json, sys, time
import numpy as np
from bridge import _native

W, H = 64, 32
c = _native.Client(endpoint=sys.argv[1], render_size=(0, 0), output_size=(W, H), frames_in_flight=1,
                   buffers=[("hudless_color", "rgba8_srgb"), ("normals", "rgba16f"), ("depth", "r32f")],
                   deadline_ms=10_000.0, handshake_timeout_ms=10_000, server_timeout_ms=20_000,
                   compression=sys.argv[2])
end = time.monotonic() + 20
while c.stats()["state"] != "connected":
    assert time.monotonic() < end, c.last_error
    time.sleep(0.01)
s0 = c.stats()
for i in range(3):
    fid = c.begin()
    c.tag_buffer("hudless_color", "rgba8_srgb", np.full((H, W, 4), 40 * i, np.uint8))
    c.tag_buffer("normals", "rgba16f", np.tile(np.array([0, 0, 1, 0], np.float16), (H, W, 1)))
    c.tag_buffer("depth", "r32f", np.full((H, W), 0.5, np.float32))
    c.submit()
    while True:
        got = c.acquire_result(with_info=True, copy=True)
        if got is not None and got[1]["frame_id"] == fid:
            break
        assert time.monotonic() < end + 20, c.stats()
        time.sleep(0.002)
s1 = c.stats()
print(json.dumps({"link": c.link, "up": (s1["bytes_sent"] - s0["bytes_sent"]) / 3, "image": list(got[0].shape),
                  "stats": {k: s1[k] for k in ("shm_active", "frames_sent", "compression")}}))
c.close()
"""


@root_only
def test_an_engine_on_a_real_remote_address_sends_half_size_compact_buffers_without_asking(tmp_path: Path) -> None:
    """An engine in one network namespace, ``nrb serve`` in another (addresses that are not this host's): the
    plugin-style client sets no render size and tags what it renders; libnrb's rule calls the link remote, the
    session runs at half the output size with octahedral normals and r16f depth, compressed with lz4 unless the
    engine says none, and the image comes back at the output size through the renderer's 2x upscale."""
    from nrb_bench import remote

    runs = {}
    with remote.network(remote.Link("1 Gbit/s", 1000)) as net:
        srv = remote.Server(net, 2, 47800 + os.getpid() % 97)
        try:
            for compression in ("none", "auto"):  # "auto": the plugins' default
                proc = subprocess.run(["ip", "netns", "exec", net.engine_ns, sys.executable, "-c",
                                       _ENGINE_ON_A_REMOTE_LINK, srv.endpoint, compression],
                                      cwd=REPO, capture_output=True, text=True, timeout=120)
                assert proc.returncode == 0, proc.stderr[-2000:]
                runs[compression] = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            srv.close()
    compact_half = 32 * 16 * (4 + 4 + 2)  # rgba8 + normals_oct rg16f + depth r16f at 32x16
    for r in runs.values():
        assert r["link"] == {"link": "remote", "render_size": [32, 16]}  # JSON: the tuple is a list
        assert r["image"] == [32, 64, 4]  # the output size, 64x32
        assert r["stats"]["shm_active"] == 0
    raw, default = runs["none"], runs["auto"]
    assert raw["stats"]["compression"] == "none"
    assert compact_half <= raw["up"] < compact_half + 2048, raw  # as tagged it would be 64 * 32 * 16 = 32768 bytes
    assert default["stats"]["compression"] == "lz4"
    assert default["up"] < compact_half / 4, default  # flat test images: lz4 leaves a few hundred bytes
