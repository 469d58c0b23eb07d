"""Where answers leave the server, from any thread.

Only the I/O thread may touch the ROUTER socket. A render worker therefore sends each answer either straight to
the engine through the session's doorbell (one atomic pipe write, when the answer is a single frame: protocol
section 7.1) or through its own PUSH socket to the I/O loop's PULL, which forwards it with back-pressure
(``IOLoop.forward``). The I/O thread itself forwards directly. ERROR answers are counted here (``error_<CODE>``),
whoever sends them.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from bridge.doorbell import Doorbell
from bridge.protocol import Error, Message, ProtocolError, encode, error_message

from .stats import ServerStats

log = logging.getLogger("nrb.server")


class Outbox:
    """Sends encoded answers from the I/O thread or a render worker (see the module docstring)."""

    def __init__(self, ctx: zmq.Context[Any], stats: ServerStats) -> None:
        self.ctx = ctx
        self.stats = stats
        self.endpoint = f"inproc://nrb-results-{id(self):x}-{random.randrange(1 << 30):x}"
        self._local = threading.local()  # .push: the calling worker's PUSH socket
        #: the I/O loop's forwarder (``[routing id, *frames]`` to the socket, with back-pressure)
        self.forward: Callable[[list[Any]], None] = self._nowhere

    @staticmethod
    def _nowhere(parts: list[Any]) -> None:
        log.debug("answer to %r dropped: the server is not bound", parts[0])

    @contextlib.contextmanager
    def worker_socket(self) -> Iterator[None]:
        """Give the calling render worker its PUSH socket to the I/O loop for the duration of the block."""
        push = self.ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(self.endpoint)
        self._local.push = push
        try:
            yield
        finally:
            push.close()
            self._local.push = None

    def send(self, routing_id: bytes, msg: Message, doorbell: Doorbell | None = None) -> list[Any]:
        """Encode ``msg`` and send it to the peer; return the frames sent."""
        wire: list[Any] = encode(msg)
        self.send_wire(routing_id, wire, doorbell)
        return wire

    def send_wire(self, routing_id: bytes, wire: list[Any], doorbell: Doorbell | None = None) -> None:
        """Send an encoded answer: through ``doorbell`` when a render worker sends a one-frame answer of a session
        that has one, else through the worker's pipe to the I/O loop, or (on the I/O thread) straight on."""
        push: zmq.Socket[Any] | None = getattr(self._local, "push", None)
        if doorbell is not None and len(wire) == 1 and push is not None:
            try:
                if doorbell.send(wire[0]):
                    return
            except OSError as exc:  # the engine's end is gone; its session ends on the ZeroMQ side
                log.debug("doorbell write failed: %s", exc)
        if push is not None:
            push.send_multipart([routing_id, *wire], copy=False)
        else:
            self.forward([routing_id, *wire])

    def error(self, routing_id: bytes, err: ProtocolError, session: int | None = None, frame: int | None = None,
              doorbell: Doorbell | None = None) -> tuple[Error, list[Any]]:
        """Answer with an ERROR (counted as ``error_<CODE>``); return it and its frames."""
        msg = error_message(err, session=session, frame=frame)
        self.stats.count(f"error_{err.code.name}")
        return msg, self.send(routing_id, msg, doorbell)
