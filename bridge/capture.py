"""Capture files (``.nrbcap``): what ``nrb record`` writes and ``nrb replay`` / ``nrb inspect`` read.

Layout (all integers little-endian)::

    file header  16 B   b"NRBCAP\\r\\n"  u32 format version (1)  u32 flags (0)
    chunk        32 B   b"NRCK"  u8 kind  u8 flags  u16 reserved  u64 session  u64 frame  u32 length  u32 crc32
                 length B payload: one msgpack map (lz4-frame compressed when flags & 1)
    ...          more chunks, appended as the session runs
    index chunk         kind INDEX: msgpack list of [kind, flags, session, frame, offset, length] per chunk
    trailer      16 B   b"NRBINDEX"  u64 offset of the index chunk

``crc32`` covers the chunk header bytes 4..28 (kind … length) and the payload. The index and trailer are written
on a clean close; a reader that finds no valid trailer (the recorder crashed or the file was cut) scans the chunks
from the start instead, validating each CRC, and re-synchronises on the next ``NRCK`` marker after a damaged chunk.
So a file truncated anywhere opens with every chunk that was completely written — at most the last partial frame
is lost.

Chunk kinds and payloads:

* SESSION ``{session, hello, welcome, renderer, started_ns}`` — the handshake (HELLO / WELCOME header bytes).
* HOOKS ``{path, source, version}`` — the hooks source in effect for the frames that follow (any session), so a
  replay runs exactly the hooks the live session ran, including hot reloads.
* FRAME ``{session, frame, received_ns, wire}`` — the FRAME as received: header bytes then the inline payloads
  (shared-memory buffers are stored inline); its events and ``set_style`` commands are in the header.
* RESULT ``{session, frame, status, wire, style_digest, timing, error}`` — the answer sent (RESULT or ERROR bytes)
  and the 16-byte digest of the style map built for the frame (None when it was skipped).
* END ``{session, reason}`` — the session closed or expired.
"""

from __future__ import annotations

import enum
import mmap
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from bridge.protocol import RECORDED_CODECS, Frame, Message, decode, message_from_header, parse_header

FILE_MAGIC = b"NRBCAP\r\n"
FORMAT_VERSION = 1
CHUNK_MAGIC = b"NRCK"
TRAILER_MAGIC = b"NRBINDEX"
_FILE_HEADER = struct.Struct("<8sII")
_CHUNK = struct.Struct("<4sBBHQQII")
_TRAILER = struct.Struct("<8sQ")
FLAG_LZ4 = 1
_COMPRESS_OVER = 1024
MAX_CHUNK = (1 << 32) - 1


class Kind(enum.IntEnum):
    """Chunk kinds."""

    SESSION = 1
    FRAME = 2
    RESULT = 3
    HOOKS = 4
    END = 5
    INDEX = 15


class CaptureError(Exception):
    """The file is not a capture, or a chunk is damaged."""


@dataclass(frozen=True)
class ChunkRef:
    """Where one chunk lies in the file."""

    kind: int
    flags: int
    session: int
    frame: int
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + _CHUNK.size + self.length


@dataclass
class CapturedResult:
    """The server's answer to a captured frame."""

    status: str
    wire: list[bytes]
    style_digest: bytes | None
    timing: dict[str, float]
    error: str | None = None


@dataclass
class CapturedFrame:
    """One captured FRAME with its answer (``result`` is None if the file ends between the two)."""

    session: int
    frame: int
    received_ns: int
    wire: list[bytes]
    result: CapturedResult | None = None
    style_only: bool = False  # refused for overload: events and commands applied, no pixels stored

    def decode(self) -> Frame:
        """The FRAME message (buffers are views of ``wire``; none for a style-only frame)."""
        if self.style_only:
            header = parse_header(self.wire[0])
            header["buffers"] = []
            msg = message_from_header(header, [])
        else:
            msg = decode(self.wire, compression=RECORDED_CODECS)
        if not isinstance(msg, Frame):
            raise CaptureError(f"frame chunk {self.session}/{self.frame} holds a {type(msg).__name__}")
        return msg

    def decode_result(self) -> Message | None:
        """The RESULT or ERROR message that answered the frame, if captured."""
        return None if self.result is None else decode(self.result.wire, compression=RECORDED_CODECS)


# ------------------------------------------------------------------------------------------------------- writer


def _pack_chunk(kind: int, payload: dict[str, Any], session: int, frame: int, compress: bool) -> bytes:
    body = msgpack.packb(payload, use_bin_type=True)
    flags = 0
    if compress and len(body) > _COMPRESS_OVER:
        import lz4.frame

        body = lz4.frame.compress(body, store_size=True)
        flags |= FLAG_LZ4
    if len(body) > MAX_CHUNK:
        raise ValueError(f"chunk of {len(body)} bytes exceeds the 4 GiB chunk limit")
    head = _CHUNK.pack(CHUNK_MAGIC, kind, flags, 0, session, frame, len(body), 0)
    crc = zlib.crc32(body, zlib.crc32(head[4:28]))
    return head[:28] + struct.pack("<I", crc) + body


