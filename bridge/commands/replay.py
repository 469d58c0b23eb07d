"""``nrb replay CAPTURE --renderer X --out DIR``: feed a recorded session back through any renderer.

The session's style state is rebuilt from scratch with the same code the server runs
(``bridge.session.StylePipeline``): the same frame times, ``set_style`` commands and events, and the hooks source
recorded in the capture (hot reloads included, unless ``--hooks`` overrides it). So every style map is bit-for-bit
the one the live server built — checked against the digest recorded per frame — and a deterministic renderer
reproduces the recorded images exactly (checked too when the recorded renderer is the one replaying).

Writes ``DIR/frames/frame_NNNNNN.png``, ``DIR/replay.mp4`` and ``DIR/replay.json`` (the report). Exit status 1
when a style map differs from the recording.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from bridge.capture import CapturedFrame, CapturedResult, CaptureError, CaptureReader, Kind
from bridge.hooks import HookError, HookErrorLog, HookLoadError, HookSet
from bridge.protocol import RECORDED_CODECS, Frame, Hello, Result, Welcome, decode
from bridge.renderer import (
    RENDERERS,
    RenderInputs,
    display_rgba8,
    image_to_output,
    load_renderer,
    parse_options,
)
from bridge.session import StylePipeline
from bridge.style.grading import grade, post_process
from bridge.style.library import DEFAULT_LIBRARY, StyleLibrary
from bridge.style.stylemap import style_map_digest

log = logging.getLogger("nrb.replay")


@dataclass
class ReplayedFrame:
    """One frame of a replayed session with the style map rebuilt for it (None for a style-only frame)."""

    captured: CapturedFrame
    frame: Frame
    time: float
    style_map: np.ndarray | None
    hook_errors: list[HookError]

    @property
    def digest_matches(self) -> bool | None:
        """Whether the rebuilt style map equals the recorded one (None: nothing recorded to compare with)."""
        r = self.captured.result
        if self.style_map is None or r is None or r.style_digest is None:
            return None
        return style_map_digest(self.style_map) == bytes(r.style_digest)


class SessionReplay:
    """Iterate a captured session's frames, re-running its style pipeline (no rendering)."""

    def __init__(self, reader: CaptureReader, session: int | None = None, *, hooks: str | Path | None = None,
                 library: StyleLibrary = DEFAULT_LIBRARY) -> None:
        self.reader = reader
        sessions = reader.sessions()
        frame_sessions = [r.session for r in reader.frame_refs()]
        if session is None:
            candidates = list(sessions) or frame_sessions
            if not candidates:
                raise CaptureError(f"{reader.path} holds no session")
            session = candidates[0]
        if session not in sessions and session not in frame_sessions:
            known = sorted(set(sessions) | set(frame_sessions))
            raise CaptureError(f"session {session} is not in {reader.path} (sessions: {known})")
        self.session = session
        info = sessions.get(session)
        self.hello: Hello | None = None
        self.welcome: Welcome | None = None
        self.renderer_label: str | None = None
        if info is not None:
            h, w = decode([info["hello"]]), decode([info["welcome"]])
            self.hello = h if isinstance(h, Hello) else None
            self.welcome = w if isinstance(w, Welcome) else None
            self.renderer_label = info.get("renderer")
        self.override = HookSet.from_file(hooks) if hooks is not None else None
        self.library = library
        #: the style pipeline of the iteration under way: its library holds the styles the session defined at run
        #: time, its state the intensity and exclusions, as of the frame just yielded
        self.pipeline = StylePipeline(self.session, self.library)

    def render_size(self, frame: Frame) -> tuple[int, int]:
        if self.hello is not None:
            return self.hello.render_size
        b = frame.buffer("albedo") or (frame.buffers[0] if frame.buffers else None)
        return (b.width, b.height) if b is not None else (1, 1)

    def __iter__(self) -> Iterator[ReplayedFrame]:
        pipeline = self.pipeline = StylePipeline(self.session, self.library)
        results: dict[int, Any] = {r.frame: r for r in self.reader.chunks
                                   if r.kind == Kind.RESULT and r.session == self.session}
        hooks = self.override
        for ref in self.reader.chunks:
            if ref.kind == Kind.HOOKS and self.override is None:
                try:
                    p = self.reader.payload(ref)
                    hooks = HookSet(p["source"], p.get("path") or "<recorded hooks>")
                except (CaptureError, HookLoadError) as exc:
                    log.error("recorded hooks at offset %d cannot be used: %s", ref.offset, exc)
                continue
            if ref.kind != Kind.FRAME or ref.session != self.session:
                continue
            try:
                p = self.reader.payload(ref)
            except CaptureError as exc:
                log.error("skipping damaged frame %d: %s", ref.frame, exc)
                continue
            result = None
            if ref.frame in results:
                try:
                    rp = self.reader.payload(results[ref.frame])
                    result = CapturedResult(rp["status"], rp["wire"], rp.get("style_digest"), rp.get("timing") or {},
                                            rp.get("error"))
                except CaptureError:
                    result = None
            captured = CapturedFrame(ref.session, ref.frame, p.get("received_ns", 0), p["wire"], result,
                                     bool(p.get("style_only")))
            frame = captured.decode()
            t, errors = pipeline.advance(frame, hooks)
            smap = None if captured.style_only else pipeline.style_map(frame, self.render_size(frame))
            yield ReplayedFrame(captured, frame, t, smap, errors)


