"""The doorbell (protocol section 7.1) from the renderer's side: a real ``nrb serve`` takes FRAME headers from the
engine's FIFO and answers on the other one; bad FIFOs are refused and a corrupt stream ends only its session.

The engine here is hand-made (FIFOs from ``os.mkfifo``, a pool from ``multiprocessing.shared_memory``, HELLO from
``bridge.client``) so that the tests can write exactly the bytes a broken or hostile engine would.
"""

from __future__ import annotations

import os
import secrets
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest
from helpers.serverkit import ALBEDO_SPEC, SIZE, served

from bridge.doorbell import LENGTH_BYTES, DoorbellCorrupt, RecordReader, encode_record
from bridge.protocol import Buffer, Bye, DoorbellSpec, Frame, Result, ShmPool, ShmRef, decode, encode

SLOT = 65536


@contextmanager
def engine_side(tmp_path: Path) -> Iterator[tuple[shared_memory.SharedMemory, ShmPool, DoorbellSpec, int, int]]:
    """A pool of two slots and two FIFOs, opened the way libnrb opens them (read-write, non-blocking)."""
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    shm = shared_memory.SharedMemory(name=f"nrb-test-{tag}", create=True, size=2 * SLOT)
    spec = DoorbellSpec(str(tmp_path / f"nrb-{tag}-to-renderer"), str(tmp_path / f"nrb-{tag}-to-engine"))
    os.mkfifo(spec.to_renderer, 0o600)
    os.mkfifo(spec.to_engine, 0o600)
    out = os.open(spec.to_renderer, os.O_RDWR | os.O_NONBLOCK)
    back = os.open(spec.to_engine, os.O_RDWR | os.O_NONBLOCK)
    try:
        yield shm, ShmPool("/" + shm.name, 2, SLOT), spec, out, back
    finally:
        os.close(out)
        os.close(back)
        shm.close()
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


def read_record(fd: int, timeout: float = 5.0) -> bytes:
    reader = RecordReader()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if select.select([fd], [], [], 0.05)[0]:
            got = reader.feed(os.read(fd, 1 << 16))
            if got:
                return got[0]
    raise TimeoutError("no record on the doorbell")


def shm_frame(session: int, fid: int) -> Frame:
    w, h = SIZE
    return Frame(session, fid, fid * 16_000_000, 0.016, 1000.0,
                 [Buffer("albedo", "rgba8_srgb", w, h, w * 4, None, shm=ShmRef(0, 0))], result_slot=1)


def test_records_split_across_reads_come_out_whole() -> None:
    a, b = encode_record(b"\x81\xa1x\x01"), encode_record(b"y" * 5000)
    stream = a + b
    reader = RecordReader()
    got: list[bytes] = []
    for i in range(0, len(stream), 7):
        got += reader.feed(stream[i:i + 7])
    assert got == [a[LENGTH_BYTES:], b[LENGTH_BYTES:]]


@pytest.mark.parametrize("length", [0, 65537, 0xFFFFFFFF])
def test_a_record_length_outside_the_header_limit_is_a_corrupt_stream(length: int) -> None:
    with pytest.raises(DoorbellCorrupt):
        RecordReader().feed(length.to_bytes(4, "little") + b"\x80")


def test_frames_rung_on_the_doorbell_are_answered_on_the_doorbell_in_the_result_slot(tmp_path: Path) -> None:
    w, h = SIZE
    img = np.random.default_rng(3).integers(0, 255, (h, w, 4), dtype=np.uint8)
    with engine_side(tmp_path) as (shm, pool, spec, out, back), \
            served(tmp_path, "--renderer", "passthrough") as srv, srv.client() as c:
        welcome = c.hello(SIZE, ALBEDO_SPEC, capabilities=["shm", "doorbell"], shm=pool, doorbell=spec)
        assert {"shm", "doorbell"} <= set(welcome.capabilities)
        for fid in (1, 2, 3):
            shm.buf[: img.nbytes] = np.roll(img, fid).tobytes()
            os.write(out, encode_record(encode(shm_frame(welcome.session, fid))[0]))
            result = decode([read_record(back)], shm_pool=pool)
            assert isinstance(result, Result) and result.frame == fid and result.status == "ok"
            assert result.output is not None and result.output.shm == ShmRef(1, 0)
            got = np.frombuffer(bytes(shm.buf[SLOT:SLOT + img.nbytes]), np.uint8).reshape(h, w, 4)
            assert np.array_equal(got, np.roll(img, fid))
        c.bye()
    assert "shared memory + doorbell" in srv.log_text()


