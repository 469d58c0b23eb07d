"""The plugin's view of the engine client: a thin adapter over ``bridge._native.Client`` (``libnrb``'s C ABI).

The plugin calls only the verbs of the C ABI (``nrb.h``): frame begin, tag buffer, set camera, submit, acquire
newest result (or none → fall back), set enabled, fire event, set style, set style params (a style written at run
time), set intensity, exclude, stats, last error, retry. :func:`make_client`
returns a :class:`NativeClient` when the compiled extension has ``Client``, else a :class:`PyClient`: the same
behaviour in pure Python over ``bridge.client`` (a background I/O thread, frames in flight, deadlines, reconnect
with back-off, events re-sent after a lost frame; a session the renderer refuses is not asked for again until
``retry()`` or a disable/enable: state ``"refused"``), so that the plugin also runs from a source checkout without
the C++ extension. ``NRB_PANDA3D_CLIENT=native|python`` forces one.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("nrb.panda3d.client")

TargetLike = Any  # None | "global" | ("object" | "material", ids) | {"scope": ..., "ids": [...]} | protocol Target


def normalize_target(target: TargetLike = None) -> tuple[str, tuple[int, ...]]:
    """Accepts None / "global", ``("object", [42])``, ``{"scope": "material", "ids": [3]}``, a ``bridge.protocol.
    Target`` or an object with ``scope`` and ``ids``; returns ``(scope, ids)`` checked against protocol §5.3."""
    if target is None or target == "global":
        return "global", ()
    if isinstance(target, Mapping):
        scope, ids = target.get("scope", "global"), target.get("ids", ())
    elif isinstance(target, tuple | list) and len(target) == 2 and isinstance(target[0], str):
        scope, ids = target
    elif hasattr(target, "scope"):
        scope, ids = target.scope, getattr(target, "ids", ())
    else:
        raise ValueError(f"cannot read a target from {target!r}")
    if isinstance(ids, int):
        ids = (ids,)
    ids = tuple(int(i) for i in ids)
    if scope not in ("global", "material", "object"):
        raise ValueError(f"target scope must be global, material or object, not {scope!r}")
    if scope == "global" and ids:
        raise ValueError("a global target has no ids")
    if scope != "global" and not (1 <= len(ids) <= 1024):
        raise ValueError(f"a {scope} target needs 1..1024 ids")
    if any(not 0 <= i < 2**32 for i in ids):
        raise ValueError("ids must be in 0..2^32-1")
    return scope, ids


@dataclass
class ClientConfig:
    """What the plugin passes to the client (a subset of ``nrb_client_config``)."""

    endpoint: str = "tcp://127.0.0.1:5555"
    render_size: tuple[int, int] = (640, 360)
    output_size: tuple[int, int] | None = None
    buffers: Sequence[tuple[str, str]] = ()
    frames_in_flight: int = 2
    deadline_ms: float = 100.0
    engine_name: str = "panda3d"
    engine_version: str = ""
    start_disabled: bool = False
    connect_timeout_ms: int = 1000
    handshake_timeout_ms: int = 1000
    server_timeout_ms: int = 2000
    reconnect_backoff_min_ms: int = 50
    reconnect_backoff_max_ms: int = 1000
    # CurveZMQ (docs/security.md): the server's public key and this install's pair, Z85 text; all three or none
    curve_server_key: str | None = None
    curve_public_key: str | None = None
    curve_secret_key: str | None = None

    def curve(self) -> dict[str, str | None]:
        return {"curve_server_key": self.curve_server_key, "curve_public_key": self.curve_public_key,
                "curve_secret_key": self.curve_secret_key}


@dataclass
class FrameResult:
    """A rendered image from the server: (H, W, C) pixels, top row first, in ``format``."""

    frame_id: int
    pixels: np.ndarray
    format: str
    age_frames: int = 0
    round_trip_ms: float = 0.0
    server_ms: float = 0.0


@dataclass
class ClientStats:
    """``nrb_stats`` as a dataclass (the overlay and the timing report read it)."""

    frames_submitted: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    results_received: int = 0
    results_late: int = 0
    frames_lost: int = 0
    errors_received: int = 0
    fallbacks: int = 0
    events_sent: int = 0
    events_pending: int = 0
    reconnects: int = 0
    in_flight: int = 0
    rtt_p50_ms: float = 0.0
    rtt_p95_ms: float = 0.0
    rtt_p99_ms: float = 0.0
    state: str = "disabled"  # "disabled", "connecting", "connected" or "refused" (nrb_connection_state)
    session: int = 0
    refusal_code: int = 0  # while "refused": the protocol code of the ERROR that answered HELLO (0: none)
    refusal_message: str = ""  # and its message (at most 255 bytes, as libnrb's nrb_stats.refusal_message)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> ClientStats:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kw = {k: m[k] for k in known if k in m}
        st = kw.get("state")
        if isinstance(st, int | np.integer):
            kw["state"] = {0: "disabled", 1: "connecting", 2: "connected", 3: "refused"}.get(int(st), str(st))
        elif st is not None and not isinstance(st, str):
            kw["state"] = str(getattr(st, "name", st)).lower().replace("nrb_state_", "")
        return cls(**kw, extra={k: v for k, v in m.items() if k not in known})


# ------------------------------------------------------------------------------------------ native (libnrb)


class NativeClient:
    """``bridge._native.Client`` (pybind11 over ``libnrb``'s C ABI through ``nrb.hpp``) behind the plugin's verbs."""

    kind = "native"

    def __init__(self, config: ClientConfig) -> None:
        from bridge import _native  # noqa: PLC0415 - optional compiled module

        self._c = _native.Client(
            endpoint=config.endpoint, render_size=tuple(config.render_size),
            output_size=tuple(config.output_size or config.render_size), buffers=list(config.buffers),
            frames_in_flight=config.frames_in_flight, deadline_ms=config.deadline_ms, engine=config.engine_name,
            engine_version=config.engine_version, enabled=not config.start_disabled,
            connect_timeout_ms=config.connect_timeout_ms, handshake_timeout_ms=config.handshake_timeout_ms,
            server_timeout_ms=config.server_timeout_ms, reconnect_backoff_min_ms=config.reconnect_backoff_min_ms,
            reconnect_backoff_max_ms=config.reconnect_backoff_max_ms, **config.curve(),
        )

    def frame_begin(self, dt: float = -1.0) -> int:
        return int(self._c.begin(dt))

    def tag_buffer(self, name: str, fmt: str, array: np.ndarray) -> None:
        self._c.tag_buffer(name, fmt, array)

    def acquire_slot(self, name: str, fmt: str, width: int, height: int) -> np.ndarray:
        """Where buffer ``name`` of the current frame goes (``nrb_frame_acquire_slot``): a writable view of its
        shared-memory slot (or staging buffer), valid until ``submit``; the pack pass copies its readback here."""
        return np.asarray(self._c.acquire_slot(name, fmt, int(width), int(height)))

    def set_camera(self, camera: Mapping[str, Any]) -> None:
        self._c.set_camera(dict(camera))

    def submit(self) -> None:
        self._c.submit()

    def acquire_result(self) -> FrameResult | None:
        r = self._c.acquire_result(with_info=True, copy=True)  # a private copy: the native result is released
        if r is None:
            return None
        pixels, info = r
        return FrameResult(int(info["frame_id"]), np.asarray(pixels), str(info.get("format", "rgba8")),
                           int(info.get("age_frames", 0)), float(info.get("round_trip_ms", 0.0)),
                           float(info.get("server_ms", 0.0)))

    def set_enabled(self, enabled: bool) -> None:
        self._c.enabled = bool(enabled)

    @property
    def enabled(self) -> bool:
        return bool(self._c.enabled)

    def fire_event(self, name: str, params: Mapping[str, Any] | None = None, target: TargetLike = None) -> None:
        scope, ids = normalize_target(target)
        self._c.fire_event(name, dict(params or {}), (scope, list(ids)) if scope != "global" else None)

    def set_style(self, style: str, strength: float = 1.0, over: float = 0.0, target: TargetLike = None) -> None:
        scope, ids = normalize_target(target)
        self._c.set_style(style, float(strength), float(over), (scope, list(ids)) if scope != "global" else None)

    def set_style_params(self, style: str, params: Mapping[str, Any], strength: float = 1.0, over: float = 0.0,
                         target: TargetLike = None) -> None:
        """``nrb_set_style_params``: define ``style`` with ``params`` and move ``target`` to it."""
        scope, ids = normalize_target(target)
        self._c.set_style_params(style, dict(params), float(strength), float(over),
                                 (scope, list(ids)) if scope != "global" else None)

    def set_intensity(self, value: float, over: float = 0.0) -> None:
        """``nrb_set_intensity``."""
        self._c.set_intensity(float(value), float(over))

    def exclude(self, target: TargetLike, excluded: bool = True) -> None:
        """``nrb_exclude``: None (or global) with ``excluded`` False includes every id again."""
        scope, ids = normalize_target(target)
        self._c.exclude((scope, list(ids)) if scope != "global" else None, bool(excluded))

    def stats(self) -> ClientStats:
        return ClientStats.from_mapping(self._c.stats())

    def last_error(self) -> str:
        return str(self._c.last_error)

    def retry(self) -> None:
        """Ask a renderer that refused the session again (``nrb_client_retry``); a no-op in any other state."""
        self._c.retry()

    def close(self) -> None:
        if self._c is not None:
            self._c.close()
        self._c = None  # type: ignore[assignment]


# --------------------------------------------------------------------------------------- pure Python fallback


@dataclass
class _Outgoing:
    frame_id: int
    dt: float
    buffers: dict[str, tuple[str, np.ndarray]]
    camera: dict[str, Any] | None
    submit_ns: int = 0


class PyClient:
    """The C ABI's behaviour in Python (see module docstring). Thread model as in ``nrb.h``: the render thread calls
    frame/result verbs, any thread may call events/styles/enable/stats; one I/O thread owns the socket."""

    kind = "python"

    def __init__(self, config: ClientConfig) -> None:
        from bridge.protocol import BufferSpec

        self.config = config
        self._specs = [BufferSpec(n, f) for n, f in config.buffers]
        self._lock = threading.Lock()
        self._enabled = not config.start_disabled
        self._next_id = 0
        self._building: _Outgoing | None = None
        self._latest: _Outgoing | None = None
        self._queued_events: list[Any] = []  # protocol Event / StyleCommand / Control, in issue order
        self._in_flight: dict[int, tuple[_Outgoing, list[Any]]] = {}
        self._result: FrameResult | None = None
        self._result_deadline_ns = 0
        self._stats = ClientStats(state="connecting" if self._enabled else "disabled")
        self._rtts: collections.deque[float] = collections.deque(maxlen=1024)
        self._error = ""
        self._refused = False  # an ERROR answered HELLO: no traffic until retry() or a disable/enable
        self._retry = False
        #: the last placement ticket of a front door's redirect (protocol section 5.10), which ``bridge.client``
        #: follows: kept across connections, so that after a failure the front door restores the session's style
        self._ticket: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._last_begin_ns = 0
        self._thread = threading.Thread(target=self._run, name="nrb-py-client", daemon=True)
        self._thread.start()

    # render thread ----------------------------------------------------------------------------------------
    def frame_begin(self, dt: float = -1.0) -> int:
        now = time.monotonic_ns()
        if dt < 0:
            dt = 0.0 if self._last_begin_ns == 0 else min((now - self._last_begin_ns) / 1e9, 10.0)
        self._last_begin_ns = now
        self._next_id += 1
        self._building = _Outgoing(self._next_id, float(dt), {}, None)
        return self._next_id

    def tag_buffer(self, name: str, fmt: str, array: np.ndarray) -> None:
        if self._building is None:
            raise RuntimeError("tag_buffer without frame_begin")
        if self._enabled and self._stats.state == "connected":
            self._building.buffers[name] = (fmt, np.array(array, copy=True, order="C"))

    def set_camera(self, camera: Mapping[str, Any]) -> None:
        if self._building is None:
            raise RuntimeError("set_camera without frame_begin")
        self._building.camera = dict(camera)

    def submit(self) -> None:
        f, self._building = self._building, None
        if f is None:
            raise RuntimeError("submit without frame_begin")
        f.submit_ns = time.monotonic_ns()
        with self._lock:
            self._stats.frames_submitted += 1
            if not self._enabled or self._stats.state != "connected" or not f.buffers:
                self._stats.frames_dropped += 1
                return
            if self._latest is not None:
                self._stats.frames_dropped += 1
            self._latest = f
        self._wake.set()

    def acquire_result(self) -> FrameResult | None:
        with self._lock:
            r = self._result
            fresh = r is not None and self._enabled and time.monotonic_ns() <= self._result_deadline_ns
            if not fresh:
                if self._enabled:
                    self._stats.fallbacks += 1
                return None
            assert r is not None
            r.age_frames = self._next_id - r.frame_id
            return r

    # any thread -------------------------------------------------------------------------------------------
    def set_enabled(self, enabled: bool) -> None:
        with self._lock:
            if enabled and not self._enabled and self._refused:
                self._retry = True  # the player's toggle (off, then on) asks a refusing renderer again
            self._enabled = bool(enabled)
            if not enabled:
                if self._latest is not None:
                    self._stats.frames_dropped += 1
                self._latest = None
                self._result = None
        self._wake.set()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def fire_event(self, name: str, params: Mapping[str, Any] | None = None, target: TargetLike = None) -> None:
        from bridge.protocol import Event, Target

        scope, ids = normalize_target(target)
        if not 1 <= len(name.encode()) <= 64:
            raise ValueError("event names are 1..64 bytes")
        with self._lock:
            self._queued_events.append(Event(name, dict(params or {}), Target(scope, ids)))

    def set_style(self, style: str, strength: float = 1.0, over: float = 0.0, target: TargetLike = None) -> None:
        from bridge.protocol import StyleCommand, Target

        scope, ids = normalize_target(target)
        if not (0.0 <= strength <= 1.0) or not (0.0 <= over <= 3600.0):
            raise ValueError("strength must be in [0, 1] and over in [0, 3600] s")
        with self._lock:
            self._queued_events.append(StyleCommand(style, float(strength), float(over), Target(scope, ids)))

    def set_style_params(self, style: str, params: Mapping[str, Any], strength: float = 1.0, over: float = 0.0,
                         target: TargetLike = None) -> None:
        """A style command that carries a parameter set (``nrb_set_style_params``)."""
        from bridge.protocol import MAX_STYLE_PARAMS, STYLE_PARAM_STR_KEYS, StyleCommand, Target

        scope, ids = normalize_target(target)
        if not (0.0 <= strength <= 1.0) or not (0.0 <= over <= 3600.0):
            raise ValueError("strength must be in [0, 1] and over in [0, 3600] s")
        if len(params) > MAX_STYLE_PARAMS:
            raise ValueError(f"a style has at most {MAX_STYLE_PARAMS} parameters")
        values: dict[str, Any] = {}
        for key, value in params.items():
            if key in STYLE_PARAM_STR_KEYS:
                values[key] = str(value)
            elif isinstance(value, list | tuple):
                values[key] = tuple(float(v) for v in value)
            else:
                values[key] = float(value)
        with self._lock:
            self._queued_events.append(StyleCommand(style, float(strength), float(over), Target(scope, ids), values))

    def set_intensity(self, value: float, over: float = 0.0) -> None:
        """An ``intensity`` control (``nrb_set_intensity``)."""
        from bridge.protocol import Control

        if not (0.0 <= value <= 1.0) or not (0.0 <= over <= 3600.0):
            raise ValueError("intensity must be in [0, 1] and over in [0, 3600] s")
        with self._lock:
            self._queued_events.append(Control("intensity", float(value), float(over)))

    def exclude(self, target: TargetLike, excluded: bool = True) -> None:
        """An ``exclude`` control (``nrb_exclude``): None or global with ``excluded`` False includes every id."""
        from bridge.protocol import Control, Target

        scope, ids = normalize_target(target)
        if scope == "global" and excluded:
            raise ValueError("exclude needs object or material ids (everything: intensity 0)")
        with self._lock:
            self._queued_events.append(Control("exclude", 1.0 if excluded else 0.0, 0.0, Target(scope, ids)))

    def stats(self) -> ClientStats:
        with self._lock:
            s = ClientStats(**{k: getattr(self._stats, k) for k in ClientStats.__dataclass_fields__})
            s.events_pending = len(self._queued_events) + sum(len(v[1]) for v in self._in_flight.values())
            s.in_flight = len(self._in_flight)
            if self._rtts:
                p = np.percentile(np.asarray(self._rtts), [50, 95, 99])
                s.rtt_p50_ms, s.rtt_p95_ms, s.rtt_p99_ms = (float(x) for x in p)
            if not self._enabled:
                s.state = "disabled"
            return s

    def last_error(self) -> str:
        return self._error

    def retry(self) -> None:
        """Leave the ``"refused"`` state and ask the renderer again; a no-op in any other state."""
        with self._lock:
            if not self._refused:
                return
            self._retry = True
        self._wake.set()

    def _debug(self) -> str:
        with self._lock:
            return (f"latest={None if self._latest is None else self._latest.frame_id} "
                    f"in_flight={sorted(self._in_flight)} enabled={self._enabled} state={self._stats.state} "
                    f"thread_alive={self._thread.is_alive()}")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)

    # I/O thread ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        import zmq

        from bridge.client import Client, RemoteError
        from bridge.protocol import Buffer, Camera, Error, ErrorCode, Result, Welcome

        backoff = self.config.reconnect_backoff_min_ms / 1000.0
        conn: Client | None = None
        max_in_flight = self.config.frames_in_flight
        last_heard = time.monotonic()
        handshakes = 0
        no_welcome = 0  # handshake timeouts in a row

        def drop_connection(reason: str) -> None:
            nonlocal conn
            if conn is not None:
                try:
                    if reason == "disabled" and conn.session is not None:
                        conn.bye(reason)
                except Exception:  # noqa: BLE001
                    pass
                conn.close()
                conn = None
            with self._lock:
                lost = sorted(self._in_flight)
                for fid in reversed(lost):  # events of lost frames go back to the front, in order
                    self._queued_events[:0] = self._in_flight[fid][1]
                self._stats.frames_lost += len(lost) if reason != "disabled" else 0
                self._in_flight.clear()
                self._stats.state = "disabled" if not self._enabled else "connecting"
                self._stats.session = 0

        while not self._stop.is_set():
            if not self._enabled:
                if conn is not None:
                    drop_connection("disabled")
                with self._lock:
                    self._refused = self._retry = False  # enabling connects again
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            if self._refused:
                with self._lock:
                    retry, self._retry = self._retry, False
                    if retry:
                        self._refused = False
                        self._stats.state = "connecting"
                if not retry:
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                log.info("asking %s again after its refusal", self.config.endpoint)
                backoff = self.config.reconnect_backoff_min_ms / 1000.0
            if conn is None:
                conn = Client(self.config.endpoint, timeout=self.config.handshake_timeout_ms / 1000.0,
                              client_name="nrb-py/0.1.0", **self.config.curve())
                conn.ticket = self._ticket
                try:
                    out = self.config.output_size or self.config.render_size
                    w = conn.hello(self.config.render_size, self._specs, output_size=out,
                                   engine=self.config.engine_name, engine_version=self.config.engine_version)
                except RemoteError as exc:
                    conn.close()
                    conn = None
                    if exc.error.code == ErrorCode.OVERLOADED:
                        # At its session limit: that passes when another session ends, so back off and ask again.
                        self._error = (f"the renderer at {self.config.endpoint} is busy: OVERLOADED (12): "
                                       f"{exc.error.message}; asking again in {int(backoff * 1000)} ms")
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.config.reconnect_backoff_max_ms / 1000.0)
                        continue
                    # An ERROR answered HELLO: the renderer refused the session. Asking again would get the same
                    # answer, so wait for retry() or the player's toggle (nrb.h, NRB_STATE_REFUSED).
                    self._refuse(exc.error)
                    continue
                except (TimeoutError, zmq.ZMQError) as exc:
                    if isinstance(exc, TimeoutError):
                        # Not a refusal: a lazy ZeroMQ connection cannot tell "no server there" from "no answer".
                        no_welcome += 1
                        self._error = (f"no WELCOME from {self.config.endpoint} within "
                                       f"{self.config.handshake_timeout_ms} ms (is `nrb serve` running there?); "
                                       f"{no_welcome} attempt{'s' if no_welcome != 1 else ''} so far, retrying")
                    else:
                        self._error = f"handshake with {self.config.endpoint} failed: {exc}"
                    conn.close()
                    conn = None
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.reconnect_backoff_max_ms / 1000.0)
                    continue
                assert isinstance(w, Welcome)
                self._ticket = conn.ticket
                backoff = self.config.reconnect_backoff_min_ms / 1000.0
                max_in_flight = max(1, min(self.config.frames_in_flight, w.max_in_flight))
                handshakes += 1
                no_welcome = 0
                with self._lock:
                    self._stats.reconnects = max(0, handshakes - 1)
                    self._stats.state = "connected"
                    self._stats.session = w.session
                    self._stats.refusal_code, self._stats.refusal_message = 0, ""
                    self._error = ""  # the connection's complaints end with the session they were about
                last_heard = time.monotonic()
            # send the newest submitted frame when there is room
            item = None
            with self._lock:
                if self._latest is not None and len(self._in_flight) < max_in_flight:
                    item, self._latest = self._latest, None
                    carried, self._queued_events = self._queued_events, []
            if item is not None:
                from bridge.protocol import Control as _Ctl
                from bridge.protocol import Event as _Ev

                events = [e for e in carried if isinstance(e, _Ev)]
                controls = [e for e in carried if isinstance(e, _Ctl)]
                styles = [e for e in carried if not isinstance(e, _Ev | _Ctl)]
                bufs = [Buffer.from_array(n, f, a) for n, (f, a) in item.buffers.items()]
                cam = None
                if item.camera is not None:
                    cam = Camera(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in item.camera.items()})
                try:
                    conn.send_frame(bufs, events=events, styles=styles, controls=controls, dt=item.dt,
                                    deadline_ms=self.config.deadline_ms, camera=cam, frame=item.frame_id,
                                    time_ns=item.submit_ns)
                except zmq.ZMQError as exc:
                    self._error = f"send failed: {exc}"
                with self._lock:
                    self._in_flight[item.frame_id] = (item, carried)
                    self._stats.frames_sent += 1
                if not self._in_flight:
                    last_heard = time.monotonic()
            # receive answers
            try:
                if conn.sock.poll(5):
                    msg = conn.recv(0.0)
                    last_heard = time.monotonic()
                    self._on_answer(msg, Result, Error)
                    if isinstance(msg, Error) and msg.name == "NO_SESSION":
                        drop_connection("no session")
                        continue
            except (zmq.ZMQError, TimeoutError, Exception) as exc:  # noqa: BLE001 - malformed answers: reconnect
                self._error = f"receive failed: {exc}"
                drop_connection("receive failed")
                continue
            with self._lock:
                waiting = bool(self._in_flight)
            if waiting and time.monotonic() - last_heard > self.config.server_timeout_ms / 1000.0:
                self._error = f"no answer from {self.config.endpoint} for {self.config.server_timeout_ms} ms"
                drop_connection("timeout")
            elif not waiting and item is None:
                self._wake.wait(0.002)
                self._wake.clear()
        if conn is not None:
            drop_connection("disabled")

    def _refuse(self, error: Any) -> None:
        text = (f"the renderer at {self.config.endpoint} refused the session: {error.name} ({error.code}): "
                f"{error.message}")
        log.error("%s; not asking again until retry() or a disable/enable", text)
        with self._lock:
            self._stats.errors_received += 1
            self._stats.refusal_code = min(int(error.code), 2**31 - 1)
            # cut as libnrb cuts nrb_stats.refusal_message: at most 255 bytes, never inside a UTF-8 sequence
            self._stats.refusal_message = str(error.message).encode()[:255].decode("utf-8", "ignore")
            self._stats.state = "refused"
            self._refused, self._retry = True, False
            self._error = text

    def _on_answer(self, msg: Any, result_type: type, error_type: type) -> None:
        now = time.monotonic_ns()
        with self._lock:
            fid = getattr(msg, "frame", None)
            entry = self._in_flight.pop(fid, None) if fid is not None else None
            if isinstance(msg, error_type):
                self._stats.errors_received += 1
                self._error = f"{msg.name}: {msg.message}"
                if entry is not None:
                    self._stats.events_sent += len(entry[1])
                return
            if not isinstance(msg, result_type) or entry is None:
                return
            out, carried = entry
            self._stats.events_sent += len(carried)
            rtt = (now - out.submit_ns) / 1e6
            deadline = out.submit_ns + int(self.config.deadline_ms * 1e6)
            if msg.status != "ok" or msg.output is None:
                self._stats.results_late += 1
                return
            self._stats.results_received += 1
            if now > deadline:
                self._stats.results_late += 1
                return
            self._rtts.append(rtt)
            if self._result is None or out.frame_id > self._result.frame_id:
                pixels = np.array(msg.output.array(), copy=True)
                self._result = FrameResult(out.frame_id, pixels, msg.output.format, 0, rtt, msg.timing.total_ms)
                self._result_deadline_ns = deadline


def native_available() -> bool:
    try:
        from bridge import _native  # noqa: PLC0415
    except ImportError:
        return False
    return hasattr(_native, "Client")


def make_client(config: ClientConfig, kind: str | None = None) -> NativeClient | PyClient:
    """The native client when available (or ``kind``/``NRB_PANDA3D_CLIENT`` says so), else the Python one."""
    kind = kind or os.environ.get("NRB_PANDA3D_CLIENT") or ("native" if native_available() else "python")
    if kind == "native":
        return NativeClient(config)
    if kind == "python":
        return PyClient(config)
    raise ValueError(f"unknown client kind {kind!r} (native or python)")
