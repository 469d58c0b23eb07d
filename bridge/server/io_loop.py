"""The I/O loop: the one thread that owns the ROUTER socket.

Each turn it drains what has arrived — HELLO, PING and BYE are answered at once; a FRAME is decoded (zero-copy:
views of the received frames or of the engine's shared-memory pool; compressed payloads stay compressed), checked
(``Admission``, which also opens sessions from HELLOs) and queued on its session (``Scheduler.admit``: latest frame
wins) — forwards the answers the render workers sent through their pipes, reads the doorbells of shared-memory
sessions (their FRAME records are handled exactly like FRAMEs from the socket) and the socket monitor (a closed
connection frees its peer's sessions at once), then does its housekeeping (idle sessions expire, observers tick).

Back-pressure (docs/protocol.md section 5.9 rule 1): answers a peer cannot take yet wait in a queue of its own, in
order, and meanwhile that peer's input is held, as it is while one of its sessions is ``max_in_flight`` + 256
frames ahead; other peers are served as usual. A peer that does not read at all loses its sessions.

Robustness: every message is handled inside a guard — a malformed or hostile message gets an ERROR reply (when it
can be routed) and the loop goes on; a peer whose last ``max_rejects`` messages were all rejected loses its
sessions.
"""

from __future__ import annotations

import collections
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import zmq

from bridge.doorbell import DoorbellCorrupt
from bridge.protocol import (
    CHUNKED,
    COMPRESSIONS,
    STREAMED_FRAMES,
    STREAMED_OUTPUT,
    Bye,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Part,
    Ping,
    Pong,
    ProtocolError,
    attach_frame_parts,
    cancel_early,
    message_from_header,
    parse_header,
)
from bridge.security import ServerCurve
from bridge.session import QueuedFrame, Session

from .admission import Admission
from .config import STYLE_ONLY_SLACK, ServerConfig, router_hwm
from .observers import Observers
from .outbox import Outbox
from .scheduler import Scheduler, SkipAnswer
from .stats import ServerStats
from .streamed import HeldParts, cancel_held

log = logging.getLogger("nrb.server")

#: While a peer has answers it cannot take yet, the I/O loop retries them this often (milliseconds).
RETRY_MS = 2
#: Answers waiting for one peer (safety net: its input is held while any wait, so they stay far fewer).
_MAX_WAITING_ANSWERS = 1 << 16
#: Input held for one peer while it is not reading its answers: messages, and bytes (at least one message).
_MAX_HELD_BYTES = 128 << 20


