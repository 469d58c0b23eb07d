"""Per-session state: the handshake result, the style pipeline, the renderer instance, temporal history, stats.

``StylePipeline`` is the deterministic heart shared by the live server and ``nrb replay``: given the frames of a
session in order (their times, ``set_style`` commands and events) and the hooks that were active, it produces the
same ``StyleState`` and therefore the same style maps, bit for bit.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.doorbell import Doorbell
from bridge.hooks import HookContext, HookError, HookSet
from bridge.protocol import (
    Control,
    ErrorCode,
    Frame,
    Hello,
    ProtocolError,
    StyleCommand,
    Welcome,
    cancel_early,
)
from bridge.renderer import Renderer
from bridge.shm import ShmPoolView
from bridge.style.defined import LiveLibrary, RuntimeStyleLimit, StyleDef, runtime_def
from bridge.style.errors import StyleError
from bridge.style.grading import MASK_BUFFER
from bridge.style.library import DEFAULT_LIBRARY, StyleLibrary
from bridge.style.state import StyleState
from bridge.style.stylemap import build_style_map

log = logging.getLogger("nrb.style")


class StylePipeline:
    """Advances a session's ``StyleState`` frame by frame and builds its style maps.

    Composition order per frame (documented in ``bridge.hooks`` and docs/server.md): engine ``set_style``
    commands in order (a command with ``params`` first defines its style, docs/protocol.md 5.3), then the frame's
    ``controls`` in order (intensity, exclusions), then ``@on`` hooks per event in order, then ``@every_frame``
    hooks — all at the frame's time, which is ``(time_ns - first frame's time_ns) / 1e9`` seconds (never
    decreasing).

    Styles defined at run time go into ``library``, which the server shares between sessions (a ``LiveLibrary``):
    ``check`` defines them when it accepts the frame, so that a later frame may name them at once, and ``advance``
    defines them again at the frame's turn (a no-op when nothing changed; what makes ``nrb replay`` reproduce them).
    A plain ``StyleLibrary`` is wrapped in a ``LiveLibrary`` of its own.
    """

    def __init__(self, session: int, library: StyleLibrary = DEFAULT_LIBRARY) -> None:
        self.session = session
        if not isinstance(library, LiveLibrary):
            library = LiveLibrary(library)
        self.library: LiveLibrary = library
        self.state = StyleState(library)
        self.user_state: dict[str, Any] = {}  # ctx.state, kept across frames and hook reloads
        self.t0_ns: int | None = None
        self.frames = 0
        #: run-time styles this session defined or named: what it brings along, with their definitions, when it is
        #: moved to another worker (bridge.cluster.worker), so a later frame may still name them there
        self.runtime_styles: set[str] = set()

    def check(self, frame: Frame) -> None:
        """Reject a frame that breaks a rule of docs/protocol.md 5.3 checked against the session, before any state
        changes: a ``neural_mask`` not ``r8``; a ``set_style`` naming a style this library lacks (nor one the frame
        defines before it); a parameter set with an unknown parameter, a value out of range, a ``lut``/``base`` naming
        nothing usable, or a name that is not the game's to define (``BAD_VALUE``); more run-time styles than the
        renderer holds (``LIMIT_EXCEEDED``). When every check passes the frame's styles are defined."""
        mask = frame.buffer(MASK_BUFFER)
        if mask is not None and mask.format != "r8":
            raise ProtocolError(ErrorCode.BAD_VALUE, f"buffers: {MASK_BUFFER!r} is {mask.format}; it must be r8 "
                                                     "(0 = re-rendered, 255 = the engine's pixel)")
        defs: dict[str, StyleDef] = {}
        for i, cmd in enumerate(frame.styles):
            if cmd.params is not None:
                defs[cmd.style] = self._definition(i, cmd)
            elif cmd.style not in defs and cmd.style not in self.library:
                raise ProtocolError(ErrorCode.BAD_VALUE, f"styles[{i}].style={cmd.style!r} is not one of the "
                                                         f"renderer's styles ({', '.join(self.library.names)})")
        if defs:
            self._define(list(defs.values()), "styles")

    def _definition(self, i: int, cmd: StyleCommand) -> StyleDef:
        path = f"styles[{i}]"
        if not self.library.runtime_definable(cmd.style):
            raise ProtocolError(ErrorCode.BAD_VALUE, f"{path}.style={cmd.style!r} is one of the renderer's presets or "
                                                     "a style of its style file or hooks; a style defined at run time "
                                                     "needs a name of its own")
        try:
            return runtime_def(cmd.style, cmd.params or {}, self.library, f"session {self.session}")
        except StyleError as exc:
            param = getattr(exc, "param", None)
            raise ProtocolError(ErrorCode.BAD_VALUE,
                                f"{path}.params{'.' + param if param else ''}: {exc}") from None

    def _define(self, defs: list[StyleDef], path: str) -> None:
        known = set(self.library.runtime_names)
        try:
            changed = self.library.define_runtime(defs)
        except RuntimeStyleLimit as exc:
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"{path}: {exc}") from None
        except StyleError as exc:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"{path}: {exc}") from None
        self.runtime_styles.update(d.name for d in defs)
        new = [n for n in changed if n not in known]
        if new:  # a game may redefine a style every frame (animating its look): only new names are news
            log.info("session %d defined styles at run time: %s", self.session, ", ".join(new))
        elif changed:
            log.debug("session %d redefined styles: %s", self.session, ", ".join(changed))

    def frame_time(self, frame: Frame) -> float:
        if self.t0_ns is None:
            self.t0_ns = frame.time_ns
        return max(self.state.now, (frame.time_ns - self.t0_ns) / 1e9)

    def advance(self, frame: Frame, hooks: HookSet | None) -> tuple[float, list[HookError]]:
        """Apply ``frame``'s commands and hooks at its time; return (time, hook errors)."""
        t = self.frame_time(frame)
        self.state.advance_to(t)
        for i, cmd in enumerate(frame.styles):
            try:
                if cmd.params is not None:  # defined when checked; again here for replays (unchanged: a no-op)
                    self._define([self._definition(i, cmd)], f"styles[{i}]")
                elif cmd.style in self.library.runtime_names:
                    self.runtime_styles.add(cmd.style)
                self.state.apply(cmd)
            except (ProtocolError, StyleError, ValueError) as exc:  # only a frame that was never checked gets here
                log.warning("session %d frame %d: style command not applied: %s", self.session, frame.frame, exc)
        for i, ctl in enumerate(frame.controls):
            try:
                self.apply_control(ctl)
            except ValueError as exc:
                log.warning("session %d frame %d: controls[%d] not applied: %s", self.session, frame.frame, i, exc)
        errors: list[HookError] = []
        if hooks is not None and len(hooks):
            ctx = HookContext(t, frame.dt, frame.frame, self.session, self.user_state, list(frame.events),
                              random.Random(frame.frame))
            errors = hooks.run(self.state, frame.events, ctx)
        self.frames += 1
        return t, errors

    def apply_control(self, ctl: Control) -> None:
        """A FRAME control (docs/protocol.md 5.3): the session's intensity, or excluding / including ids."""
        if ctl.control == "intensity":
            self.state.set_intensity(ctl.value, ctl.over)
        elif ctl.value == 1.0:
            self.state.exclude(target=ctl.target)
        elif ctl.target.scope == "global":
            self.state.include()
        else:
            self.state.include(target=ctl.target)

    def style_map(self, frame: Frame, size: tuple[int, int] | None = None) -> np.ndarray:
        """The (H, W, S) style map for ``frame`` at the current state time."""
        mat, obj = frame.buffer("material_id"), frame.buffer("object_id")
        if size is None:
            ref = mat or obj or (frame.buffers[0] if frame.buffers else None)
            size = (ref.width, ref.height) if ref is not None else (1, 1)
        return build_style_map(self.state.snapshot(), size,
                               None if mat is None or mat.data is None else mat.array(),
                               None if obj is None or obj.data is None else obj.array())


