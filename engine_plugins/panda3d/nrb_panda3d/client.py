"""The plugin's view of the engine client: a thin adapter over ``bridge._native.Client`` (``libnrb``'s C ABI).

The plugin calls only the verbs of the C ABI (``nrb.h``): frame begin, tag buffer, set camera, submit, acquire
newest result (or none → fall back), set enabled, fire event, set style, set style params (a style written at run
time), set intensity, exclude, stats, last error, retry. Everything an engine client does between those verbs (the
I/O thread, frames in flight, deadlines, reconnect with back-off, events re-sent after a lost frame, the refused
state, following a cluster's redirect with its ticket) is libnrb's, for this plugin as for Godot and Unreal: there
is no second implementation of it here. ``bridge._native`` is built by ``pip install`` and ``make setup`` and
shipped in the wheel; where it is missing (a source checkout never built) :func:`make_client` raises
:class:`NativeClientMissing`, which says how to build it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    #: (0, 0): the link's default (nrb.h nrb_link): the output size, or half of it on a remote link
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


# ------------------------------------------------------------------------------------------ libnrb


class NativeClientMissing(ImportError):
    """``bridge._native`` (libnrb's binding) is not built, or was built without ``Client``: the plugin has no other
    client, so it says how to get this one instead of failing later on a missing attribute."""


def native_client_type() -> Any:
    """``bridge._native.Client``, or :class:`NativeClientMissing` saying how to build it."""
    try:
        from bridge import _native  # noqa: PLC0415 - the compiled module, imported where a client is made
    except ImportError as exc:
        raise NativeClientMissing(
            f"the Panda3D plugin needs libnrb's Python binding bridge._native, which is not built ({exc}): run "
            "`make setup` in the repository, or reinstall the package (`pip install .`)") from exc
    client = getattr(_native, "Client", None)
    if client is None:
        raise NativeClientMissing(
            f"bridge._native ({getattr(_native, '__file__', 'no file')}) has no Client: an old or partial build; run "
            "`make setup` in the repository, or reinstall the package (`pip install .`)")
    return client


class NativeClient:
    """``bridge._native.Client`` (pybind11 over ``libnrb``'s C ABI through ``nrb.hpp``) behind the plugin's verbs."""

    def __init__(self, config: ClientConfig) -> None:
        self._c = native_client_type()(
            endpoint=config.endpoint, render_size=tuple(config.render_size),
            output_size=tuple(config.output_size or config.render_size), buffers=list(config.buffers),
            frames_in_flight=config.frames_in_flight, deadline_ms=config.deadline_ms, engine=config.engine_name,
            engine_version=config.engine_version, enabled=not config.start_disabled,
            connect_timeout_ms=config.connect_timeout_ms, handshake_timeout_ms=config.handshake_timeout_ms,
            server_timeout_ms=config.server_timeout_ms, reconnect_backoff_min_ms=config.reconnect_backoff_min_ms,
            reconnect_backoff_max_ms=config.reconnect_backoff_max_ms, **config.curve(),
        )

    @property
    def render_size(self) -> tuple[int, int]:
        """The size to render the G-buffers at (``nrb_client_get_link``): the configured one, or the link's
        default. Buffers tagged at the output size are resampled to it by libnrb."""
        w, h = self._c.link["render_size"]
        return int(w), int(h)

    @property
    def remote(self) -> bool:
        """Whether libnrb treats the endpoint as a remote link (nrb.h's rule): compact formats, half the size."""
        return bool(self._c.link["link"] == "remote")

    def frame_begin(self, dt: float = -1.0) -> int:
        return int(self._c.begin(dt))

    def frame_live(self) -> bool:
        """Whether the frame begun will be sent (``nrb_frame_get_live``): False while disconnected, disabled, or
        holding frames back from a renderer too slow for the deadline; then its G-buffers need no readback."""
        return bool(self._c.frame_live())

    def tag_buffer(self, name: str, fmt: str, array: np.ndarray) -> None:
        self._c.tag_buffer(name, fmt, array)

    def acquire_slot(self, name: str, fmt: str, width: int, height: int) -> np.ndarray:
        """Where buffer ``name`` of the current frame goes (``nrb_frame_acquire_slot``): a writable view of its
        shared-memory slot (or staging buffer), valid until ``submit``; the pack pass copies its readback here."""
        return np.asarray(self._c.acquire_slot(name, fmt, int(width), int(height)))

    def set_camera(self, camera: Mapping[str, Any]) -> None:
        self._c.set_camera(dict(camera))

    def set_lights(self, lights: list[dict[str, Any]]) -> None:
        """The frame's light list (``nrb_frame_set_lights``, protocol §6.1 ``x_lights``); ValueError names a bad
        light's field."""
        self._c.set_lights(lights)

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
        self._c = None


def make_client(config: ClientConfig) -> NativeClient:
    """The plugin's engine client: libnrb through ``bridge._native.Client`` (:class:`NativeClientMissing` when that
    is not built)."""
    return NativeClient(config)
