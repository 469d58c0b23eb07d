"""The sample game end to end, headless: ``make demo`` / ``nrb demo`` run :func:`main`.

1. starts ``nrb serve --renderer neural --hooks nrb_panda3d/game_hooks.py`` as a real subprocess on a free loopback
   port (``--renderer`` picks another; when the neural renderer cannot start — no trained weights yet — it says so and
   uses ``deferred``). When ``--output-size`` is twice the render size (``make demo DEMO_ARGS="--output-size
   640x360"``: 640x360 from 320x180 G-buffers) it serves the 2x-upscaling model
   ``neural_renderer/weights/default_x2_temporal.onnx``;
2. runs the sample game (:mod:`nrb_panda3d.game`) headless through EGL for ``--frames`` frames with the plugin
   attached, scripted gameplay included;
3. writes to ``--out`` (default ``out/demo/``): ``neural/frame_NNNN.png`` (the server's image rendered from frame
   N's G-buffers), ``raster/frame_NNNN.png`` (Panda3D's own image of frame N), ``gbuffers/`` (one frame's G-buffers,
   for a look), ``side_by_side.mp4`` (raster | neural), ``timing.json`` and ``timing.png`` (fps, per-stage ms,
   fallbacks), ``server.log``; and prints where everything is.

The timed loop writes no file: it keeps each frame's images in memory (the raster image as Panda3D's raw RAM
bytes) and everything is converted and written after the clock stops. ``timing.json`` says where each frame's time
went: ``prepare`` (object matrices, frame begin), ``render`` (Panda3D: raster, G-buffers, GPU pack pass, window),
``readback`` + ``copy`` (packed targets to RAM, then into libnrb's shared-memory slots), ``submit``, ``wait``
(lock-step: until the server answered), ``display`` (acquire the result, upload it), ``capture`` (the demo's own
copies for its outputs) and, from each RESULT's timing, ``server`` (the server's total for that frame);
``where_ms`` sums that up as engine / transfer / server model / server other / waiting, with the server's split read
from its own metrics (``nrb serve --metrics``) around the timed loop, and the CPU time per frame of the engine and
the server processes (``cpu_ms``) against the core-milliseconds a 15 fps frame has on this machine.

By default the run is *pipelined* (``--sync --pipeline``), as a game with libnrb's default frames in flight runs:
after submitting frame N the game waits for the answer to N-1, so Panda3D renders frame N+1 while the server renders
N; every frame gets a neural image whatever the renderer's speed, shown one frame later (the saved neural frame N
still pairs with raster frame N). ``--no-pipeline`` is *lock-step*: after each frame the game waits until the server
has answered it, so the engine and the server never work at the same time.
``--no-sync`` runs the game at full speed as a real game would: results arrive when they arrive and frames without
a fresh one fall back to the raster image (counted in the report).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bridge._native import (
    BUFFER_ALBEDO,
    BUFFER_EMISSIVE,
    BUFFER_LINEAR_DEPTH,
    BUFFER_MATERIAL_ID,
    BUFFER_METALLIC,
    BUFFER_MOTION_VECTORS,
    BUFFER_NORMALS,
    BUFFER_OBJECT_ID,
    BUFFER_ROUGHNESS,
)

HOOKS_FILE = Path(__file__).resolve().parent / "game_hooks.py"
#: the demo's style file: the looks it defines without retraining (the ``sunset`` LUT style of the victory beat);
#: part of the ``bridge`` package, so it is found in a source checkout and in an installed wheel alike
_BRIDGE_SPEC = importlib.util.find_spec("bridge")
STYLES_FILE = Path((_BRIDGE_SPEC and _BRIDGE_SPEC.origin) or "bridge/__init__.py").parent / "style" / "looks" / "demo.toml"
#: the 2x-upscaling neural model (docs/model.md), served when the demo's output is twice its render size
X2_MODEL = Path(__file__).resolve().parents[3] / "neural_renderer" / "weights" / "default_x2_temporal.onnx"

log = logging.getLogger("nrb.panda3d.demo")


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise argparse.ArgumentTypeError("width and height must be 16..4096")
    return w, h


@dataclass
class StepInfo:
    """One frame of a :class:`GameSession` run."""

    frame: int
    source: str
    client_frame: int | None
    result_frame: int | None  # the client frame the shown neural image was rendered from
    raster: np.ndarray | None = None
    neural: np.ndarray | None = None


class GameSession:
    """The sample game with the plugin attached, headless, stepped frame by frame (the demo and the e2e tests).

    Only one per process (Panda3D has one ``ShowBase``)."""

    def __init__(self, endpoint: str, size: tuple[int, int] = (320, 180), *, fps: float = 30.0,
                 deadline_ms: float = 5000.0, timeline: Any = None,
                 show_stats: bool = False, enabled: bool = True, server_timeout_ms: int = 1000,
                 output_size: tuple[int, int] | None = None, gpu_pack: bool = True,
                 frames_in_flight: int = 2, game_settings: Any = None) -> None:
        """``size``: the G-buffers' render size; ``output_size``: the window (default: ``size``)."""
        from nrb_panda3d.headless import configure

        configure(*(output_size or size))
        from direct.showbase.ShowBase import ShowBase

        from nrb_panda3d.game import SampleGame
        from nrb_panda3d.plugin import NeuralRendering, NeuralSettings

        self.size = size
        self.base = ShowBase(windowType="offscreen")
        settings = NeuralSettings(endpoint=endpoint, deadline_ms=deadline_ms, show_stats=show_stats,
                                  enabled=enabled, server_timeout_ms=server_timeout_ms,
                                  reconnect_backoff_max_ms=250, render_size=size, gpu_pack=gpu_pack,
                                  frames_in_flight=frames_in_flight)
        self.nrb = NeuralRendering(self.base, settings)
        self.game = SampleGame(self.base, self.nrb, dt=1.0 / fps, timeline=timeline, settings=game_settings)
        self.game.start_task(sort=0)
        self._client_to_frame: dict[int, int] = {}

    @property
    def client(self) -> Any:
        return self.nrb.client

    def step(self, *, capture: bool = True) -> StepInfo:
        """Advance the game one frame (game logic, render, G-buffers submitted, newest result shown)."""
        self.base.taskMgr.step()
        rec = self.nrb.records[-1]
        client_frame = rec.extra.get("client_frame")
        if client_frame is not None:
            self._client_to_frame[client_frame] = rec.frame
        info = StepInfo(rec.frame, rec.source, client_frame, rec.result_frame)
        if capture:
            info.raster = self.nrb.raster_image()
            info.neural = self.nrb.neural_image()
        return info

    def capture_raw(self) -> tuple[bytes, np.ndarray | None]:
        """The last frame's images at the least cost, for the demo's timed loop: the raster image as Panda3D's RAM
        bytes (:func:`raster_from_raw` decodes them later) and the shown neural result's pixels (the client's
        private copy, not copied again), or None."""
        nrb = self.nrb
        if not self.base.graphicsEngine.extractTextureData(nrb.scene_tex, self.base.win.getGsg()):
            raise RuntimeError("could not read back the raster image")
        raw = bytes(memoryview(nrb.scene_tex.getRamImage()))
        nrb.scene_tex.clearRamImage()  # see NeuralRendering.raster_image: a RAM image would be uploaded back
        shown = nrb._last_result if nrb.source == "neural" else None
        return raw, (None if shown is None else shown.pixels)

    def raster_from_raw(self, raw: bytes) -> np.ndarray:
        """Decode :meth:`capture_raw`'s bytes: (H, W, 3) uint8, top row first."""
        tex = self.nrb.scene_tex
        a = np.frombuffer(raw, np.uint8).reshape(tex.getYSize(), tex.getXSize(), -1)
        return np.ascontiguousarray(a[::-1, :, [2, 1, 0]])

    def frame_of(self, client_frame: int | None) -> int | None:
        """The game frame whose G-buffers a client frame id carried."""
        return None if client_frame is None else self._client_to_frame.get(client_frame)

    def wait_answered(self, timeout: float = 10.0, outstanding: int = 0) -> bool:
        """Wait until every submitted frame but the last ``outstanding`` was sent and answered (or dropped):
        lock-step mode (0), or lock-step one frame behind (1: the engine renders the next frame while the server
        renders this one)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.client.stats()
            answered = s.frames_sent - s.in_flight + s.frames_dropped  # sent and answered, or never sent
            if answered >= s.frames_submitted - outstanding:
                return True
            time.sleep(0.001)
        return False

    def wait_connected(self, timeout: float = 30.0) -> bool:
        """True once a session is up; False after ``timeout``, or at once when the renderer refused the session
        (``client.last_error()`` says why)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            state = self.client.stats().state
            if state == "connected":
                return True
            if state == "refused":
                return False
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self.nrb.destroy()
        self.base.destroy()