@dataclass
class SessionStats:
    """Counters and recent latencies of one session (the server aggregates them for the status line)."""

    received: int = 0
    rendered: int = 0
    skipped: int = 0
    rejected: int = 0
    render_failed: int = 0
    hook_errors: int = 0
    latencies_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=512))
    superseded: int = 0  # answered "skipped" because a newer frame of the session arrived while it was queued
    predicted_late: int = 0  # answered "skipped" because it could not finish before its deadline


class WorkEstimate:
    """A session's recent processing times (dequeue to answer sent: style, render, encode), to predict whether a
    frame can still make its deadline.

    The estimate is the median of the last ``window`` times (a frame that would fit on a typical render is tried:
    the renderer would otherwise idle; one that could only fit on a lucky one is not); the session's first render
    (model warm-up) is not counted, and nothing is predicted from fewer than ``min_samples``. A prediction may only skip frames for a
    while: once ``probe_after`` seconds (at least ``probe_factor`` estimates) have passed since the session's last
    render, the next frame is rendered anyway, so that an estimate spoilt by a slow spell is refreshed. Before
    ``min_samples``, ``lowest_ms`` still says what a session can at best do: the scheduler skips a session whose
    fastest render so far was far beyond its deadline (``HOPELESS_FACTOR``) without rendering it twice more.
    """

    def __init__(self, window: int = 20, min_samples: int = 3, probe_after: float = 1.0,
                 probe_factor: float = 10.0) -> None:
        self.samples: collections.deque[float] = collections.deque(maxlen=window)
        self.min_samples = min_samples
        self.probe_after = probe_after
        self.probe_factor = probe_factor
        self.seen = 0
        self.last_render: float = time.monotonic()

    def add(self, ms: float, now: float | None = None) -> None:
        self.seen += 1
        self.last_render = time.monotonic() if now is None else now
        if self.seen > 1:
            self.samples.append(ms)

    def estimate_ms(self) -> float | None:
        if len(self.samples) < self.min_samples:
            return None
        return float(np.median(np.fromiter(self.samples, float)))

    def lowest_ms(self) -> float | None:
        """The fastest counted processing time so far (None before the first): what a session that has not yet
        rendered ``min_samples`` times can at best do."""
        return min(self.samples) if self.samples else None

    def probe_due(self, now: float | None = None) -> bool:
        est = self.estimate_ms() or self.lowest_ms() or 0.0
        now = time.monotonic() if now is None else now
        return now - self.last_render >= max(self.probe_after, self.probe_factor * est / 1e3)


