"""``Server``: the render server assembled from its parts, and its lifecycle (bind, start/stop, serve_forever).

The parts (``bridge.server`` docstring has the frame's path): ``IOLoop`` (this thread: sockets, sessions,
back-pressure), ``Admission`` (what opens a session, what a frame must satisfy), ``Scheduler`` (queues, latest
frame wins, earliest deadline first), ``FrameProcessor`` (run by the render workers), ``Outbox`` (answers from
any thread), ``ServerStats`` (the counters) and the ``Observers`` (recording, metrics, status line).
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import zmq

from bridge.capture import CaptureWriter
from bridge.hooks import HookErrorLog, HooksFile
from bridge.renderer import Renderer, renderer_factory
from bridge.session import Session
from bridge.style.defined import StyleSource

from .admission import Admission
from .config import ServerConfig, name_os_thread
from .io_loop import IOLoop
from .observers import Metrics, Observer, Observers, Recorder, StatusLine
from .outbox import Outbox
from .processor import FrameProcessor
from .scheduler import Scheduler
from .stats import ServerStats


class Server:
    """An NRB/1 render server (docs/server.md "Processing model").

    In-process: ``start()`` / ``stop()`` (or ``with Server(...) as server``), used by tests and tools; as a
    process: ``serve_forever()``, used by ``nrb serve``. ``factory``: any zero-argument callable returning a
    ``Renderer``, instead of ``config.renderer``. Keyword ``overrides`` replace ``config`` fields.
    """

    #: The capture is written by a background thread (a slow disk does not stall the render workers); a cluster
    #: worker, which may be killed at any moment, writes it as it goes.
    record_in_background = True

    def __init__(self, config: ServerConfig | None = None, *,
                 factory: Callable[[], Renderer] | None = None,
                 context: zmq.Context[Any] | None = None, **overrides: Any) -> None:
        self.config = cfg = dataclasses.replace(config or ServerConfig(), **overrides)
        self.max_message_bytes = cfg.check()  # ValueError, SecurityError
        self.factory = factory or renderer_factory(cfg.renderer, **cfg.renderer_options)
        probe = self.factory()  # fail at startup, not at the first HELLO
        self.renderer_label = probe.label
        self.library = probe.library
        self.hooks = HooksFile(cfg.hooks) if cfg.hooks else None
        self.styles = StyleSource(probe.library, cfg.styles, self.hooks)  # presets + the game's defined styles
        self.stats = ServerStats()
        self.scheduler = Scheduler(cfg)
        self.observers = Observers()
        self._ctx = context or zmq.Context.instance()
        self.outbox = Outbox(self._ctx, self.stats)
        self.processor = FrameProcessor(cfg, self.scheduler, self.stats, self.outbox, self.observers, self.styles,
                                        self.hooks)
        self.admission = Admission(cfg, self.scheduler, self.factory, self.renderer_label, self.styles,
                                   lambda: self.io.endpoint)
        self.io = IOLoop(cfg, self._ctx, max_message_bytes=self.max_message_bytes, scheduler=self.scheduler,
                         stats=self.stats, outbox=self.outbox, observers=self.observers, admission=self.admission,
                         skip=self.processor.answer_skipped, chunk_pool=self.processor.chunk_pool)
        self.endpoint: str | None = None
        self.metrics_port: int | None = None
        self._status_out: TextIO = sys.stderr
        self._stop = threading.Event()
        self._reload_keys = threading.Event()  # SIGHUP: re-read the CurveZMQ allow-list
        self._thread: threading.Thread | None = None
        self._bound: list[Observer] = []  # the observers ``bind`` made (capture, metrics, status line)

    # ------------------------------------------------------------------------------- what callers read
    @property
    def sessions(self) -> dict[int, Session]:
        """Open sessions by id (read under ``scheduler.cond`` from another thread)."""
        return self.scheduler.sessions

    @property
    def hook_log(self) -> HookErrorLog:
        return self.stats.hook_log

    @property
    def workers(self) -> int:
        return self.scheduler.workers

    @property
    def worker_threads(self) -> int:
        return self.scheduler.worker_threads

    def frame_threads(self, busy: int) -> int:
        """A frame's renderer thread budget while ``busy`` workers render (``Scheduler.frame_threads``)."""
        return self.scheduler.frame_threads(busy)

    def add_observer(self, observer: Observer) -> None:
        """Have ``observer`` see every session and frame from now on (before ``start()``)."""
        self.observers.add(observer)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Server statistics: sessions, fps in/out (last 2 s), latency percentiles, drops, errors, counters."""
        return self.stats.snapshot(len(self.sessions), now)

    def status_line(self, now: float | None = None) -> str:
        """One line for the terminal: sessions, fps in/out, p50/p99 latency, drops."""
        s = self.snapshot(now)
        return (f"nrb {self.renderer_label} | sessions {s['sessions']} | in {s['fps_in']:5.1f} fps | "
                f"out {s['fps_out']:5.1f} fps | p50 {s['p50_ms']:6.1f} ms | p99 {s['p99_ms']:6.1f} ms | "
                f"drops {s['drops']} | hook errors {s['hook_errors']}")

    # ---------------------------------------------------------------------------------------------- lifecycle
    def bind(self) -> str:
        """Create and bind the ROUTER socket, open the capture file and the metrics endpoint; return the
        endpoint."""
        if self.io.sock is not None:
            assert self.endpoint is not None
            return self.endpoint
        cfg = self.config
        for gone in self._bound:  # a server started again after stop(): fresh capture file and endpoints
            self.observers.observers.remove(gone)
        self._bound = []
        endpoint = self.io.bind()
        recorder: Recorder | None = None
        metrics: Metrics | None = None
        try:
            if cfg.record:
                recorder = Recorder(CaptureWriter(cfg.record, background=self.record_in_background), self.stats)
            if cfg.metrics_port is not None:
                metrics = Metrics(self.stats, self._gauges)
                self.metrics_port = metrics.serve(cfg.metrics_port)
        except BaseException:
            self.io.unbind()
            if recorder is not None:
                recorder.close()
            raise
        status: StatusLine | None = None
        if cfg.status:
            status = StatusLine(self.status_line, self._status_out, cfg.status_interval)
            status.install()
        self._bound = [o for o in (recorder, metrics, status) if o is not None]
        for observer in self._bound:
            self.observers.add(observer)
        self.endpoint = endpoint
        return endpoint

    def _gauges(self) -> tuple[int, int]:
        """(open sessions, queued frames), for the metrics endpoint."""
        return len(self.sessions), self.scheduler.queued()

    def start(self) -> Server:
        """Bind, then serve on a background thread (in-process use)."""
        self.bind()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nrb-server", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: say BYE to every session, close the socket, finish the capture file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve on this thread until SIGINT/SIGTERM (process use)."""
        self.bind()
        if threading.current_thread() is threading.main_thread():
            def on_signal(signum: int, frame: Any) -> None:
                if self._stop.is_set():  # second Ctrl-C: stop waiting for a slow render
                    raise KeyboardInterrupt
                self._stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, on_signal)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, lambda signum, frame: self.reload_keys())
        self._run()

    def reload_keys(self) -> None:
        """Re-read the CurveZMQ allow-list (``--allow-dir``) on the I/O thread's next turn (``nrb serve``: SIGHUP).

        A key no longer listed gets nothing from then on, established connections included: its messages are
        ignored and its sessions closed."""
        self._reload_keys.set()

    def _run(self) -> None:
        """The I/O loop (this thread) plus the render workers it starts; returns after ``stop()``."""
        name_os_thread("nrb-io")
        self.io.open_results()
        workers = [threading.Thread(target=self.processor.run_worker, args=(i, self._stop), name=f"nrb-render-{i}",
                                    daemon=True) for i in range(self.scheduler.workers)]
        for w in workers:
            w.start()
        try:
            self.io.run(self._stop, self._reload_keys)
        finally:
            self._stop.set()
            self.scheduler.wake_all()
            for w in workers:
                w.join()
            self.processor.close()
            self.io.drain_results()
            self.io.shutdown()
            self.observers.close()
