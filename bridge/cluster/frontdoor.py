"""The front door (``nrb router``): one well-known endpoint that places sessions on Ray workers.

Engines connect here as they would to ``nrb serve``. A HELLO is placed on the least-loaded live worker that can
serve it (``bridge.cluster.placement``); an engine that offers the ``"redirect"`` capability gets a WELCOME
``redirect`` (protocol section 5.10) and from then on talks to its worker directly, so the front door is never on
the frame path. An engine that does not offer it is relayed: the front door forwards its messages to the worker
and back (the old behaviour through one more hop).

Two threads: the I/O loop (the ROUTER, the relays' DEALERs) and the supervisor, which asks every worker for its
load a few times a second over Ray, keeps the newest copy of each placed session's style state, notices dead
workers (a failed Ray call) and adds or removes workers (``ScalePolicy``). A worker's death ends its engines'
connections; each engine falls back to its own image, comes back here with its ticket, and is placed again with its
style state restored (docs/cluster.md "Failure semantics").
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from bridge.cluster.placement import ScalePolicy, WorkerLoad, choose_worker, still_pending
from bridge.cluster.worker import ClusterWorker, worker_spec
from bridge.protocol import (
    Bye,
    Error,
    ErrorCode,
    Hello,
    OutputSpec,
    Ping,
    Pong,
    ProtocolError,
    Redirect,
    Welcome,
    decode,
    encode,
    error_message,
    parse_header,
    renderer_matches,
)
from bridge.renderer import available
from bridge.security import ServerCurve, check_bind_policy, load_keypair
from bridge.server import ServerConfig, endpoint_host

log = logging.getLogger("nrb.cluster")

#: Style copies and placements kept per ticket (oldest forgotten first).
_MAX_STYLE_COPIES = 10000
#: How long the I/O loop waits for a worker to accept a placement (a dead one fails sooner).
_PLACE_TIMEOUT_S = 2.0


@dataclass
class RendererPool:
    """The workers of one renderer (``nrb router --renderer NAME=MIN:MAX``): ``renderer`` as for ``nrb serve``, with
    ``renderer_options``, scaled between ``min_workers`` (at least 1: the front door learns what a pool renders, and
    so which HELLOs it can place there, from its running workers) and ``max_workers``."""

    renderer: str
    renderer_options: dict[str, Any] = field(default_factory=dict)
    min_workers: int = 1
    max_workers: int = 4


@dataclass
class ClusterConfig(ServerConfig):
    """``nrb router`` options: every ``nrb serve`` option (``ServerConfig``), which the workers serve with, plus
    where and how the workers run.

    Binding: the front door binds like ``nrb serve`` (``host``/``port``/``endpoint``, CurveZMQ with
    ``curve_secret`` + ``allow_dir`` or ``insecure``); workers bind ``worker_host`` (port chosen per worker) and
    use the same key pair and allow-list, so an engine trusts one server key for the whole cluster. Every other
    ``ServerConfig`` field is each worker's: ``renderer`` (+ options), ``hooks``, ``styles``, ``max_in_flight``,
    the limits and budgets; ``max_sessions`` sessions at most per worker, rendered by ``workers`` render threads
    (0: one per declared CPU) of ``worker_threads`` renderer threads per frame (default 1 here: a worker's CPUs
    are the ones Ray gave it). Workers record to ``record_dir``/<worker>.nrbcap (``record`` is not used), and
    serve neither metrics nor a status line.

    Workers: ``worker_cpus``/``worker_gpus`` are the Ray resources each worker actor declares; ``worker_niceness``
    is their niceness over their Ray node's (Ray starts workers at +15 unless told, which puts a frame's I/O and
    render threads behind any busier process on the machine; ``nrb serve`` runs at the niceness it is started with,
    and so do workers at 0 here: bench/cluster.md measures both). Scaling:
    ``min_workers``..``max_workers``, a worker added at ``sessions_per_worker`` sessions per worker or
    ``render_ms`` mean render time, removed after ``idle_s`` without sessions.

    Several renderers: ``pools`` (``RendererPool``), each scaled on its own between its own bounds by the same
    thresholds; without any, one pool of ``renderer`` (+ ``renderer_options``) between ``min_workers`` and
    ``max_workers``."""

    worker_threads: int = 1
    worker_host: str = "127.0.0.1"
    worker_advertise: str | None = None
    worker_cpus: float = 1.0
    worker_gpus: float = 0.0
    worker_niceness: int = 0
    min_workers: int = 1
    max_workers: int = 4
    sessions_per_worker: int = 4
    render_ms: float = 0.0
    idle_s: float = 30.0
    report_interval: float = 0.2
    ray_address: str | None = None
    record_dir: str | None = None  # each worker records its sessions to DIR/<worker>.nrbcap (nrb serve --record)
    pools: list[RendererPool] = field(default_factory=list)


@dataclass
class _Worker:
    handle: Any  # the Ray actor
    info: dict[str, Any]
    load: WorkerLoad
    pool: str | None = None  # the RendererPool (by renderer) whose scaler owns it; None: added in code, not scaled


@dataclass
class _Pool:
    spec: RendererPool
    policy: ScalePolicy


@dataclass
class _Relay:
    """An engine that does not follow redirects: its messages go to its worker through this DEALER."""

    sock: zmq.Socket[Any]
    worker: str


def _resolve_renderer(renderer: str) -> str:
    """A ``path.py:factory`` renderer resolved against our directory, not the Ray worker process's."""
    if ":" in renderer and renderer.split(":", 1)[0].endswith(".py"):
        path, factory = renderer.split(":", 1)
        return f"{Path(path).resolve()}:{factory}"
    return renderer


