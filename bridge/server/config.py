"""``nrb serve`` options (``ServerConfig``) and the limits derived from them: memory budgets, high-water marks.

Everything here is pure: no sockets, no threads. ``bridge.cluster`` builds its workers' configurations from the
same dataclass.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from bridge.lights import X_LIGHTS
from bridge.protocol import FORMATS, LIGHTING_CONSTANTS, MAX_IN_FLIGHT, PART_SLACK_BYTES, Hello

#: Frames beyond ``max_in_flight`` are still queued (header only) so their events apply; while a session has this
#: many more queued, its peer's input is held (back-pressure, docs/protocol.md section 5.9).
STYLE_ONLY_SLACK = 256

# Memory budgets (docs/security.md "Memory budgets", docs/protocol.md section 11.1): what a session's frames may
# weigh, what the server holds per session and in all. Sized so that a 4K UHD session of 32 bytes per pixel fits.
#: ``--max-pixels`` default: 4K UHD, the largest render or output size a session may ask for.
DEFAULT_MAX_PIXELS = 3840 * 2160
#: ``--max-frame-bytes``: one FRAME, all its buffers together (stride × height summed), inline or shared memory.
DEFAULT_MAX_FRAME_BYTES = 256 << 20
#: ``--max-session-bytes``: what one session may make the server hold (two frames and its image, see
#: ``session_bytes``).
DEFAULT_MAX_SESSION_BYTES = 768 << 20
#: ``--max-total-bytes``: the sum of every open session's ``session_bytes``.
DEFAULT_MAX_TOTAL_BYTES = 4 << 30
#: ``--max-sessions-per-peer``: sessions one engine connection (and one CurveZMQ key) may hold.
DEFAULT_MAX_SESSIONS_PER_PEER = 4
#: Rows of a frame's budget are counted padded to this many bytes (D3D12's readback row pitch alignment), so an
#: engine that sends GPU read-back rows as they come stays inside the budget its HELLO got.
_ROW_ALIGN = 256
#: Room in each frame's budget for 1x1 per-frame constants (``exposure``, the lighting constants) sent or not.
_CONSTANTS_ROOM = 64 << 10


@dataclass
class ServerConfig:
    """``nrb serve`` options. ``port=0`` picks a free port (read ``Server.endpoint``).

    Listening beyond loopback needs CurveZMQ (``curve_secret`` + ``allow_dir``) or ``insecure=True`` (see
    ``bridge.security`` and docs/security.md). ``endpoint`` (``tcp://``, ``ipc://``, ``inproc://``) overrides
    host/port. ``max_pixels`` bounds render and output sizes (LIMIT_EXCEEDED at HELLO); ``max_frame_bytes``,
    ``max_session_bytes`` and ``max_total_bytes`` are the memory budgets (a HELLO beyond them is refused before
    anything is allocated, a FRAME beyond its session's ``frame_budget`` is LIMIT_EXCEEDED before its payloads are
    decompressed); ``max_sessions_per_peer`` caps the sessions of one connection and of one CurveZMQ key. A peer
    whose last ``max_rejects`` messages were all rejected loses its sessions. ``max_message_bytes`` is the socket's
    ``ZMQ_MAXMSGSIZE``: libzmq drops the connection of a peer that sends a larger message part, before allocating
    it (default: the largest buffer a frame may carry, 1 GiB or 16 bytes per ``max_pixels``, plus the 64 KiB
    header limit).

    ``renderer`` defaults to ``deferred`` here (cheap, no model file: what in-process users and tests want); the
    ``nrb serve`` command line defaults to ``neural``.
    """

    renderer: str = "deferred"
    renderer_options: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 5555
    endpoint: str | None = None
    insecure: bool = False
    curve_secret: str | None = None
    allow_dir: str | None = None
    hooks: str | None = None
    styles: str | None = None  # style file (TOML) of defined styles, hot-reloaded (bridge.style.defined)
    max_sessions: int = 16
    max_in_flight: int = 4
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # None: only the protocol's 16384 x 16384
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    max_sessions_per_peer: int = DEFAULT_MAX_SESSIONS_PER_PEER
    max_rejects: int = 64
    max_message_bytes: int | None = None
    idle_timeout: float = 30.0
    record: str | None = None
    metrics_port: int | None = None
    status: bool = False
    status_interval: float = 1.0
    doorbell: bool = True
    chunks: bool = True  # accept "chunked" (protocol section 6.3.2) from engines that offer it
    shuffle: bool = True  # accept "shuffle" (protocol section 6.3.3) from engines that offer it
    #: accept "streamed_output" (protocol section 6.3.4): the image's chunks go out in PARTs as each is compressed
    streamed_output: bool = True
    #: accept "streamed_frames" (protocol section 6.3.5): a FRAME's chunks come ahead in PARTs, decompressed on arrival
    streamed_frames: bool = True
    workers: int = 0  # render workers; 0: one per core (os.cpu_count()), at most max_sessions
    # renderer threads per frame; 0: adaptive, the cores shared by the workers busy when the frame starts (a lone
    # busy session gets them all; see Scheduler.frame_threads)
    worker_threads: int = 0

    def check(self) -> int:
        """Refuse inconsistent options (``ValueError``; ``SecurityError`` for a bind beyond loopback without
        CurveZMQ or ``insecure``) and return the socket's ``ZMQ_MAXMSGSIZE``."""
        from bridge.security import check_bind_policy

        host = self.host if self.endpoint is None else endpoint_host(self.endpoint)
        if (self.curve_secret is None) != (self.allow_dir is None):
            raise ValueError("CurveZMQ needs both curve_secret (--curve-secret) and allow_dir (--allow-dir)")
        if host is not None:
            check_bind_policy(host, curve=self.curve_secret is not None, insecure=self.insecure)
        if not 1 <= self.max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight must be 1..{MAX_IN_FLIGHT}")
        if self.max_message_bytes is not None and self.max_message_bytes < (1 << 16):
            raise ValueError("max_message_bytes must be at least 65536 (the header limit)")
        if min(self.max_frame_bytes, self.max_session_bytes, self.max_total_bytes, self.max_sessions_per_peer) < 1:
            raise ValueError("memory budgets and max_sessions_per_peer must be at least 1")
        largest = min(1 << 30, self.max_frame_bytes)
        if self.max_pixels is not None:
            largest = min(largest, self.max_pixels * 16)
        return self.max_message_bytes or largest + (1 << 16)


def router_hwm(max_in_flight: int) -> int:
    """The ROUTER's send and receive high-water marks: room for every frame a session may have outstanding
    (``max_in_flight`` plus the header-only overrun allowance) plus control traffic, so that a well-behaved engine
    never meets them. Beyond them nothing is dropped: the server queues answers per peer and holds that peer's input
    (``bridge.server.io_loop``)."""
    return 4 * (max_in_flight + STYLE_ONLY_SLACK)


def frame_budget(hello: Hello) -> int:
    """Bytes one FRAME of a session opened by ``hello`` may carry (WELCOME ``limits.frame_bytes``): every offered
    buffer at ``render_size``, rows padded to 256 bytes, plus 64 KiB for 1x1 constants (``exposure``, the
    lighting constants and the light list ``x_lights``, at most 4 KiB, count only there)."""
    w, h = hello.render_size
    total = _CONSTANTS_ROOM
    for spec in hello.buffers:
        if spec.name == "exposure" or spec.name in LIGHTING_CONSTANTS or spec.name == X_LIGHTS:
            continue
        row = w * FORMATS[spec.format].bytes_per_pixel
        total += h * (-(-row // _ROW_ALIGN) * _ROW_ALIGN)
    return total


def session_bytes(frame_bytes: int, output_size: tuple[int, int], streamed_frames: bool = False) -> int:
    """What the server holds for a session at most: the frame being rendered and one waiting (latest frame wins:
    older ones are answered at once and keep only their headers), plus its image as float32 RGBA; with
    ``streamed_frames`` (protocol 6.3.5) also the PARTs held ahead of the next FRAME (their payloads, at most
    ``frame_bytes`` x 129/128 + 1 MiB, and their chunks decompressed ahead, at most ``frame_bytes``)."""
    ahead = 2 * frame_bytes + frame_bytes // 128 + PART_SLACK_BYTES if streamed_frames else 0
    return 2 * frame_bytes + ahead + 16 * output_size[0] * output_size[1]


def endpoint_host(endpoint: str) -> str | None:
    """The host part of a ``tcp://host:port`` endpoint (None for ipc/inproc, which never leave the machine)."""
    if not endpoint.startswith("tcp://"):
        return None
    return endpoint[6:].rsplit(":", 1)[0]


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the OS (Linux: prctl PR_SET_NAME, 15 bytes): ``top -H`` and the CPU
    profile of ``nrb bench remote`` then tell the I/O thread from the render workers. Elsewhere a no-op."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME
    except (OSError, AttributeError):
        pass
