"""A tiny NRB/1 renderer for client tests that need to watch the wire: it echoes ``hudless_color`` (or the first
buffer) back as the output image and appends what it did to a log file, one line per record:

    HELLO <session>                a session was opened
    FRAME <session> <frame>        a FRAME was answered (written just before its RESULT is sent)
    EVENT <name>                   an event of that FRAME (in order, written with its FRAME line)
    STYLE <style>                  a style command of that FRAME
    PING / BYE <session>           other messages

Lines are written with one ``os.write`` on an ``O_APPEND`` descriptor right before the answer is sent, so a SIGKILL
leaves a log of exactly the frames that were answered (up to the microseconds between the two calls).

Behaviour switches: ``--delay-ms`` (answer each FRAME that late: a slow renderer), ``--garbage`` (answer every
message with bytes that are not NRB). It uses the real codec (``bridge.protocol``) and real sockets.

    python tests/helpers/event_server.py --port 0 --log /tmp/events.log   # prints "listening on tcp://..."
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from typing import Any

import zmq

from bridge.protocol import (
    COMPRESSIONS,
    Buffer,
    BufferSpec,
    Bye,
    ErrorCode,
    Frame,
    Hello,
    OutputSpec,
    Ping,
    Pong,
    ProtocolError,
    Result,
    Timing,
    Welcome,
    decode,
    encode,
    error_message,
)


class EventServer:
    def __init__(self, endpoint: str, log_path: str, delay_ms: float = 0.0, garbage: bool = False) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.delay_s = delay_ms / 1000.0
        self.garbage = garbage
        self.sessions: dict[int, dict[str, Any]] = {}
        self.stop = False

    def log(self, lines: list[str]) -> None:
        if lines:
            os.write(self.log_fd, ("\n".join(lines) + "\n").encode())

    def send(self, rid: bytes, msg: Any) -> None:
        self.sock.send_multipart([rid, *encode(msg)], copy=False)

    def serve(self) -> None:
        while not self.stop:
            if not self.sock.poll(50):
                continue
            parts = self.sock.recv_multipart(copy=False)
            rid, frames = parts[0].bytes, parts[1:]
            if self.garbage:
                self.sock.send_multipart([rid, b"\xc1\xff this is not NRB"])
                continue
            try:
                self.handle(rid, frames)
            except ProtocolError as err:
                self.send(rid, error_message(err))

    def handle(self, rid: bytes, frames: list[Any]) -> None:
        # Find the peer's session first: its negotiated compression decides how the FRAME decodes.
        sess = next((s for s in self.sessions.values() if s["rid"] == rid), None)
        msg = decode(frames, compression=sess["compression"] if sess else COMPRESSIONS)
        if isinstance(msg, Hello):
            sid = random.randrange(1, 1 << 40)
            caps = [c for c in COMPRESSIONS if c in msg.capabilities]
            # RESULTs must match what WELCOME announces (libnrb drops any other): hudless_color's 8-bit format.
            fmt = next((b.format for b in msg.buffers if b.name == "hudless_color"), "rgba8")
            fmt = fmt if fmt in ("rgba8", "rgba8_srgb") else "rgba8"
            self.sessions[sid] = {"rid": rid, "compression": tuple(caps), "format": fmt}
            w, h = msg.output_size
            # It echoes hudless_color, so it asks for it (libnrb sends only what WELCOME asks for, section 5.2).
            welcome = Welcome(sid, "event-server/1", caps, [], [BufferSpec("hudless_color", fmt)],
                              OutputSpec(fmt, w, h), 4, ["identity", "noir"])
            self.log([f"HELLO {sid}"])
            self.send(rid, welcome)
        elif isinstance(msg, Frame):
            if msg.session not in self.sessions or self.sessions[msg.session]["rid"] != rid:
                err = ProtocolError(ErrorCode.NO_SESSION, f"session {msg.session} is not open")
                self.send(rid, error_message(err, session=msg.session, frame=msg.frame))
                return
            if self.delay_s:
                time.sleep(self.delay_s)
            src = msg.buffer("hudless_color") or (msg.buffers[0] if msg.buffers else None)
            fmt = self.sessions[msg.session]["format"]
            if src is None or src.data is None or src.format not in ("rgba8", "rgba8_srgb"):
                out = Buffer.from_array("output", fmt, _blank(msg))
            else:
                out = Buffer("output", fmt, src.width, src.height, src.stride, src.data)
            lines = [f"FRAME {msg.session} {msg.frame}"]
            lines += [f"EVENT {e.name}" for e in msg.events]
            lines += [f"STYLE {s.style}" for s in msg.styles]
            self.log(lines)
            self.send(rid, Result(msg.session, msg.frame, "ok", Timing(total_ms=self.delay_s * 1000.0), out))
        elif isinstance(msg, Ping):
            self.log(["PING"])
            self.send(rid, Pong(msg.nonce, msg.time_ns))
        elif isinstance(msg, Bye):
            self.log([f"BYE {msg.session}"])
            self.sessions.pop(msg.session or -1, None)


def _blank(msg: Frame) -> Any:
    import numpy as np

    b = msg.buffers[0] if msg.buffers else None
    w, h = (b.width, b.height) if b else (1, 1)
    return np.zeros((h, w, 4), np.uint8)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--endpoint", help="full endpoint instead of --port")
    p.add_argument("--log", required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--garbage", action="store_true")
    args = p.parse_args()
    endpoint = args.endpoint or f"tcp://127.0.0.1:{args.port if args.port else '*'}"
    server = EventServer(endpoint, args.log, args.delay_ms, args.garbage)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "stop", True))
    print(f"listening on {server.endpoint}", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
