"""The render server: a ZeroMQ ROUTER that turns engine FRAMEs into RESULTs (``nrb serve``).

One thread owns the socket and runs a simple loop: drain every message that has arrived (answering HELLO, PING
and BYE at once, decoding and validating FRAMEs into their session's queue, where the newest frame supersedes a
waiting one: latest frame wins), then housekeeping (expiry, status line). A pool of render workers takes queued
frames earliest deadline first across sessions, one frame per session at a time; a frame that cannot make its
deadline (judged from the session's recent render times) is answered ``skipped`` instead of being rendered late.

Per frame, in order: the session's style pipeline advances (engine ``set_style`` commands, then event hooks, then
every-frame hooks — also for frames that end up skipped or refused for overload, so no event is ever lost), the
style map is built from the ``material_id`` / ``object_id`` buffers, the session's renderer renders, the image is
encoded and sent with a timing breakdown (queue, decode, style, render, encode, total).

Robustness: every message is handled inside a guard — a malformed or hostile message gets an ERROR reply (when it
can be routed) and the loop goes on; a renderer exception or bad output becomes ERROR ``RENDER_FAILED`` for that
frame, logged once per distinct failure with context; a buggy hook is logged and skipped.

``Server`` works in-process (``start()`` / ``stop()``, used by tests and tools) and as a process
(``serve_forever()``, used by ``nrb serve``).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import ipaddress
import logging
import os
import random
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import zmq

from bridge.capture import CaptureWriter
from bridge.doorbell import Doorbell, DoorbellCorrupt, DoorbellUnavailable
from bridge.hooks import HookErrorLog, HookSet, HooksFile
from bridge.protocol import (
    COMPRESSIONS,
    FORMATS,
    LIGHTING_CONSTANTS,
    MAX_DIMENSION,
    MAX_IN_FLIGHT,
    Buffer,
    Bye,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Limits,
    OutputSpec,
    Ping,
    Pong,
    ProtocolError,
    Result,
    Timing,
    Welcome,
    encode,
    encode_header,
    error_message,
    inflate,
    message_from_header,
    parse_header,
)
from bridge.renderer import (
    BadOutput,
    Renderer,
    RenderInputs,
    available,
    image_to_output,
    renderer_factory,
    set_worker_threads,
    worker_context,
)
from bridge.security import ServerCurve, check_bind_policy
from bridge.session import QueuedFrame, Session, StylePipeline
from bridge.shm import SHM_NAME_PREFIX, ShmPoolView, ShmShrunk, ShmUnavailable
from bridge.style.defined import StyleSource
from bridge.style.grading import grade, post_process
from bridge.style.stylemap import style_map_digest

log = logging.getLogger("nrb.server")

#: Buffers of exactly 1x1, exempt from the "same size as render_size" check (as are 1x1 vendor buffers: per-frame
#: constants).
_ONE_BY_ONE = {"exposure"}
#: Frames beyond ``max_in_flight`` are still queued (header only) so their events apply; while a session has this
#: many more queued, its peer's input is held (back-pressure, docs/protocol.md section 5.9).
_STYLE_ONLY_SLACK = 256
#: While a peer has answers it cannot take yet, the I/O loop retries them this often (milliseconds).
_RETRY_MS = 2
#: Answers waiting for one peer (safety net: its input is held while any wait, so they stay far fewer).
_MAX_WAITING_ANSWERS = 1 << 16
#: Input held for one peer while it is not reading its answers: messages, and bytes (at least one message).
_MAX_HELD_BYTES = 128 << 20


def router_hwm(max_in_flight: int) -> int:
    """The ROUTER's send and receive high-water marks: room for every frame a session may have outstanding
    (``max_in_flight`` plus the header-only overrun allowance) plus control traffic, so that a well-behaved engine
    never meets them. Beyond them nothing is dropped: the server queues answers per peer and holds that peer's input
    (``Server._forward``)."""
    return 4 * (max_in_flight + _STYLE_ONLY_SLACK)

# Memory budgets (docs/security.md "Memory budgets", docs/protocol.md section 11.1): what a session's frames may
# weigh, what the server holds per session and in all. Sized so that a 4K UHD session of 32 bytes per pixel fits.
#: ``--max-pixels`` default: 4K UHD, the largest render or output size a session may ask for.
DEFAULT_MAX_PIXELS = 3840 * 2160
#: ``--max-frame-bytes``: one FRAME, all its buffers together (stride × height summed), inline or shared memory.
DEFAULT_MAX_FRAME_BYTES = 256 << 20
#: ``--max-session-bytes``: what one session may make the server hold (two frames and its image, see
#: ``session_bytes``).
DEFAULT_MAX_SESSION_BYTES = 768 << 20
#: ``--max-total-bytes``: the sum of every open session's ``session_bytes``.
DEFAULT_MAX_TOTAL_BYTES = 4 << 30
#: ``--max-sessions-per-peer``: sessions one engine connection (and one CurveZMQ key) may hold.
DEFAULT_MAX_SESSIONS_PER_PEER = 4
#: Rows of a frame's budget are counted padded to this many bytes (D3D12's readback row pitch alignment), so an
#: engine that sends GPU read-back rows as they come stays inside the budget its HELLO got.
_ROW_ALIGN = 256
#: Room in each frame's budget for 1x1 per-frame constants (``exposure``, the lighting constants) sent or not.
_CONSTANTS_ROOM = 64 << 10


def frame_budget(hello: Hello) -> int:
    """Bytes one FRAME of a session opened by ``hello`` may carry (WELCOME ``limits.frame_bytes``): every offered
    buffer at ``render_size``, rows padded to 256 bytes, plus 64 KiB for 1x1 constants (``exposure`` and the
    lighting constants count only there)."""
    w, h = hello.render_size
    total = _CONSTANTS_ROOM
    for spec in hello.buffers:
        if spec.name == "exposure" or spec.name in LIGHTING_CONSTANTS:
            continue
        row = w * FORMATS[spec.format].bytes_per_pixel
        total += h * (-(-row // _ROW_ALIGN) * _ROW_ALIGN)
    return total


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the OS (Linux: prctl PR_SET_NAME, 15 bytes): ``top -H`` and the CPU
    profile of ``nrb bench remote`` then tell the I/O thread from the render workers. Elsewhere a no-op."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME
    except (OSError, AttributeError):
        pass


def session_bytes(frame_bytes: int, output_size: tuple[int, int]) -> int:
    """What the server holds for a session at most: the frame being rendered and one waiting (latest frame wins:
    older ones are answered at once and keep only their headers), plus its image as float32 RGBA."""
    return 2 * frame_bytes + 16 * output_size[0] * output_size[1]


@dataclass
class ServerConfig:
    """``nrb serve`` options. ``port=0`` picks a free port (read ``Server.endpoint``).

    Listening beyond loopback needs CurveZMQ (``curve_secret`` + ``allow_dir``) or ``insecure=True`` (see
    ``bridge.security`` and docs/security.md). ``endpoint`` (``tcp://``, ``ipc://``, ``inproc://``) overrides
    host/port. ``max_pixels`` bounds render and output sizes (LIMIT_EXCEEDED at HELLO); ``max_frame_bytes``,
    ``max_session_bytes`` and ``max_total_bytes`` are the memory budgets (a HELLO beyond them is refused before
    anything is allocated, a FRAME beyond its session's ``frame_budget`` is LIMIT_EXCEEDED before its payloads are
    decompressed); ``max_sessions_per_peer`` caps the sessions of one connection and of one CurveZMQ key. A peer
    whose last
    ``max_rejects`` messages were all rejected loses its sessions. ``max_message_bytes`` is the socket's
    ``ZMQ_MAXMSGSIZE``: libzmq drops the connection of a peer that sends a larger message part, before allocating
    it (default: the largest buffer a frame may carry, 1 GiB or 16 bytes per ``max_pixels``, plus the 64 KiB
    header limit).
    """

    renderer: str = "deferred"
    renderer_options: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 5555
    endpoint: str | None = None
    insecure: bool = False
    curve_secret: str | None = None
    allow_dir: str | None = None
    hooks: str | None = None
    styles: str | None = None  # style file (TOML) of defined styles, hot-reloaded (bridge.style.defined)
    max_sessions: int = 16
    max_in_flight: int = 4
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # None: only the protocol's 16384 x 16384
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    max_sessions_per_peer: int = DEFAULT_MAX_SESSIONS_PER_PEER
    max_rejects: int = 64
    max_message_bytes: int | None = None
    idle_timeout: float = 30.0
    record: str | None = None
    metrics_port: int | None = None
    status: bool = False
    status_interval: float = 1.0
    doorbell: bool = True
    workers: int = 0  # render workers; 0: one per core (os.cpu_count()), at most max_sessions
    # renderer threads per frame; 0: adaptive, the cores shared by the workers busy when the frame starts (a lone
    # busy session gets them all; see Server.frame_threads)
    worker_threads: int = 0


class _ClearStatusLine(logging.Filter):
    """Erase the live status line before a log record is written to the same terminal (it is redrawn next tick)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def filter(self, record: logging.LogRecord) -> bool:
        self.stream.write("\r\x1b[2K")
        return True


def _endpoint_host(endpoint: str) -> str | None:
    """The host part of a ``tcp://host:port`` endpoint (None for ipc/inproc, which never leave the machine)."""
    if not endpoint.startswith("tcp://"):
        return None
    return endpoint[6:].rsplit(":", 1)[0]


class _Metrics:
    """Prometheus metrics in a registry of their own (several servers can live in one test process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("nrb_sessions", "Open engine sessions", registry=r)
        self.frames_in = Counter("nrb_frames_received_total", "FRAME messages accepted into a queue", registry=r)
        self.frames_out = Counter("nrb_frames_rendered_total", "Frames answered with an ok RESULT", registry=r)
        self.skipped = Counter("nrb_frames_skipped_total", "Frames past their deadline when dequeued", registry=r)
        self.errors = Counter("nrb_errors_total", "ERROR replies sent", ["code"], registry=r)
        self.hook_errors = Counter("nrb_hook_errors_total", "Exceptions raised by style hooks", registry=r)
        buckets = (0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
        self.latency = Histogram("nrb_frame_latency_seconds", "Received to RESULT sent", buckets=buckets, registry=r)
        self.render = Histogram("nrb_render_seconds", "Renderer time per frame", buckets=buckets, registry=r)
        self.queue_len = Gauge("nrb_queued_frames", "Frames waiting to be rendered", registry=r)
        self.undeliverable = Counter("nrb_undeliverable_total", "Answers that could not be delivered (peer gone, "
                                     "or not reading at all)", registry=r)
        self._http: Any = None

    def serve(self, port: int) -> int:
        from prometheus_client import start_http_server

        self._http, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return int(self._http.server_port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class Server:
    """An NRB/1 render server. See the module docstring for the processing model."""

    def __init__(self, config: ServerConfig | None = None, *,
                 factory: Callable[[], Renderer] | None = None,
                 context: zmq.Context[Any] | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or ServerConfig(), **overrides)
        cfg = self.config
        host = cfg.host if cfg.endpoint is None else _endpoint_host(cfg.endpoint)
        if (cfg.curve_secret is None) != (cfg.allow_dir is None):
            raise ValueError("CurveZMQ needs both curve_secret (--curve-secret) and allow_dir (--allow-dir)")
        if host is not None:
            check_bind_policy(host, curve=cfg.curve_secret is not None, insecure=cfg.insecure)  # SecurityError
        if not 1 <= cfg.max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight must be 1..{MAX_IN_FLIGHT}")
        if cfg.max_message_bytes is not None and cfg.max_message_bytes < (1 << 16):
            raise ValueError("max_message_bytes must be at least 65536 (the header limit)")
        if min(cfg.max_frame_bytes, cfg.max_session_bytes, cfg.max_total_bytes, cfg.max_sessions_per_peer) < 1:
            raise ValueError("memory budgets and max_sessions_per_peer must be at least 1")
        largest = min(1 << 30, cfg.max_frame_bytes)
        if cfg.max_pixels is not None:
            largest = min(largest, cfg.max_pixels * 16)
        self.max_message_bytes: int = cfg.max_message_bytes or largest + (1 << 16)
        self.factory = factory or renderer_factory(cfg.renderer, **cfg.renderer_options)
        probe = self.factory()  # fail at startup, not at the first HELLO
        self.renderer_label = probe.label
        self.library = probe.library
        self.hooks = HooksFile(cfg.hooks) if cfg.hooks else None
        self.styles = StyleSource(probe.library, cfg.styles, self.hooks)  # presets + the game's defined styles
        self.hook_log = HookErrorLog()
        self.sessions: dict[int, Session] = {}
        self._next_id = random.randrange(1, 1 << 31)
        self._ctx = context or zmq.Context.instance()
        self.sock: zmq.Socket[Any] | None = None
        self.endpoint: str | None = None
        self.metrics_port: int | None = None
        self._metrics = _Metrics()
        self._recorder: CaptureWriter | None = None
        self._recorded_hooks: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status_out: TextIO = sys.stderr
        self._curve: ServerCurve | None = None
        self._reload_keys = threading.Event()  # SIGHUP: re-read the CurveZMQ allow-list
        self._recorder_lock = threading.Lock()
        self._rejects: dict[bytes, int] = {}
        # threads: the I/O loop owns ``sock``; each render worker sends through its own PUSH socket to the I/O
        # loop's PULL (or straight through a session's doorbell).
        self._work = threading.Condition()  # guards sessions and their queues; signals queued work
        self._out_endpoint = f"inproc://nrb-results-{id(self):x}-{random.randrange(1 << 30):x}"
        self._worker_local = threading.local()  # .push: the calling worker's PUSH socket
        self._worker_tids: set[int] = set()
        self._hooks_lock = threading.Lock()
        self.cores = os.cpu_count() or 1
        self.workers = cfg.workers or max(1, min(self.cores, cfg.max_sessions))
        #: each worker's fair share of the cores (the budget of a frame when every worker is busy)
        self.worker_threads = cfg.worker_threads or max(1, self.cores // self.workers)
        self._poller: zmq.Poller | None = None  # the I/O loop's; doorbell descriptors join and leave it
        self._bells: dict[int, Session] = {}  # doorbell descriptor -> its session (I/O thread only)
        # peer disconnects (I/O thread only): libzmq's socket monitor names the descriptor of a closed connection,
        # each message names the descriptor it came in on (ZMQ_SRCFD): see ``_note_peer``
        self._monitor: zmq.Socket[Any] | None = None
        self._fd_owner: dict[int, bytes] = {}  # connection descriptor -> routing id of the peer last seen on it
        #: peers whose input is held because one of their sessions (the id) has ``max_in_flight`` + 256 frames queued
        self._backlogged: dict[bytes, int] = {}
        #: sessions a render worker wants closed, with the reason (closed, with a BYE, by the I/O thread)
        self._close_requests: collections.deque[tuple[int, str]] = collections.deque()
        # back-pressure (I/O thread only): answers a peer cannot take yet, in order, and the input it sent meanwhile,
        # held (with its size in bytes) until those answers are out, so that it cannot make us answer faster than it
        # reads
        self._waiting: dict[bytes, collections.deque[list[Any]]] = {}
        self._held: dict[bytes, collections.deque[Callable[[], None]]] = {}
        self._held_bytes: dict[bytes, int] = {}
        self._max_held = router_hwm(self.config.max_in_flight)
        self._undeliverable_log = (0.0, 0)  # (when last logged, count since)
        # server-wide statistics (status line), and the sessions' ``stats``: updated by the I/O thread and every
        # render worker, so only under ``_stats_lock`` (``snapshot()`` reads them under it too)
        self._stats_lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self._events_in: collections.deque[float] = collections.deque(maxlen=4096)
        self._events_out: collections.deque[float] = collections.deque(maxlen=4096)
        self._latencies: collections.deque[float] = collections.deque(maxlen=2048)

    # ---------------------------------------------------------------------------------------------- lifecycle
    def bind(self) -> str:
        """Create and bind the ROUTER socket (and the recorder and metrics endpoint); return the endpoint."""
        if self.sock is not None:
            assert self.endpoint is not None
            return self.endpoint
        cfg = self.config
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        hwm = router_hwm(cfg.max_in_flight)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        # a full pipe to one peer raises EAGAIN instead of silently dropping the message (an unknown peer:
        # EHOSTUNREACH); ``_forward`` then keeps the answer for that peer (docs/protocol.md section 5.9 rule 1)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        try:
            if cfg.curve_secret is not None and cfg.allow_dir is not None:
                self._curve = ServerCurve(self._ctx, Path(cfg.curve_secret), Path(cfg.allow_dir))
                self._curve.apply(sock)
            if cfg.endpoint is not None:
                sock.bind(cfg.endpoint)
                self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            elif cfg.port == 0:
                port = sock.bind_to_random_port(f"tcp://{cfg.host}")
                self.endpoint = f"tcp://{cfg.host}:{port}"
            else:
                self.endpoint = f"tcp://{cfg.host}:{cfg.port}"
                sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            self._close_curve()
            raise OSError(f"cannot bind {cfg.endpoint or f'tcp://{cfg.host}:{cfg.port}'}: {exc}") from exc
        except BaseException:
            sock.close(0)
            self._close_curve()
            raise
        try:
            if cfg.record:
                self._recorder = CaptureWriter(cfg.record, background=True)
            if cfg.metrics_port is not None:
                self.metrics_port = self._metrics.serve(cfg.metrics_port)
        except BaseException:
            sock.close(0)
            self._close_curve()
            if self._recorder is not None:
                self._recorder.close()
                self._recorder = None
            raise
        self.sock = sock
        # Disconnects free a peer's sessions at once instead of after --idle-timeout (tcp:// and ipc://; inproc://
        # has no connections to watch). ZMQ_ROUTER_NOTIFY would name the peer, but it is a draft API that libzmq
        # builds do not ship; the monitor names the descriptor instead.
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        if cfg.status:
            for handler in logging.getLogger().handlers:
                if getattr(handler, "stream", None) is self._status_out:
                    handler.addFilter(_ClearStatusLine(self._status_out))
        return self.endpoint

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
        """The I/O loop (this thread) plus the render thread it starts; returns after ``stop()``."""
        name_os_thread("nrb-io")
        assert self.sock is not None
        sock = self.sock
        pull = self._ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.bind(self._out_endpoint)
        workers = [threading.Thread(target=self._render_loop, args=(i,), name=f"nrb-render-{i}", daemon=True)
                   for i in range(self.workers)]
        for w in workers:
            w.start()
        poller = self._poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        next_house = time.monotonic()
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(_RETRY_MS if self._waiting or self._held else 50))
                if self._waiting or self._held:
                    self._flush_waiting()
                for fd in [fd for fd in self._bells if fd in ready]:
                    bell_sess = self._bells.get(fd)  # handling one may have closed another
                    if bell_sess is not None:
                        self._on_doorbell(bell_sess)
                if pull in ready:  # results from the render thread
                    for _ in range(256):
                        try:
                            out = pull.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._forward(out)
                if self._monitor is not None and self._monitor in ready:
                    self._drain_monitor()
                if sock in ready:
                    for _ in range(256):
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        rid = parts[0].bytes
                        if self._holding(rid):  # not reading its answers, or far ahead: hold its input
                            self._hold(rid, functools.partial(self._on_message, parts),
                                       sum(len(p) for p in parts))
                        else:
                            self._on_message(parts)
                if self._close_requests:
                    self._close_requested(pull)
                now = time.monotonic()
                if self._reload_keys.is_set():
                    self._reload_keys.clear()
                    self._reload_allow_list()
                if now >= next_house:
                    next_house = now + min(0.25, self.config.status_interval)
                    self._housekeeping(now)
        finally:
            self._stop.set()
            with self._work:
                self._work.notify_all()
            for w in workers:
                w.join()
            while True:  # results the render thread finished while we were stopping
                try:
                    self._forward(pull.recv_multipart(zmq.NOBLOCK, copy=False))
                except zmq.Again:
                    break
            pull.close(0)
            self._shutdown()

    def _close_requested(self, pull: zmq.Socket[Any]) -> None:
        """Close the sessions render workers asked to close, each with a BYE after the answers they sent first."""
        while True:  # a worker sends its answer before asking: forward it before the BYE
            try:
                self._forward(pull.recv_multipart(zmq.NOBLOCK, copy=False))
            except zmq.Again:
                break
        while self._close_requests:
            sid, reason = self._close_requests.popleft()
            sess = self.sessions.get(sid)
            if sess is not None:
                self._send(sess.routing_id, Bye(sid, reason))
                self._close_session(sess, reason)

    def _forward(self, parts: list[Any]) -> None:
        """Send ``[routing id, *message]`` to its peer (I/O thread). Nothing is dropped at the high-water mark: a
        peer whose pipe is full gets the message queued behind its other waiting answers (and its input is held
        until they are out: ``_hold``); only a peer that is gone loses it, counted and logged (``_undeliverable``)."""
        rid = parts[0] if isinstance(parts[0], bytes) else parts[0].bytes
        waiting = self._waiting.get(rid)
        if waiting is None:
            sent = self._try_send(parts)
            if sent is not False:
                if sent is None:
                    self._undeliverable(rid, 1, "the peer is gone")
                return
            waiting = self._waiting[rid] = collections.deque()
        if len(waiting) >= _MAX_WAITING_ANSWERS:
            self._undeliverable(rid, 1, f"{len(waiting)} answers already wait for it")
            return
        waiting.append(parts)

    def _try_send(self, parts: list[Any]) -> bool | None:
        """True: sent; False: the peer's pipe is full (try again later); None: no such peer (any more)."""
        if self.sock is None:
            return None
        try:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:  # EHOSTUNREACH (ROUTER_MANDATORY): the peer disconnected
            log.debug("send failed: %s", exc)
            return None
        return True

    def _flush_waiting(self, resume: bool = True) -> None:
        """Send what waits for each peer, in order, as far as its pipe takes it; then, unless stopping, handle the
        input held for peers that have taken all their answers."""
        for rid in list(self._waiting):
            waiting = self._waiting[rid]
            while waiting:
                sent = self._try_send(waiting[0])
                if sent is False:
                    break
                waiting.popleft()
                if sent is None:
                    self._undeliverable(rid, 1 + len(waiting), "the peer is gone")
                    waiting.clear()
            if not waiting:
                del self._waiting[rid]
        if resume:
            for rid in [r for r in self._held if r not in self._waiting]:
                held = self._held[rid]
                for _ in range(256):  # a share per loop turn: other peers are served meanwhile
                    if not held or rid in self._waiting or self._still_backlogged(rid):
                        break
                    held.popleft()()
                if not held:
                    self._held.pop(rid, None)
                    self._held_bytes.pop(rid, None)

    def _holding(self, rid: bytes) -> bool:
        """Whether ``rid``'s input is held now (answers waiting for it, input held before, a session backlogged)."""
        return rid in self._waiting or rid in self._held or rid in self._backlogged

    def _still_backlogged(self, rid: bytes) -> bool:
        sid = self._backlogged.get(rid)
        if sid is None:
            return False
        sess = self.sessions.get(sid)
        with self._work:
            if sess is not None and len(sess.queue) + (sess.busy and not sess.answered_current) >= \
                    self.config.max_in_flight + _STYLE_ONLY_SLACK:
                return True
        del self._backlogged[rid]
        return False

    def _hold(self, rid: bytes, handler: Callable[[], None], size: int, first: bool = False) -> None:
        """Keep ``rid``'s input for later (it has answers waiting: back-pressure). Past ``router_hwm`` messages or
        ``_MAX_HELD_BYTES`` the peer is not reading at all: its sessions are closed with a BYE (queued behind its
        answers, so it arrives once it reads) and what it sends beyond the bound is dropped, counted and logged."""
        held = self._held.setdefault(rid, collections.deque())
        total = self._held_bytes.get(rid, 0)
        if held and (len(held) >= self._max_held or total + size > _MAX_HELD_BYTES):
            why = (f"more than {self.config.max_in_flight + _STYLE_ONLY_SLACK} frames ahead of the renderer"
                   if rid in self._backlogged else "not reading its answers")
            victims = [s for s in self.sessions.values() if s.routing_id == rid]
            for sess in victims:
                self._send(rid, Bye(sess.id, why))
                self._close_session(sess, why)
            self._backlogged.pop(rid, None)
            self._count("input_dropped")
            self._undeliverable(rid, 0, f"{why}; dropped a message it sent ({len(held)} held, {total} bytes)")
            return
        if first:
            held.appendleft(handler)
        else:
            held.append(handler)
        self._held_bytes[rid] = total + size

    def _undeliverable(self, rid: bytes, n: int, why: str) -> None:
        """Count ``n`` answers that cannot be delivered to ``rid`` (metrics ``nrb_undeliverable_total``, status
        ``counts``) and log it: at once the first time, then at most every 5 s with the count since."""
        if n:
            with self._stats_lock:
                self.counts["undeliverable"] += n
            self._metrics.undeliverable.inc(n)
        last, since = self._undeliverable_log
        now = time.monotonic()
        if last and now - last < 5.0:
            self._undeliverable_log = (last, since + n)
            return
        self._undeliverable_log = (now, 0)
        log.warning("%d answer(s) to peer %r could not be delivered: %s%s", n, rid, why,
                    f" ({since} more since the last report)" if since else "")

    def _shutdown(self) -> None:
        with self._work:
            open_sessions = list(self.sessions.values())
        for sess in open_sessions:
            self._send(sess.routing_id, Bye(sess.id, "server shutting down"))
            self._close_session(sess, "server shutting down")
        if self.config.status:
            self._status_out.write("\n")
            self._status_out.flush()
        deadline = time.monotonic() + 1.0  # the BYEs and answers still waiting for slow readers
        while self._waiting and time.monotonic() < deadline:
            self._flush_waiting(resume=False)
            time.sleep(_RETRY_MS / 1e3)
        for rid, waiting in self._waiting.items():
            self._undeliverable(rid, len(waiting), "the server stopped before it read them")
        self._waiting.clear()
        if self.sock is not None:
            if self._monitor is not None:
                self.sock.disable_monitor()
                self._monitor.close(0)
                self._monitor = None
            self.sock.close(linger=100)
            self.sock = None
        with self._recorder_lock:
            rec, self._recorder = self._recorder, None
        if rec is not None:
            try:
                rec.close()
            except Exception as exc:
                log.error("finishing the capture file %s failed: %s (it still opens: readers rebuild the index "
                          "by scanning)", rec.path, exc)
        self._metrics.close()
        self._close_curve()

    def _reload_allow_list(self) -> None:
        if self._curve is None:
            log.info("SIGHUP: no CurveZMQ allow-list to reload")
            return
        n = self._curve.reload()
        revoked = [s for s in self.sessions.values() if s.user_id is not None and not self._curve.is_allowed(s.user_id)]
        for sess in revoked:
            self._close_session(sess, "client key revoked")
        log.warning("allow-list %s reloaded: %d client key(s)%s", self._curve.allow_dir, n,
                    f"; closed {len(revoked)} session(s) of revoked keys" if revoked else "")

    def _close_curve(self) -> None:
        if self._curve is not None:
            self._curve.close()
            self._curve = None

    def _rec(self, method: str, *args: Any) -> None:
        """Call ``CaptureWriter.<method>(*args)``; if the recorder fails (disk full, I/O error), stop recording
        with one clear error and go on serving. Either thread may call this."""
        rec = self._recorder
        if rec is None:
            return
        try:
            getattr(rec, method)(*args)
        except Exception as exc:  # noqa: BLE001 - recording is best effort; serving is not
            self._recording_failed(rec, exc)

    def _recording_failed(self, rec: CaptureWriter, exc: BaseException) -> None:
        with self._recorder_lock:
            if self._recorder is not rec:
                return  # the other thread got there first
            self._recorder = None
        self._count("recording_failed")
        cause = exc.__cause__ or exc
        log.error("recording to %s STOPPED: %s. Serving continues without recording; the capture file keeps every "
                  "frame written before the failure and still opens (nrb inspect / nrb replay).", rec.path, cause)
        try:
            rec.close()
        except Exception as close_exc:  # noqa: BLE001 - the index cannot be written either: readers scan instead
            log.debug("closing the failed capture file: %s", close_exc)

    # ------------------------------------------------------------------------------------------------ receive
    def _send(self, routing_id: bytes, msg: Any, doorbell: Doorbell | None = None,
              payloads: list[Any] | None = None) -> list[Any]:
        """Encode and send ``msg`` to a peer from either thread (the render thread goes through its pipe, or
        straight to the engine through the session's ``doorbell`` when the answer fits one atomic record).
        ``payloads``: its payload frames, already encoded (a compressed image, timed as the RESULT's encode)."""
        frames = encode(msg) if payloads is None else [encode_header(msg), *payloads]
        push: zmq.Socket[Any] | None = getattr(self._worker_local, "push", None)
        if doorbell is not None and len(frames) == 1 and push is not None:
            try:
                if doorbell.send(frames[0]):
                    return frames
            except OSError as exc:  # the engine's end is gone; its session ends on the ZeroMQ side
                log.debug("doorbell write failed: %s", exc)
        if push is not None:
            push.send_multipart([routing_id, *frames], copy=False)
        else:
            self._forward([routing_id, *frames])
        return frames

    def _count(self, key: str | None, sess: Session | None = None, stat: str | None = None) -> None:
        """Add one to the server-wide counter ``key`` and to ``sess.stats.<stat>`` (default: the same name), under
        the statistics lock (the I/O thread and every render worker count)."""
        with self._stats_lock:
            if key is not None:
                self.counts[key] += 1
            if sess is not None:
                name = stat or key
                assert name is not None
                setattr(sess.stats, name, getattr(sess.stats, name) + 1)

    def _send_error(self, routing_id: bytes, err: ProtocolError, session: int | None = None,
                    frame: int | None = None, doorbell: Doorbell | None = None) -> Error:
        msg = error_message(err, session=session, frame=frame)
        self._count(f"error_{err.code.name}")
        self._metrics.errors.labels(err.code.name).inc()
        self._send(routing_id, msg, doorbell)
        return msg

    def _on_message(self, parts: list[Any]) -> None:
        received = time.perf_counter_ns()
        routing_id = parts[0].bytes
        frames = parts[1:]
        self._count("messages")
        self._note_peer(routing_id, frames)
        if self._curve is not None and not self._curve.is_allowed(_user_id(frames)):
            # A key revoked (allow-list reloaded) while its connection stays up: it gets nothing, like a key that
            # never was allowed (which libzmq's ZAP check stops before any message reaches us).
            self._count("unauthorized")
            for s in [s for s in self.sessions.values() if s.routing_id == routing_id]:
                self._close_session(s, "client key revoked")
            return
        try:
            self._dispatch(routing_id, frames, received)
        except _HoldInput:  # first in line: it was the oldest input of this peer not handled yet
            self._hold(routing_id, functools.partial(self._on_message, parts), sum(len(p) for p in parts), True)
        except ProtocolError as err:
            session, frame = _ids_from(frames)
            self._send_error(routing_id, err, session, frame)
            self._rejected(routing_id, err.code)
        except Exception as exc:  # a bug of ours must not take the server down either
            log.exception("internal error handling a message from %r", routing_id)
            self._send_error(routing_id, ProtocolError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
        else:
            self._rejects.pop(routing_id, None)

    def _note_peer(self, routing_id: bytes, frames: list[Any]) -> None:
        """Remember which connection descriptor ``routing_id`` talks on, so that the monitor's DISCONNECTED event
        for that descriptor frees its sessions. A descriptor is reused once closed: before a new peer is recorded
        on one, pending monitor events are read (the old connection's DISCONNECTED was queued before the new
        connection could exist, let alone send this), so an event is never blamed on the wrong peer; a descriptor
        found still owned by another peer means that peer's connection is gone."""
        try:
            fd = frames[0].get(zmq.SRCFD) if frames else -1
        except (zmq.ZMQError, AttributeError, TypeError, ValueError):
            return
        if not isinstance(fd, int) or fd < 0 or self._fd_owner.get(fd) == routing_id:
            return
        self._drain_monitor()
        old = self._fd_owner.get(fd)
        if old is not None and old != routing_id:
            self._peer_gone(old)
        self._fd_owner[fd] = routing_id

    def _drain_monitor(self) -> None:
        """Handle the socket monitor's queued events: a closed connection frees its peer's sessions."""
        from zmq.utils.monitor import recv_monitor_message

        mon = self._monitor
        while mon is not None:
            try:
                event = recv_monitor_message(mon, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event.get("event") == zmq.EVENT_DISCONNECTED:
                rid = self._fd_owner.pop(int(event.get("value", -1)), None)
                if rid is not None:
                    self._peer_gone(rid)

    def _peer_gone(self, routing_id: bytes) -> None:
        """The engine's connection closed: its sessions end now, not after ``--idle-timeout`` (no BYE: nobody is
        there to read it), freeing their slots and memory budget for the next engine."""
        self._rejects.pop(routing_id, None)
        for sess in [s for s in self.sessions.values() if s.routing_id == routing_id]:
            self._count("peer_disconnected")
            self._close_session(sess, "engine disconnected")

    def _on_doorbell(self, sess: Session) -> None:
        """FRAME records from a session's doorbell (section 7.1 rule 4): handled like FRAMEs from its peer."""
        bell = sess.doorbell
        if bell is None:
            return
        try:
            records = bell.receive()
        except DoorbellCorrupt as exc:
            log.warning("session %d: doorbell stream corrupt (%s); closing the session", sess.id, exc)
            self._send(sess.routing_id, Bye(sess.id, f"doorbell stream corrupt: {exc}"))
            self._close_session(sess, "doorbell stream corrupt")
            return
        for record in records:
            if self._holding(sess.routing_id):  # back-pressure, as on ZeroMQ
                self._hold(sess.routing_id, functools.partial(self._on_bell_record, sess, record), len(record))
            else:
                self._on_bell_record(sess, record)
            if sess.id not in self.sessions:
                return

    def _on_bell_record(self, sess: Session, record: bytes) -> None:
        """One FRAME record from a session's doorbell."""
        if sess.id not in self.sessions:  # held while its session was closed: the BYE says what happened
            self._count("input_dropped")
            return
        received = time.perf_counter_ns()
        self._count("messages")
        try:
            header = parse_header(record)
            if header.get("type") != "FRAME":
                raise ProtocolError(ErrorCode.BAD_VALUE, f"only FRAME travels on the doorbell, not "
                                                         f"{str(header.get('type'))[:32]!r}")
            self._on_frame(sess.routing_id, header, [record], received, received)
        except _HoldInput:
            self._hold(sess.routing_id, functools.partial(self._on_bell_record, sess, record), len(record), True)
        except ProtocolError as err:
            s, f = _ids_from([record])
            self._send_error(sess.routing_id, err, s, f)
            self._rejected(sess.routing_id, err.code)
        except Exception as exc:  # a bug of ours must not take the server down either
            log.exception("internal error handling a doorbell record of session %d", sess.id)
            self._send_error(sess.routing_id, ProtocolError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
        else:
            self._rejects.pop(sess.routing_id, None)

    def _open_doorbell(self, hello: Hello, routing_id: bytes) -> Doorbell | None:
        if not self.config.doorbell or "doorbell" not in hello.capabilities or hello.doorbell is None:
            return None
        try:
            return Doorbell(hello.doorbell)
        except DoorbellUnavailable as exc:
            log.warning("not using the doorbell for a session from %r: %s", routing_id, exc)
            return None

    def _rejected(self, routing_id: bytes, code: ErrorCode) -> None:
        """Count consecutive rejected messages per peer; past ``max_rejects`` its sessions are dropped.
        ``OVERLOADED`` neither counts nor breaks the row: back-pressure is the server's state, not the peer's
        abuse (docs/protocol.md section 9)."""
        if code is ErrorCode.OVERLOADED:
            return
        n = self._rejects[routing_id] = self._rejects.get(routing_id, 0) + 1
        if len(self._rejects) > 4096:  # bounded memory under a flood of fresh peers
            self._rejects.clear()
        if n >= self.config.max_rejects:
            self._rejects.pop(routing_id, None)
            victims = [s for s in self.sessions.values() if s.routing_id == routing_id]
            if victims:
                log.warning("peer %r sent %d rejected messages in a row: closing its %d session(s)", routing_id, n,
                            len(victims))
            for s in victims:
                self._send(routing_id, Bye(s.id, "too many rejected messages"))
                self._close_session(s, "too many rejected messages")

    def _dispatch(self, routing_id: bytes, frames: list[Any], received: int) -> None:
        if not frames:
            raise ProtocolError(ErrorCode.MALFORMED, "message has no frames")
        t0 = time.perf_counter_ns()
        header = parse_header(frames[0])
        if header.get("type") == "FRAME":
            self._on_frame(routing_id, header, frames, received, t0)
            return
        msg = message_from_header(header, frames[1:])
        if isinstance(msg, Hello):
            self._on_hello(routing_id, msg, frames)
        elif isinstance(msg, Ping):
            self._send(routing_id, Pong(msg.nonce, msg.time_ns))
        elif isinstance(msg, Bye):
            self._on_bye(routing_id, msg)
        elif isinstance(msg, Error):
            log.info("engine %r reported %s: %s", routing_id, msg.name, msg.message)
        elif isinstance(msg, Pong):
            pass
        else:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"a renderer does not accept {type(msg).__name__.upper()}")

    def _on_hello(self, routing_id: bytes, hello: Hello, frames: list[Any]) -> None:
        cfg = self.config
        if len(self.sessions) >= cfg.max_sessions:
            raise ProtocolError(ErrorCode.OVERLOADED, f"server is at its limit of {cfg.max_sessions} sessions")
        user_id = _user_id(frames) if self._curve is not None else None
        with self._work:
            mine = sum(1 for s in self.sessions.values()
                       if s.routing_id == routing_id or (user_id is not None and s.user_id == user_id))
            reserved = sum(s.reserved_bytes for s in self.sessions.values())
        if mine >= cfg.max_sessions_per_peer:  # passes when one of its sessions ends: OVERLOADED, like the above
            raise ProtocolError(ErrorCode.OVERLOADED, f"this engine already holds {mine} sessions, the most one "
                                                      f"{'client key' if user_id else 'connection'} may hold "
                                                      f"(--max-sessions-per-peer {cfg.max_sessions_per_peer})")
        if cfg.max_pixels is not None:
            for what, (w, h) in (("render_size", hello.render_size), ("output_size", hello.output_size)):
                if w * h > cfg.max_pixels:
                    raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"{what} {w}x{h} is more than this server's "
                                                                  f"--max-pixels {cfg.max_pixels}")
        # Memory budgets, before anything is allocated for the session (the renderer included).
        frame_bytes = frame_budget(hello)
        if frame_bytes > cfg.max_frame_bytes:
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"buffers: {len(hello.buffers)} buffers at "
                                                          f"{hello.render_size[0]}x{hello.render_size[1]} make "
                                                          f"{frame_bytes} bytes per frame, more than this server's "
                                                          f"budget of {cfg.max_frame_bytes} (--max-frame-bytes)")
        held = session_bytes(frame_bytes, hello.render_size)  # at least: the image is render_size or larger
        if held > min(cfg.max_session_bytes, cfg.max_total_bytes):
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"this session would hold {held} bytes (two frames of "
                                                          f"{frame_bytes} and its image), more than this server's "
                                                          f"budget of {min(cfg.max_session_bytes, cfg.max_total_bytes)}"
                                                          " per session (--max-session-bytes)")
        if reserved + held > cfg.max_total_bytes:  # passes when other sessions end
            raise ProtocolError(ErrorCode.OVERLOADED, f"this session would hold {held} bytes; open sessions hold "
                                                      f"{reserved} of this server's {cfg.max_total_bytes} "
                                                      "(--max-total-bytes)")
        try:
            renderer = self.factory()
        except Exception as exc:
            log.exception("creating a renderer for a new session failed")
            raise ProtocolError(ErrorCode.INTERNAL, f"cannot create renderer: {exc}") from exc
        offered = {b.name: b.format for b in hello.buffers}
        why = renderer.check_offer(offered)
        if why:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"buffers: {why}")
        caps = [c for c in COMPRESSIONS if c in hello.capabilities]
        pool = None
        if "shm" in hello.capabilities and hello.shm is not None:
            try:
                self._check_shm_offer(hello.shm.name, frames)
                pool = ShmPoolView(hello.shm)
                caps.append("shm")
            except ShmUnavailable as exc:
                log.warning("not using shared memory for a session from %r: %s", routing_id, exc)
        bell = self._open_doorbell(hello, routing_id) if pool is not None else None
        if bell is not None:
            caps.append("doorbell")
        w, h = renderer.output_size(hello.render_size, hello.output_size)
        held = session_bytes(frame_bytes, (w, h))  # the renderer's own size (an upscaler may return more)
        if held > min(cfg.max_session_bytes, cfg.max_total_bytes):
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"this session's {w}x{h} image would make it hold {held} "
                                                          "bytes, more than this server's budget per session "
                                                          "(--max-session-bytes)")
        if reserved + held > cfg.max_total_bytes:
            raise ProtocolError(ErrorCode.OVERLOADED, f"this session would hold {held} bytes; open sessions hold "
                                                      f"{reserved} of this server's {cfg.max_total_bytes} "
                                                      "(--max-total-bytes)")
        limits = Limits(frame_bytes, held, cfg.max_frame_bytes, cfg.max_total_bytes,
                        cfg.max_pixels if cfg.max_pixels is not None else MAX_DIMENSION * MAX_DIMENSION,
                        cfg.max_sessions, cfg.max_sessions_per_peer)
        sid = self._next_id
        self._next_id = self._next_id + 1 if self._next_id < (1 << 63) else 1
        welcome = Welcome(sid, renderer.label, caps, renderer.required(), renderer.optional(),
                          OutputSpec(renderer.output_format, w, h), cfg.max_in_flight, self.styles.library.names,
                          limits=limits)
        sess = Session(sid, routing_id, hello, welcome, renderer, StylePipeline(sid, self.styles.library),
                       tuple(c for c in caps if c in COMPRESSIONS), pool, bell, user_id=user_id,
                       frame_bytes=frame_bytes, reserved_bytes=held)
        with self._work:
            self.sessions[sid] = sess
        if bell is not None and self._poller is not None:
            self._bells[bell.fileno()] = sess
            self._poller.register(bell.fileno(), zmq.POLLIN)
        self._metrics.sessions.set(len(self.sessions))
        wire = self._send(routing_id, welcome)
        if self._recorder is not None:
            self._rec("session_start", sid, bytes(frames[0].buffer), bytes(wire[0]), renderer.label)
        log.info("session %d opened: %s %s via %s, %dx%d -> %dx%d, renderer %s%s", sid, hello.engine,
                 hello.engine_version, hello.client, *hello.render_size, w, h, renderer.label,
                 ", shared memory" + (" + doorbell" if bell is not None else "") if pool is not None else "")

    def _check_shm_offer(self, name: str, frames: list[Any]) -> None:
        """Map only pools that can be the engine's own: a POSIX shared-memory name is global to the machine, so a
        HELLO could otherwise name any object this server's user can open (another engine's pool, another
        program's memory) and read it back as G-buffers or overwrite it with a RESULT. ``ShmUnavailable`` says why
        not; the engine then sends inline frames."""
        if not name.startswith(SHM_NAME_PREFIX):
            raise ShmUnavailable(f"pool name {name!r} does not start with {SHM_NAME_PREFIX!r}")
        with self._work:
            owner = next((s.id for s in self.sessions.values() if s.pool is not None and s.hello.shm is not None
                          and s.hello.shm.name == name), None)
        if owner is not None:
            raise ShmUnavailable(f"pool {name!r} is already mapped for session {owner}")
        if not self._peer_is_local(frames):
            raise ShmUnavailable("the engine is not on this machine")

    def _peer_is_local(self, frames: list[Any]) -> bool:
        endpoint = self.endpoint or ""
        if endpoint.startswith(("ipc://", "inproc://")):
            return True
        try:
            addr = frames[0].get("Peer-Address")
        except (zmq.ZMQError, AttributeError, TypeError):
            return False
        return _is_loopback_address(addr)

    def _on_bye(self, routing_id: bytes, bye: Bye) -> None:
        if bye.session is None:
            for s in [s for s in self.sessions.values() if s.routing_id == routing_id]:
                self._close_session(s, bye.reason or "engine said bye")
            return
        sess = self.sessions.get(bye.session)
        if sess is not None and sess.routing_id == routing_id:
            self._close_session(sess, bye.reason or "engine said bye")

    def _close_session(self, sess: Session, reason: str) -> None:
        with self._work:
            self.sessions.pop(sess.id, None)
            sess.queue.clear()
            busy = sess.busy
        if sess.doorbell is not None and self._bells.pop(sess.doorbell.fileno(), None) is sess:
            if self._poller is not None:
                self._poller.unregister(sess.doorbell.fileno())
        if not busy:  # else the render thread still reads its shared memory; the mapping goes with the session
            sess.close()
        self._metrics.sessions.set(len(self.sessions))
        self._rec("session_end", sess.id, reason)
        log.info("session %d closed: %s (%d frames rendered, %d skipped, %d failed)", sess.id, reason,
                 sess.stats.rendered, sess.stats.skipped, sess.stats.render_failed)

    def _on_frame(self, routing_id: bytes, header: dict[str, Any], frames: list[Any], received: int,
                  t0: int) -> None:
        sid = header.get("session")
        sess = self.sessions.get(sid) if _is_uint(sid) else None  # type: ignore[arg-type]
        if sess is None or sess.routing_id != routing_id:
            if not _is_uint(sid):
                message_from_header(header, frames[1:])  # raises the precise decoding error
            raise ProtocolError(ErrorCode.NO_SESSION, f"session {sid} is not open (expired, closed or unknown)")
        sess.touch()
        with self._work:
            backlog = len(sess.queue) + (sess.busy and not sess.answered_current)
        if backlog >= self.config.max_in_flight + _STYLE_ONLY_SLACK:
            # So far ahead that even the headers of its over-the-limit frames pile up: take no more of this peer's
            # input until the backlog drains (back-pressure; this frame is held too, first in line), so that no
            # event is ever lost (docs/protocol.md section 5.9).
            self._backlogged[routing_id] = sess.id
            self._count("backlog_held")
            raise _HoldInput()
        pool = sess.hello.shm if sess.pool is not None else None
        # compressed payloads stay compressed here: the render worker inflates them (one session's decompression
        # must not hold up every other session's traffic on this thread), and never for a superseded frame
        msg = message_from_header(header, frames[1:], compression=sess.compression, shm_pool=pool,
                                  max_frame_bytes=sess.frame_bytes, defer_decompression=True)
        assert isinstance(msg, Frame)
        self._validate_frame(sess, msg)
        decode_ms = (time.perf_counter_ns() - t0) / 1e6
        sess.last_frame = msg.frame
        with self._stats_lock:
            sess.stats.received += 1
            self._events_in.append(time.monotonic())
        self._metrics.frames_in.inc()
        item = QueuedFrame(routing_id, msg, frames, received, decode_ms)
        answers: list[list[Any]] = []
        with self._work:
            in_flight = len(sess.queue) + (sess.busy and not sess.answered_current)
            if in_flight >= self.config.max_in_flight:
                # Over the announced limit (a misbehaving engine): not rendered, answered OVERLOADED in turn; its
                # events still apply. It supersedes nothing.
                item.style_only = True
                item.frame = dataclasses.replace(msg, buffers=[])
                item.wire = [frames[0]]
            else:
                # Latest frame wins: frames of this session still waiting are superseded by this one. Each is
                # answered "skipped" now (every FRAME gets exactly one answer) and rides on this frame, header only,
                # so that its events and style commands are applied in order, each at its own frame time, first.
                while sess.queue:
                    old = sess.queue.popleft()
                    item.carried.extend(old.carried)
                    old.carried = []
                    if not old.style_only and not old.answered:
                        old = old.header_only()
                        old.answered = True
                        old.skip_reason = "superseded"
                        old.skip_wire = self._skip_answer(sess, old, answers)
                        self._count("superseded", sess)
                    item.carried.append(old)
                if self._cannot_make_deadline(sess, item, time.monotonic()):
                    item = self._answered_late(sess, item, answers)
            sess.queue.append(item)
            if sess.waiting_since_ns is None and not (item.answered or item.style_only):
                sess.waiting_since_ns = item.received_ns
            self._work.notify()
        for wire in answers:
            self._forward([routing_id, *wire])

    def _skip_answer(self, sess: Session, item: QueuedFrame, answers: list[list[Any]]) -> list[Any]:
        """Encode the ``skipped`` RESULT for ``item`` (sent by the caller), count it, and return its wire."""
        waited = (time.perf_counter_ns() - item.received_ns) / 1e6
        timing = Timing(queue_ms=waited, decode_ms=item.decode_ms, total_ms=waited)
        wire = encode(Result(sess.id, item.frame.frame, "skipped", timing))
        answers.append(wire)
        self._count("skipped", sess)
        self._metrics.skipped.inc()
        return wire

    def _cannot_make_deadline(self, sess: Session, item: QueuedFrame, now: float, waited_ms: float | None = None,
                              ) -> bool:
        """Whether ``item`` cannot be answered within its deadline, judging by the session's recent processing
        times: the time it has waited (``waited_ms``; on arrival, what is left of the session's frame in progress)
        plus one estimated processing time. Caller holds ``self._work``. Never true without an estimate, nor when a
        probe is due (see ``WorkEstimate``)."""
        est = sess.work.estimate_ms()
        if est is None or sess.work.probe_due(now):
            return False
        if waited_ms is None:
            waited_ms = item.decode_ms
            if sess.busy:
                waited_ms += max(0.0, est - (now - sess.busy_since) * 1e3)
        return waited_ms + est > item.frame.deadline_ms

    def _answered_late(self, sess: Session, item: QueuedFrame, answers: list[list[Any]]) -> QueuedFrame:
        """Answer ``item`` ``skipped`` now (it cannot make its deadline); return it header only, to be queued so
        that its events and style commands are applied in order."""
        late = item.header_only()
        late.carried = item.carried
        late.answered = True
        late.skip_reason = "late"
        late.skip_wire = self._skip_answer(sess, late, answers)
        self._count("predicted_late", sess)
        return late

    def _validate_frame(self, sess: Session, frame: Frame) -> None:
        if sess.last_frame is not None and frame.frame <= sess.last_frame:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"frame {frame.frame} does not follow frame {sess.last_frame}")
        names = {b.name: b for b in frame.buffers}
        for spec in sess.welcome.required:
            if not available(spec.name, names):
                raise ProtocolError(ErrorCode.MISSING_FIELD, f"buffers: {spec.name!r} is required by the renderer")
        w, h = sess.render_size
        for b in frame.buffers:
            if b.name == "output":  # section 6.1: RESULT only
                raise ProtocolError(ErrorCode.BAD_VALUE, "buffers: 'output' is the RESULT's image; a FRAME does not "
                                                         "carry it")
            if b.name in _ONE_BY_ONE:
                if (b.width, b.height) != (1, 1):
                    raise ProtocolError(ErrorCode.BAD_VALUE, f"buffer {b.name!r} is {b.width}x{b.height}; it is one "
                                                             "value per frame, 1x1")
                continue
            constant = b.name.startswith("x_") and (b.width, b.height) == (1, 1)  # a vendor per-frame constant
            if not constant and (b.width, b.height) != (w, h):
                raise ProtocolError(ErrorCode.BAD_VALUE, f"buffer {b.name!r} is {b.width}x{b.height}, the session's "
                                                         f"render size is {w}x{h}")
        if frame.result_slot is not None and sess.pool is not None:  # section 7: the output goes at offset 0
            out = sess.welcome.output
            need = out.width * FORMATS[out.format].bytes_per_pixel * out.height
            if need > sess.pool.pool.slot_size:
                raise ProtocolError(ErrorCode.BAD_VALUE, f"result_slot: the {out.width}x{out.height} {out.format} "
                                                         f"output needs {need} bytes, the pool's slots hold "
                                                         f"{sess.pool.pool.slot_size}")
        sess.pipeline.check(frame)

    # ------------------------------------------------------------------------------------------------ process
    def _render_loop(self, index: int = 0) -> None:
        """A render worker: take the queued frame with the earliest deadline (of a session no other worker is
        processing) and process it. Each frame's renderer call runs under a thread budget set for that frame
        (``frame_threads``: all the cores when this is the only busy worker, a share when several are;
        ``bridge.renderer.worker_context`` / ``set_worker_threads``), so renderers that keep per-thread state (ONNX
        Runtime sessions) keep their own instance per worker and budget."""
        name_os_thread(f"nrb-render-{index}")
        push = self._ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(self._out_endpoint)
        self._worker_local.push = push
        self._worker_tids.add(threading.get_ident())
        try:
            with worker_context(index, self.worker_threads):
                while True:
                    with self._work:
                        picked = self._next_frame()
                        while picked is None and not self._stop.is_set():
                            self._work.wait(0.1)
                            picked = self._next_frame()
                        if picked is None:
                            return
                    sess, item, threads = picked
                    set_worker_threads(threads)
                    try:
                        self._process(sess, item)
                    except Exception as exc:
                        log.exception("internal error processing session %d frame %d", sess.id, item.frame.frame)
                        self._send_error(item.routing_id, ProtocolError(ErrorCode.INTERNAL,
                                                                        f"{type(exc).__name__}: {exc}"),
                                         sess.id, item.frame.frame, sess.doorbell)
                    finally:
                        with self._work:
                            sess.busy = False
                            closed = sess.id not in self.sessions
                            self._work.notify()  # its next frame may be waiting for a worker
                        if closed:
                            sess.close()  # closed while we rendered: release its shared memory now
        finally:
            push.close()
            self._worker_local.push = None
            self._worker_tids.discard(threading.get_ident())

    def frame_threads(self, busy: int) -> int:
        """Renderer threads for a frame that starts while ``busy`` workers (itself included) are rendering frames:
        ``--worker-threads`` when set, else the cores shared among the busy workers, so that a lone busy session
        renders on the whole machine and several share it. ``busy`` is rounded up to a power of two (never more
        threads than cores in all; a worker keeps at most log2(workers) + 2 ONNX Runtime sessions), and the budget
        is never below the worker's fair share ``cores // workers``."""
        if self.config.worker_threads:
            return self.config.worker_threads
        shares = 1 << max(0, busy - 1).bit_length()
        return max(self.worker_threads, self.cores // shares)

    def _next_frame(self) -> tuple[Session, QueuedFrame, int] | None:
        """Earliest deadline first over the sessions no worker is processing (caller holds ``self._work``): the
        head of each session's queue (at most one renderable frame, latest frame wins) competes by arrival +
        ``deadline_ms``, where arrival is when the session began waiting (``Session.waiting_since_ns``: a frame
        skipped for waiting too long or superseded hands its place to the session's next frame, or the sessions
        the renderer cannot all serve in time would be skipped over and over while one keeps winning); ties go to
        the one waiting longest. Returns the session, its frame and the frame's
        thread budget (``frame_threads``)."""
        best: tuple[int, int, Session] | None = None
        for sess in self.sessions.values():
            if sess.busy or not sess.queue:
                continue
            head = sess.queue[0]
            since = head.received_ns
            if sess.waiting_since_ns is not None:
                since = min(since, sess.waiting_since_ns)
            key = (since + int(head.frame.deadline_ms * 1e6), since)
            if best is None or key < best[:2]:
                best = (*key, sess)
        if best is None:
            return None
        sess = best[2]
        sess.busy = True
        sess.answered_current = False
        sess.busy_since = time.monotonic()
        # workers rendering now: the others still working on a frame they have not answered yet, and this one
        busy = 1 + sum(1 for s in self.sessions.values() if s.busy and not s.answered_current and s is not sess)
        return sess, sess.queue.popleft(), self.frame_threads(busy)

    def _hooks_for_frame(self) -> HookSet | None:
        if self.hooks is None:
            return None
        with self._hooks_lock:  # workers share the file (reload) and the capture's record of it
            hookset = self.hooks.current()
            if self._recorder is not None and hookset.version != self._recorded_hooks:
                self._rec("hooks", hookset.path, hookset.source, hookset.version)
                self._recorded_hooks = hookset.version
        return hookset

    def _record_frame(self, sess: Session, item: QueuedFrame) -> None:
        if self._recorder is None:
            return
        frame = item.frame
        if any(b.shm is not None for b in frame.buffers) or frame.result_slot is not None:
            inline = [dataclasses.replace(b, shm=None, compression=None, data=bytes(b.data or b"")) for b in frame.buffers]
            wire: list[Any] = encode(dataclasses.replace(frame, buffers=inline, result_slot=None))
        else:
            wire = [f.buffer if hasattr(f, "buffer") else f for f in item.wire]
        self._rec("frame", sess.id, frame.frame, wire, time.time_ns(), item.style_only or item.answered)

    def _apply(self, sess: Session, item: QueuedFrame) -> float:
        """Record ``item`` and run its style pipeline (commands, hooks) at its frame time; return that time."""
        frame = item.frame
        hookset = self._hooks_for_frame()
        self._record_frame(sess, item)
        if frame.camera is not None and frame.camera.reset:
            sess.renderer.reset()
            sess.history.clear()
        t, hook_errors = sess.pipeline.advance(frame, hookset)
        if hook_errors:
            with self._stats_lock:
                sess.stats.hook_errors += len(hook_errors)
                self.hook_log.report(hook_errors)
            self._metrics.hook_errors.inc(len(hook_errors))
        return t

    def _apply_unrendered(self, sess: Session, item: QueuedFrame, current: bool = False) -> None:
        """A frame that is not rendered: apply its events and style commands; answer OVERLOADED when it came over
        the in-flight limit (a frame already answered ``skipped`` only has its answer recorded)."""
        self._apply(sess, item)
        frame = item.frame
        timing = Timing(queue_ms=(time.perf_counter_ns() - item.received_ns) / 1e6, decode_ms=item.decode_ms)
        if item.answered:
            assert item.skip_wire is not None
            self._record_result(sess, frame.frame, "skipped", item.skip_wire, None, timing)
            return
        self._count(None, sess, "rejected")
        sess.answered_current = current  # from here on the engine may send its next frame
        err = self._send_error(item.routing_id, ProtocolError(
            ErrorCode.OVERLOADED, f"more than {self.config.max_in_flight} frames in flight; events applied, "
                                  "frame not rendered"), sess.id, frame.frame, sess.doorbell)
        self._record_result(sess, frame.frame, "error", [encode(err)[0]], None, timing, err.message)

    def _process(self, sess: Session, item: QueuedFrame) -> None:
        for older in item.carried:  # superseded frames first, in order (latest frame wins)
            self._apply_unrendered(sess, older)
        if item.answered or item.style_only:
            self._apply_unrendered(sess, item, current=True)
            return
        frame = item.frame
        dequeued = time.perf_counter_ns()
        queue_ms = (dequeued - item.received_ns) / 1e6
        if sess.pool is not None:  # copied out only now: superseded and skipped frames are never read
            try:
                sess.pool.resolve_all(frame.buffers)
            except ShmShrunk as exc:
                self._pool_shrunk(sess, item, exc)
                return
        try:
            inflate_ms = inflate(frame.buffers)
        except ProtocolError as exc:  # a corrupt compressed payload: this frame's answer; the session goes on
            self._payload_corrupt(sess, item, exc)
            return
        t = self._apply(sess, item)
        timing = Timing(queue_ms=queue_ms, decode_ms=item.decode_ms + inflate_ms)

        def elapsed(since: int) -> float:
            return (time.perf_counter_ns() - since) / 1e6

        with self._work:
            late = queue_ms > frame.deadline_ms or self._cannot_make_deadline(sess, item, time.monotonic(),
                                                                              queue_ms)
            if not late:
                sess.waiting_since_ns = None  # served: its place in line is used
        if late:
            timing.style_ms = elapsed(dequeued)
            timing.total_ms = elapsed(item.received_ns)
            sess.answered_current = True
            wire = self._send(item.routing_id, Result(sess.id, frame.frame, "skipped", timing), sess.doorbell)
            self._count("skipped", sess)
            self._metrics.skipped.inc()
            self._record_result(sess, frame.frame, "skipped", wire, None, timing)
            return
        style_map = sess.pipeline.style_map(frame, sess.render_size)
        digest = style_map_digest(style_map) if self._recorder is not None else None
        timing.style_ms = elapsed(dequeued)
        t_render = time.perf_counter_ns()
        inputs = RenderInputs({b.name: b for b in frame.buffers}, size=sess.render_size, camera=frame.camera,
                              time=t, dt=frame.dt, frame=frame.frame, history=sess.history)
        try:
            image = sess.renderer.render(inputs, self.styles.library.renderer_map(style_map))
            # exact grading of the pixels' styles (hue, white balance, lift/gamma/gain, fog, .cube LUTs), then the
            # session's intensity and masks against the engine's image; both skip frames they cannot change
            image = post_process(grade(image, style_map, self.styles.library, inputs), inputs, sess.pipeline.state)
            timing.render_ms = elapsed(t_render)
            t_encode = time.perf_counter_ns()
            output = self._output_buffer(sess, image, frame)
        except ShmShrunk as exc:
            self._pool_shrunk(sess, item, exc)
            return
        except Exception as exc:
            self._render_failed(sess, item, exc, timing, digest)
            return
        result = Result(sess.id, frame.frame, "ok", timing, output)
        payloads = encode(result)[1:] if output.compression else None  # compressing the image is encoding it
        timing.encode_ms = elapsed(t_encode)
        timing.total_ms = elapsed(item.received_ns)
        with self._work:  # the I/O thread reads the estimate under it
            sess.work.add(elapsed(dequeued))
        with self._stats_lock:  # counted before sending: the engine may say BYE as soon as it has the result
            sess.stats.rendered += 1
            sess.stats.latencies_ms.append(timing.total_ms)
            self._latencies.append(timing.total_ms)
            self._events_out.append(time.monotonic())
            self.counts["rendered"] += 1
        pixels: bytes | None = None
        if self._recorder is not None and output.shm is not None and sess.pool is not None:
            try:  # before answering: from then on the slot is the engine's again (section 7 rule 2)
                pixels = bytes(sess.pool.read(output.shm, output.size))
            except ShmUnavailable:  # shrunk since it was written: record the result without its pixels
                pixels = bytes(output.size)
        sess.answered_current = True
        wire = self._send(item.routing_id, result, sess.doorbell, payloads)
        self._metrics.render.observe(timing.render_ms / 1e3)
        self._metrics.latency.observe(timing.total_ms / 1e3)
        self._metrics.frames_out.inc()
        if self._recorder is not None:
            if output.shm is not None and pixels is not None:
                inline = dataclasses.replace(output, shm=None, data=pixels)
                wire = encode(dataclasses.replace(result, output=inline))
            self._record_result(sess, frame.frame, "ok", wire, digest, timing)

    def _record_result(self, sess: Session, frame: int, status: str, wire: list[Any], digest: bytes | None,
                       timing: Timing, error: str | None = None) -> None:
        if self._recorder is not None:
            self._rec("result", sess.id, frame, status, [bytes(w) for w in wire], digest, dataclasses.asdict(timing),
                      error)

    def _render_failed(self, sess: Session, item: QueuedFrame, exc: Exception, timing: Timing,
                       digest: bytes | None) -> None:
        frame = item.frame
        self._count("render_failed", sess)
        what = "returned bad output" if isinstance(exc, BadOutput) else "raised"
        detail = f"{type(exc).__name__}: {exc}"
        key = detail.splitlines()[0][:200] if detail else type(exc).__name__
        if key not in sess.logged_failures and len(sess.logged_failures) < 64:
            sess.logged_failures.add(key)
            bufs = ", ".join(f"{b.name}:{b.format}:{b.width}x{b.height}" for b in frame.buffers)
            tb = "" if isinstance(exc, BadOutput) else "\n" + "".join(traceback.format_exception(exc)).rstrip()
            log.error("renderer %s %s on session %d frame %d (buffers %s; events %s): %s (further identical "
                      "failures of this session are counted, not logged)%s", sess.renderer.label, what, sess.id,
                      frame.frame, bufs, [e.name for e in frame.events], detail, tb)
        sess.answered_current = True
        err = self._send_error(item.routing_id, ProtocolError(ErrorCode.RENDER_FAILED, f"renderer {what}: {detail}"),
                               sess.id, frame.frame, sess.doorbell)
        self._record_result(sess, frame.frame, "error", [encode(err)[0]], digest, timing, err.message)

    def _payload_corrupt(self, sess: Session, item: QueuedFrame, exc: ProtocolError) -> None:
        """A compressed payload that does not decompress to its announced size (found on the render worker):
        the frame is answered with that error instead of a RESULT; its events and style commands still apply."""
        self._count(None, sess, stat="rejected")
        item.frame = dataclasses.replace(item.frame, buffers=[])
        self._apply(sess, item)
        sess.answered_current = True
        err = self._send_error(item.routing_id, exc, sess.id, item.frame.frame, sess.doorbell)
        self._record_result(sess, item.frame.frame, "error", [encode(err)[0]], None, Timing(), err.message)

    def _pool_shrunk(self, sess: Session, item: QueuedFrame, exc: ShmShrunk) -> None:
        """The engine shrank its shared-memory pool (docs/protocol.md section 7 rule 5): answer the frame with
        ``BAD_VALUE`` and have the I/O thread close the session with a BYE (render worker; see ``bridge.shm`` for
        why this is an error and not a crash)."""
        log.warning("session %d: %s; closing the session", sess.id, exc)
        self._count("shm_shrunk", sess, "render_failed")
        sess.answered_current = True
        self._send_error(item.routing_id, ProtocolError(ErrorCode.BAD_VALUE, f"{exc}: the pool must keep its size "
                                                                             "for the whole session"),
                         sess.id, item.frame.frame, sess.doorbell)
        self._close_requests.append((sess.id, "shared memory pool shrank"))

    def _output_buffer(self, sess: Session, image: Any, frame: Frame) -> Buffer:
        """Validate the renderer's image and convert it to the session's output format (``BadOutput`` if bad)."""
        out = sess.welcome.output
        pixels = image_to_output(image, out.format, (out.width, out.height))
        buf = Buffer.from_array("output", out.format, pixels)
        if frame.result_slot is not None and sess.pool is not None:
            assert buf.data is not None
            return sess.pool.write_result(frame.result_slot, "output", out.format, buf.data, out.width, out.height)
        if sess.compression and any(b.compression for b in frame.buffers):
            # The image goes back compressed when the frame it answers came compressed: the engine measures its
            # link and compresses only when that pays (libnrb), and the image follows its judgement. The fast codec
            # first; compressed on the render worker, never on the I/O thread (docs/protocol.md section 6.3).
            buf.compression = "lz4" if "lz4" in sess.compression else sess.compression[0]
        return buf

    # ------------------------------------------------------------------------------------------- housekeeping
    def _housekeeping(self, now: float) -> None:
        timeout = self.config.idle_timeout
        with self._work:
            expired = [s for s in self.sessions.values() if now - s.last_seen > timeout and not s.busy]
        for sess in expired:
            self._send(sess.routing_id, Bye(sess.id, f"session idle for more than {timeout:g} s"))
            self._close_session(sess, "expired")
        self._metrics.queue_len.set(sum(len(s.queue) for s in self.sessions.values()))
        if self.config.status and now - getattr(self, "_last_status", 0.0) >= self.config.status_interval:
            self._last_status = now
            self._status_out.write("\r" + self.status_line(now) + "   ")
            self._status_out.flush()

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Server statistics: sessions, fps in/out (last 2 s), latency percentiles, drops, errors."""
        now = time.monotonic() if now is None else now
        window = 2.0

        def rate(q: list[float]) -> float:
            return sum(1 for t in q if now - t <= window) / window

        with self._stats_lock:  # one consistent reading
            counts = collections.Counter(self.counts)
            events_in, events_out = list(self._events_in), list(self._events_out)
            latencies = list(self._latencies)
            hook_errors = self.hook_log.total
        lat = np.asarray(latencies) if latencies else np.zeros(1)
        drops = counts["skipped"] + counts["error_OVERLOADED"] + counts["render_failed"]
        return {
            "sessions": len(self.sessions), "fps_in": rate(events_in), "fps_out": rate(events_out),
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "drops": drops,
            "rendered": counts["rendered"], "skipped": counts["skipped"],
            "render_failed": counts["render_failed"], "hook_errors": hook_errors,
            "errors": {k[6:]: v for k, v in counts.items() if k.startswith("error_")},
            "counts": dict(counts),
        }

    def status_line(self, now: float | None = None) -> str:
        """One line for the terminal: sessions, fps in/out, p50/p99 latency, drops."""
        s = self.snapshot(now)
        return (f"nrb {self.renderer_label} | sessions {s['sessions']} | in {s['fps_in']:5.1f} fps | "
                f"out {s['fps_out']:5.1f} fps | p50 {s['p50_ms']:6.1f} ms | p99 {s['p99_ms']:6.1f} ms | "
                f"drops {s['drops']} | hook errors {s['hook_errors']}")


class _HoldInput(Exception):  # noqa: N818 - a signal, not an error
    """Raised by ``_on_frame`` for a FRAME that must wait until its session's backlog drains (back-pressure)."""


def _user_id(frames: list[Any]) -> str | None:
    """The CurveZMQ client key (Z85) libzmq attached to a message after the ZAP handler accepted it."""
    try:
        uid = frames[0].get("User-Id") if frames else None
    except (zmq.ZMQError, AttributeError, TypeError):
        return None
    return uid if isinstance(uid, str) and uid else None


def _is_loopback_address(addr: Any) -> bool:
    """Whether a ``Peer-Address`` (IPv4, IPv6, or IPv4-mapped IPv6) is a loopback address."""
    if not isinstance(addr, str) or not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << 64)


def _ids_from(frames: list[Any]) -> tuple[int | None, int | None]:
    """Best-effort session/frame ids of a rejected message, so the ERROR can say which frame it concerns."""
    if not frames:
        return None, None
    try:
        h = parse_header(frames[0])
    except ProtocolError:
        return None, None
    s, f = h.get("session"), h.get("frame")
    if h.get("type") != "FRAME":
        f = None
    return (s if _is_uint(s) else None), (f if _is_uint(f) else None)
