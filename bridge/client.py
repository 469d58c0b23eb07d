"""A small blocking NRB/1 client (ZeroMQ DEALER) in pure Python, for tests, ``nrb demo`` and tools.

The production engine client is the C++ ``libnrb``; this one favours simplicity: every call blocks with a timeout,
answers that arrive out of order are kept until asked for.

    with Client("tcp://127.0.0.1:5555") as c:
        c.hello(render_size=(640, 360), buffers=[BufferSpec("albedo", "rgba8_srgb"), ...])
        result = c.render([Buffer.from_array("albedo", "rgba8_srgb", albedo), ...],
                          events=[Event("boss_phase", {"phase": 2})])
        image = result.output.array()
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import zmq

from bridge.protocol import (
    CHUNKED,
    COMPRESSIONS,
    FORMATS,
    MAX_CHUNKS,
    PART_SLACK_BYTES,
    SHUFFLE,
    STREAMED_FRAMES,
    STREAMED_OUTPUT,
    Buffer,
    BufferSpec,
    Bye,
    Camera,
    Control,
    DoorbellSpec,
    Error,
    ErrorCode,
    Event,
    Frame,
    Hello,
    LossyOutput,
    Message,
    Part,
    Ping,
    Pong,
    ProtocolError,
    Result,
    ShmPool,
    StyleCommand,
    Welcome,
    attach_parts,
    decode,
    encode,
    encode_streamed_frame,
    parse_header,
)


def _is_part(frames: Sequence[Any]) -> bool:
    try:
        return bool(frames) and parse_header(frames[0]).get("type") == "PART"
    except ProtocolError:
        return False


class RemoteError(Exception):
    """The server answered with an ERROR message (``error`` holds it)."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.name} ({error.code}): {error.message}")
        self.error = error

    @property
    def name(self) -> str:
        return self.error.name


