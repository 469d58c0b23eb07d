"""Admission: the rules a HELLO must pass to open a session and a FRAME must pass to join its queue.

A HELLO is refused before anything is allocated for it (the renderer included) when the server is full, the engine
holds its share of sessions, the sizes or the memory budgets are exceeded (docs/protocol.md 11.1, docs/security.md)
or the renderer cannot be fed from the offered buffers; a shared-memory pool is mapped only when it can be the
engine's own, and its doorbell opened only with it. A FRAME is checked against its session (docs/protocol.md 5.3,
6.1, 7). Everything here raises ``ProtocolError`` with the code the engine gets; the I/O loop answers it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import zmq

from bridge import hello_options
from bridge.doorbell import Doorbell, DoorbellUnavailable
from bridge.lights import X_LIGHTS
from bridge.lights import check_descriptor as check_lights_descriptor
from bridge.protocol import (
    CHUNKED,
    COMPRESSIONS,
    FORMATS,
    MAX_DIMENSION,
    SHUFFLE,
    STREAMED_FRAMES,
    STREAMED_OUTPUT,
    ErrorCode,
    Frame,
    Hello,
    Limits,
    OutputSpec,
    ProtocolError,
    Welcome,
)
from bridge.renderer import Renderer, available
from bridge.session import Session, StylePipeline
from bridge.shm import SHM_NAME_PREFIX, ShmPoolView, ShmUnavailable
from bridge.style.defined import StyleSource
from bridge.style.grading import with_post_buffers

from .config import ServerConfig, frame_budget, session_bytes
from .scheduler import Scheduler

log = logging.getLogger("nrb.server")

#: Buffers of exactly 1x1, exempt from the "same size as render_size" check (as are 1x1 vendor buffers: per-frame
#: constants).
_ONE_BY_ONE = {"exposure"}


class Admission:
    """Opens sessions and checks frames for one server (see the module docstring). ``endpoint``: the server's
    bound endpoint (``ipc://`` and ``inproc://`` peers are on this machine)."""

    def __init__(self, config: ServerConfig, scheduler: Scheduler, factory: Callable[[], Renderer],
                 renderer_label: str, styles: StyleSource, endpoint: Callable[[], str | None]) -> None:
        self.config = config
        self.scheduler = scheduler
        self.sessions = scheduler.sessions
        self.factory = factory
        self.renderer_label = renderer_label
        self.styles = styles
        self.endpoint = endpoint

    def open_session(self, routing_id: bytes, hello: Hello, frames: list[Any], user_id: str | None,
                     new_id: Callable[[], int]) -> Session:
        """The session ``hello`` asks for, with its WELCOME (``Session.welcome``), not registered yet; ``user_id``:
        the engine's CurveZMQ key, when the server uses CURVE; ``new_id`` is called once every check has passed."""
        cfg = self.config
        hello_options.check_renderer(hello, self.renderer_label)  # UNSUPPORTED: protocol section 5.11
        if len(self.sessions) >= cfg.max_sessions:
            raise ProtocolError(ErrorCode.OVERLOADED, f"server is at its limit of {cfg.max_sessions} sessions")
        with self.scheduler.cond:
            mine = sum(1 for s in self.sessions.values()
                       if s.routing_id == routing_id or (user_id is not None and s.user_id == user_id))
            reserved = sum(s.reserved_bytes for s in self.sessions.values())
        if mine >= cfg.max_sessions_per_peer:  # passes when one of its sessions ends: OVERLOADED, like the above
            raise ProtocolError(ErrorCode.OVERLOADED, f"this engine already holds {mine} sessions, the most one "
                                                      f"{'client key' if user_id else 'connection'} may hold "
                                                      f"(--max-sessions-per-peer {cfg.max_sessions_per_peer})")
        if cfg.max_pixels is not None:
            for what, (w, h) in (("render_size", hello.render_size), ("output_size", hello.output_size)):
                if w * h > cfg.max_pixels:
                    raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"{what} {w}x{h} is more than this server's "
                                                                  f"--max-pixels {cfg.max_pixels}")
        # Memory budgets, before anything is allocated for the session (the renderer included).
        frame_bytes = frame_budget(hello)
        if frame_bytes > cfg.max_frame_bytes:
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"buffers: {len(hello.buffers)} buffers at "
                                                          f"{hello.render_size[0]}x{hello.render_size[1]} make "
                                                          f"{frame_bytes} bytes per frame, more than this server's "
                                                          f"budget of {cfg.max_frame_bytes} (--max-frame-bytes)")
        held = session_bytes(frame_bytes, hello.render_size)  # at least: the image is render_size or larger
        if held > min(cfg.max_session_bytes, cfg.max_total_bytes):
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"this session would hold {held} bytes (two frames of "
                                                          f"{frame_bytes} and its image), more than this server's "
                                                          f"budget of {min(cfg.max_session_bytes, cfg.max_total_bytes)}"
                                                          " per session (--max-session-bytes)")
        if reserved + held > cfg.max_total_bytes:  # passes when other sessions end
            raise ProtocolError(ErrorCode.OVERLOADED, f"this session would hold {held} bytes; open sessions hold "
                                                      f"{reserved} of this server's {cfg.max_total_bytes} "
                                                      "(--max-total-bytes)")
        try:
            renderer = self.factory()
        except Exception as exc:
            log.exception("creating a renderer for a new session failed")
            raise ProtocolError(ErrorCode.INTERNAL, f"cannot create renderer: {exc}") from exc
        offered = {b.name: b.format for b in hello.buffers}
        why = renderer.check_offer(offered)
        if why:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"buffers: {why}")
        caps = [c for c in COMPRESSIONS if c in hello.capabilities]
        if caps and CHUNKED in hello.capabilities and cfg.chunks:  # section 6.3.2: payloads in chunks, either way
            caps.append(CHUNKED)
        if caps and SHUFFLE in hello.capabilities and cfg.shuffle:  # section 6.3.3: byte planes, either way
            caps.append(SHUFFLE)
        pool = None
        if "shm" in hello.capabilities and hello.shm is not None:
            try:
                self._check_shm_offer(hello.shm.name, frames)
                pool = ShmPoolView(hello.shm)
                caps.append("shm")
            except ShmUnavailable as exc:
                log.warning("not using shared memory for a session from %r: %s", routing_id, exc)
        bell = self._open_doorbell(hello, routing_id) if pool is not None else None
        try:
            if bell is not None:
                caps.append("doorbell")
            elif CHUNKED in caps and STREAMED_OUTPUT in hello.capabilities and cfg.streamed_output:
                # section 6.3.4: the image's chunks in PARTs ahead of its RESULT (never with a doorbell, whose
                # one-frame answers take another path)
                caps.append(STREAMED_OUTPUT)
            caps += hello_options.lossy_capabilities(hello, renderer.output_format)  # protocol section 6.3.1
            w, h = renderer.output_size(hello.render_size, hello.output_size)
            held = session_bytes(frame_bytes, (w, h))  # the renderer's own size (an upscaler may return more)
            if bell is None and CHUNKED in caps and STREAMED_FRAMES in hello.capabilities and cfg.streamed_frames:
                # section 6.3.5: a FRAME's chunks in PARTs ahead of it (never with a doorbell either), when what
                # they make the session hold fits the budgets; otherwise the session goes on without (not refused)
                streaming = session_bytes(frame_bytes, (w, h), streamed_frames=True)
                if streaming <= min(cfg.max_session_bytes, cfg.max_total_bytes) and \
                        reserved + streaming <= cfg.max_total_bytes:
                    caps.append(STREAMED_FRAMES)
                    held = streaming
            if held > min(cfg.max_session_bytes, cfg.max_total_bytes):
                raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"this session's {w}x{h} image would make it hold "
                                                              f"{held} bytes, more than this server's budget per "
                                                              "session (--max-session-bytes)")
            if reserved + held > cfg.max_total_bytes:
                raise ProtocolError(ErrorCode.OVERLOADED, f"this session would hold {held} bytes; open sessions "
                                                          f"hold {reserved} of this server's {cfg.max_total_bytes} "
                                                          "(--max-total-bytes)")
            limits = Limits(frame_bytes, held, cfg.max_frame_bytes, cfg.max_total_bytes,
                            cfg.max_pixels if cfg.max_pixels is not None else MAX_DIMENSION * MAX_DIMENSION,
                            cfg.max_sessions, cfg.max_sessions_per_peer)
            sid = new_id()
            # the post stage (intensity, masks) reads the engine's image and mask whatever the renderer draws from
            optional = with_post_buffers(renderer.optional(), renderer.required())
            welcome = Welcome(sid, renderer.label, caps, renderer.required(), optional,
                              OutputSpec(renderer.output_format, w, h), cfg.max_in_flight, self.styles.library.names,
                              limits=limits)
            return Session(sid, routing_id, hello, welcome, renderer, StylePipeline(sid, self.styles.library),
                           tuple(c for c in caps if c in (*COMPRESSIONS, CHUNKED, SHUFFLE, STREAMED_OUTPUT,
                                                         STREAMED_FRAMES)), pool, bell, user_id=user_id,
                           frame_bytes=frame_bytes, reserved_bytes=held)
        except BaseException:  # refused after mapping the engine's pool: let go of it (and of its doorbell)
            if bell is not None:
                bell.close()
            if pool is not None:
                pool.close()
            raise

    def _check_shm_offer(self, name: str, frames: list[Any]) -> None:
        """Map only pools that can be the engine's own: a POSIX shared-memory name is global to the machine, so a
        HELLO could otherwise name any object this server's user can open (another engine's pool, another
        program's memory) and read it back as G-buffers or overwrite it with a RESULT. ``ShmUnavailable`` says why
        not; the engine then sends inline frames."""
        if not name.startswith(SHM_NAME_PREFIX):
            raise ShmUnavailable(f"pool name {name!r} does not start with {SHM_NAME_PREFIX!r}")
        with self.scheduler.cond:
            owner = next((s.id for s in self.sessions.values() if s.pool is not None and s.hello.shm is not None
                          and s.hello.shm.name == name), None)
        if owner is not None:
            raise ShmUnavailable(f"pool {name!r} is already mapped for session {owner}")
        if not self._peer_is_local(frames):
            raise ShmUnavailable("the engine is not on this machine")

    def _peer_is_local(self, frames: list[Any]) -> bool:
        endpoint = self.endpoint() or ""
        if endpoint.startswith(("ipc://", "inproc://")):
            return True
        try:
            addr = frames[0].get("Peer-Address")
        except (zmq.ZMQError, AttributeError, TypeError):
            return False
        return is_loopback_address(addr)

    def _open_doorbell(self, hello: Hello, routing_id: bytes) -> Doorbell | None:
        if not self.config.doorbell or "doorbell" not in hello.capabilities or hello.doorbell is None:
            return None
        try:
            return Doorbell(hello.doorbell)
        except DoorbellUnavailable as exc:
            log.warning("not using the doorbell for a session from %r: %s", routing_id, exc)
            return None

    def check_frame(self, sess: Session, frame: Frame) -> None:
        """Refuse a FRAME of ``sess`` that breaks a rule (``ProtocolError``), before anything of it is queued: frame
        ids increase; the renderer's required buffers are there; every buffer is at the render size (1x1 per-frame
        constants aside) and none is ``output``; a result slot holds the output; the style commands and controls
        pass the session's checks."""
        if sess.last_frame is not None and frame.frame <= sess.last_frame:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"frame {frame.frame} does not follow frame {sess.last_frame}")
        names = {b.name: b for b in frame.buffers}
        for spec in sess.welcome.required:
            if not available(spec.name, names):
                raise ProtocolError(ErrorCode.MISSING_FIELD, f"buffers: {spec.name!r} is required by the renderer")
        w, h = sess.render_size
        for b in frame.buffers:
            if b.name == "output":  # section 6.1: RESULT only
                raise ProtocolError(ErrorCode.BAD_VALUE, "buffers: 'output' is the RESULT's image; a FRAME does not "
                                                         "carry it")
            if b.name in _ONE_BY_ONE:
                if (b.width, b.height) != (1, 1):
                    raise ProtocolError(ErrorCode.BAD_VALUE, f"buffer {b.name!r} is {b.width}x{b.height}; it is one "
                                                             "value per frame, 1x1")
                continue
            if b.name == X_LIGHTS:  # the light list: 4 x N (section 6.1); its values are checked with the payload
                check_lights_descriptor(b)
                continue
            constant = b.name.startswith("x_") and (b.width, b.height) == (1, 1)  # a vendor per-frame constant
            if not constant and (b.width, b.height) != (w, h):
                raise ProtocolError(ErrorCode.BAD_VALUE, f"buffer {b.name!r} is {b.width}x{b.height}, the session's "
                                                         f"render size is {w}x{h}")
        if frame.result_slot is not None and sess.pool is not None:  # section 7: the output goes at offset 0
            out = sess.welcome.output
            need = out.width * FORMATS[out.format].bytes_per_pixel * out.height
            if need > sess.pool.pool.slot_size:
                raise ProtocolError(ErrorCode.BAD_VALUE, f"result_slot: the {out.width}x{out.height} {out.format} "
                                                         f"output needs {need} bytes, the pool's slots hold "
                                                         f"{sess.pool.pool.slot_size}")
        sess.pipeline.check(frame)


def is_loopback_address(addr: Any) -> bool:
    """Whether a ``Peer-Address`` (IPv4, IPv6, or IPv4-mapped IPv6) is a loopback address."""
    if not isinstance(addr, str) or not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


