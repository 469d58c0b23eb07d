"""Renderer side of the shared-memory transport (protocol section 7): map the engine's pool, view slots as arrays.

The engine creates the POSIX shared-memory object, announces it in HELLO, and unlinks the name once it has WELCOME;
the server maps it here when it accepts ``"shm"``. Buffers whose descriptor carries a ``ShmRef`` are then viewed in
place (no copy), and RESULT pixels go into the frame's ``result_slot``.

The object is opened with ``shm_open`` + ``mmap`` directly rather than through ``multiprocessing.shared_memory``:
on Python < 3.13 the latter registers even attached segments with the resource tracker, which would unlink the
engine's pool when this process exits.
"""

from __future__ import annotations

import mmap
import os

from bridge.protocol import FORMATS, Buffer, ShmPool, ShmRef

#: The server maps only pools whose name starts with this (libnrb's names do; docs/protocol.md section 7 asks
#: engines to use it).
SHM_NAME_PREFIX = "/nrb-"


class ShmUnavailable(Exception):
    """The pool cannot be mapped (no such object, too small, platform without POSIX shm)."""


def _open_fd(name: str) -> int:
    try:
        import _posixshmem  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - non-POSIX platforms
        path = "/dev/shm/" + name.lstrip("/")
        return os.open(path, os.O_RDWR)
    return int(_posixshmem.shm_open(name, os.O_RDWR, mode=0o600))


class ShmPoolView:
    """A mapped pool; ``view`` returns zero-copy memoryviews into it."""

    def __init__(self, pool: ShmPool) -> None:
        self.pool = pool
        size = pool.slots * pool.slot_size
        try:
            fd = _open_fd(pool.name)
        except OSError as exc:
            raise ShmUnavailable(f"cannot open shared memory {pool.name!r}: {exc.strerror}") from exc
        try:
            actual = os.fstat(fd).st_size
            if actual < size:
                raise ShmUnavailable(f"shared memory {pool.name!r} is {actual} bytes, the pool needs {size}")
            self._mmap: mmap.mmap | None = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._mv = memoryview(self._mmap)

    def view(self, ref: ShmRef, size: int) -> memoryview:
        """The ``size`` bytes at ``ref`` (range already checked by the decoder against the pool)."""
        start = ref.slot * self.pool.slot_size + ref.offset
        if ref.slot >= self.pool.slots or ref.offset + size > self.pool.slot_size:
            raise ValueError(f"shm ref {ref} of {size} bytes lies outside the pool")
        return self._mv[start:start + size]

    def resolve(self, buf: Buffer) -> None:
        """Point ``buf.data`` at its pixels in the pool (no copy)."""
        if buf.shm is not None:
            buf.data = self.view(buf.shm, buf.size)

    def write_result(self, slot: int, name: str, format: str, pixels: memoryview | bytes, width: int,
                     height: int) -> Buffer:
        """Copy tightly packed pixels into ``slot`` at offset 0; return the descriptor that references them."""
        stride = width * FORMATS[format].bytes_per_pixel
        ref = ShmRef(slot, 0)
        dst = self.view(ref, stride * height)
        dst[:] = memoryview(pixels).cast("B")
        return Buffer(name, format, width, height, stride, None, shm=ref)

    def close(self) -> None:
        """Unmap. Views still held elsewhere keep the mapping alive until they are released."""
        self._mv.release()
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:  # a frame still holds a view; the mapping goes when it does
                pass
            self._mmap = None