class Client:
    """One engine connection; one session at a time (``hello`` opens it, ``bye`` closes it)."""

    def __init__(self, endpoint: str, *, timeout: float = 5.0, context: zmq.Context[Any] | None = None,
                 client_name: str = "nrb-py/0.1.0", curve_server_key: str | bytes | None = None,
                 curve_public_key: str | bytes | None = None, curve_secret_key: str | bytes | None = None) -> None:
        """``curve_*``: CurveZMQ keys as Z85 text (all three or none), the same keyword arguments libnrb's
        ``bridge._native.Client`` takes; ``bridge.security.client_curve_options(server.key, me.key_secret)``
        reads them from key files."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.client_name = client_name
        self._ctx = context or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        curve = (curve_server_key, curve_public_key, curve_secret_key)
        if any(k is not None for k in curve):
            if any(k is None for k in curve):
                self.sock.close(0)
                raise ValueError("CurveZMQ needs curve_server_key, curve_public_key and curve_secret_key")
            server, public, secret = (k.encode("ascii") if isinstance(k, str) else k for k in curve)
            self.sock.curve_serverkey = server
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        self._curve = curve
        self.sock.connect(endpoint)
        #: the endpoint given (a front door, or a plain server); ``endpoint`` is where the session lives
        self.front_door = endpoint
        #: the placement ticket of the last redirect (protocol section 5.10), brought back on the next ``hello``
        self.ticket: str | None = None
        self.session: int | None = None
        self.welcome: Welcome | None = None
        self.next_frame = 1
        self._t0 = time.monotonic_ns()
        self._sim_time_ns = 0
        self._pending: list[Message] = []
        self.shm_pool: ShmPool | None = None  # set when the server accepted shared memory
        #: codecs a RESULT may use: the lossless ones, plus ``"jpeg"`` or ``"webp"`` once WELCOME accepted ``lossy_output``
        self.compression: tuple[str, ...] = COMPRESSIONS
        self._nonce = itertools.count(1)
        #: WELCOME accepted the ``"streamed_frames"`` this client offered (protocol section 6.3.5): ``send_frame``
        #: may send compressed chunked buffers in PARTs ahead of their FRAME
        self.streamed_frames = False
        #: (session, frame) of the FRAMEs sent and not answered yet: the frames whose PARTs are held (section 6.3.4)
        self._in_flight: set[tuple[int, int]] = set()
        #: the PARTs held per frame in flight, (index, payload) in arrival order, and their bytes; ``None``: the
        #: frame's PARTs went over the limits of section 6.3.4 step 5 (its RESULT is ``PAYLOAD_MISMATCH``)
        self._parts: dict[tuple[int, int], list[tuple[int, Any]] | None] = {}
        self._part_bytes: dict[tuple[int, int], int] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (without saying BYE; call ``bye()`` first for a clean end)."""
        self.sock.close(linger=0)

    # raw ----------------------------------------------------------------------------------------------------
    def send(self, msg: Message) -> None:
        self.send_raw(encode(msg))
        if isinstance(msg, Frame):
            self._in_flight.add((msg.session, msg.frame))

    def send_raw(self, frames: Sequence[bytes | memoryview]) -> None:
        """Send arbitrary frames (tests use this to play a hostile client). ``TimeoutError`` when the message
        cannot even be queued within the timeout (no connection: e.g. a CurveZMQ server refused our key)."""
        if not self.sock.poll(int(self.timeout * 1000), zmq.POLLOUT):
            raise TimeoutError(f"cannot send to {self.endpoint} within {self.timeout:.1f} s (not connected)")
        try:
            self.sock.send_multipart(list(frames), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again as exc:
            raise TimeoutError(f"cannot send to {self.endpoint} (not connected)") from exc

    def recv(self, timeout: float | None = None) -> Message:
        """The next message from the server (queued out-of-order answers first); ``TimeoutError`` if none."""
        if self._pending:
            return self._pending.pop(0)
        return self._recv_wire(timeout)

    def _recv_wire(self, timeout: float | None) -> Message:
        t = self.timeout if timeout is None else timeout
        if not self.sock.poll(int(t * 1000)):
            raise TimeoutError(f"no answer from {self.endpoint} within {t:.1f} s")
        deadline = time.monotonic() + t
        while True:
            frames = self.sock.recv_multipart(copy=False)
            try:
                msg = decode(frames, compression=self.compression, shm_pool=self.shm_pool)
            except ProtocolError:
                if not _is_part(frames):
                    raise
                msg = None  # a malformed PART cannot be routed: ignored (its RESULT finds the chunk missing)
            if isinstance(msg, Part):
                self._hold_part(msg)
            elif msg is not None:
                return self._answered(msg)
            left = deadline - time.monotonic()
            if not self.sock.poll(max(0, int(left * 1000))):
                raise TimeoutError(f"no answer from {self.endpoint} within {t:.1f} s")

    def _hold_part(self, part: Part) -> None:
        """Keep a PART of a frame in flight until its RESULT (protocol section 6.3.4 step 5): at most 256 per frame
        and 2 x the image's size + 1 MiB of them; beyond either the frame's PARTs are dropped and its RESULT is
        ``PAYLOAD_MISMATCH``. PARTs of other frames (unknown, or no longer waited for) are discarded."""
        key = (part.session, part.frame)
        if key not in self._in_flight:
            return
        held = self._parts.setdefault(key, [])
        if held is None:
            return
        size = self._part_bytes.get(key, 0) + len(part.data)
        if len(held) >= MAX_CHUNKS or size > self._max_part_bytes():
            self._parts[key] = None
            self._part_bytes.pop(key, None)
            return
        held.append((part.index, part.data))
        self._part_bytes[key] = size

    def _max_part_bytes(self) -> int:
        out = self.welcome.output if self.welcome is not None else None
        image = out.width * out.height * FORMATS[out.format].bytes_per_pixel if out is not None else 0
        return 2 * image + PART_SLACK_BYTES

    def _answered(self, msg: Message) -> Message:
        """A RESULT or an ERROR naming a frame ends it: its held PARTs go to a streamed image (``PAYLOAD_MISMATCH``
        when they do not match its chunk table, raised as ``ProtocolError``) or are discarded."""
        if not isinstance(msg, (Result, Error)) or msg.frame is None:
            return msg
        key = (msg.session if msg.session is not None else self.session or 0, msg.frame)
        self._in_flight.discard(key)
        held = self._parts.pop(key, [])
        self._part_bytes.pop(key, None)
        if isinstance(msg, Result) and msg.output is not None and msg.output.streamed:
            if held is None:
                raise ProtocolError(ErrorCode.PAYLOAD_MISMATCH, f"output: the PARTs of frame {msg.frame} went over "
                                                                f"{MAX_CHUNKS} or {self._max_part_bytes()} bytes")
            attach_parts(msg.output, held)
        return msg

    def _wait(self, match: Any, timeout: float | None) -> Message:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for i, m in enumerate(self._pending):
            if match(m):
                return self._pending.pop(i)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching answer from {self.endpoint}")
            m = self._recv_wire(left)
            if match(m):
                return m
            self._pending.append(m)

    # session ------------------------------------------------------------------------------------------------
    def hello(self, render_size: tuple[int, int], buffers: Sequence[BufferSpec], *,
              output_size: tuple[int, int] | None = None, capabilities: Sequence[str] = (),
              engine: str = "python", engine_version: str = "0", shm: ShmPool | None = None,
              doorbell: DoorbellSpec | None = None, timeout: float | None = None,
              follow_redirect: bool = True, renderer: str | None = None,
              lossy_output: LossyOutput | None = None) -> Welcome:
        """Open a session; raise ``RemoteError`` if the server refuses. ``doorbell`` only announces FIFOs the
        caller made (protocol section 7.1); this client itself keeps sending on ZeroMQ.

        With ``follow_redirect`` (the default) the HELLO offers ``"redirect"``: a front door's WELCOME ``redirect``
        (protocol section 5.10) moves this client's socket to the worker, where the same HELLO, with the ticket,
        opens the session. Each ``hello`` starts at the endpoint the client was made with (after a failure the
        front door places the session again) and brings the last ticket, so the session's style state follows.

        ``renderer`` asks for a renderer by name (protocol section 5.11: a server or cluster without it refuses with
        ``UNSUPPORTED``); ``lossy_output`` allows the image back as JPEG or WebP at its quality (section 6.3.1; decoding it
        needs Pillow)."""
        caps = list(capabilities) + (["redirect"] if follow_redirect and "redirect" not in capabilities else [])
        if self.endpoint != self.front_door:
            self._reconnect(self.front_door)
        hello = Hello(engine, engine_version, self.client_name, caps, render_size, output_size or render_size,
                      list(buffers), shm, doorbell=doorbell, ticket=self.ticket if follow_redirect else None,
                      renderer=renderer, lossy_output=lossy_output)
        msg = self._handshake(hello, timeout)
        if isinstance(msg, Welcome) and msg.redirect is not None:
            self.ticket = msg.redirect.ticket
            self._reconnect(msg.redirect.endpoint)
            msg = self._handshake(dataclasses.replace(hello, ticket=msg.redirect.ticket), timeout)
            if isinstance(msg, Welcome) and msg.redirect is not None:
                raise RemoteError(Error(ErrorCode.BAD_VALUE, ErrorCode.BAD_VALUE.name,
                                        f"the worker at {self.endpoint} redirected again (no chains)"))
        if isinstance(msg, Error):
            raise RemoteError(msg)
        assert isinstance(msg, Welcome)
        self.session, self.welcome, self.next_frame, self._sim_time_ns = msg.session, msg, 1, 0
        self.shm_pool = shm if shm is not None and "shm" in msg.capabilities else None
        lossy = lossy_output.codec if lossy_output is not None and lossy_output.codec in msg.capabilities else None
        self.compression = COMPRESSIONS + ((lossy,) if lossy else ()) + \
            ((CHUNKED,) if CHUNKED in msg.capabilities else ()) + \
            ((SHUFFLE,) if SHUFFLE in msg.capabilities else ()) + \
            ((STREAMED_OUTPUT,) if STREAMED_OUTPUT in msg.capabilities and STREAMED_OUTPUT in caps
             and CHUNKED in msg.capabilities else ())  # sections 6.3.2-6.3.4: an image may come so
        self.streamed_frames = STREAMED_FRAMES in msg.capabilities and STREAMED_FRAMES in caps \
            and CHUNKED in msg.capabilities
        self._in_flight.clear()
        self._parts.clear()
        self._part_bytes.clear()
        return msg

    def _handshake(self, hello: Hello, timeout: float | None) -> Welcome | Error:
        self.send(hello)
        msg = self._wait(lambda m: isinstance(m, (Welcome, Error)) and getattr(m, "frame", None) is None, timeout)
        assert isinstance(msg, (Welcome, Error))
        return msg

    def _reconnect(self, endpoint: str) -> None:
        """A new socket to ``endpoint`` (same keys: a cluster's workers share the front door's key pair)."""
        self.sock.close(linger=0)
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if any(k is not None for k in self._curve):
            server, public, secret = (k.encode("ascii") if isinstance(k, str) else k for k in self._curve)
            self.sock.curve_serverkey = server
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self._pending.clear()

    def send_frame(self, buffers: Sequence[Buffer], *, events: Sequence[Event] = (),
                   styles: Sequence[StyleCommand] = (), dt: float = 1 / 60, deadline_ms: float = 1000.0,
                   camera: Camera | None = None, time_ns: int | None = None, frame: int | None = None,
                   result_slot: int | None = None, session: int | None = None,
                   controls: Sequence[Control] = (), stream: bool | None = None,
                   pool: Executor | None = None) -> int:
        """Send one FRAME; return its id. Without ``time_ns`` the frame time advances by ``dt`` per frame, so a
        scripted run is reproducible regardless of how fast it goes. ``styles`` may define styles at run time
        (``StyleCommand.params``); ``controls`` set the session's intensity and exclusions (protocol 5.3).

        ``stream`` (protocol section 6.3.5): every inline buffer with ``compression`` lz4/zstd and ``chunk_bytes``
        goes ahead in PART messages, one per chunk, each sent as soon as it is compressed (on ``pool`` when given),
        the FRAME last. ``None`` (the default) streams when the server accepted ``"streamed_frames"``; ``True``
        streams even where it did not (a test of the server's answer); ``False`` never."""
        sid = session if session is not None else self.session
        if sid is None:
            raise RuntimeError("no session: call hello() first")
        fid = self.next_frame if frame is None else frame
        self.next_frame = fid + 1
        if time_ns is None:
            if fid > 1:
                self._sim_time_ns += int(round(dt * 1e9))
            time_ns = self._sim_time_ns
        msg = Frame(sid, fid, time_ns, dt, deadline_ms, list(buffers), list(events), list(styles), camera,
                    result_slot, list(controls))
        if stream or (stream is None and self.streamed_frames):
            msg.buffers = [dataclasses.replace(b) for b in msg.buffers]  # the caller's buffers stay unstreamed
            for part in encode_streamed_frame(msg, pool):
                self.send_raw(part)
        self.send(msg)
        return fid

    def result(self, frame: int, timeout: float | None = None) -> Result:
        """Wait for the answer to ``frame``; ``RemoteError`` if it is an ERROR."""
        msg = self._wait(lambda m: isinstance(m, (Result, Error)) and m.frame == frame, timeout)
        if isinstance(msg, Error):
            raise RemoteError(msg)
        assert isinstance(msg, Result)
        return msg

    def render(self, buffers: Sequence[Buffer], timeout: float | None = None, **kw: Any) -> Result:
        """``send_frame`` then ``result``."""
        return self.result(self.send_frame(buffers, **kw), timeout)

    def ping(self, timeout: float | None = None) -> float:
        """Round-trip time in seconds."""
        nonce = next(self._nonce)
        t = time.monotonic_ns()
        self.send(Ping(nonce, t))
        self._wait(lambda m: isinstance(m, Pong) and m.nonce == nonce, timeout)
        return (time.monotonic_ns() - t) / 1e9

    def bye(self, reason: str | None = None) -> None:
        """Close the session."""
        self.send(Bye(self.session, reason))
        self.session = None