def _ray() -> Any:
    import ray  # the [cluster] extra; imported here so that the rest of bridge does not need it

    return ray


class FrontDoor:
    """Places sessions on Ray workers and redirects engines to them. ``start()``/``stop()`` in-process,
    ``serve_forever()`` for ``nrb router``."""

    def __init__(self, config: ClusterConfig | None = None, *, context: zmq.Context[Any] | None = None,
                 **overrides: Any) -> None:
        self.config = cfg = dataclasses.replace(config or ClusterConfig(), **overrides)
        if (cfg.curve_secret is None) != (cfg.allow_dir is None):
            raise ValueError("CurveZMQ needs both curve_secret (--curve-secret) and allow_dir (--allow-dir)")
        if not 0 <= cfg.worker_niceness <= 19:
            raise ValueError(f"worker_niceness is 0..19 (over the Ray node's), got {cfg.worker_niceness}")
        curve = cfg.curve_secret is not None
        host = cfg.host if cfg.endpoint is None else endpoint_host(cfg.endpoint)
        for h in (host, cfg.worker_host):
            if h is not None:
                check_bind_policy(h, curve=curve, insecure=cfg.insecure)  # SecurityError
        specs = list(cfg.pools) or [RendererPool(cfg.renderer, dict(cfg.renderer_options), cfg.min_workers,
                                                 cfg.max_workers)]
        #: renderer -> its pool, in the order given (the first is the default of ``add_worker()``)
        self.pools: dict[str, _Pool] = {}
        for spec in specs:
            if spec.renderer in self.pools:
                raise ValueError(f"renderer {spec.renderer!r} is given twice; one pool per renderer")
            try:
                policy = ScalePolicy(spec.min_workers, spec.max_workers, cfg.sessions_per_worker, cfg.render_ms,
                                     cfg.idle_s)
            except ValueError as exc:
                raise ValueError(f"renderer {spec.renderer!r}: {exc}") from None
            self.pools[spec.renderer] = _Pool(spec, policy)
        self.policy = next(iter(self.pools.values())).policy  # the default pool's
        self._ctx = context or zmq.Context.instance()
        self._lock = threading.Lock()  # workers, styles, tickets
        self.workers: dict[str, _Worker] = {}
        self.styles: collections.OrderedDict[str, bytes] = collections.OrderedDict()  # ticket -> style state
        self.ticket_worker: collections.OrderedDict[str, str] = collections.OrderedDict()  # ticket -> worker
        #: ticket -> the renderer label it was placed on: a HELLO bringing the ticket back without naming a renderer
        #: goes to a worker of the same renderer when one is live (its style state was made there)
        self.ticket_renderer: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.counts: collections.Counter[str] = collections.Counter()
        self.endpoint: str | None = None
        self.sock: zmq.Socket[Any] | None = None
        self._curve: ServerCurve | None = None
        self._relays: dict[bytes, _Relay] = {}
        # relayed engines' connections (I/O thread only): descriptor -> routing id, and the ROUTER's monitor, so a
        # relay ends when its engine's connection closes (as nrb serve frees a vanished engine's sessions)
        self._fd_owner: dict[int, bytes] = {}
        #: a relayed engine's last ticket, by its connection (I/O thread only): an engine that does not follow
        #: redirects does not bring tickets back, so its style state is found by the connection it says HELLO on
        self._relay_tickets: collections.OrderedDict[bytes, str] = collections.OrderedDict()
        self._monitor: zmq.Socket[Any] | None = None
        self._names = itertools.count(1)
        self._session_ids = itertools.count(random.randrange(1, 1 << 31))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._actor_class: Any = None

    # ---------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> FrontDoor:
        """Join (or start) Ray, start ``min_workers`` workers, bind, then serve on background threads."""
        ray = _ray()
        if not ray.is_initialized():
            address = self.config.ray_address or os.environ.get("RAY_ADDRESS")  # Ray's own convention
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                # "local": a new instance of our own even if another Ray runs on this machine
                most = sum(p.spec.max_workers for p in self.pools.values())
                ray.init(address="local", num_cpus=max(2, int(self.config.worker_cpus * most) + 1),
                         include_dashboard=False, log_to_driver=False)
        for pool in self.pools.values():
            for _ in range(pool.spec.min_workers):
                self.add_worker(pool.spec.renderer)
        self._bind()
        self._stop.clear()
        self._threads = [threading.Thread(target=self._io_loop, name="nrb-frontdoor", daemon=True),
                         threading.Thread(target=self._supervise, name="nrb-supervisor", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and stop every worker."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        with self._lock:
            workers = list(self.workers.values())
            self.workers.clear()
        for w in workers:
            self._end_worker(w)

    def __enter__(self) -> FrontDoor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """``nrb router``: serve until SIGINT/SIGTERM (starting first unless ``start()`` was called)."""
        import signal

        if not self._threads:
            self.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda signum, frame: self._stop.set())
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, lambda signum, frame: self.reload_keys())
        while not self._stop.wait(0.5):
            pass
        self.stop()

    def reload_keys(self) -> None:
        """Re-read the allow-list here and on every worker (``nrb router``: SIGHUP)."""
        if self._curve is not None:
            self._curve.reload()
        with self._lock:
            handles = [w.handle for w in self.workers.values()]
        for h in handles:
            h.reload_keys.remote()

    # ---------------------------------------------------------------------------------------------- workers
    def _server_config(self, name: str) -> ServerConfig:
        cfg = self.config
        renderer = _resolve_renderer(cfg.renderer)
        threads = cfg.workers or max(1, int(round(cfg.worker_cpus)))
        served = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(ServerConfig)}  # the workers' options

        def resolved(path: str | None) -> str | None:  # the worker process may run elsewhere
            return str(Path(path).resolve()) if path else None

        return ServerConfig(**{**served, "renderer": renderer, "renderer_options": dict(cfg.renderer_options),
                               "host": cfg.worker_host, "port": 0, "endpoint": None,
                               "curve_secret": resolved(cfg.curve_secret), "allow_dir": resolved(cfg.allow_dir),
                               "hooks": resolved(cfg.hooks), "styles": resolved(cfg.styles),
                               "workers": min(threads, cfg.max_sessions), "metrics_port": None, "status": False,
                               "record": str(Path(cfg.record_dir).resolve() / f"{name}.nrbcap")
                               if cfg.record_dir else None})

    def add_worker(self, renderer: str | None = None, renderer_options: dict[str, Any] | None = None) -> str:
        """Start one worker actor (blocks until it serves); return its name. Without ``renderer``, one of the first
        pool's; a pool's renderer (options omitted): one of that pool's, which its scaler then counts and may
        remove. Any other ``renderer`` (+ options): a worker no scaler owns, so one cluster can offer a renderer
        set up in code (a HELLO that names one is placed on a worker that has it, protocol section 5.11)."""
        ray = _ray()
        if self._actor_class is None:
            self._actor_class = ray.remote(ClusterWorker)
        name = f"w{next(self._names)}-{os.getpid()}"
        key = next(iter(self.pools)) if renderer is None else renderer
        pool = self.pools.get(key) if renderer_options is None else None
        if pool is not None:
            renderer, renderer_options = pool.spec.renderer, pool.spec.renderer_options
        assert renderer is not None
        config = dataclasses.replace(self._server_config(name), renderer=_resolve_renderer(renderer),
                                     renderer_options=dict(renderer_options or {}))
        # Ray's own variable (it is how Ray's job supervisor starts its actor at 0 too)
        env = {"RAY_worker_niceness": str(self.config.worker_niceness)}
        handle = self._actor_class.options(num_cpus=self.config.worker_cpus, num_gpus=self.config.worker_gpus,
                                           max_restarts=0, max_concurrency=4,
                                           runtime_env={"env_vars": env}).remote(
            worker_spec(name, config, self.config.worker_advertise))
        info = ray.get(handle.describe.remote(), timeout=120)
        load = WorkerLoad(name, info["endpoint"], info["renderer"], max_sessions=info["max_sessions"],
                          idle_since=time.monotonic())
        with self._lock:
            self.workers[name] = _Worker(handle, info, load, None if pool is None else key)
        self.counts["workers_added"] += 1
        log.info("worker %s up at %s (%s)", name, info["endpoint"], info["renderer"])
        return name

    def remove_worker(self, name: str) -> None:
        """Stop a worker (the scaler does this to idle ones)."""
        with self._lock:
            w = self.workers.pop(name, None)
        if w is not None:
            self.counts["workers_removed"] += 1
            log.info("worker %s removed", name)
            self._end_worker(w)

    def _end_worker(self, w: _Worker) -> None:
        ray = _ray()
        try:
            ray.get(w.handle.stop.remote(), timeout=5)
        except Exception:
            pass
        try:
            ray.kill(w.handle)
        except Exception:
            pass

    def worker_handle(self, name: str) -> Any:
        """The Ray actor of a worker (tests and the benchmark kill one with ``ray.kill``)."""
        with self._lock:
            return self.workers[name].handle

    def kill_worker(self, name: str, timeout: float = 30.0) -> None:
        """Kill worker ``name``'s process through Ray, as a crash would, and wait until the process is gone
        (``ray.kill`` returns at once, and Ray calls the actor dead a moment before its process has exited): the
        failover drill of the tests and of ``nrb bench cluster``. ``TimeoutError`` if it outlives ``timeout``."""
        ray = _ray()
        handle = self.worker_handle(name)
        pid = ray.get(handle.__ray_call__.remote(lambda actor: os.getpid()), timeout=timeout)
        ray.kill(handle, no_restart=True)
        end = time.monotonic() + timeout
        proc = Path(f"/proc/{pid}")
        while proc.exists():  # Linux: /proc says when it is gone (or a zombie, as good as gone)
            try:
                if (proc / "stat").read_text().split()[2] == "Z":
                    return
            except (OSError, IndexError):
                return
            if time.monotonic() > end:
                raise TimeoutError(f"worker {name} (pid {pid}) is still running {timeout:g} s after ray.kill")
            time.sleep(0.005)

    def placements(self) -> list[tuple[str, str]]:
        """(ticket, worker name) of every placement, oldest first."""
        with self._lock:
            return list(self.ticket_worker.items())

    def loads(self, pool: str | None = None) -> list[WorkerLoad]:
        """Every worker's last load (of the pool of renderer ``pool`` only, when given)."""
        with self._lock:
            return [dataclasses.replace(w.load, pending=dict(w.load.pending)) for w in self.workers.values()
                    if pool is None or w.pool == pool]

    def _mark_dead(self, name: str, why: str) -> None:
        with self._lock:
            w = self.workers.pop(name, None)
        if w is None:
            return
        self.counts["workers_died"] += 1
        log.warning("worker %s is gone (%s); its engines come back through the front door", name, why)
        for rid, relay in [(r, x) for r, x in self._relays.items() if x.worker == name]:
            relay.worker = ""  # the I/O loop says BYE to the engine (it cannot touch sockets from here)

    def _supervise(self) -> None:
        """Reports, failure detection, style copies and scaling, every ``report_interval``."""
        ray = _ray()
        from ray.exceptions import GetTimeoutError, RayActorError

        while not self._stop.wait(self.config.report_interval):
            with self._lock:
                items = [(n, w.handle) for n, w in self.workers.items()]
            refs = {n: h.report.remote() for n, h in items}
            now = time.monotonic()
            for name, ref in refs.items():
                try:
                    rep = ray.get(ref, timeout=max(1.0, 5 * self.config.report_interval))
                except RayActorError as exc:
                    self._mark_dead(name, type(exc).__name__)
                    continue
                except GetTimeoutError:
                    continue  # busy or slow: judged by its next report
                except Exception as exc:  # noqa: BLE001 - any other failure of the actor counts as death
                    self._mark_dead(name, f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    w = self.workers.get(name)
                    if w is None:
                        continue
                    load = w.load
                    if rep["sessions"] == 0 and load.sessions > 0:
                        load.idle_since = now
                    elif rep["sessions"] > 0:
                        load.idle_since = None
                    load.sessions, load.render_ms, load.queue = rep["sessions"], rep["render_ms"], rep["queue"]
                    load.pending = still_pending(load.pending, rep["styles"], time.monotonic())
                    for ticket, blob in rep["styles"].items():
                        self.styles[ticket] = blob
                        self.styles.move_to_end(ticket)
                    while len(self.styles) > _MAX_STYLE_COPIES:
                        self.styles.popitem(last=False)
            for key, pool in self.pools.items():  # each renderer's pool on its own, one step each per period
                step, victim = pool.policy.decide(self.loads(key), time.monotonic())
                try:
                    if step > 0:
                        self.add_worker(key)
                    elif step < 0 and victim is not None:
                        self.remove_worker(victim)
                except Exception:
                    log.exception("scaling step %+d of the %s workers failed", step, key)

    # ---------------------------------------------------------------------------------------------- I/O loop
    def _bind(self) -> None:
        cfg = self.config
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if cfg.curve_secret is not None and cfg.allow_dir is not None:
            self._curve = ServerCurve(self._ctx, Path(cfg.curve_secret), Path(cfg.allow_dir))
            self._curve.apply(sock)
        if cfg.endpoint is not None:
            sock.bind(cfg.endpoint)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        elif cfg.port == 0:
            self.endpoint = f"tcp://{cfg.host}:{sock.bind_to_random_port(f'tcp://{cfg.host}')}"
        else:
            self.endpoint = f"tcp://{cfg.host}:{cfg.port}"
            sock.bind(self.endpoint)
        self.sock = sock
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def _send(self, rid: bytes, msg: Any) -> None:
        assert self.sock is not None
        try:
            self.sock.send_multipart([rid, *encode(msg)], flags=zmq.NOBLOCK)
        except zmq.ZMQError:  # the engine left (EHOSTUNREACH) or is not reading (EAGAIN): nothing to keep
            self.counts["undeliverable"] += 1

    def _io_loop(self) -> None:
        assert self.sock is not None
        sock = self.sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for rid, relay in list(self._relays.items()):
                    if not relay.worker:  # its worker died: the engine says HELLO again (protocol section 5.7)
                        self._close_relay(rid, poller)
                        self._send(rid, Bye(None, "worker lost"))
                ready = dict(poller.poll(50))
                if self._monitor is not None and self._monitor in ready:
                    self._drain_monitor(poller)
                if sock in ready:
                    for _ in range(256):
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        try:
                            self._on_message(parts, poller)
                        except Exception:
                            log.exception("front door: handling a message failed")
                for rid, relay in list(self._relays.items()):
                    if relay.sock in ready:
                        for _ in range(256):
                            try:
                                out = relay.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                            except zmq.Again:
                                break
                            try:
                                sock.send_multipart([rid, *out], flags=zmq.NOBLOCK, copy=False)
                            except zmq.ZMQError:
                                self.counts["undeliverable"] += 1
        finally:
            for relay in self._relays.values():
                relay.sock.close(0)
            self._relays.clear()
            if self._monitor is not None:
                sock.disable_monitor()
                self._monitor.close(0)
                self._monitor = None
            sock.close(0)
            self.sock = None
            if self._curve is not None:
                self._curve.close()
                self._curve = None

    def _drain_monitor(self, poller: zmq.Poller) -> None:
        """A relayed engine's connection closed: close its relay, so its worker ends the session at once."""
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor is not None:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event.get("event") == zmq.EVENT_DISCONNECTED:
                rid = self._fd_owner.pop(int(event.get("value", -1)), None)
                log.debug("engine connection %s closed (relayed: %s)", event.get("value"), rid is not None)
                if rid is not None and self._close_relay(rid, poller):
                    self.counts["relays_closed"] += 1
                if rid is not None:
                    self._relay_tickets.pop(rid, None)

    def _close_relay(self, rid: bytes, poller: zmq.Poller) -> bool:
        relay = self._relays.pop(rid, None)
        if relay is None:
            return False
        try:
            poller.unregister(relay.sock)
        except KeyError:
            pass
        relay.sock.close(0)
        return True

    def _note_relayed_peer(self, rid: bytes, frames: list[Any], poller: zmq.Poller) -> None:
        """Remember the connection descriptor a relayed engine talks on (see ``IOLoop._note_peer``, bridge/server)."""
        try:
            fd = frames[0].get(zmq.SRCFD) if frames else -1
        except (zmq.ZMQError, AttributeError, TypeError, ValueError):
            return
        if not isinstance(fd, int) or fd < 0 or self._fd_owner.get(fd) == rid:
            return
        self._drain_monitor(poller)  # a reused descriptor's old DISCONNECTED first
        self._fd_owner[fd] = rid

    def _on_message(self, parts: list[Any], poller: zmq.Poller) -> None:
        rid, frames = parts[0].bytes, parts[1:]
        if self._curve is not None:
            try:
                user = frames[0].get("User-Id") if frames else None
            except (zmq.ZMQError, AttributeError):
                user = None
            if not self._curve.is_allowed(user):
                return
        relay = self._relays.get(rid)
        if relay is not None:
            self._note_relayed_peer(rid, frames, poller)
        try:
            header = parse_header(frames[0]) if frames else None
            if header is None:
                raise ProtocolError(ErrorCode.MALFORMED, "empty message")
            kind = header.get("type")
            if relay is not None and kind != "HELLO":
                relay.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return
            msg = decode(frames)
        except ProtocolError as err:
            self._send(rid, error_message(err))
            return
        except zmq.ZMQError:
            self.counts["undeliverable"] += 1
            return
        if isinstance(msg, Hello):
            try:
                self._on_hello(rid, msg, poller)
            except ProtocolError as err:
                self._send(rid, error_message(err))
            if rid in self._relays:
                self._note_relayed_peer(rid, frames, poller)
        elif isinstance(msg, Ping):
            self._send(rid, Pong(msg.nonce, msg.time_ns))
        elif isinstance(msg, (Bye, Pong, Error)):
            pass
        else:
            sid = getattr(msg, "session", None)
            self._send(rid, Error(ErrorCode.NO_SESSION, ErrorCode.NO_SESSION.name,
                                  "this is a front door: sessions live on the worker its WELCOME redirected to",
                                  sid, getattr(msg, "frame", None)))

    def _on_hello(self, rid: bytes, hello: Hello, poller: zmq.Poller) -> None:
        ray = _ray()
        offered = {b.name for b in hello.buffers}
        relay = self._relays.get(rid)
        tried: set[str] = set()
        while True:
            with self._lock:
                loads = [w.load for n, w in self.workers.items() if n not in tried]
                previous = hello.ticket if hello.ticket is not None else self._relay_tickets.get(rid)
                # protocol section 5.11: only workers running the renderer the HELLO names (any without a name)
                kinds = {n: w for n, w in self.workers.items()
                         if hello.renderer is None or renderer_matches(hello.renderer, w.info["renderer"])}
                was = self.ticket_renderer.get(previous) if previous is not None else None
                same = {n: w for n, w in kinds.items() if w.info["renderer"] == was and n not in tried}
                if same:  # a session coming back stays on its renderer while one of its workers lives
                    kinds = same
                if not kinds and self.workers:
                    have = sorted({w.info["renderer"] for w in self.workers.values()})
                    raise ProtocolError(ErrorCode.UNSUPPORTED, f"renderer: no worker of this cluster renders "
                                                               f"{hello.renderer!r} (workers render {have})")
                can = {n for n, w in kinds.items() if all(available(b, offered) for b in w.info["required"])}
                if relay is not None:  # a relayed connection keeps its worker
                    can &= {relay.worker}
                if not can and kinds and relay is None:
                    need = sorted(next(iter(kinds.values())).info["required"])
                    raise ProtocolError(ErrorCode.BAD_VALUE, f"buffers: the cluster's renderer needs buffers {need}"
                                                             ", which the engine does not offer")
                chosen = choose_worker(loads, can)
                if chosen is None:
                    raise ProtocolError(ErrorCode.OVERLOADED, "no worker has room for another session (the front "
                                                              "door is adding one if it may)")
                w = self.workers[chosen.name]
                ticket = uuid.uuid4().hex[:24]
                chosen.pending[ticket] = time.monotonic()  # counted until a report of that worker shows its session
                blob = self.styles.get(previous) if previous is not None else None
            try:
                ray.get(w.handle.place.remote(ticket, blob), timeout=_PLACE_TIMEOUT_S)
                break
            except Exception as exc:  # a dead worker fails fast: place on another
                tried.add(chosen.name)
                self._mark_dead(chosen.name, f"placement failed: {type(exc).__name__}")
        with self._lock:
            if blob is not None:
                self.styles[ticket] = blob
            self.ticket_worker[ticket] = chosen.name
            self.ticket_renderer[ticket] = w.info["renderer"]
            while len(self.ticket_worker) > _MAX_STYLE_COPIES:
                self.ticket_worker.popitem(last=False)
            while len(self.ticket_renderer) > _MAX_STYLE_COPIES:
                self.ticket_renderer.popitem(last=False)
        self.counts["placed"] += 1
        self.counts["restored" if blob is not None else "new"] += 1
        if "redirect" in hello.capabilities:
            info = w.info
            welcome = Welcome(next(self._session_ids), info["renderer"], [], [], [],
                              OutputSpec(info["output_format"], *hello.output_size), info["max_in_flight"],
                              list(info["styles"])[:256], redirect=Redirect(info["endpoint"], ticket))
            self._send(rid, welcome)
            log.info("placed %s %s on %s (ticket %s%s)", hello.engine, hello.client, chosen.name, ticket,
                     ", style restored" if blob is not None else "")
            return
        # An engine that does not follow redirects: relay it (the old behaviour, one more hop).
        if relay is None:
            dealer = self._ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            if self.config.curve_secret is not None:
                keys = load_keypair(Path(self.config.curve_secret))
                dealer.curve_serverkey = keys.public  # workers share the front door's key pair
                dealer.curve_publickey = keys.public
                assert keys.secret is not None
                dealer.curve_secretkey = keys.secret
            dealer.connect(w.info["endpoint"])
            relay = self._relays[rid] = _Relay(dealer, chosen.name)
            poller.register(dealer, zmq.POLLIN)
        self._relay_tickets[rid] = ticket
        self._relay_tickets.move_to_end(rid)
        while len(self._relay_tickets) > _MAX_STYLE_COPIES:
            self._relay_tickets.popitem(last=False)
        relay.sock.send_multipart(encode(dataclasses.replace(hello, ticket=ticket)), flags=zmq.NOBLOCK)
        self.counts["relayed"] += 1