class IOLoop:
    """Sockets, sessions' lifecycle, doorbells, back-pressure and per-peer queues (see the module docstring).
    Everything here runs on the I/O thread, except ``forward`` callers' pipes (``Outbox``)."""

    def __init__(self, config: ServerConfig, ctx: zmq.Context[Any], *, max_message_bytes: int,
                 scheduler: Scheduler, stats: ServerStats, outbox: Outbox, observers: Observers,
                 admission: Admission, skip: SkipAnswer,
                 chunk_pool: Callable[[], Executor] | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.max_message_bytes = max_message_bytes
        self.scheduler = scheduler
        self.sessions = scheduler.sessions  # the I/O thread reads it freely; changes go through the scheduler
        self.stats = stats
        self.outbox = outbox
        outbox.forward = self.forward
        self.observers = observers
        self.admission = admission
        self.skip = skip
        #: the chunk threads, where held PARTs are decompressed ahead of their FRAMEs (protocol section 6.3.5)
        self.chunk_pool = chunk_pool
        #: per session id, the PARTs it streamed ahead of FRAMEs that have not come yet
        self._parts: dict[int, HeldParts] = {}
        self.sock: zmq.Socket[Any] | None = None
        self.endpoint: str | None = None
        self.curve: ServerCurve | None = None
        self._pull: zmq.Socket[Any] | None = None  # the render workers' answers (``Outbox``)
        self._next_id = random.randrange(1, 1 << 31)
        self._rejects: dict[bytes, int] = {}
        self._poller: zmq.Poller | None = None  # doorbell descriptors join and leave it
        self._bells: dict[int, Session] = {}  # doorbell descriptor -> its session
        # peer disconnects: libzmq's socket monitor names the descriptor of a closed connection, each message names
        # the descriptor it came in on (ZMQ_SRCFD): see ``_note_peer``
        self._monitor: zmq.Socket[Any] | None = None
        self._fd_owner: dict[int, bytes] = {}  # connection descriptor -> routing id of the peer last seen on it
        #: peers whose input is held because one of their sessions (the id) has ``max_in_flight`` + 256 frames queued
        self._backlogged: dict[bytes, int] = {}
        # back-pressure: answers a peer cannot take yet, in order, and the input it sent meanwhile, held (with its
        # size in bytes) until those answers are out, so that it cannot make us answer faster than it reads
        self._waiting: dict[bytes, collections.deque[list[Any]]] = {}
        self._held: dict[bytes, collections.deque[Callable[[], None]]] = {}
        self._held_bytes: dict[bytes, int] = {}
        self._max_held = router_hwm(config.max_in_flight)
        self._undeliverable_log = (0.0, 0)  # (when last logged, count since)

    # ---------------------------------------------------------------------------------------------- lifecycle
    def bind(self) -> str:
        """Create and bind the ROUTER socket (with CurveZMQ when configured) and its monitor."""
        cfg = self.config
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        hwm = router_hwm(cfg.max_in_flight)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        # a full pipe to one peer raises EAGAIN instead of silently dropping the message (an unknown peer:
        # EHOSTUNREACH); ``forward`` then keeps the answer for that peer (docs/protocol.md section 5.9 rule 1)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        try:
            if cfg.curve_secret is not None and cfg.allow_dir is not None:
                self.curve = ServerCurve(self.ctx, Path(cfg.curve_secret), Path(cfg.allow_dir))
                self.curve.apply(sock)
            if cfg.endpoint is not None:
                sock.bind(cfg.endpoint)
                endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            elif cfg.port == 0:
                port = sock.bind_to_random_port(f"tcp://{cfg.host}")
                endpoint = f"tcp://{cfg.host}:{port}"
            else:
                endpoint = f"tcp://{cfg.host}:{cfg.port}"
                sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            self._close_curve()
            raise OSError(f"cannot bind {cfg.endpoint or f'tcp://{cfg.host}:{cfg.port}'}: {exc}") from exc
        except BaseException:
            sock.close(0)
            self._close_curve()
            raise
        self.sock, self.endpoint = sock, endpoint
        # Disconnects free a peer's sessions at once instead of after --idle-timeout (tcp:// and ipc://; inproc://
        # has no connections to watch). ZMQ_ROUTER_NOTIFY would name the peer, but it is a draft API that libzmq
        # builds do not ship; the monitor names the descriptor instead.
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        return endpoint

    def unbind(self) -> None:
        """Undo ``bind`` (the server could not finish starting)."""
        if self.sock is not None:
            if self._monitor is not None:
                self.sock.disable_monitor()
                self._monitor.close(0)
                self._monitor = None
            self.sock.close(0)
            self.sock = None
        self._close_curve()

    def open_results(self) -> None:
        """Bind the pipe the render workers send their answers through (before they start)."""
        pull = self.ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.bind(self.outbox.endpoint)
        self._pull = pull

    def run(self, stop: threading.Event, reload_keys: threading.Event) -> None:
        """Serve until ``stop`` is set. ``reload_keys``: re-read the CurveZMQ allow-list on the next turn."""
        assert self.sock is not None and self._pull is not None
        sock, pull = self.sock, self._pull
        poller = self._poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        next_house = time.monotonic()
        while not stop.is_set():
            ready = dict(poller.poll(RETRY_MS if self._waiting or self._held else 50))
            if self._waiting or self._held:
                self._flush_waiting()
            for fd in [fd for fd in self._bells if fd in ready]:
                bell_sess = self._bells.get(fd)  # handling one may have closed another
                if bell_sess is not None:
                    self._on_doorbell(bell_sess)
            if pull in ready:  # answers from the render workers
                for _ in range(256):
                    try:
                        out = pull.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self.forward(out)
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
                        self._hold(rid, functools.partial(self._on_message, parts), sum(len(p) for p in parts))
                    else:
                        self._on_message(parts)
            if self.scheduler.close_requests:
                self._close_requested()
            now = time.monotonic()
            if reload_keys.is_set():
                reload_keys.clear()
                self._reload_allow_list()
            if now >= next_house:
                next_house = now + min(0.25, self.config.status_interval)
                self._housekeeping(now)

    def drain_results(self) -> None:
        """Forward the answers the render workers finished while we were stopping (they have all exited)."""
        pull = self._pull
        while pull is not None:
            try:
                self.forward(pull.recv_multipart(zmq.NOBLOCK, copy=False))
            except zmq.Again:
                break

    def shutdown(self) -> None:
        """Say BYE to every session, give slow readers a second for what waits for them, close the sockets."""
        if self._pull is not None:
            self._pull.close(0)
            self._pull = None
        with self.scheduler.cond:
            open_sessions = list(self.sessions.values())
        for sess in open_sessions:
            self._send(sess.routing_id, Bye(sess.id, "server shutting down"))
            self._close_session(sess, "server shutting down")
        deadline = time.monotonic() + 1.0  # the BYEs and answers still waiting for slow readers
        while self._waiting and time.monotonic() < deadline:
            self._flush_waiting(resume=False)
            time.sleep(RETRY_MS / 1e3)
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
        self._close_curve()

    def _close_requested(self) -> None:
        """Close the sessions render workers asked to close, each with a BYE after the answers they sent first."""
        self.drain_results()  # a worker sends its answer before asking: forward it before the BYE
        requests = self.scheduler.close_requests
        while requests:
            sid, reason = requests.popleft()
            sess = self.sessions.get(sid)
            if sess is not None:
                self._send(sess.routing_id, Bye(sid, reason))
                self._close_session(sess, reason)

    def _reload_allow_list(self) -> None:
        if self.curve is None:
            log.info("SIGHUP: no CurveZMQ allow-list to reload")
            return
        n = self.curve.reload()
        curve = self.curve
        revoked = [s for s in self.sessions.values() if s.user_id is not None and not curve.is_allowed(s.user_id)]
        for sess in revoked:
            self._close_session(sess, "client key revoked")
        log.warning("allow-list %s reloaded: %d client key(s)%s", curve.allow_dir, n,
                    f"; closed {len(revoked)} session(s) of revoked keys" if revoked else "")

    def _close_curve(self) -> None:
        if self.curve is not None:
            self.curve.close()
            self.curve = None

    # ---------------------------------------------------------------------------------------- back-pressure
    def forward(self, parts: list[Any]) -> None:
        """Send ``[routing id, *message]`` to its peer. Nothing is dropped at the high-water mark: a peer whose pipe
        is full gets the message queued behind its other waiting answers (and its input is held until they are
        out: ``_hold``); only a peer that is gone loses it, counted and logged (``_undeliverable``)."""
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
        if sess is not None and self.scheduler.backlogged(sess):
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
            why = (f"more than {self.config.max_in_flight + STYLE_ONLY_SLACK} frames ahead of the renderer"
                   if rid in self._backlogged else "not reading its answers")
            victims = [s for s in self.sessions.values() if s.routing_id == rid]
            for sess in victims:
                self._send(rid, Bye(sess.id, why))
                self._close_session(sess, why)
            self._backlogged.pop(rid, None)
            self.stats.count("input_dropped")
            self._undeliverable(rid, 0, f"{why}; dropped a message it sent ({len(held)} held, {total} bytes)")
            return
        if first:
            held.appendleft(handler)
        else:
            held.append(handler)
        self._held_bytes[rid] = total + size

    def _undeliverable(self, rid: bytes, n: int, why: str) -> None:
        """Count ``n`` answers that cannot be delivered to ``rid`` (``undeliverable``: metrics
        ``nrb_undeliverable_total``) and log it: at once the first time, then at most every 5 s with the count
        since."""
        if n:
            self.stats.count("undeliverable", n=n)
        last, since = self._undeliverable_log
        now = time.monotonic()
        if last and now - last < 5.0:
            self._undeliverable_log = (last, since + n)
            return
        self._undeliverable_log = (now, 0)
        log.warning("%d answer(s) to peer %r could not be delivered: %s%s", n, rid, why,
                    f" ({since} more since the last report)" if since else "")

    # ------------------------------------------------------------------------------------------------ receive
    def _send(self, routing_id: bytes, msg: Any) -> list[Any]:
        return self.outbox.send(routing_id, msg)

    def _on_message(self, parts: list[Any]) -> None:
        received = time.perf_counter_ns()
        routing_id = parts[0].bytes
        frames = parts[1:]
        self.stats.count("messages")
        self._note_peer(routing_id, frames)
        if self.curve is not None and not self.curve.is_allowed(_user_id(frames)):
            # A key revoked (allow-list reloaded) while its connection stays up: it gets nothing, like a key that
            # never was allowed (which libzmq's ZAP check stops before any message reaches us).
            self.stats.count("unauthorized")
            for s in [s for s in self.sessions.values() if s.routing_id == routing_id]:
                self._close_session(s, "client key revoked")
            return
        try:
            self._dispatch(routing_id, frames, received)
        except _HoldInput:  # first in line: it was the oldest input of this peer not handled yet
            self._hold(routing_id, functools.partial(self._on_message, parts), sum(len(p) for p in parts), True)
        except ProtocolError as err:
            session, frame = _ids_from(frames)
            self.outbox.error(routing_id, err, session, frame)
            self._rejected(routing_id, err.code)
        except Exception as exc:  # a bug of ours must not take the server down either
            log.exception("internal error handling a message from %r", routing_id)
            self.outbox.error(routing_id, ProtocolError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
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
            self.stats.count("peer_disconnected")
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
            self.stats.count("input_dropped")
            return
        received = time.perf_counter_ns()
        self.stats.count("messages")
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
            self.outbox.error(sess.routing_id, err, s, f)
            self._rejected(sess.routing_id, err.code)
        except Exception as exc:  # a bug of ours must not take the server down either
            log.exception("internal error handling a doorbell record of session %d", sess.id)
            self.outbox.error(sess.routing_id, ProtocolError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
        else:
            self._rejects.pop(sess.routing_id, None)

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
        if header.get("type") == "PART":
            self._on_part(routing_id, header, frames)
            return
        msg = message_from_header(header, frames[1:], compression=COMPRESSIONS)
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

    # -------------------------------------------------------------------------------------------- sessions
    def _on_hello(self, routing_id: bytes, hello: Hello, frames: list[Any]) -> None:
        user_id = _user_id(frames) if self.curve is not None else None
        sess = self.admission.open_session(routing_id, hello, frames, user_id, self._new_id)
        self.scheduler.add(sess)
        bell = sess.doorbell
        if bell is not None and self._poller is not None:
            self._bells[bell.fileno()] = sess
            self._poller.register(bell.fileno(), zmq.POLLIN)
        wire = self._send(routing_id, sess.welcome)
        self.observers.session_opened(sess, bytes(frames[0].buffer), bytes(wire[0]))
        log.info("session %d opened: %s %s via %s, %dx%d -> %dx%d, renderer %s%s", sess.id, hello.engine,
                 hello.engine_version, hello.client, *hello.render_size, *sess.output_size, sess.renderer.label,
                 ", shared memory" + (" + doorbell" if bell is not None else "") if sess.pool is not None else "")

    def _new_id(self) -> int:
        sid = self._next_id
        self._next_id = self._next_id + 1 if self._next_id < (1 << 63) else 1
        return sid

    def _on_bye(self, routing_id: bytes, bye: Bye) -> None:
        if bye.session is None:
            for s in [s for s in self.sessions.values() if s.routing_id == routing_id]:
                self._close_session(s, bye.reason or "engine said bye")
            return
        sess = self.sessions.get(bye.session)
        if sess is not None and sess.routing_id == routing_id:
            self._close_session(sess, bye.reason or "engine said bye")

    def _close_session(self, sess: Session, reason: str) -> None:
        held = self._parts.pop(sess.id, None)
        if held is not None:
            held.clear()
        busy = self.scheduler.remove(sess)
        if sess.doorbell is not None and self._bells.pop(sess.doorbell.fileno(), None) is sess:
            if self._poller is not None:
                self._poller.unregister(sess.doorbell.fileno())
        if not busy:  # else the render worker still reads its shared memory; the mapping goes with the session
            sess.close()
        self.observers.session_closed(sess, reason)
        log.info("session %d closed: %s (%d frames rendered, %d skipped, %d failed)", sess.id, reason,
                 sess.stats.rendered, sess.stats.skipped, sess.stats.render_failed)

    def _housekeeping(self, now: float) -> None:
        timeout = self.config.idle_timeout
        with self.scheduler.cond:
            expired = [s for s in self.sessions.values() if now - s.last_seen > timeout and not s.busy]
        for sess in expired:
            self._send(sess.routing_id, Bye(sess.id, f"session idle for more than {timeout:g} s"))
            self._close_session(sess, "expired")
        self.observers.tick(now)

    # ----------------------------------------------------------------------------------------------- frames
    def _on_part(self, routing_id: bytes, header: dict[str, Any], frames: list[Any]) -> None:
        """A PART of a FRAME buffer (protocol section 6.3.5): held until its FRAME, its chunk decompressed ahead on
        the chunk threads. One it cannot take raises the ERROR that names its session only (``_ids_from``)."""
        sid = header.get("session")
        sess = self.sessions.get(sid) if _is_uint(sid) else None  # type: ignore[arg-type]
        if sess is not None and sess.routing_id != routing_id:
            sess = None
        # decoded with the session's negotiation; a PART of output as if negotiated, so that a well-formed one is
        # told what the renderer does not take (as is one naming no session it has)
        caps = (*sess.compression, STREAMED_OUTPUT) if sess is not None else \
            (*COMPRESSIONS, CHUNKED, STREAMED_OUTPUT, STREAMED_FRAMES)
        part = message_from_header(header, frames[1:], compression=caps)
        assert isinstance(part, Part)
        if part.buffer == "output":
            raise ProtocolError(ErrorCode.BAD_VALUE, "a renderer does not accept a PART of output")
        if sess is None:
            raise ProtocolError(ErrorCode.NO_SESSION, f"PART: session {sid} is not open (expired, closed or unknown)")
        sess.touch()
        if sess.last_frame is not None and part.frame <= sess.last_frame:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"PART {part.buffer}: chunks[{part.index}]: frame {part.frame} "
                                                     f"is not above frame {sess.last_frame}, the last one accepted")
        hold = self._parts.get(sess.id)
        if hold is None:
            hold = self._parts[sess.id] = HeldParts(sess.frame_bytes)
        hold.add(part, frames[1], [c for c in sess.compression if c in COMPRESSIONS], self.chunk_pool)

    def _on_frame(self, routing_id: bytes, header: dict[str, Any], frames: list[Any], received: int,
                  t0: int) -> None:
        sid = header.get("session")
        sess = self.sessions.get(sid) if _is_uint(sid) else None  # type: ignore[arg-type]
        if sess is None or sess.routing_id != routing_id:
            if not _is_uint(sid):
                message_from_header(header, frames[1:])  # raises the precise decoding error
            raise ProtocolError(ErrorCode.NO_SESSION, f"session {sid} is not open (expired, closed or unknown)")
        sess.touch()
        if self.scheduler.backlogged(sess):
            # So far ahead that even the headers of its over-the-limit frames pile up: take no more of this peer's
            # input until the backlog drains (back-pressure; this frame is held too, first in line), so that no
            # event is ever lost (docs/protocol.md section 5.9).
            self._backlogged[routing_id] = sess.id
            self.stats.count("backlog_held")
            raise _HoldInput()
        pool = sess.hello.shm if sess.pool is not None else None
        fid = header.get("frame")
        hold = self._parts.get(sess.id)
        # the PARTs streamed ahead of this frame (protocol section 6.3.5); those of older frames are dropped
        held = hold.take(fid) if hold is not None and _is_uint(fid) else []  # type: ignore[arg-type]
        msg: Any = None
        try:
            # compressed payloads stay compressed here: the render worker inflates them (one session's decompression
            # must not hold up every other session's traffic on this thread), and never for a superseded frame
            msg = message_from_header(header, frames[1:], compression=sess.compression, shm_pool=pool,
                                      max_frame_bytes=sess.frame_bytes, defer_decompression=True)
            assert isinstance(msg, Frame)
            if held or any(b.streamed for b in msg.buffers):  # step 4: the held PARTs match the chunk tables
                attach_frame_parts(msg.buffers, [p.entry() for p in held])
            self.admission.check_frame(sess, msg)
        except BaseException:
            cancel_held(held)
            if msg is not None:
                cancel_early(msg.buffers)
            raise
        decode_ms = (time.perf_counter_ns() - t0) / 1e6
        sess.last_frame = msg.frame
        self.stats.received(sess)
        answers: list[list[Any]] = []

        def skip(s: Session, item: QueuedFrame) -> list[Any]:
            wire = self.skip(s, item)
            answers.append(wire)
            return wire

        self.scheduler.admit(sess, QueuedFrame(routing_id, msg, frames, received, decode_ms), skip)
        for wire in answers:
            self.forward([routing_id, *wire])

class _HoldInput(Exception):  # noqa: N818 - a signal, not an error
    """Raised by ``_on_frame`` for a FRAME that must wait until its session's backlog drains (back-pressure)."""


def _user_id(frames: list[Any]) -> str | None:
    """The CurveZMQ client key (Z85) libzmq attached to a message after the ZAP handler accepted it."""
    try:
        uid = frames[0].get("User-Id") if frames else None
    except (zmq.ZMQError, AttributeError, TypeError):
        return None
    return uid if isinstance(uid, str) and uid else None


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