def test_a_corrupt_doorbell_stream_ends_that_session_and_the_server_keeps_serving(tmp_path: Path) -> None:
    with engine_side(tmp_path) as (shm, pool, spec, out, back), \
            served(tmp_path, "--renderer", "passthrough") as srv, srv.client() as c:
        welcome = c.hello(SIZE, ALBEDO_SPEC, capabilities=["shm", "doorbell"], shm=pool, doorbell=spec)
        assert "doorbell" in welcome.capabilities
        os.write(out, (1 << 20).to_bytes(4, "little") + b"garbage")
        bye = c.recv(timeout=5)
        assert isinstance(bye, Bye) and bye.session == welcome.session and "corrupt" in (bye.reason or "")
        w, h = SIZE
        c.hello(SIZE, ALBEDO_SPEC)  # a new session on the same server, plain ZeroMQ
        assert c.render([Buffer.from_array("albedo", "rgba8_srgb", np.zeros((h, w, 4), np.uint8))]).status == "ok"
    assert "doorbell stream corrupt" in srv.log_text()


@pytest.mark.parametrize("kind", ["regular file", "symbolic link to a FIFO"])
def test_a_doorbell_path_that_is_not_a_plain_fifo_is_refused_and_shared_memory_still_works(
        tmp_path: Path, kind: str) -> None:
    with engine_side(tmp_path) as (shm, pool, spec, out, back), \
            served(tmp_path, "--renderer", "passthrough") as srv, srv.client() as c:
        bad = str(tmp_path / f"nrb-bad-{secrets.token_hex(3)}")
        if kind == "regular file":
            Path(bad).write_bytes(b"")
        else:
            os.symlink(spec.to_renderer, bad)
        welcome = c.hello(SIZE, ALBEDO_SPEC, capabilities=["shm", "doorbell"], shm=pool,
                          doorbell=DoorbellSpec(bad, spec.to_engine))
        assert "shm" in welcome.capabilities and "doorbell" not in welcome.capabilities
        result = c.render([Buffer("albedo", "rgba8_srgb", *SIZE, SIZE[0] * 4, None, shm=ShmRef(0, 0))],
                          result_slot=1)
        assert result.status == "ok" and result.output is not None and result.output.shm == ShmRef(1, 0)
        c.bye()
    assert "not using the doorbell" in srv.log_text()


def test_a_server_started_with_no_doorbell_declines_it(tmp_path: Path) -> None:
    with engine_side(tmp_path) as (shm, pool, spec, out, back), \
            served(tmp_path, "--renderer", "passthrough", "--no-doorbell") as srv, srv.client() as c:
        welcome = c.hello(SIZE, ALBEDO_SPEC, capabilities=["shm", "doorbell"], shm=pool, doorbell=spec)
        assert "shm" in welcome.capabilities and "doorbell" not in welcome.capabilities
        c.bye()


def test_a_doorbell_session_never_streams_its_image(tmp_path: Path) -> None:
    """Protocol sections 6.3.4 and 6.3.5 step 1: "streamed_output" and "streamed_frames" are never accepted with a
    doorbell (its one-frame answers take the FIFO); the same offer without the doorbell is accepted."""
    caps = ["shm", "doorbell", "lz4", "chunked", "streamed_output", "streamed_frames"]
    with engine_side(tmp_path) as (shm, pool, spec, out, back), \
            served(tmp_path, "--renderer", "passthrough") as srv:
        with srv.client() as c:
            welcome = c.hello(SIZE, ALBEDO_SPEC, capabilities=caps, shm=pool, doorbell=spec)
            assert {"doorbell", "chunked"} <= set(welcome.capabilities)
            assert "streamed_output" not in welcome.capabilities
            assert "streamed_frames" not in welcome.capabilities
            c.bye()
        with srv.client() as c:
            welcome = c.hello(SIZE, ALBEDO_SPEC, capabilities=caps[2:])
            assert "streamed_output" in welcome.capabilities
            assert "streamed_frames" in welcome.capabilities
            c.bye()
