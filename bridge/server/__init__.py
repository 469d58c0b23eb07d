"""The render server (``nrb serve``): a ZeroMQ ROUTER that turns engine FRAMEs into RESULTs.

A frame's path, one module per stage::

    engine ─FRAME─▶ io_loop.IOLoop          (the I/O thread: socket, doorbells, sessions, back-pressure)
                      │ decode header; admission.Admission checks it (and opens sessions from HELLOs)
                      ▼
                    scheduler.Scheduler     (per-session queues: latest frame wins, in-flight limit,
                      │                      deadline prediction; earliest deadline first across sessions)
                      ▼ a render worker takes it
                    processor.FrameProcessor
                      │ read pixels (shm / inflate) → style pipeline (set_style → @on → @every_frame)
                      │ → style map → renderer → grading, intensity/masks → output format → encode once
                      ▼
                    outbox.Outbox ─RESULT─▶ engine   (doorbell, or the worker's pipe to the I/O thread)
                      │ the same bytes
                      ▼
                    observers: Recorder (--record), Metrics (--metrics), StatusLine (--status)

Counting happens in one place, ``stats.ServerStats``; the metrics endpoint and the status line read it.
``config`` holds ``ServerConfig`` and the limits derived from it; ``core.Server`` assembles the parts and runs
them, in-process (``start()`` / ``stop()``) or as a process (``serve_forever()``).
"""

from __future__ import annotations

from .admission import is_loopback_address
from .config import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SESSION_BYTES,
    DEFAULT_MAX_SESSIONS_PER_PEER,
    DEFAULT_MAX_TOTAL_BYTES,
    ServerConfig,
    endpoint_host,
    frame_budget,
    name_os_thread,
    router_hwm,
    session_bytes,
)
from .core import Server
from .observers import FrameDone, Observer
from .stats import ServerStats

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SESSION_BYTES",
    "DEFAULT_MAX_SESSIONS_PER_PEER",
    "DEFAULT_MAX_TOTAL_BYTES",
    "FrameDone",
    "Observer",
    "Server",
    "ServerConfig",
    "ServerStats",
    "endpoint_host",
    "frame_budget",
    "is_loopback_address",
    "name_os_thread",
    "router_hwm",
    "session_bytes",
]
