"""A render worker: the server's frame pipeline (``bridge.server.Server``) hosting N sessions, as a Ray actor.

The worker binds its own ZeroMQ endpoint; engines reach it directly after the front door's redirect (protocol
section 5.10), so Ray never carries a frame: Ray starts the actor with its declared resources (CPU threads, a GPU
fraction), the front door calls ``report`` a few times a second (load, plus a copy of every placed session's style
state) and ``place`` before redirecting an engine, and a worker whose process dies shows up as a failed call.

Style state survives a worker: ``report`` returns each placed session's style state (the ``StyleState`` without its
library, the hooks' ``ctx.state``, the session's time origin), the front door keeps the newest copy per ticket, and
when the engine comes back with that ticket the next worker gets it in ``place`` and installs it in the new session
before its first frame. The renderer's temporal history is not carried: the new session starts it afresh.
"""

from __future__ import annotations

import logging
import pickle
import threading
from dataclasses import asdict, dataclass
from typing import Any

from bridge.security import ZAP_DOMAIN
from bridge.server import Observer, Server, ServerConfig
from bridge.session import Session, StylePipeline
from bridge.style.defined import MAX_RUNTIME_STYLES, LiveLibrary, RuntimeStyleLimit, runtime_def
from bridge.style.errors import StyleError
from bridge.style.state import StyleState

log = logging.getLogger("nrb.cluster.worker")

#: Tickets ``place``d but not yet claimed by a HELLO are forgotten after this many (oldest first).
_MAX_PENDING_PLACEMENTS = 4096


def style_blob(pipeline: StylePipeline) -> bytes:
    """A session's style and hooks state as bytes (pickled; only ever exchanged between the cluster's own
    processes, over Ray, never with an engine).

    Besides the ``StyleState`` (without its library) it carries what another worker needs to read it: the library's
    style names in this worker's order (every per-style vector is indexed by them), and the definitions, by value,
    of the run-time styles the session uses (any weight in its state) or defined or named (docs/protocol.md 5.3):
    another worker's library lacks them, or holds other run-time styles at those positions."""
    st = pipeline.state
    state = {k: v for k, v in vars(st).items() if k != "library"}
    lib = pipeline.library
    weighted = st.used_styles()
    wanted = sorted(weighted & lib.runtime_names) + sorted(set(pipeline.runtime_styles) - weighted)
    runtime = {}
    for name in wanted:  # weighted first: where the next worker has little room, those matter
        d = lib.runtime_defs.get(name)
        if d is not None:
            runtime[name] = d.wire_params()
    names = lib.names  # after the layers: the library only grows, so these names cover every vector
    try:
        user: Any = pickle.dumps(pipeline.user_state)
    except Exception:  # a hook kept something unpicklable in ctx.state: that part starts afresh
        user = None
    return pickle.dumps({"state": state, "names": names, "runtime": runtime, "user_state": user,
                         "t0_ns": pipeline.t0_ns, "frames": pipeline.frames})


@dataclass
class CarriedStyles:
    """What ``define_carried`` did with a ``style_blob``'s run-time styles on this worker: the names now defined
    here, and the preset each one that found no room renders as (``StyleState.reindex``'s ``redirect``)."""

    kept: set[str]
    redirect: dict[str, str]


def define_carried(library: LiveLibrary, blob: bytes, who: str) -> CarriedStyles:
    """Define a ``style_blob``'s run-time styles in this worker's (server-wide) library, as if the session had sent
    their ``params`` again: one of the same name is redefined. ``WorkerServer.place`` does this before the engine's
    HELLO can arrive, so the WELCOME lists them. A style that cannot be defined is logged: with the library full
    (``MAX_RUNTIME_STYLES``) the session renders the preset it draws on (its ``base``) without its grading; a name
    this worker's presets, style file or hooks hold is that style here; a ``lut`` naming no style with a LUT here
    drops it."""
    carried = CarriedStyles(set(), {})
    for name, params in pickle.loads(blob).get("runtime", {}).items():
        if not library.runtime_definable(name):
            log.warning("%s: run-time style %r of the moved session is a preset or a style-file/hooks style on this "
                        "worker; the session gets this worker's %r", who, name, name)
            continue
        try:
            d = runtime_def(name, params, library, f"{who} (moved from another worker)")
            changed = library.define_runtime([d])
        except RuntimeStyleLimit:
            carried.redirect[name] = library.preset_for(d)
            log.warning("%s: run-time style %r not restored: this worker already holds %d styles defined at run time "
                        "(the limit); the session renders its base preset %r without its grading", who, name,
                        MAX_RUNTIME_STYLES, carried.redirect[name])
            continue
        except StyleError as exc:
            log.warning("%s: run-time style %r not restored: %s", who, name, exc)
            continue
        carried.kept.add(name)
        if changed:
            log.info("%s: run-time style %r defined on this worker for the moved session", who, name)
    return carried