@dataclass
class QueuedFrame:
    """A decoded FRAME waiting to be rendered; ``wire`` keeps the received frames alive (the buffers view them)."""

    routing_id: bytes
    frame: Frame
    wire: list[Any]
    received_ns: int
    decode_ms: float
    style_only: bool = False  # over the in-flight limit: apply its events, answer OVERLOADED, do not render
    #: Already answered ``skipped`` when it arrived or was superseded (``skip_wire`` is that answer, for the capture):
    #: only its events and style commands remain to be applied.
    answered: bool = False
    skip_wire: list[Any] | None = None
    skip_reason: str = ""
    #: Older frames of the session this one superseded (latest frame wins), oldest first: their events and style
    #: commands are applied, each at its own frame time, before this frame's.
    carried: list[QueuedFrame] = field(default_factory=list)

    @property
    def deadline_ns(self) -> int:
        """When the result stops being useful (received + deadline_ms): the scheduler's EDF key."""
        return self.received_ns + int(self.frame.deadline_ms * 1e6)

    def header_only(self) -> QueuedFrame:
        """This frame without its pixels (buffers dropped, wire reduced to the header), to be carried. What was
        decompressed ahead of it (streamed frames, protocol section 6.3.5) and has not started is cancelled."""
        cancel_early(self.frame.buffers)
        return dataclasses.replace(self, frame=dataclasses.replace(self.frame, buffers=[]), wire=self.wire[:1],
                                   carried=[])


@dataclass
class Session:
    """Everything the server keeps per engine session."""

    id: int
    routing_id: bytes
    hello: Hello
    welcome: Welcome
    renderer: Renderer
    pipeline: StylePipeline
    compression: tuple[str, ...] = ()
    pool: ShmPoolView | None = None
    doorbell: Doorbell | None = None  # FRAME headers in, answers out, bypassing ZeroMQ (protocol section 7.1)
    queue: collections.deque[QueuedFrame] = field(default_factory=collections.deque)
    history: dict[str, Any] = field(default_factory=dict)
    stats: SessionStats = field(default_factory=SessionStats)
    last_frame: int | None = None
    busy: bool = False  # a render worker is processing one of its frames
    busy_since: float = 0.0  # time.monotonic() when it started
    answered_current: bool = False  # the frame being processed has been answered (no longer in flight)
    #: When the session began waiting for a render: the arrival of its oldest frame not rendered yet, kept across
    #: frames skipped for waiting too long or superseded, cleared when one of its frames starts rendering. The
    #: scheduler orders sessions by it, so a session that lost a frame to waiting keeps its place in line.
    waiting_since_ns: int | None = None
    work: WorkEstimate = field(default_factory=WorkEstimate)
    last_seen: float = field(default_factory=time.monotonic)
    created: float = field(default_factory=time.monotonic)
    logged_failures: set[str] = field(default_factory=set)
    user_id: str | None = None  # the client's CurveZMQ public key (Z85) when the server uses CURVE
    #: memory budget (WELCOME limits): the most one FRAME may carry, and what the session counts against the total
    frame_bytes: int = 1 << 30
    reserved_bytes: int = 0

    @property
    def render_size(self) -> tuple[int, int]:
        return self.hello.render_size

    @property
    def output_size(self) -> tuple[int, int]:
        return (self.welcome.output.width, self.welcome.output.height)

    def touch(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.last_seen = clock()

    def close(self) -> None:
        for item in self.queue:  # what was decompressed ahead of its frames (protocol section 6.3.5)
            cancel_early(item.frame.buffers)
        self.queue.clear()
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.doorbell is not None:
            self.doorbell.close()
            self.doorbell = None