class CaptureWriter:
    """Appends chunks to a new capture file; ``close()`` writes the index and trailer.

    With ``background=True`` packing, compression and disk writes happen on a writer thread (bounded queue, so a
    slow disk eventually slows the caller rather than eating memory). Every chunk is flushed to the OS as soon as it
    is written, so a crash of this process loses at most the chunk in progress.
    """

    def __init__(self, path: str | Path, *, compress: bool = True, background: bool = False) -> None:
        self.path = Path(path)
        self.compress = compress
        self._f = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._f.write(_FILE_HEADER.pack(FILE_MAGIC, FORMAT_VERSION, 0))
        self._f.flush()
        self._index: list[list[int]] = []
        self._closed = False
        self._error: BaseException | None = None
        self._queue: queue.Queue[tuple[int, dict[str, Any], int, int] | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=64)
            self._thread = threading.Thread(target=self._drain, name="nrb-capture-writer", daemon=True)
            self._thread.start()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, kind: Kind, payload: dict[str, Any], session: int = 0, frame: int = 0) -> None:
        """Append one chunk (queued when writing in the background)."""
        if self._closed:
            raise CaptureError("capture writer is closed")
        if self._error is not None:
            raise CaptureError(f"capture writer failed: {self._error}")
        if self._queue is not None:
            self._queue.put((int(kind), payload, session, frame))
        else:
            self._write(int(kind), payload, session, frame)

    def _write(self, kind: int, payload: dict[str, Any], session: int, frame: int) -> None:
        data = _pack_chunk(kind, payload, session, frame, self.compress)
        offset = self._f.tell()
        self._f.write(data)
        self._f.flush()
        flags = data[5]
        self._index.append([kind, flags, session, frame, offset, len(data) - _CHUNK.size])

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._write(*item)
            except BaseException as exc:  # noqa: BLE001 - surfaced to the caller on the next add()/close()
                self._error = exc

    # convenience -------------------------------------------------------------------------------------------
    def session_start(self, session: int, hello: bytes, welcome: bytes, renderer: str) -> None:
        self.add(Kind.SESSION, {"session": session, "hello": bytes(hello), "welcome": bytes(welcome),
                                "renderer": renderer, "started_ns": time.time_ns()}, session)

    def hooks(self, path: str, source: str, version: str) -> None:
        self.add(Kind.HOOKS, {"path": path, "source": source, "version": version})

    def frame(self, session: int, frame: int, wire: Sequence[Any], received_ns: int, style_only: bool = False) -> None:
        self.add(Kind.FRAME, {"session": session, "frame": frame, "received_ns": received_ns,
                              "wire": list(wire), "style_only": style_only}, session, frame)

    def result(self, session: int, frame: int, status: str, wire: Sequence[Any], style_digest: bytes | None,
               timing: dict[str, float], error: str | None = None) -> None:
        self.add(Kind.RESULT, {"session": session, "frame": frame, "status": status, "wire": list(wire),
                               "style_digest": style_digest, "timing": timing, "error": error}, session, frame)

    def session_end(self, session: int, reason: str) -> None:
        self.add(Kind.END, {"session": session, "reason": reason}, session)

    def close(self) -> None:
        """Flush queued chunks, write the index and trailer, close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        try:
            data = _pack_chunk(Kind.INDEX, {"chunks": self._index}, 0, 0, self.compress)
            offset = self._f.tell()
            self._f.write(data)
            self._f.write(_TRAILER.pack(TRAILER_MAGIC, offset))
            self._f.flush()
            os.fsync(self._f.fileno())
        finally:
            self._f.close()
        if self._error is not None:
            raise CaptureError(f"capture writer failed: {self._error}")


# ------------------------------------------------------------------------------------------------------- reader


class CaptureReader:
    """Opens a capture, complete or not. ``recovered`` tells whether the index was missing (file cut or crashed
    recorder) and the chunks were found by scanning; ``damaged`` counts bytes skipped over while scanning."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        size = os.fstat(self._f.fileno()).st_size
        if size < _FILE_HEADER.size:
            self._f.close()
            raise CaptureError(f"{self.path} is too short to be a capture ({size} bytes)")
        self._mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        self.size = size
        magic, version, _ = _FILE_HEADER.unpack_from(self._mm, 0)
        if magic != FILE_MAGIC:
            self.close()
            raise CaptureError(f"{self.path} is not an nrb capture (bad magic)")
        if version != FORMAT_VERSION:
            self.close()
            raise CaptureError(f"{self.path} is capture format {version}; this nrb reads {FORMAT_VERSION}")
        self.damaged = 0
        index = self._read_index()
        self.recovered = index is None
        self.chunks: list[ChunkRef] = index if index is not None else self._scan()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_mm", None) is not None:
            self._mm.close()
        self._f.close()

    # structure ---------------------------------------------------------------------------------------------
    def _header_at(self, pos: int) -> ChunkRef | None:
        if pos + _CHUNK.size > self.size:
            return None
        magic, kind, flags, _, session, frame, length, _crc = _CHUNK.unpack_from(self._mm, pos)
        if magic != CHUNK_MAGIC or pos + _CHUNK.size + length > self.size:
            return None
        return ChunkRef(kind, flags, session, frame, pos, length)

    def _crc_ok(self, ref: ChunkRef) -> bool:
        stored = struct.unpack_from("<I", self._mm, ref.offset + 28)[0]
        mv = memoryview(self._mm)
        try:
            crc = zlib.crc32(mv[ref.offset + _CHUNK.size:ref.end], zlib.crc32(mv[ref.offset + 4:ref.offset + 28]))
        finally:
            mv.release()
        return crc == stored

    def _read_index(self) -> list[ChunkRef] | None:
        if self.size < _FILE_HEADER.size + _TRAILER.size:
            return None
        magic, offset = _TRAILER.unpack_from(self._mm, self.size - _TRAILER.size)
        if magic != TRAILER_MAGIC:
            return None
        ref = self._header_at(offset)
        if ref is None or ref.kind != Kind.INDEX or ref.end != self.size - _TRAILER.size or not self._crc_ok(ref):
            return None
        try:
            entries = self._payload(ref)["chunks"]
            chunks = [ChunkRef(*map(int, e)) for e in entries]
        except Exception:  # a damaged index is not fatal: scanning still works
            return None
        if any(c.offset < _FILE_HEADER.size or c.end > offset for c in chunks):
            return None
        return chunks

    def _scan(self) -> list[ChunkRef]:
        out: list[ChunkRef] = []
        pos = _FILE_HEADER.size
        while pos + _CHUNK.size <= self.size:
            ref = self._header_at(pos)
            if ref is not None and self._crc_ok(ref):
                if ref.kind != Kind.INDEX:
                    out.append(ref)
                pos = ref.end
                continue
            nxt = self._mm.find(CHUNK_MAGIC, pos + 1)
            if nxt < 0:
                self.damaged += self.size - pos
                break
            self.damaged += nxt - pos
            pos = nxt
        return out

    def _payload(self, ref: ChunkRef) -> dict[str, Any]:
        body = self._mm[ref.offset + _CHUNK.size:ref.end]
        if ref.flags & FLAG_LZ4:
            import lz4.frame

            body = lz4.frame.decompress(body)
        out = msgpack.unpackb(body, raw=False)
        if not isinstance(out, dict):
            raise CaptureError(f"chunk at {ref.offset} does not hold a map")
        return out

    def payload(self, ref: ChunkRef) -> dict[str, Any]:
        """The decoded payload of a chunk, after checking its CRC."""
        if not self._crc_ok(ref):
            raise CaptureError(f"chunk at offset {ref.offset} (kind {ref.kind}) fails its CRC check")
        return self._payload(ref)

    # content -----------------------------------------------------------------------------------------------
    def records(self) -> Iterator[tuple[ChunkRef, dict[str, Any]]]:
        """Every chunk in file order with its payload (damaged chunks of an indexed file are skipped)."""
        for ref in self.chunks:
            try:
                yield ref, self.payload(ref)
            except CaptureError:
                continue

    def sessions(self) -> dict[int, dict[str, Any]]:
        """SESSION payloads by session id, in order of appearance."""
        return {p["session"]: p for ref, p in self._of_kind(Kind.SESSION)}

    def _of_kind(self, kind: Kind) -> Iterator[tuple[ChunkRef, dict[str, Any]]]:
        for ref in self.chunks:
            if ref.kind == kind:
                try:
                    yield ref, self.payload(ref)
                except CaptureError:
                    continue

    def frames(self, session: int | None = None) -> list[CapturedFrame]:
        """Captured frames (of one session, or all) in file order, each with its RESULT when present."""
        results: dict[tuple[int, int], CapturedResult] = {}
        for ref, p in self._of_kind(Kind.RESULT):
            if session is None or ref.session == session:
                results[(ref.session, ref.frame)] = CapturedResult(p["status"], p["wire"], p.get("style_digest"),
                                                                   p.get("timing") or {}, p.get("error"))
        out = []
        for ref, p in self._of_kind(Kind.FRAME):
            if session is None or ref.session == session:
                out.append(CapturedFrame(ref.session, ref.frame, p.get("received_ns", 0), p["wire"],
                                         results.get((ref.session, ref.frame)), bool(p.get("style_only"))))
        return out

    def frame_refs(self, session: int | None = None) -> list[ChunkRef]:
        """FRAME chunk references (cheap: no payload is read)."""
        return [c for c in self.chunks if c.kind == Kind.FRAME and (session is None or c.session == session)]
