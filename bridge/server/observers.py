"""Observers: what watches the frames go by without taking part in answering them.

* ``Recorder`` writes the capture file (``--record``): each session's handshake, each frame as it is applied
  (with the hooks in effect), each answer as it went out, each session's end.
* ``Metrics`` serves Prometheus on loopback (``--metrics``): its counters are read from ``ServerStats`` at scrape
  time (nothing is counted twice), its histograms observe each rendered frame.
* ``StatusLine`` redraws one terminal line (``--status``) from ``ServerStats``.

Each observer sees every frame once, through the same calls (``Observer``), after the frame processor has
encoded the answer: an answer is encoded once, and the recorder stores the bytes that were sent (with the
pixels inline when the image went back through shared memory). An observer that fails must not stop serving: the
recorder stops recording with one clear error; the others cannot fail on a frame.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from bridge.capture import CaptureWriter
from bridge.hooks import HookSet
from bridge.protocol import Timing
from bridge.session import QueuedFrame, Session

from .stats import ServerStats

log = logging.getLogger("nrb.server")


@dataclass
class FrameDone:
    """One frame's answer, as it went out: what every observer sees once per frame, when the frame is done (for a
    frame answered ``skipped`` on arrival: once its events and style commands have been applied)."""

    session: int
    frame: int
    status: str  # "ok", "skipped" or "error"
    wire: list[Any]  # RESULT or ERROR frames as sent; with the image inline when it went through shared memory
    timing: Timing
    style_digest: bytes | None = None  # of the style map the frame was rendered with (only when ``wants_detail``)
    error: str | None = None
    #: of ``timing.render_ms`` (status ``ok``), the renderer's own call; the rest is the grading and post stage
    model_ms: float | None = None
    #: of ``model_ms``, the model runtime's own time (ONNX Runtime's ``run``; ``bridge.renderer.count_inference``);
    #: None for a renderer without a model. ``timing.total_ms`` less this is the server's own work on the frame.
    inference_ms: float | None = None


class Observer:
    """Base of the observers: every call is optional (a no-op here). Calls come from the I/O thread (sessions
    opening and closing, ``tick``) and from the render workers (frames), so an observer guards its own state."""

    #: Whether this observer needs ``FrameDone.style_digest`` and the image of shared-memory answers inline in
    #: ``FrameDone.wire`` (both cost time per frame: only prepared when an observer asks).
    wants_detail = False

    def session_opened(self, sess: Session, hello: bytes, welcome: bytes) -> None:
        """``sess`` was opened by the HELLO header ``hello`` and answered with the WELCOME header ``welcome``."""

    def frame_applied(self, sess: Session, item: QueuedFrame, hooks: HookSet | None) -> None:
        """``item``'s events and style commands are about to be applied, with ``hooks`` in effect."""

    def frame_done(self, done: FrameDone) -> None:
        """A frame's answer went out (see ``FrameDone``)."""

    def session_closed(self, sess: Session, reason: str) -> None:
        """``sess`` ended (``reason``: said BYE, expired, disconnected, server stopping, ...)."""

    def tick(self, now: float) -> None:
        """Housekeeping, a few times a second on the I/O thread."""

    def close(self) -> None:
        """The server stopped: finish up (no call follows)."""


class Observers(Observer):
    """The server's observers, called in order."""

    def __init__(self, observers: list[Observer] | None = None) -> None:
        self.observers: list[Observer] = list(observers or [])

    def add(self, observer: Observer) -> None:
        self.observers.append(observer)

    @property
    def wants_detail(self) -> bool:  # type: ignore[override]
        return any(o.wants_detail for o in self.observers)

    def session_opened(self, sess: Session, hello: bytes, welcome: bytes) -> None:
        for o in self.observers:
            o.session_opened(sess, hello, welcome)

    def frame_applied(self, sess: Session, item: QueuedFrame, hooks: HookSet | None) -> None:
        for o in self.observers:
            o.frame_applied(sess, item, hooks)

    def frame_done(self, done: FrameDone) -> None:
        for o in self.observers:
            o.frame_done(done)

    def session_closed(self, sess: Session, reason: str) -> None:
        for o in self.observers:
            o.session_closed(sess, reason)

    def tick(self, now: float) -> None:
        for o in self.observers:
            o.tick(now)

    def close(self) -> None:
        for o in self.observers:
            try:
                o.close()
            except Exception:  # noqa: BLE001 - the others still close
                log.exception("closing observer %s failed", type(o).__name__)


