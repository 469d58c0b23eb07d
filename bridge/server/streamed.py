"""PARTs an engine streams ahead of its FRAMEs (docs/protocol.md section 6.3.5), held per session by the I/O loop.

The I/O thread only holds each PART (the received message, no copy) and hands its decompression to the chunk
threads at once, at the size its lz4/zstd frame announces; when the FRAME comes, ``take`` gives its PARTs to
``bridge.protocol.attach_frame_parts`` and the render worker's ``inflate`` waits for, checks and uses those early
decompressions. Everything here runs on the I/O thread; the futures only run ``decompress_announced``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from bridge.protocol import (
    MAX_HELD_FRAME_PARTS,
    PART_SLACK_BYTES,
    EarlyChunk,
    ErrorCode,
    Part,
    ProtocolError,
    announced_chunk,
    decompress_announced,
)


@dataclass
class HeldPart:
    """One PART waiting for its FRAME: its ids, its payload (a view of ``keep``, the received frame) and what its
    chunk decompresses to ahead (``early``; ``early_bytes`` of the session's budget for it)."""

    frame: int
    buffer: str
    index: int
    data: memoryview | bytes
    keep: Any = field(default=None, repr=False)
    early: EarlyChunk | None = None
    early_bytes: int = 0

    def entry(self) -> tuple[str, int, Any, EarlyChunk | None]:
        """What ``attach_frame_parts`` takes of it."""
        return (self.buffer, self.index, self.data, self.early)


class HeldParts:
    """The PARTs one session holds ahead of their FRAMEs, within section 6.3.5 step 5's limits: at most
    ``MAX_HELD_FRAME_PARTS``, payloads at most ``frame_bytes`` × 129/128 + 1 MiB; chunks decompressed ahead at most
    ``frame_bytes`` of raw bytes in all (a chunk beyond that waits for its FRAME)."""

    def __init__(self, frame_bytes: int) -> None:
        self.parts: list[HeldPart] = []
        self.bytes = 0
        self.early_bytes = 0
        self.max_parts = MAX_HELD_FRAME_PARTS
        self.max_bytes = frame_bytes + frame_bytes // 128 + PART_SLACK_BYTES
        self.early_budget = frame_bytes

    def __len__(self) -> int:
        return len(self.parts)

    def add(self, part: Part, keep: Any, methods: Collection[str], pool: Callable[[], Executor] | None) -> None:
        """Hold ``part`` and start decompressing its chunk on ``pool`` (when its frame announces a size in one of
        ``methods`` and the budget allows). Over a limit: the frame's held PARTs are dropped and
        ``LIMIT_EXCEEDED`` is raised."""
        n = len(part.data)
        if len(self.parts) + 1 > self.max_parts or self.bytes + n > self.max_bytes:
            count, size = len(self.parts), self.bytes
            self.drop(lambda p: p.frame == part.frame)
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED,
                                f"PART {part.buffer}: chunks[{part.index}] of frame {part.frame}: the session holds "
                                f"{count} PARTs of {size} bytes ahead of their FRAMEs; with it they would go over "
                                f"{self.max_parts} PARTs or {self.max_bytes} bytes (the frame's PARTs are dropped)")
        held = HeldPart(part.frame, part.buffer, part.index, part.data, keep)
        if pool is not None:
            announced = announced_chunk(part.data, methods)
            if announced is not None and self.early_bytes + announced[1] <= self.early_budget:
                method, size = announced
                held.early = EarlyChunk(method, size, pool().submit(decompress_announced, part.data, method, size))
                held.early_bytes = size
                self.early_bytes += size
        self.parts.append(held)
        self.bytes += n

    def take(self, frame: int) -> list[HeldPart]:
        """The PARTs held for ``frame`` (arrival order), no longer held; those of lower frame ids are dropped
        (their FRAME never came); those of higher ones stay."""
        if not self.parts:
            return []
        mine = [p for p in self.parts if p.frame == frame]
        self.drop(lambda p: p.frame <= frame, cancel=lambda p: p.frame < frame)
        return mine

    def drop(self, which: Callable[[HeldPart], bool], cancel: Callable[[HeldPart], bool] | None = None) -> None:
        """Stop holding the PARTs ``which`` selects; their pending decompressions are cancelled unless ``cancel``
        says to keep them (taken by a FRAME)."""
        keep: list[HeldPart] = []
        for p in self.parts:
            if not which(p):
                keep.append(p)
                continue
            self.bytes -= len(p.data)
            self.early_bytes -= p.early_bytes
            if p.early is not None and (cancel is None or cancel(p)):
                p.early.future.cancel()
        self.parts = keep

    def clear(self) -> None:
        """The session ended: everything held goes."""
        self.drop(lambda p: True)


def cancel_held(parts: list[HeldPart]) -> None:
    """Cancel the pending decompressions of PARTs taken by a FRAME that was then rejected."""
    for p in parts:
        if p.early is not None:
            p.early.future.cancel()
