"""The sessions and their frame queues, shared by the I/O loop (which queues frames) and the render workers (which
take them): latest frame wins, the in-flight limit, deadline prediction and the earliest-deadline-first pick.

One condition variable (``cond``) guards the session table, every session's queue and its scheduling fields
(``busy``, ``answered_current``, ``waiting_since_ns``, ``work``) and wakes the workers when there is work.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from bridge.protocol import cancel_early
from bridge.session import QueuedFrame, Session

from .config import STYLE_ONLY_SLACK, ServerConfig

#: What answers a frame ``skipped`` on arrival (encodes and counts the RESULT, returns its wire).
SkipAnswer = Callable[[Session, QueuedFrame], list[Any]]

#: A session whose fastest counted render took this many times a frame's deadline or more cannot make it, even
#: before its estimate has ``WorkEstimate.min_samples`` renders (a 1280x720 session on a 2-core CPU: 1.9 s per
#: frame against 100 ms): rendering it twice more to be sure took 4 s of a worker from sessions that can.
HOPELESS_FACTOR = 3.0


class Scheduler:
    """Sessions, their queues and the order frames are rendered in (docs/server.md "Processing model")."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.cond = threading.Condition()
        self.sessions: dict[int, Session] = {}
        self.cores = os.cpu_count() or 1
        self.workers = config.workers or max(1, min(self.cores, config.max_sessions))
        #: each worker's fair share of the cores (the budget of a frame when every worker is busy)
        self.worker_threads = config.worker_threads or max(1, self.cores // self.workers)
        #: sessions a render worker wants closed, with the reason (closed, with a BYE, by the I/O thread)
        self.close_requests: collections.deque[tuple[int, str]] = collections.deque()

    # ------------------------------------------------------------------------------------------- session table
    def add(self, sess: Session) -> None:
        with self.cond:
            self.sessions[sess.id] = sess

    def remove(self, sess: Session) -> bool:
        """Take ``sess`` out (its queued frames are dropped); return whether a worker is still processing it."""
        with self.cond:
            self.sessions.pop(sess.id, None)
            sess.queue.clear()
            return sess.busy

    def queued(self) -> int:
        """Frames waiting in every queue."""
        with self.cond:
            return sum(len(s.queue) for s in self.sessions.values())

    # ------------------------------------------------------------------------------------------------ arrival
    @staticmethod
    def in_flight(sess: Session) -> int:
        """Frames of ``sess`` not answered yet: queued, plus the one being processed until it is answered. Caller
        holds ``cond``."""
        return len(sess.queue) + (sess.busy and not sess.answered_current)

    def backlogged(self, sess: Session) -> bool:
        """Whether ``sess`` is so far ahead that even the headers of its over-the-limit frames pile up
        (``max_in_flight`` + 256 unanswered): its peer's input is then held (back-pressure)."""
        with self.cond:
            return self.in_flight(sess) >= self.config.max_in_flight + STYLE_ONLY_SLACK

    def admit(self, sess: Session, item: QueuedFrame, skip: SkipAnswer) -> None:
        """Queue a validated frame of ``sess``. Beyond ``max_in_flight`` it is queued header only (its events apply,
        it is answered OVERLOADED in turn, it supersedes nothing). Otherwise latest frame wins: frames of the
        session still waiting are answered ``skipped`` now (``skip``: every FRAME gets exactly one answer) and
        ride on this one, header only, so that their events and style commands are applied in order, each at its
        own frame time, first; and this frame is answered ``skipped`` at once when it cannot make its deadline."""
        with self.cond:
            if self.in_flight(sess) >= self.config.max_in_flight:
                item.style_only = True
                cancel_early(item.frame.buffers)  # decompressed ahead (protocol section 6.3.5): not needed
                item.frame = dataclasses.replace(item.frame, buffers=[])
                item.wire = item.wire[:1]
            else:
                while sess.queue:
                    old = sess.queue.popleft()
                    item.carried.extend(old.carried)
                    old.carried = []
                    if not old.style_only and not old.answered:
                        old = old.header_only()
                        old.answered = True
                        old.skip_reason = "superseded"
                        old.skip_wire = skip(sess, old)
                    item.carried.append(old)
                if self.cannot_make_deadline(sess, item, time.monotonic()):
                    late = item.header_only()
                    late.carried = item.carried
                    late.answered = True
                    late.skip_reason = "late"
                    late.skip_wire = skip(sess, late)
                    item = late
            sess.queue.append(item)
            if sess.waiting_since_ns is None and not (item.answered or item.style_only):
                sess.waiting_since_ns = item.received_ns
            self.cond.notify()

    def cannot_make_deadline(self, sess: Session, item: QueuedFrame, now: float, waited_ms: float | None = None,
                             ) -> bool:
        """Whether ``item`` cannot be answered within its deadline, judging by the session's recent processing
        times: the time it has waited (``waited_ms``; on arrival, what is left of the session's frame in progress)
        plus one estimated processing time. Caller holds ``cond``. Never true without an estimate (before it, only
        when the session's fastest render so far was ``HOPELESS_FACTOR`` times the deadline), nor when a probe is
        due (see ``WorkEstimate``)."""
        est = sess.work.estimate_ms()
        if est is None:  # too few renders for a median: only one far beyond this deadline decides
            lowest = sess.work.lowest_ms()
            if lowest is None or lowest < HOPELESS_FACTOR * item.frame.deadline_ms:
                return False
            est = lowest
        if sess.work.probe_due(now):
            return False
        if waited_ms is None:
            waited_ms = item.decode_ms
            if sess.busy:
                waited_ms += max(0.0, est - (now - sess.busy_since) * 1e3)
        return waited_ms + est > item.frame.deadline_ms

    # ------------------------------------------------------------------------------------------------- workers
    def take(self, stop: threading.Event) -> tuple[Session, QueuedFrame, int] | None:
        """Wait for the next frame to process (``next_frame``); None once ``stop`` is set and nothing is picked."""
        with self.cond:
            picked = self.next_frame()
            while picked is None and not stop.is_set():
                self.cond.wait(0.1)
                picked = self.next_frame()
            return picked

    def dequeued_late(self, sess: Session, item: QueuedFrame, queue_ms: float) -> bool:
        """On dequeue: whether ``item`` is already past its deadline or cannot make it; if not, its session's
        place in line is used up (it is being served)."""
        with self.cond:
            late = queue_ms > item.frame.deadline_ms or self.cannot_make_deadline(sess, item, time.monotonic(),
                                                                                  queue_ms)
            if not late:
                sess.waiting_since_ns = None
            return late

    def processed(self, sess: Session, ms: float) -> None:
        """A frame of ``sess`` was processed in ``ms`` (dequeue to answer): the deadline prediction's sample."""
        with self.cond:
            sess.work.add(ms)

    def finished(self, sess: Session) -> bool:
        """The worker is done with ``sess``'s frame; return whether the session was closed meanwhile (the worker
        then releases its shared memory)."""
        with self.cond:
            sess.busy = False
            closed = sess.id not in self.sessions
            self.cond.notify()  # its next frame may be waiting for a worker
        return closed

    def wake_all(self) -> None:
        with self.cond:
            self.cond.notify_all()

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

    def next_frame(self) -> tuple[Session, QueuedFrame, int] | None:
        """Earliest deadline first over the sessions no worker is processing (caller holds ``cond``): the head of
        each session's queue (at most one renderable frame, latest frame wins) competes by arrival +
        ``deadline_ms``, where arrival is when the session began waiting (``Session.waiting_since_ns``: a frame
        skipped for waiting too long or superseded hands its place to the session's next frame, or the sessions
        the renderer cannot all serve in time would be skipped over and over while one keeps winning); ties go to
        the one waiting longest. Returns the session, its frame and the frame's thread budget
        (``frame_threads``)."""
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