# ------------------------------------------------------------------------------------------------- outputs


def _label(img: np.ndarray, text: str, color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(img[..., :3]))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, 7 * len(text) + 6, 14], fill=(0, 0, 0))
    d.text((3, 1), text, fill=color)
    return np.asarray(im)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0, "count": 0}
    a = np.asarray(values, np.float64)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max()), "count": int(a.size)}


def gameplay_beats(log: list[tuple[int, float, str]],
                   calls: list[tuple[int, float, str, str]]) -> list[dict[str, Any]]:
    """``timing.json: gameplay``: each scripted beat (frame, game time, name) with the plugin calls it made, so the
    report says on which frame the look, the exclusions and the intensity changed (the plot marks the same
    frames)."""
    return [{"frame": f, "time": t, "event": n, "calls": [c for cf, _ct, beat, c in calls if beat == n and cf == f]}
            for f, t, n in log]


STAGES = ("pre_ms", "render_ms", "readback_ms", "convert_ms", "submit_ms")


def frame_breakdown(records: list[Any], wall_s: float) -> dict[str, float]:
    """Mean ms per frame of each stage a frame goes through (enabled frames), the way the module docstring names
    them; ``frame`` is the wall time per frame, ``unaccounted`` what no stage measured (task manager, the game's
    own logic, Python between the tasks). ``server`` is what the RESULTs said the server spent; in lock-step it is
    part of ``wait``."""
    enabled = [r for r in records if r.extra.get("client_frame") is not None]
    if not enabled:
        return {}

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    out = {
        "prepare": mean([r.pre_ms - r.display_ms for r in enabled]),
        "render": mean([r.render_ms for r in enabled]),
        "readback": mean([r.readback_ms for r in enabled]),
        "copy": mean([r.convert_ms for r in enabled]),
        "submit": mean([r.submit_ms for r in enabled]),
        "wait": mean([r.extra.get("wait_ms", 0.0) for r in enabled]),
        "display": mean([r.display_ms for r in enabled]),
        "capture": mean([r.extra.get("capture_ms", 0.0) for r in enabled]),
    }
    frame = wall_s * 1e3 / len(records) if records else 0.0
    out["unaccounted"] = frame - sum(out.values())
    out["frame"] = frame
    out["server"] = mean([r.server_ms for r in records if r.server_ms is not None])
    return {k: round(v, 2) for k, v in out.items()}


