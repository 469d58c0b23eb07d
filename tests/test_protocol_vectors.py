"""Both NRB/1 codecs against the shared vectors: same bytes out, same verdict on bad input."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from bridge import _wire_testing
from bridge import protocol as p

VECTORS = Path(__file__).parent / "vectors"
ALL = sorted(VECTORS.glob("*.json"))
VALID = [v for v in ALL if json.loads(v.read_text())["valid"]]
INVALID = [v for v in ALL if not json.loads(v.read_text())["valid"]]


def read_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    frames, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<I", data, i)
        frames.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return frames


def context(desc: dict[str, Any]) -> dict[str, Any]:
    ctx = desc.get("context", {})
    pool = p.ShmPool(**ctx["shm_pool"]) if "shm_pool" in ctx else None
    return {"compression": ctx.get("compression", list(p.COMPRESSIONS)), "shm_pool": pool}


def canonical(header: dict[str, Any], desc: dict[str, Any]) -> bytes:
    payloads = [bytes.fromhex(x) for x in desc["payloads"]]
    msg = p.message_from_header(header, payloads, raw_payloads=True, **context(desc))
    return msgpack.packb(p.header_map(msg), use_bin_type=True)


def test_there_are_vectors_of_every_message_kind() -> None:
    kinds = {json.loads(v.read_text())["header"]["type"] for v in VALID}
    assert kinds == set(p.MESSAGE_TYPES)
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", VALID, ids=lambda v: v.stem)
def test_python_encodes_valid_vector_to_fixture_bytes(path: Path) -> None:
    desc = json.loads(path.read_text())
    if not desc["encode"]:
        pytest.skip("decode-only vector (compressed payload, unknown keys or must_understand)")
    payloads = [bytes.fromhex(x) for x in desc["payloads"]]
    msg = p.message_from_header(desc["header"], payloads, raw_payloads=True, **context(desc))
    assert [bytes(f) for f in p.encode(msg)] == read_frames(path.with_suffix(".bin"))


@pytest.mark.parametrize("path", VALID, ids=lambda v: v.stem)
def test_python_decodes_valid_vector_to_its_description(path: Path) -> None:
    desc = json.loads(path.read_text())
    msg = p.decode(read_frames(path.with_suffix(".bin")), **context(desc))
    assert msgpack.packb(p.header_map(msg), use_bin_type=True) == canonical(desc["header"], desc)
    got = [bytes(x or b"") for x in p.payload_data(msg)]
    assert got == [bytes.fromhex(x) for x in desc["payloads"]]


SHUFFLED = [v for v in VALID if "shuffled" in v.stem]


@pytest.mark.parametrize("path", SHUFFLED, ids=lambda v: v.stem)
def test_python_decodes_shuffled_vectors_with_its_own_numpy_kernels_too(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bridge.protocol shuffles with libnrb's kernels when bridge._native is built; its numpy kernels are the
    fallback and keep the Python codec an implementation of its own, so they must read the vectors too."""
    monkeypatch.setattr(p, "_NATIVE_SHUFFLE", None)
    desc = json.loads(path.read_text())
    msg = p.decode(read_frames(path.with_suffix(".bin")), **context(desc))
    assert [bytes(x or b"") for x in p.payload_data(msg)] == [bytes.fromhex(x) for x in desc["payloads"]]


@pytest.mark.parametrize("path", INVALID, ids=lambda v: v.stem)
def test_python_rejects_malformed_vector_with_its_error_code(path: Path) -> None:
    desc = json.loads(path.read_text())
    with pytest.raises(p.ProtocolError) as info:
        p.decode(read_frames(path.with_suffix(".bin")), **context(desc))
    assert info.value.code.name == desc["error"], info.value.message


def _native_ctx(desc: dict[str, Any]) -> dict[str, Any]:
    ctx = desc.get("context", {})
    return {"compression": ctx.get("compression", list(p.COMPRESSIONS)), "shm_pool": ctx.get("shm_pool")}


@pytest.mark.parametrize("path", VALID, ids=lambda v: v.stem)
def test_cpp_encodes_valid_vector_to_fixture_bytes(path: Path) -> None:
    desc = json.loads(path.read_text())
    if not desc["encode"]:
        pytest.skip("decode-only vector")
    payloads = [bytes.fromhex(x) for x in desc["payloads"]]
    frames = _wire_testing.wire_encode(json.dumps(desc["header"]), payloads)
    assert [bytes(f) for f in frames] == read_frames(path.with_suffix(".bin"))


@pytest.mark.parametrize("path", VALID, ids=lambda v: v.stem)
def test_cpp_decodes_valid_vector_to_its_description(path: Path) -> None:
    desc = json.loads(path.read_text())
    header_json, payloads = _wire_testing.wire_decode(read_frames(path.with_suffix(".bin")), **_native_ctx(desc))
    assert canonical(json.loads(header_json), desc) == canonical(desc["header"], desc)
    assert [bytes(x) for x in payloads] == [bytes.fromhex(x) for x in desc["payloads"]]


@pytest.mark.parametrize("path", INVALID, ids=lambda v: v.stem)
def test_cpp_rejects_malformed_vector_with_its_error_code(path: Path) -> None:
    desc = json.loads(path.read_text())
    with pytest.raises(_wire_testing.WireError) as info:
        _wire_testing.wire_decode(read_frames(path.with_suffix(".bin")), **_native_ctx(desc))
    assert info.value.name == desc["error"]
    assert info.value.code == p.ErrorCode[desc["error"]]


def test_vector_generator_reproduces_the_checked_in_fixtures(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(VECTORS / "make_vectors.py"), str(tmp_path)], check=True,
                   capture_output=True)
    for path in sorted(VECTORS.glob("*.json")) + sorted(VECTORS.glob("*.bin")):
        if ("lz4" in path.stem or "zstd" in path.stem) and path.suffix == ".bin":
            continue  # compressor output may differ between library builds; the frame format is what counts
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
