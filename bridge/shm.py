"""Renderer side of the shared-memory transport (protocol section 7): read the engine's pool, write results into it.

The engine creates the POSIX shared-memory object, announces it in HELLO, and unlinks the name once it has WELCOME;
the server opens it here when it accepts ``"shm"``. Buffers whose descriptor carries a ``ShmRef`` are copied out of
the pool when their frame is about to be rendered, and RESULT pixels are copied into the frame's ``result_slot``.

**Why the pool is read and written through its file descriptor, never through a mapping.** The object belongs to
the engine, which can ``ftruncate`` it at any moment (a bug, or on purpose). Touching a page of a mapping that lies
beyond the object's new end raises SIGBUS, which kills the whole server and every other session with it. A size
check (``fstat``) before the access does not help on its own: the engine can shrink the object between the check
and the copy. Python cannot recover from SIGBUS either (its handler only runs between bytecodes, after the faulting
instruction would have been retried forever). ``os.preadv``/``os.pwrite`` on the descriptor go through the kernel's
shmem read/write paths, which compare against the object's size *while* copying: reading past the end returns a
short count, and no access can fault. So a shrink before or during the copy becomes a short read, which
``ShmShrunk`` reports; the server answers that frame with ERROR and closes that session, and everyone else keeps
being served. (A write past the end would grow the object again rather than fault; ``write_result`` checks the
size first so that a shrunk pool is reported, and a shrink racing the write at worst re-grows the engine's own
object up to the pool size it announced, which it owns and which the kernel frees with it.)

The price is one copy per input buffer of a rendered frame, into a scratch buffer the session reuses (a fresh
allocation per frame would cost its page faults every time: about three times the copy itself). Superseded and
skipped frames are never copied. Reusing the scratch keeps the shared-memory contract of protocol section 7 rule 2:
what a renderer keeps beyond its frame (temporal history) it must copy, as it had to with the engine's slots.
Measured on the soak's 960x540 G-buffer set (14.5 MB; 2 shared cores under load, medians of 30 interleaved runs):
copying it into the reused scratch and reading it once took 5.1 ms, a memcpy out of a mapping 3.3 ms, reading the
mapping in place 1.3 ms; a fresh buffer per frame 17-26 ms. Sealed memory (``memfd_create`` + ``F_SEAL_SHRINK``,
passed over a Unix socket) would allow a safe zero-copy mapping, but needs a descriptor-passing channel NRB/1 does
not have and does not exist on every platform the engines run on.

The object is opened with ``shm_open`` directly rather than through ``multiprocessing.shared_memory``: on
Python < 3.13 the latter registers even attached segments with the resource tracker, which would unlink the
engine's pool when this process exits.
"""

from __future__ import annotations

import os

import numpy as np

from bridge.protocol import FORMATS, Buffer, ShmPool, ShmRef

#: The server maps only pools whose name starts with this (libnrb's names do; docs/protocol.md section 7 asks
#: engines to use it).
SHM_NAME_PREFIX = "/nrb-"


class ShmUnavailable(Exception):
    """The pool cannot be used (no such object, too small, platform without POSIX shm)."""


class ShmShrunk(ShmUnavailable):
    """The engine made its pool smaller than it announced after WELCOME: the session cannot go on."""


def _open_fd(name: str) -> int:
    try:
        import _posixshmem  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - non-POSIX platforms
        path = "/dev/shm/" + name.lstrip("/")
        return os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    return int(_posixshmem.shm_open(name, os.O_RDWR, mode=0o600))


class ShmPoolView:
    """An open pool: ``read`` copies a buffer out, ``write_result`` copies the output in (see the module docstring
    for why through the descriptor). One reader or writer per session at a time (the render worker processing the
    session's frame); ``close`` only after it is done."""

    def __init__(self, pool: ShmPool) -> None:
        self.pool = pool
        self.size = pool.slots * pool.slot_size
        try:
            self._fd: int | None = _open_fd(pool.name)
        except OSError as exc:
            raise ShmUnavailable(f"cannot open shared memory {pool.name!r}: {exc.strerror}") from exc
        self._scratch: np.ndarray | None = None  # resolve_all's reused copy of one frame's buffers
        try:
            self._check_size()
        except ShmShrunk as exc:
            self.close()
            raise ShmUnavailable(str(exc)) from None

    def _fileno(self) -> int:
        if self._fd is None:
            raise ShmUnavailable(f"shared memory {self.pool.name!r} is closed")
        return self._fd

    def _check_size(self) -> None:
        actual = os.fstat(self._fileno()).st_size
        if actual < self.size:
            raise ShmShrunk(f"shared memory {self.pool.name!r} is {actual} bytes, the pool announced "
                            f"{self.pool.slots} x {self.pool.slot_size} = {self.size}")

    def _offset(self, ref: ShmRef, size: int) -> int:
        if ref.slot >= self.pool.slots or ref.offset + size > self.pool.slot_size:
            raise ValueError(f"shm ref {ref} of {size} bytes lies outside the pool")
        return ref.slot * self.pool.slot_size + ref.offset

    def read(self, ref: ShmRef, size: int) -> memoryview:
        """A private copy of the ``size`` bytes at ``ref``; ``ShmShrunk`` if the pool no longer holds them."""
        out = memoryview(np.empty(size, np.uint8))  # type: ignore[arg-type]  # no zero fill: every byte is read
        self._read_into(ref, out)
        return out

    def _read_into(self, ref: ShmRef, out: memoryview) -> None:
        size = len(out)
        start = self._offset(ref, size)
        fd, done = self._fileno(), 0
        while done < size:
            n = os.preadv(fd, [out[done:]], start + done)
            if n == 0:
                self._check_size()  # names the sizes
                raise ShmShrunk(f"shared memory {self.pool.name!r} ended at byte {start + done} while reading "
                                f"{size} bytes at slot {ref.slot} offset {ref.offset}")
            done += n

    def resolve_all(self, buffers: list[Buffer]) -> None:
        """Give every shared-memory buffer of one frame its pixels, copied into the session's reused scratch buffer
        (valid until the session's next frame is resolved: see the module docstring)."""
        total = sum(b.size for b in buffers if b.shm is not None)
        if not total:
            return
        if self._scratch is None or self._scratch.nbytes < total:
            self._scratch = np.empty(total, np.uint8)
        scratch, pos = memoryview(self._scratch), 0  # type: ignore[arg-type]
        for b in buffers:
            if b.shm is not None:
                dst = scratch[pos:pos + b.size]
                self._read_into(b.shm, dst)
                b.data = dst
                pos += b.size

    def write_result(self, slot: int, name: str, format: str, pixels: memoryview | bytes, width: int,
                     height: int) -> Buffer:
        """Copy tightly packed pixels into ``slot`` at offset 0; return the descriptor that references them."""
        stride = width * FORMATS[format].bytes_per_pixel
        ref = ShmRef(slot, 0)
        start = self._offset(ref, stride * height)
        self._check_size()
        src = memoryview(pixels).cast("B")
        fd, done = self._fileno(), 0
        while done < len(src):
            done += os.pwrite(fd, src[done:], start + done)
        return Buffer(name, format, width, height, stride, None, shm=ref)

    def close(self) -> None:
        """Close the descriptor (the engine's object lives on until it unmaps it too)."""
        self._scratch = None
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
