"""The one place the server counts things: frames received, rendered, skipped, rejected, failed; errors sent by
code; hook errors; undeliverable answers; peers' misbehaviour.

The I/O thread and every render worker count, so every update and every reading happens under one lock
(``snapshot()`` is one consistent reading). Each session's ``SessionStats`` is updated here too, in the same
step as the server-wide counter, so that the two never disagree. The status line and the Prometheus endpoint
(``bridge.server.observers``) only read: an event is counted once, whoever reports it.

Server-wide counter keys (``counts``): ``messages`` (every message in, socket or doorbell), ``received`` (FRAMEs
accepted into a queue), ``rendered``, ``skipped`` (of which ``superseded`` and ``predicted_late`` on arrival),
``render_failed``, ``shm_shrunk``, ``error_<CODE>`` (each ERROR sent), ``undeliverable``, ``input_dropped``,
``backlog_held``, ``unauthorized``, ``peer_disconnected``, ``recording_failed``.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import numpy as np

from bridge.hooks import HookError, HookErrorLog
from bridge.session import Session


class ServerStats:
    """Counters, recent arrival and answer times (fps) and recent latencies (percentiles) of one server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.hook_log = HookErrorLog()
        self._events_in: collections.deque[float] = collections.deque(maxlen=4096)
        self._events_out: collections.deque[float] = collections.deque(maxlen=4096)
        self._latencies: collections.deque[float] = collections.deque(maxlen=2048)

    def count(self, key: str | None, sess: Session | None = None, stat: str | None = None, n: int = 1) -> None:
        """Add ``n`` to the server-wide counter ``key`` and to ``sess.stats.<stat>`` (default: the same name)."""
        with self.lock:
            if key is not None:
                self.counts[key] += n
            if sess is not None:
                name = stat or key
                assert name is not None
                setattr(sess.stats, name, getattr(sess.stats, name) + n)

    def received(self, sess: Session) -> None:
        """A FRAME of ``sess`` passed validation and joins its queue."""
        with self.lock:
            sess.stats.received += 1
            self.counts["received"] += 1
            self._events_in.append(time.monotonic())

    def rendered(self, sess: Session, total_ms: float) -> None:
        """A frame of ``sess`` was rendered and is about to be answered ``ok`` after ``total_ms`` (counted before
        the answer goes out: the engine may say BYE, and a test read the stats, as soon as it has it)."""
        with self.lock:
            sess.stats.rendered += 1
            sess.stats.latencies_ms.append(total_ms)
            self._latencies.append(total_ms)
            self._events_out.append(time.monotonic())
            self.counts["rendered"] += 1

    def hook_errors(self, sess: Session, errors: list[HookError]) -> None:
        """Hooks raised while a frame of ``sess`` was applied: counted and logged (without flooding)."""
        with self.lock:
            sess.stats.hook_errors += len(errors)
            self.hook_log.report(errors)

    def snapshot(self, sessions: int, now: float | None = None) -> dict[str, Any]:
        """Server statistics: sessions, fps in/out (last 2 s), latency percentiles, drops, errors, every counter."""
        now = time.monotonic() if now is None else now
        window = 2.0

        def rate(q: list[float]) -> float:
            return sum(1 for t in q if now - t <= window) / window

        with self.lock:  # one consistent reading
            counts = collections.Counter(self.counts)
            events_in, events_out = list(self._events_in), list(self._events_out)
            latencies = list(self._latencies)
            hook_errors = self.hook_log.total
        lat = np.asarray(latencies) if latencies else np.zeros(1)
        drops = counts["skipped"] + counts["error_OVERLOADED"] + counts["render_failed"]
        return {
            "sessions": sessions, "fps_in": rate(events_in), "fps_out": rate(events_out),
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "drops": drops,
            "rendered": counts["rendered"], "skipped": counts["skipped"],
            "render_failed": counts["render_failed"], "hook_errors": hook_errors,
            "errors": {k[6:]: v for k, v in counts.items() if k.startswith("error_")},
            "counts": dict(counts),
        }