@dataclass
class ReplayReport:
    """What a replay did and whether it matched the recording."""

    capture: str
    session: int
    renderer: str
    frames: int = 0
    rendered: int = 0
    render_failed: list[int] = field(default_factory=list)
    style_maps_checked: int = 0
    style_map_mismatches: list[int] = field(default_factory=list)
    images_checked: int = 0
    image_mismatches: list[int] = field(default_factory=list)
    hook_errors: int = 0
    style_digests: dict[int, str] = field(default_factory=dict)
    out_dir: str | None = None
    video: str | None = None

    @property
    def ok(self) -> bool:
        return not self.style_map_mismatches


def _default_renderer(label: str | None) -> str:
    name = (label or "").split("/")[0]
    if name in RENDERERS:
        return name
    raise ValueError(f"the capture was rendered by {label!r}, which is not a registered renderer name: "
                     "pass --renderer")


def replay_capture(capture: str | Path, *, renderer: str | None = None, out: str | Path | None = None,
                   session: int | None = None, hooks: str | Path | None = None,
                   renderer_options: dict[str, Any] | None = None, video: bool = True, fps: float | None = None,
                   progress: bool = False) -> ReplayReport:
    """Replay one session of ``capture`` through ``renderer``; write PNGs/MP4/report under ``out`` if given."""
    with CaptureReader(capture) as reader:
        probe = SessionReplay(reader, session)
        spec = renderer or _default_renderer(probe.renderer_label)
        rend = load_renderer(spec, **(renderer_options or {}))
        replay = SessionReplay(reader, probe.session, hooks=hooks, library=rend.library)
        report = ReplayReport(str(capture), replay.session, rend.label)
        same_renderer = probe.renderer_label == rend.label
        out_dir = Path(out) if out is not None else None
        writer = None
        dts: list[float] = []
        hook_log = HookErrorLog()
        frames_iter: Any = replay
        if progress:
            from tqdm import tqdm

            frames_iter = tqdm(replay, total=len(reader.frame_refs(replay.session)), unit="frame", desc="replay")
        try:
            for rf in frames_iter:
                report.frames += 1
                hook_log.report(rf.hook_errors)
                report.hook_errors += len(rf.hook_errors)
                if rf.style_map is None:
                    continue
                digest = style_map_digest(rf.style_map)
                report.style_digests[rf.frame.frame] = digest.hex()
                match = rf.digest_matches
                if match is not None:
                    report.style_maps_checked += 1
                    if not match:
                        report.style_map_mismatches.append(rf.frame.frame)
                if rf.frame.camera is not None and rf.frame.camera.reset:
                    rend.reset()
                size = replay.render_size(rf.frame)
                out_size = rend.output_size(size, replay.hello.output_size if replay.hello else size)
                inputs = RenderInputs({b.name: b for b in rf.frame.buffers}, size=size, camera=rf.frame.camera,
                                      time=rf.time, dt=rf.frame.dt, frame=rf.frame.frame)
                try:
                    # as the server does: the renderer's presets, then the exact grading and the session's post
                    # controls (intensity, exclusions, the engine's neural_mask)
                    lib, state = replay.pipeline.library, replay.pipeline.state
                    if rend.style_params:  # draws every style from its parameters (bridge.server.processor)
                        inputs.style_table = lib.shading_table()
                        image = rend.render(inputs, rf.style_map)
                    else:
                        image = rend.render(inputs, lib.renderer_map(rf.style_map))
                    image = post_process(grade(image, rf.style_map, lib, inputs), inputs, state)
                    pixels = image_to_output(image, rend.output_format, out_size)
                except Exception as exc:  # BadOutput or the renderer's own: the replay goes on
                    log.error("renderer failed on frame %d: %s: %s", rf.frame.frame, type(exc).__name__, exc)
                    report.render_failed.append(rf.frame.frame)
                    continue
                report.rendered += 1
                rgba = display_rgba8(pixels)
                recorded = rf.captured.result
                if same_renderer and recorded is not None and recorded.status == "ok":
                    msg = decode(recorded.wire, compression=RECORDED_CODECS)
                    if isinstance(msg, Result) and msg.output is not None:
                        report.images_checked += 1
                        if not np.array_equal(msg.output.array(), pixels):
                            report.image_mismatches.append(rf.frame.frame)
                if rf.frame.dt > 0:
                    dts.append(rf.frame.dt)
                if out_dir is not None:
                    from bridge.commands.media import VideoWriter, write_png

                    write_png(out_dir / "frames" / f"frame_{rf.frame.frame:06d}.png", rgba)
                    if video:
                        if writer is None:
                            rate = fps or (1.0 / median(dts) if dts else 30.0)
                            writer = VideoWriter(out_dir / "replay.mp4", min(max(rate, 1.0), 240.0))
                        writer.add(rgba)
        finally:
            if writer is not None:
                writer.close()
                report.video = str(writer.path)
        if out_dir is not None:
            report.out_dir = str(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "replay.json").write_text(json.dumps(asdict(report), indent=2))
        return report