def restore_style(pipeline: StylePipeline, blob: bytes, carried: CarriedStyles | None = None) -> None:
    """Install a ``style_blob`` into a fresh session's pipeline (its own library stays): the run-time styles it
    carries are defined first (``define_carried``, unless ``carried`` says that was done), then every per-style
    vector is re-indexed by name onto this library (``StyleState.reindex``)."""
    saved = pickle.loads(blob)
    lib = pipeline.library
    if carried is None:
        carried = define_carried(lib, blob, f"session {pipeline.session}")
    state = StyleState(lib)
    vars(state).update(saved["state"])
    if "names" in saved:
        dropped = state.reindex(saved["names"], carried.redirect)
        if dropped:
            log.warning("session %d: styles %s of the moved session are not on this worker; their weight is dropped",
                        pipeline.session, ", ".join(sorted(dropped)))
    pipeline.state = state
    pipeline.runtime_styles = set(carried.kept)
    if saved["user_state"] is not None:
        pipeline.user_state = pickle.loads(saved["user_state"])
    pipeline.t0_ns = saved["t0_ns"]
    pipeline.frames = saved["frames"]


class WorkerServer(Server):
    """``Server`` plus placement tickets: a HELLO carrying a ticket the front door ``place``d gets that session's
    saved style state, and the session's state is reported under its ticket.

    A worker may be killed at any moment (that is what failover is for), so its capture (``--record-dir``) is
    written as it goes rather than by a background thread whose queue would die with it."""

    record_in_background = False

    def __init__(self, config: ServerConfig | None = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        #: ticket -> style state to restore, with its run-time styles already defined here (None: a new session)
        self._placements: dict[str, tuple[bytes, CarriedStyles] | None] = {}
        self.tickets: dict[int, str] = {}  # session id -> ticket
        self._tickets_lock = threading.Lock()  # ``place`` and ``load`` come from Ray's threads
        self.add_observer(_Tickets(self))

    def bind(self) -> str:
        """Bind as ``Server`` does; with CurveZMQ, also let the front door's own key in (it relays engines that do
        not follow redirects, as a client holding the cluster's key pair), now and after every allow-list
        reload."""
        endpoint = super().bind()
        curve = self.io.curve
        if curve is not None and not getattr(curve, "_trusts_front_door", False):
            own = curve.keys.public
            original = curve.reload

            def trust() -> None:
                curve.allowed = curve.allowed | {own.decode("ascii")}
                curve._auth.certs.setdefault(ZAP_DOMAIN, {})[own] = True

            def reload() -> int:
                n = original()
                trust()
                return n

            curve.reload = reload  # type: ignore[method-assign]
            curve._trusts_front_door = True  # type: ignore[attr-defined]
            trust()
        return endpoint

    def place(self, ticket: str, blob: bytes | None) -> None:
        """Expect a HELLO with ``ticket``; its session starts with the style state ``blob`` (``style_blob``), whose
        run-time styles are defined now, so that the WELCOME already lists them."""
        saved = None
        if blob is not None:
            try:
                saved = (blob, define_carried(self.styles.library, blob, f"ticket {ticket}"))
            except Exception:  # a failed call here would tell the front door this worker is dead
                log.exception("ticket %s: cannot define the run-time styles of its style state", ticket)
                saved = (blob, CarriedStyles(set(), {}))
        with self._tickets_lock:
            self._placements[ticket] = saved
            while len(self._placements) > _MAX_PENDING_PLACEMENTS:
                self._placements.pop(next(iter(self._placements)))

    def load(self) -> dict[str, Any]:
        """Sessions, mean recent render ms, queued frames, and each placed session's style state by ticket."""
        with self.scheduler.cond:
            sessions = list(self.sessions.values())
        with self._tickets_lock:
            tickets = dict(self.tickets)
        estimates = [e for e in (s.work.estimate_ms() for s in sessions) if e is not None]
        styles: dict[str, bytes] = {}
        for s in sessions:
            ticket = tickets.get(s.id)
            if ticket is None:
                continue
            try:
                styles[ticket] = style_blob(s.pipeline)
            except RuntimeError:  # changed while we read it (a render thread advanced it): next report
                pass
        return {"sessions": len(sessions), "render_ms": sum(estimates) / len(estimates) if estimates else 0.0,
                "queue": sum(len(s.queue) for s in sessions), "styles": styles}


class _Tickets(Observer):
    """Restores a placed session's style state when its HELLO names a ticket: on the I/O thread, as the session
    opens, so before any of its frames is processed."""

    def __init__(self, server: WorkerServer) -> None:
        self.server = server

    def session_opened(self, sess: Session, hello: bytes, welcome: bytes) -> None:
        ticket = sess.hello.ticket
        if ticket is None:
            return
        srv = self.server
        with srv._tickets_lock:
            saved = srv._placements.pop(ticket, None)
            srv.tickets[sess.id] = ticket
            for gone in [s for s in srv.tickets if s not in srv.sessions]:
                del srv.tickets[gone]
        if saved is not None:
            try:
                restore_style(sess.pipeline, *saved)
                log.info("session %d: style state restored from ticket %s", sess.id, ticket)
            except Exception:
                log.exception("session %d: cannot restore the style state of ticket %s", sess.id, ticket)


@dataclass
class WorkerSpec:
    """What the front door tells a new worker: its server options (``ServerConfig`` fields) and where engines
    reach it (``advertise``: the host engines connect to; default the Ray node's address when binding all
    interfaces, else the bind host)."""

    name: str
    server: dict[str, Any]
    advertise: str | None = None


class ClusterWorker:
    """The Ray actor body (``ray.remote(...)(ClusterWorker)`` in ``bridge.cluster.frontdoor``); also usable
    in-process, which is how its pieces are tested without Ray."""

    def __init__(self, spec: dict[str, Any]) -> None:
        ws = WorkerSpec(**spec)
        self.name = ws.name
        cfg = ServerConfig(**ws.server)
        self.server = WorkerServer(cfg)
        endpoint = self.server.start().endpoint
        assert endpoint is not None
        if ws.advertise is not None:
            host = ws.advertise
        elif cfg.host in ("0.0.0.0", "::", "*"):
            import ray

            host = ray.util.get_node_ip_address()
        else:
            host = None
        self.endpoint = endpoint if host is None else f"tcp://{host}:{endpoint.rsplit(':', 1)[1]}"
        probe = self.server.factory()
        self.info = {"name": self.name, "endpoint": self.endpoint, "renderer": self.server.renderer_label,
                     "required": [s.name for s in probe.required()], "styles": self.server.styles.library.names,
                     "max_in_flight": cfg.max_in_flight, "max_sessions": cfg.max_sessions,
                     "output_format": probe.output_format}
        log.info("worker %s serving %s at %s", self.name, self.server.renderer_label, self.endpoint)

    def describe(self) -> dict[str, Any]:
        return dict(self.info)

    def report(self) -> dict[str, Any]:
        return {**self.server.load(), "name": self.name}

    def place(self, ticket: str, blob: bytes | None) -> bool:
        self.server.place(ticket, blob)
        return True

    def reload_keys(self) -> None:
        self.server.reload_keys()

    def stop(self) -> None:
        self.server.stop()


def worker_spec(name: str, config: ServerConfig, advertise: str | None = None) -> dict[str, Any]:
    """The picklable spec of a worker running ``config``."""
    return asdict(WorkerSpec(name, asdict(config), advertise))
