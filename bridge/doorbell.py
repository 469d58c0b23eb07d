"""Renderer side of the doorbell (protocol section 7.1): FRAME headers in, answers out, through two FIFOs.

With shared memory, what is left of a round trip is waking threads. A ZeroMQ message wakes the sender's and the
receiver's ZeroMQ I/O threads on top of the application's; on these 2-core machines that ping-pong was most of the
0.4 ms a 960x540 shared-memory round trip spent outside rendering. The engine (libnrb) creates two named pipes and
names them in HELLO; the server's I/O loop polls ``fileno()`` next to its ROUTER socket, and the render thread
writes answers straight back, so a FRAME wakes the reading thread directly and a RESULT wakes the engine's.

One reader (the I/O thread) per direction in, one writer (the render thread) out: no locks. Liveness stays with
ZeroMQ (heartbeats and the idle timeout); the FIFOs are opened read-write, so neither side ever sees end-of-file.
"""

from __future__ import annotations

import errno
import os
import select
import stat

from bridge.protocol import MAX_HEADER_BYTES, DoorbellSpec

#: A record is a 4-byte little-endian length, then that many header bytes (1..65536).
LENGTH_BYTES = 4
#: Answers larger than one atomic pipe write go over ZeroMQ instead (section 7.1 rule 5), so the render thread
#: never leaves half a record in the pipe.
ATOMIC_WRITE = getattr(select, "PIPE_BUF", 512)


class DoorbellUnavailable(Exception):
    """The engine's FIFOs cannot be used (missing, not FIFOs, someone else's, a symbolic link)."""


class DoorbellCorrupt(Exception):
    """A record length outside 1..65536: the stream cannot be resynchronised; the session must end."""


def _open_fifo(path: str) -> int:
    """Open ``path`` read-write and non-blocking, only if it is a FIFO of ours (never follow a link)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise DoorbellUnavailable(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISFIFO(st.st_mode):
        raise DoorbellUnavailable(f"{path} is not a FIFO")
    if st.st_uid != os.geteuid():
        raise DoorbellUnavailable(f"{path} belongs to uid {st.st_uid}, not to this server's user")
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise DoorbellUnavailable(f"{path}: {exc.strerror}") from exc
    after = os.fstat(fd)
    if not stat.S_ISFIFO(after.st_mode) or (after.st_dev, after.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise DoorbellUnavailable(f"{path} changed while it was being opened")
    return fd


def encode_record(header: bytes | memoryview) -> bytes:
    """One record: the length, then the header (section 7.1)."""
    n = len(header)
    if not 1 <= n <= MAX_HEADER_BYTES:
        raise ValueError(f"a doorbell record holds 1..{MAX_HEADER_BYTES} header bytes, not {n}")
    return n.to_bytes(LENGTH_BYTES, "little") + bytes(header)


class RecordReader:
    """Splits a byte stream into records. Feed it what ``read`` returned; it keeps partial records."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete records now available (``DoorbellCorrupt`` on a bad length)."""
        self._buf += data
        out: list[bytes] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= LENGTH_BYTES:
            n = int.from_bytes(buf[pos:pos + LENGTH_BYTES], "little")
            if not 1 <= n <= MAX_HEADER_BYTES:
                raise DoorbellCorrupt(f"record length {n} is outside 1..{MAX_HEADER_BYTES}")
            if len(buf) - pos - LENGTH_BYTES < n:
                break
            out.append(bytes(buf[pos + LENGTH_BYTES:pos + LENGTH_BYTES + n]))
            pos += LENGTH_BYTES + n
        del buf[:pos]
        return out


class Doorbell:
    """The renderer's end of one session's FIFO pair."""

    def __init__(self, spec: DoorbellSpec) -> None:
        self.spec = spec
        self._in = _open_fifo(spec.to_renderer)
        try:
            self._out = _open_fifo(spec.to_engine)
        except BaseException:
            os.close(self._in)
            raise
        self._reader = RecordReader()
        self.closed = False

    def fileno(self) -> int:
        """The descriptor to poll for incoming FRAME records."""
        return self._in

    def receive(self) -> list[bytes]:
        """Every complete FRAME record readable now (I/O thread). ``DoorbellCorrupt`` ends the session."""
        records: list[bytes] = []
        while True:
            try:
                data = os.read(self._in, 1 << 16)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not data:
                break
            records += self._reader.feed(data)
            if len(data) < (1 << 16):
                break
        return records

    def send(self, header: bytes | memoryview) -> bool:
        """Write one answer as a single atomic record (render thread). False: too large for one atomic write, or
        the pipe is full (the engine is not reading); the caller then sends it over ZeroMQ."""
        if self.closed or LENGTH_BYTES + len(header) > ATOMIC_WRITE:
            return False
        try:
            os.write(self._out, encode_record(header))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._in)
            os.close(self._out)