#: the server's frame histograms (Prometheus, ``nrb serve --metrics``) the demo reads around its timed loop
SERVER_HISTOGRAMS = {"total": "nrb_frame_latency_seconds", "render": "nrb_render_seconds",
                     "model": "nrb_model_seconds"}


def read_server_metrics(url: str | None) -> dict[str, float] | None:
    """The sums (s) and counts of the server's frame histograms (:data:`SERVER_HISTOGRAMS`) now, or None without a
    metrics endpoint or when it does not answer (a server started elsewhere: ``--endpoint``)."""
    if url is None:
        return None
    from bridge.server.observers import read_metrics

    try:
        samples = read_metrics(url, timeout=5)
    except OSError:
        return None
    out = {key + suffix: samples[name + suffix] for key, name in SERVER_HISTOGRAMS.items()
           for suffix in ("_sum", "_count") if name + suffix in samples}
    return out if len(out) == 2 * len(SERVER_HISTOGRAMS) else None


def server_split(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
    """Mean ms per frame the server rendered between two :func:`read_server_metrics` readings: ``total`` (received
    to answered: the RESULT's ``total_ms``), of which ``model`` (the renderer's own call), ``post`` (grading,
    intensity and masks) and ``other`` (queue, shared-memory copy, style map, encode); {} without readings."""
    if before is None or after is None:
        return {}
    n = after["total_count"] - before["total_count"]
    if n <= 0:
        return {}

    def mean(key: str) -> float:
        return (after[f"{key}_sum"] - before[f"{key}_sum"]) * 1e3 / n

    total, render, model = mean("total"), mean("render"), mean("model")
    return {"frames": n, "total": round(total, 2), "model": round(model, 2), "post": round(render - model, 2),
            "other": round(total - render, 2)}


def where_time_goes(breakdown: dict[str, float], link_ms: float, server: dict[str, float],
                    cpu_s: dict[str, float | None], frames: int) -> dict[str, Any]:
    """``timing.json: where_ms`` (mean ms per frame, wall clock): ``engine`` (the game thread's own work: prepare,
    Panda3D's render, readback, copy, submit, display), ``waiting`` (the game thread blocked on the server), ``demo``
    (the demo's captures and loop), ``frame`` (wall time per frame), and the server's side of each frame, which
    overlaps ``waiting`` (lock-step) or ``engine`` (pipelined): ``transfer`` (``link_ms``: libnrb's fastest recent
    send-to-RESULT time minus the server's own time), ``server_model`` (the renderer's call), ``server_other`` (everything else in the server: grading and
    post, shared-memory copy, style map, encode, queue). ``cpu_ms`` is CPU time per frame (every thread) of the
    engine process and the server process, against what the machine's cores give a frame at 15 fps."""
    if not breakdown:
        return {}
    engine = sum(breakdown.get(k, 0.0) for k in ("prepare", "render", "readback", "copy", "submit", "display"))
    out: dict[str, Any] = {
        "engine": round(engine, 2),
        "waiting": breakdown.get("wait", 0.0),
        "demo": round(breakdown.get("capture", 0.0) + breakdown.get("unaccounted", 0.0), 2),
        "frame": breakdown.get("frame", 0.0),
        "transfer": round(link_ms, 2),
    }
    if server:
        out["server_model"] = server["model"]
        out["server_other"] = round(server["total"] - server["model"], 2)
    cores = os.cpu_count() or 1
    cpu = {k: round(v * 1e3 / frames, 2) for k, v in cpu_s.items() if v is not None and frames > 0}
    if cpu:
        if len(cpu) == 2:
            cpu["total"] = round(sum(cpu.values()), 2)
        cpu["cores"] = cores
        cpu["budget_at_15fps"] = round(cores * 1000.0 / 15.0, 1)
        out["cpu_ms"] = cpu
    return out


def timing_report(records: list[Any], wall_s: float, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``timing.json`` content from the plugin's frame records."""
    enabled = [r for r in records if r.extra.get("client_frame") is not None]
    report = {
        "frames": len(records),
        "wall_s": wall_s,
        "fps": len(records) / wall_s if wall_s > 0 else 0.0,
        # distinct neural images shown per second: what the player sees change (a result shown twice counts once)
        "neural_fps": len({r.result_frame for r in records if r.source == "neural"}) / wall_s if wall_s > 0 else 0.0,
        "neural_frames": sum(r.source == "neural" for r in records),
        "raster_frames": sum(r.source == "raster" for r in records),
        "fallbacks": sum(r.source == "raster" for r in enabled),
        "stages_ms": {s[:-3]: _stats([getattr(r, s) for r in enabled]) for s in STAGES},
        "round_trip_ms": _stats([r.round_trip_ms for r in records if r.round_trip_ms is not None]),
        "server_ms": _stats([r.server_ms for r in records if r.server_ms is not None]),
        "engine_ms_per_frame": _stats([sum(getattr(r, s) for s in STAGES) for r in enabled]),
        "breakdown_ms": frame_breakdown(records, wall_s),
    }
    report.update(extra)
    return report


def plot_timing(records: list[Any], events: list[tuple[int, float, str]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = np.array([r.frame for r in records])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    bottom = np.zeros(len(records))
    for s in STAGES:
        v = np.array([getattr(r, s) for r in records])
        ax.fill_between(frames, bottom, bottom + v, step="mid", alpha=0.7, label=s[:-3])
        bottom += v
    rtt = np.array([np.nan if r.round_trip_ms is None else r.round_trip_ms for r in records])
    srv = np.array([np.nan if r.server_ms is None else r.server_ms for r in records])
    ax.plot(frames, rtt, "k-", lw=1, label="round trip (submit → result)")
    ax.plot(frames, srv, "k:", lw=1, label="server total")
    for f, _t, name in events:
        ax.axvline(f, color="grey", ls="--", lw=0.8)
        ax.text(f, ax.get_ylim()[1] * 0.95 if ax.get_ylim()[1] > 0 else 1, name, rotation=90, va="top", fontsize=7)
    ax.set_ylabel("ms")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))  # outside: the beats are labelled at the top
    src = np.array([1.0 if r.source == "neural" else 0.0 for r in records])
    ax2.fill_between(frames, 0, src, step="mid", color="tab:green", label="neural shown")
    ax2.fill_between(frames, 0, 1 - src, step="mid", color="tab:red", alpha=0.4, label="raster (fallback)")
    ax2.set_yticks([])
    ax2.set_xlabel("frame")
    ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_gbuffers(nrb: Any, out: Path) -> None:
    """One frame's G-buffers as viewable PNGs (albedo, normals, depth, motion, ids, ...)."""
    from PIL import Image

    frame = nrb.gbuffer.read()
    out.mkdir(parents=True, exist_ok=True)
    b = {k: v[1] for k, v in frame.buffers.items()}
    Image.fromarray(b[BUFFER_ALBEDO][..., :3]).save(out / "albedo.png")
    n = b[BUFFER_NORMALS].astype(np.float32)[..., :3]
    Image.fromarray(((n * 0.5 + 0.5).clip(0, 1) * 255).astype(np.uint8)).save(out / "normals.png")
    ld = b[BUFFER_LINEAR_DEPTH][..., 0]
    Image.fromarray((np.clip(1.0 - ld / 30.0, 0, 1) * 255).astype(np.uint8)).save(out / "linear_depth.png")
    Image.fromarray(b[BUFFER_ROUGHNESS][..., 0]).save(out / "roughness.png")
    Image.fromarray(b[BUFFER_METALLIC][..., 0]).save(out / "metallic.png")
    mv = b[BUFFER_MOTION_VECTORS].astype(np.float32)
    mvi = np.zeros(mv.shape[:2] + (3,), np.uint8)
    mvi[..., :2] = (np.clip(mv / 8.0 * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(mvi).save(out / "motion_vectors.png")
    rng = np.random.RandomState(7)
    pal = rng.randint(40, 255, (65536, 3)).astype(np.uint8)
    pal[0] = 0
    Image.fromarray(pal[b[BUFFER_OBJECT_ID][..., 0]]).save(out / "object_id.png")
    Image.fromarray(pal[(b[BUFFER_MATERIAL_ID][..., 0].astype(np.int64) * 97) % 65536]).save(out / "material_id.png")
    em = b[BUFFER_EMISSIVE].astype(np.float32)[..., :3]
    Image.fromarray((np.clip(em / 4.0, 0, 1) * 255).astype(np.uint8)).save(out / "emissive.png")


# ---------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nrb demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output directory (default out/demo)")
    p.add_argument("--frames", type=int, default=300, help="frames to run (default 300 = 10 s of game time)")
    p.add_argument("--size", type=parse_size, default=(320, 180),
                   help="render size WxH of the G-buffers (default 320x180)")
    p.add_argument("--output-size", type=parse_size, default=None,
                   help="window / output size WxH (default: the render size; twice it, e.g. 640x360 from "
                        "320x180, serves the 2x-upscaling model)")
    p.add_argument("--renderer-option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to nrb serve (e.g. model=PATH); by default the neural renderer gets the 2x model "
                        "when the output is twice the render size")
    p.add_argument("--gpu-pack", action=argparse.BooleanOptionalAction, default=True,
                   help="pack the G-buffers on the GPU (default on; --no-gpu-pack: numpy conversion)")
    p.add_argument("--fps", type=float, default=30.0, help="game time step 1/FPS and video frame rate (default 30)")
    p.add_argument("--renderer", default="neural", help="server renderer (default neural)")
    p.add_argument("--fallback-renderer", default="deferred",
                   help="renderer to use when --renderer cannot start (default deferred; '' to fail instead)")
    p.add_argument("--hooks", type=Path, default=HOOKS_FILE, help="server hooks file (default: the demo's)")
    p.add_argument("--worker-threads", type=int, default=0, metavar="N",
                   help="the server's renderer threads per frame (nrb serve --worker-threads; default 0: the "
                        "server's own, every core: pipelined, the server then also uses the core Panda3D leaves "
                        "once its frame is done)")
    p.add_argument("--styles", type=Path, default=STYLES_FILE,
                   help="server style file (default: bridge/style/looks/demo.toml, whose 'sunset' the victory beat uses)")
    p.add_argument("--intensity", type=float, default=1.0,
                   help="the game's intensity setting, 0 (engine image) .. 1 (re-rendered; default)")
    p.add_argument("--keep-faces", action=argparse.BooleanOptionalAction, default=False,
                   help="the game's 'keep faces' setting: the characters' face materials keep the engine's pixels")
    p.add_argument("--endpoint", help="use a running server at this endpoint instead of starting one")
    p.add_argument("--sync", action=argparse.BooleanOptionalAction, default=True,
                   help="lock-step: wait for each frame's result before the next (default on)")
    p.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True,
                   help="with --sync: wait for the answer of the frame before this one, so Panda3D renders frame "
                        "N+1 while the server renders N, as a game with libnrb's default frames in flight does "
                        "(each neural image is shown one frame later; default on; --no-pipeline: lock-step, each "
                        "frame waits for its own answer)")
    p.add_argument("--deadline-ms", type=float, default=None,
                   help="client deadline (default 10000 with --sync, 250 without)")
    p.add_argument("--video", action=argparse.BooleanOptionalAction, default=True, help="write side_by_side.mp4")
    p.add_argument("--stats-overlay", action="store_true", help="draw the statistics overlay into the window")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.output_size is None:
        args.output_size = args.size
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("neural", "raster"):
        (out / sub).mkdir(exist_ok=True)
        for old in (out / sub).glob("frame_*.png"):
            old.unlink()

    from nrb_panda3d.game import GameSettings, Timeline
    from nrb_panda3d.server_process import ServerProcess

    try:
        game_settings = GameSettings(intensity=args.intensity, keep_faces=args.keep_faces)
    except ValueError as exc:
        print(f"nrb demo: {exc}", file=sys.stderr)
        return 2

    server: ServerProcess | None = None
    renderer = args.renderer
    options = list(args.renderer_option)
    upscaled = args.output_size == (2 * args.size[0], 2 * args.size[1])
    if renderer == "neural" and upscaled and not any(o.startswith("model=") for o in options):
        if X2_MODEL.is_file():  # and its int8 copy when that one passed its FLIP guard and measured faster
            options += [f"model={X2_MODEL}", "precision=auto"]
        else:
            print(f"nrb demo: no 2x model at {X2_MODEL}; the 1x model's image is stretched to the window",
                  file=sys.stderr)
    extra_args = [a for o in options for a in ("-o", o)]
    ahead = 1 if args.sync and args.pipeline else 0
    worker_threads = args.worker_threads
    threads_args = ["--worker-threads", str(worker_threads)] if worker_threads else []
    extra_args += threads_args
    if args.styles:
        extra_args += ["--styles", str(args.styles)]
    endpoint = args.endpoint
    log_path = out / "server.log"
    if log_path.exists():
        log_path.unlink()
    if endpoint is None:
        server = ServerProcess(renderer, hooks=args.hooks, log_path=log_path, extra_args=extra_args, metrics=True)
        try:
            endpoint = server.start()
        except RuntimeError as exc:
            if not args.fallback_renderer or args.fallback_renderer == renderer:
                print(f"nrb demo: the server could not start: {exc}", file=sys.stderr)
                return 2
            first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            print(f"nrb demo: renderer {renderer!r} is not available ({first_line}); "
                  f"using {args.fallback_renderer!r}", file=sys.stderr)
            renderer = args.fallback_renderer
            server = ServerProcess(renderer, hooks=args.hooks, log_path=log_path, metrics=True,
                                   extra_args=(["--styles", str(args.styles)] if args.styles else []) + threads_args)
            endpoint = server.start()
    deadline = args.deadline_ms or (10000.0 if args.sync else 250.0)
    game_seconds = args.frames / args.fps
    session: GameSession | None = None
    try:
        session = GameSession(endpoint, args.size, fps=args.fps, deadline_ms=deadline,
                              timeline=Timeline.scaled(max(game_seconds, 1.0)), show_stats=args.stats_overlay,
                              output_size=args.output_size, gpu_pack=args.gpu_pack, game_settings=game_settings,
                              # lock-step: 1; pipelined: libnrb's default (0: adaptive, 1 frame in flight against
                              # a renderer-bound server, so the client holds frame N+1 until N is answered and
                              # the server never has a queued frame that a newer one would supersede)
                              frames_in_flight=(0 if ahead else 1) if args.sync else 2)
        if not session.wait_connected(60.0):
            print(f"nrb demo: no session with {endpoint}: {session.client.last_error()}", file=sys.stderr)
            return 3
        raw_rasters: dict[int, bytes] = {}
        raw_neurals: dict[int, np.ndarray] = {}
        from PIL import Image

        from nrb_panda3d.plugin import _srgb8

        # The timed loop: no file is written and no image converted here (see the module docstring).
        load_before = os.getloadavg()[0]
        metrics_url = server.metrics_url if server is not None else None
        metrics_before = read_server_metrics(metrics_url)
        cpu_before = (time.process_time(), server.cpu_seconds() if server is not None else None)
        t0 = time.perf_counter()
        loop_unix = [time.time(), 0.0]
        wall = 0.0
        cpu_s: dict[str, float | None] = {}
        metrics_after: dict[str, float] | None = None
        for i in range(args.frames + 1):  # the last step only shows the last answer
            if i == args.frames and ahead:
                session.wait_answered(deadline / 1000.0)
            info = session.step(capture=False)
            tc = time.perf_counter()
            raw, neural = session.capture_raw()
            if i < args.frames:
                raw_rasters[info.frame] = raw
            src = session.frame_of(info.result_frame)
            if neural is not None and src is not None and src not in raw_neurals and src in raw_rasters:
                raw_neurals[src] = neural
            rec = session.nrb.records[-1]
            rec.extra["capture_ms"] = (time.perf_counter() - tc) * 1e3
            if args.sync and i < args.frames:
                tw = time.perf_counter()
                session.wait_answered(deadline / 1000.0, outstanding=ahead)
                rec.extra["wait_ms"] = (time.perf_counter() - tw) * 1e3
            if i == args.frames - 1:
                wall = time.perf_counter() - t0
                server_cpu = server.cpu_seconds() if server is not None else None
                cpu_s = {"engine": time.process_time() - cpu_before[0],
                         "server": None if server_cpu is None or cpu_before[1] is None
                         else server_cpu - cpu_before[1]}
                metrics_after = read_server_metrics(metrics_url)
        loop_unix[1] = time.time()  # every file of the run is written after this (tests check the PNGs' mtimes)
        records = list(session.nrb.records)[: args.frames]
        stats = session.nrb.stats()
        save_gbuffers(session.nrb, out / "gbuffers")
        rasters = {f: session.raster_from_raw(r) for f, r in raw_rasters.items()}
        neurals = {f: _srgb8(p)[..., :3] for f, p in raw_neurals.items()}
        for f, img in rasters.items():
            Image.fromarray(img).save(out / "raster" / f"frame_{f:04d}.png")
        for f, img in neurals.items():
            Image.fromarray(img).save(out / "neural" / f"frame_{f:04d}.png")

        video_path = None
        if args.video:
            import imageio.v2 as imageio

            video_path = out / "side_by_side.mp4"
            writer = imageio.get_writer(str(video_path), fps=args.fps, codec="libx264", quality=8,
                                        macro_block_size=1, pixelformat="yuv420p", ffmpeg_log_level="error")
            try:
                for f in sorted(rasters):
                    left = _label(rasters[f], f"raster #{f}")
                    if f in neurals:
                        img = neurals[f]
                        if img.shape[:2] != rasters[f].shape[:2]:  # a 1x renderer's image under a larger window
                            img = np.asarray(Image.fromarray(img).resize(rasters[f].shape[1::-1], Image.Resampling.NEAREST))
                        right = _label(img, f"neural ({renderer})")
                    else:
                        right = _label((rasters[f] * 0.5).astype(np.uint8), "fallback: raster", (255, 120, 120))
                    frame = np.concatenate([left, right], axis=1)
                    h, w = frame.shape[:2]
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                    writer.append_data(frame)
            finally:
                writer.close()
        split = server_split(metrics_before, metrics_after)
        report = timing_report(records, wall, {
            "server_split_ms": split,
            "worker_threads": worker_threads or "server default",
            "renderer": renderer,
            "endpoint": endpoint,
            "size": list(args.size),
            "output_size": list(args.output_size),
            "renderer_options": options,
            "gpu_pack": session.nrb.pack is not None,
            "timed_loop_unix": loop_unix,
            "sync": args.sync,
            "pipeline": bool(ahead),
            "load_average_1min": [load_before, os.getloadavg()[0]],
            "deadline_ms": deadline,
            "game_fps": args.fps,
            "neural_images_saved": len(neurals),
            "gameplay": gameplay_beats(session.game.log, session.game.calls),
            "game_settings": {"intensity": game_settings.intensity, "keep_faces": game_settings.keep_faces},
            "styles_file": str(args.styles) if args.styles else None,
            "client_stats": {**{k: v for k, v in stats.items() if k != "extra"},
                             **{k: stats["extra"][k] for k in ("in_flight_limit", "service_ms", "link_ms")
                                if k in stats["extra"]}},
        })
        link = stats["extra"].get("link_ms", report["round_trip_ms"]["mean"] - report["server_ms"]["mean"])
        report["where_ms"] = where_time_goes(report["breakdown_ms"], float(link), split, cpu_s, len(records))
        (out / "timing.json").write_text(json.dumps(report, indent=2) + "\n")
        plot_timing(records, session.game.log, out / "timing.png",
                    f"nrb demo: {renderer}, {args.size[0]}x{args.size[1]} -> {args.output_size[0]}x{args.output_size[1]}, "
                    f"{report['fps']:.1f} fps, "
                    f"{report['fallbacks']} fallbacks")
    finally:
        if session is not None:
            session.close()
        if server is not None:
            server.stop()

    print(f"nrb demo: {report['frames']} frames in {wall:.1f} s ({report['fps']:.1f} fps, "
          f"{report['neural_fps']:.1f} distinct neural images/s), renderer {renderer}, "
          f"{args.size[0]}x{args.size[1]} -> {args.output_size[0]}x{args.output_size[1]}, "
          f"{len(neurals)} neural frames, {report['fallbacks']} fallbacks")
    bd = report["breakdown_ms"]
    if bd:
        print("  ms per frame  : " + ", ".join(f"{k} {v:.1f}" for k, v in bd.items()))
    where = report.get("where_ms") or {}
    if where:
        print("  where it goes : " + ", ".join(f"{k} {v:.1f}" for k, v in where.items() if k != "cpu_ms")
              + " (ms per frame; the server's side overlaps waiting or, pipelined, the engine)")
    cpu = where.get("cpu_ms") or {}
    if "total" in cpu:
        print(f"  CPU per frame : engine {cpu['engine']:.1f} + server {cpu['server']:.1f} = {cpu['total']:.1f} "
              f"core-ms; {cpu['cores']} cores give {cpu['budget_at_15fps']:.0f} core-ms to a frame at 15 fps")
    print(f"  neural frames : {out / 'neural'}/frame_NNNN.png")
    print(f"  raster frames : {out / 'raster'}/frame_NNNN.png")
    print(f"  G-buffers     : {out / 'gbuffers'}/")
    if video_path is not None:
        print(f"  side by side  : {video_path}")
    print(f"  timing report : {out / 'timing.json'}  (plot: {out / 'timing.png'})")
    print(f"  server log    : {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