# ------------------------------------------------------------------------------------------------------ recording
class Recorder(Observer):
    """Records every session to a capture file (``bridge.capture``), in the order things happen: handshake, hooks
    in effect, each frame as it is applied, its answer, the session's end. If writing fails (disk full, I/O error),
    recording stops with one clear error and serving goes on; the file keeps what was written and still opens."""

    def __init__(self, writer: CaptureWriter, stats: ServerStats) -> None:
        self.writer: CaptureWriter | None = writer
        self.path = writer.path
        self.stats = stats
        self._lock = threading.Lock()  # guards ``writer`` being dropped (a failed write takes it)
        self._hooks_lock = threading.Lock()  # guards the record of which hooks are in effect
        self._recorded_hooks: str | None = None

    @property
    def wants_detail(self) -> bool:  # type: ignore[override]
        return self.writer is not None

    def _call(self, method: str, *args: Any) -> None:
        writer = self.writer
        if writer is None:
            return
        try:
            getattr(writer, method)(*args)
        except Exception as exc:  # noqa: BLE001 - recording is best effort; serving is not
            self._failed(writer, exc)

    def _failed(self, writer: CaptureWriter, exc: BaseException) -> None:
        with self._lock:
            if self.writer is not writer:
                return  # another thread got there first
            self.writer = None
        self.stats.count("recording_failed")
        cause = exc.__cause__ or exc
        log.error("recording to %s STOPPED: %s. Serving continues without recording; the capture file keeps every "
                  "frame written before the failure and still opens (nrb inspect / nrb replay).", writer.path, cause)
        try:
            writer.close()
        except Exception as close_exc:  # noqa: BLE001 - the index cannot be written either: readers scan instead
            log.debug("closing the failed capture file: %s", close_exc)

    def session_opened(self, sess: Session, hello: bytes, welcome: bytes) -> None:
        self._call("session_start", sess.id, hello, welcome, sess.renderer.label)

    def frame_applied(self, sess: Session, item: QueuedFrame, hooks: HookSet | None) -> None:
        if self.writer is None:
            return
        if hooks is not None:
            with self._hooks_lock:  # workers share the record of which hooks are in effect
                if hooks.version != self._recorded_hooks:
                    self._call("hooks", hooks.path, hooks.source, hooks.version)
                    self._recorded_hooks = hooks.version
        frame = item.frame
        if any(b.shm is not None or b.streamed for b in frame.buffers) or frame.result_slot is not None:
            from bridge.protocol import encode  # the capture stores shared-memory and streamed buffers inline

            inline = [dataclasses.replace(b, shm=None, compression=None, streamed=False, chunks=None,
                                          chunk_bytes=None, filter=None, data=bytes(b.data or b""))
                      for b in frame.buffers]
            wire: list[Any] = encode(dataclasses.replace(frame, buffers=inline, result_slot=None))
        else:
            wire = [f.buffer if hasattr(f, "buffer") else f for f in item.wire]
        self._call("frame", sess.id, frame.frame, wire, time.time_ns(), item.style_only or item.answered)

    def frame_done(self, done: FrameDone) -> None:
        if self.writer is not None:
            self._call("result", done.session, done.frame, done.status, [bytes(w) for w in done.wire],
                       done.style_digest, dataclasses.asdict(done.timing), done.error)

    def session_closed(self, sess: Session, reason: str) -> None:
        self._call("session_end", sess.id, reason)

    def close(self) -> None:
        with self._lock:
            writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as exc:  # noqa: BLE001
                log.error("finishing the capture file %s failed: %s (it still opens: readers rebuild the index "
                          "by scanning)", writer.path, exc)