def _run(args: argparse.Namespace) -> int:
    try:
        report = replay_capture(args.capture, renderer=args.renderer, out=args.out, session=args.session,
                                hooks=args.hooks, renderer_options=parse_options(args.renderer_option),
                                video=not args.no_video, fps=args.fps, progress=not args.quiet)
    except (CaptureError, HookLoadError, ValueError, OSError) as exc:
        print(f"nrb replay: {exc}", file=sys.stderr)
        return 2
    print(f"replayed session {report.session}: {report.frames} frames, {report.rendered} rendered by "
          f"{report.renderer}")
    print(f"  style maps: {report.style_maps_checked - len(report.style_map_mismatches)}/"
          f"{report.style_maps_checked} identical to the recording"
          + (f"; MISMATCH on frames {report.style_map_mismatches[:10]}" if report.style_map_mismatches else ""))
    if report.images_checked:
        print(f"  images: {report.images_checked - len(report.image_mismatches)}/{report.images_checked} "
              "identical to the recorded results")
    if report.render_failed:
        print(f"  renderer failed on frames {report.render_failed[:10]}")
    if report.out_dir:
        print(f"  frames: {report.out_dir}/frames/  video: {report.video}  report: {report.out_dir}/replay.json")
    return 0 if report.ok else 1


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="re-render a recorded session (PNG frames + MP4)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("capture", help="capture file written by `nrb record` / `nrb serve --record`")
    p.add_argument("--renderer", help="renderer spec (default: the recorded renderer's name)")
    p.add_argument("-o", "--renderer-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="out/replay", help="output directory (default out/replay)")
    p.add_argument("--session", type=int, help="which recorded session (default: the first)")
    p.add_argument("--hooks", help="use this hooks file instead of the recorded hooks source")
    p.add_argument("--fps", type=float, help="video frame rate (default: from the frames' dt)")
    p.add_argument("--no-video", action="store_true", help="only write PNG frames")
    p.set_defaults(func=_run)
