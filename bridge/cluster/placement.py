"""Placement and scaling rules of the front door: plain data in, a decision out (no Ray, no sockets).

Sticky placement: a session stays on the worker it was placed on for its life (its temporal history lives there);
only a new HELLO is placed, on the least-loaded live worker that can serve it. Load is what the worker reports:
open sessions first (each costs a share of the worker's render threads), then recent render time, then queue.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field


@dataclass
class WorkerLoad:
    """One worker's last report (``ClusterWorker.report``)."""

    name: str
    endpoint: str
    renderer: str  # renderer label, e.g. "deferred/0.1.0"
    sessions: int = 0
    render_ms: float = 0.0  # mean recent render time of its sessions (0: none yet)
    queue: int = 0  # frames waiting in its sessions' queues
    max_sessions: int = 16
    alive: bool = True
    idle_since: float | None = None  # monotonic time its last session ended (None while it has sessions)
    #: placements its reports do not show yet: ticket -> when placed (``still_pending`` keeps this up to date)
    pending: dict[str, float] = field(default_factory=dict)

    @property
    def placed(self) -> int:
        """Sessions placed on it that its reports do not count yet."""
        return len(self.pending)

    @property
    def effective_sessions(self) -> int:
        return self.sessions + self.placed


#: How long a placement counts against its worker without the worker reporting its session: an engine that was sent
#: there but never arrived stops counting after this.
PENDING_TTL_S = 10.0


def still_pending(pending: dict[str, float], reported: Collection[str], now: float,
                  ttl: float = PENDING_TTL_S) -> dict[str, float]:
    """The placements (ticket -> when placed) a worker's report does not account for yet: not among the tickets of
    the sessions it reported (``reported``), and younger than ``ttl``. A report is sampled on the worker a moment
    after the front door asks for it, so one that arrives after a placement may predate the session it placed:
    forgetting every placement at each report (as a plain counter reset did) let the next HELLO land on the same
    worker, counted as empty."""
    return {t: at for t, at in pending.items() if t not in reported and now - at < ttl}


def choose_worker(workers: Sequence[WorkerLoad], can_serve: set[str] | None = None) -> WorkerLoad | None:
    """The least-loaded live worker with room (and, when ``can_serve`` is given, one of those names), or None."""
    fit = [w for w in workers if w.alive and w.effective_sessions < w.max_sessions
           and (can_serve is None or w.name in can_serve)]
    if not fit:
        return None
    return min(fit, key=lambda w: (w.effective_sessions, w.render_ms, w.queue, w.name))


@dataclass
class ScalePolicy:
    """When to add and remove workers (``nrb router --min-workers/--max-workers``...).

    Add one when the average sessions per live worker reach ``sessions_per_worker``, or the mean render time
    reaches ``render_ms`` (0: off); remove one that has had no session for ``idle_s`` while more than
    ``min_workers`` live. One step per decision, so a burst does not overshoot."""

    min_workers: int = 1
    max_workers: int = 4
    sessions_per_worker: int = 4
    render_ms: float = 0.0
    idle_s: float = 30.0
    history: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers:
            raise ValueError(f"need 1 <= min_workers ({self.min_workers}) <= max_workers ({self.max_workers})")
        if self.sessions_per_worker < 1:
            raise ValueError("sessions_per_worker must be at least 1")

    def decide(self, workers: Sequence[WorkerLoad], now: float) -> tuple[int, str | None]:
        """(+1, None) to add a worker, (-1, name) to remove that one, (0, None) to keep things as they are."""
        live = [w for w in workers if w.alive]
        if len(live) < self.min_workers:
            return 1, None
        sessions = sum(w.effective_sessions for w in live)
        busy = [w.render_ms for w in live if w.sessions > 0 and w.render_ms > 0]
        mean_ms = sum(busy) / len(busy) if busy else 0.0
        if len(live) < self.max_workers and (sessions >= self.sessions_per_worker * len(live)
                                             or (self.render_ms > 0 and mean_ms >= self.render_ms)):
            return 1, None
        if len(live) > self.min_workers:
            idle = [w for w in live if w.effective_sessions == 0 and w.idle_since is not None
                    and now - w.idle_since >= self.idle_s]
            if idle and sessions < self.sessions_per_worker * (len(live) - 1):
                return -1, max(idle, key=lambda w: w.name).name
        return 0, None