# -------------------------------------------------------------------------------------------------------- metrics
def read_metrics(url: str, timeout: float = 10.0) -> dict[str, float]:
    """Every sample a metrics endpoint (``nrb serve --metrics``, :class:`Metrics`) serves now, by its name with its
    labels (``nrb_frame_latency_seconds_sum``, ``nrb_errors_total{code="NO_SESSION"}``); ``OSError`` when it does
    not answer. What the demo and ``nrb bench serve`` read around their timed loops."""
    import urllib.request

    text = urllib.request.urlopen(url, timeout=timeout).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class Metrics(Observer):
    """Prometheus metrics in a registry of their own (several servers can live in one test process), served on
    127.0.0.1. Counters and gauges are read at scrape time: counters from ``ServerStats``, the sessions and the
    queued frames from ``gauges()``; the latency histograms observe each frame answered ``ok``."""

    def __init__(self, stats: ServerStats, gauges: Callable[[], tuple[int, int]]) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.registry = CollectorRegistry()
        buckets = (0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
        self.latency = Histogram("nrb_frame_latency_seconds", "Received to RESULT sent", buckets=buckets,
                                 registry=self.registry)
        self.render = Histogram("nrb_render_seconds", "Renderer time per frame", buckets=buckets,
                                registry=self.registry)
        self.model = Histogram("nrb_model_seconds", "Of the renderer time, the renderer's own call (the rest: "
                               "grading, intensity and masks)", buckets=buckets, registry=self.registry)
        self.inference = Histogram("nrb_inference_seconds", "Of the renderer's own call, the model runtime's run "
                                   "(received to RESULT sent less this: the server's own work on the frame)",
                                   buckets=buckets, registry=self.registry)
        self.registry.register(_StatsCollector(stats, gauges))
        self._http: Any = None

    def serve(self, port: int) -> int:
        from prometheus_client import start_http_server

        self._http, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return int(self._http.server_port)

    def frame_done(self, done: FrameDone) -> None:
        if done.status == "ok":
            self.render.observe(done.timing.render_ms / 1e3)
            if done.model_ms is not None:
                self.model.observe(done.model_ms / 1e3)
            if done.inference_ms is not None:
                self.inference.observe(done.inference_ms / 1e3)
            self.latency.observe(done.timing.total_ms / 1e3)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _StatsCollector:
    """A Prometheus collector whose values are ``ServerStats``'s counters as they are at scrape time."""

    def __init__(self, stats: ServerStats, gauges: Callable[[], tuple[int, int]]) -> None:
        self.stats = stats
        self.gauges = gauges

    def describe(self) -> list[Any]:
        return []  # values come at scrape time; nothing to register by name in advance

    def collect(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self.stats.lock:
            counts = dict(self.stats.counts)
            hook_errors = self.stats.hook_log.total
        sessions, queued = self.gauges()
        errors = CounterMetricFamily("nrb_errors", "ERROR replies sent", labels=["code"])
        for key, n in sorted(counts.items()):
            if key.startswith("error_"):
                errors.add_metric([key[6:]], n)
        return [
            GaugeMetricFamily("nrb_sessions", "Open engine sessions", value=sessions),
            GaugeMetricFamily("nrb_queued_frames", "Frames waiting to be rendered", value=queued),
            CounterMetricFamily("nrb_frames_received", "FRAME messages accepted into a queue",
                                value=counts.get("received", 0)),
            CounterMetricFamily("nrb_frames_rendered", "Frames answered with an ok RESULT",
                                value=counts.get("rendered", 0)),
            CounterMetricFamily("nrb_frames_skipped", "Frames answered skipped (superseded, or past their "
                                "deadline on arrival or when dequeued)", value=counts.get("skipped", 0)),
            errors,
            CounterMetricFamily("nrb_hook_errors", "Exceptions raised by style hooks", value=hook_errors),
            CounterMetricFamily("nrb_undeliverable", "Answers that could not be delivered (peer gone, or not "
                                "reading at all)", value=counts.get("undeliverable", 0)),
        ]


# ---------------------------------------------------------------------------------------------------- status line
class StatusLine(Observer):
    """The live status line on a terminal (``--status``): redrawn every ``interval`` seconds from the stats."""

    def __init__(self, line: Callable[[float], str], out: TextIO, interval: float) -> None:
        self.line = line
        self.out = out
        self.interval = interval
        self._last = 0.0

    def install(self) -> None:
        """Erase the line before any log record is written to the same stream (it is redrawn next tick)."""
        for handler in logging.getLogger().handlers:
            if getattr(handler, "stream", None) is self.out:
                handler.addFilter(_ClearStatusLine(self.out))

    def tick(self, now: float) -> None:
        if now - self._last >= self.interval:
            self._last = now
            self.out.write("\r" + self.line(now) + "   ")
            self.out.flush()

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()


class _ClearStatusLine(logging.Filter):
    """Erase the live status line before a log record is written to the same terminal (it is redrawn next tick)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def filter(self, record: logging.LogRecord) -> bool:
        self.stream.write("\r\x1b[2K")
        return True
