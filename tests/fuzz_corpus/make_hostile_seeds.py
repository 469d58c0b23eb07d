"""Write the hostile seeds of the decoder corpus: inputs built to make a careless receiver allocate.

Run from the repository root: ``python tests/fuzz_corpus/make_hostile_seeds.py``. It writes
``tests/fuzz_corpus/fuzz_decode/hostile_*.bin`` (the length-prefixed frame-list format of the vectors, which
cpp/fuzz/fuzz_decode.cpp and tests/test_protocol_codec.py split the same way) and ``hostile_seeds.json`` next to
this file: each seed's expected error code. tests/test_security.py decodes every seed with both decoders under a
tight address-space limit, so a decoder that allocated what the input announces would fail there.

Seeds: msgpack containers announcing 2^32-1 entries or bytes in a few bytes of input; compressed payloads that
announce a gigabyte, announce nothing, or announce the right size but expand to far more (decompression
bombs: lz4 to 64 times the buffer, zstd to 256 MiB in 8 KB); and protocol limits just past their bound (33 buffers, a 16385-pixel-wide buffer, 1025
target ids, a 257-byte string, params nested 9 deep).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import lz4.frame
import msgpack
import zstandard

HERE = Path(__file__).resolve().parent
OUT = HERE / "fuzz_decode"
W, H = 64, 64
SIZE = W * H * 4


def pack_frames(frames: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(f)) + f for f in frames)


def frame_header(buffers: list[dict[str, Any]] | None = None, **changes: Any) -> bytes:
    header: dict[str, Any] = {"nrb": 1, "type": "FRAME", "session": 1, "frame": 1, "time_ns": 0, "dt": 0.0,
                              "deadline_ms": 16.0,
                              "buffers": buffers if buffers is not None else [albedo()], "events": [], "styles": []}
    header.update(changes)
    return msgpack.packb(header, use_bin_type=True)


def albedo(**changes: Any) -> dict[str, Any]:
    return {"name": "albedo", "format": "rgba8", "width": W, "height": H, "stride": W * 4, **changes}


def _xxh32(data: bytes, seed: int = 0) -> int:
    """XXH32, for the LZ4 frame header checksum (pure Python: the header is a few bytes)."""
    p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
    m = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & m

    i, n = 0, len(data)
    if n >= 16:
        v = [(seed + p1 + p2) & m, (seed + p2) & m, seed & m, (seed - p1) & m]
        while i + 16 <= n:
            for k in range(4):
                v[k] = (rotl((v[k] + struct.unpack_from("<I", data, i + 4 * k)[0] * p2) & m, 13) * p1) & m
            i += 16
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & m
    else:
        h = (seed + p5) & m
    h = (h + n) & m
    while i + 4 <= n:
        h = (rotl((h + struct.unpack_from("<I", data, i)[0] * p3) & m, 17) * p4) & m
        i += 4
    while i < n:
        h = (rotl((h + data[i] * p5) & m, 11) * p1) & m
        i += 1
    h ^= h >> 15
    h = (h * p2) & m
    h ^= h >> 13
    h = (h * p3) & m
    h ^= h >> 16
    return h


def lz4_with_content_size(data: bytes, announced: int | None) -> bytes:
    """An LZ4 frame of ``data`` whose header announces ``announced`` bytes (None: no content size field)."""
    frame = bytearray(lz4.frame.compress(data, store_size=True, content_checksum=False, block_checksum=False))
    flg = frame[4]
    assert flg & 0x08 and not flg & 0x01, "expected a content size and no dictionary id"
    body = bytes(frame[4 + 2 + 8 + 1:])  # after FLG, BD, content size, HC
    if announced is None:
        desc = bytes([flg & ~0x08, frame[5]])
    else:
        desc = bytes([flg, frame[5]]) + struct.pack("<Q", announced)
    hc = (_xxh32(desc) >> 8) & 0xFF
    return bytes(frame[:4]) + desc + bytes([hc]) + body


def zstd_with_content_size(data: bytes, announced: int) -> bytes:
    """A zstd frame of ``data`` whose content size field (rewritten as 4 bytes) says ``announced``."""
    frame = zstandard.ZstdCompressor(write_content_size=True, write_checksum=False).compress(data)
    fhd = frame[4]
    single, did_flag, fcs_flag = fhd & 0x20, fhd & 0x03, fhd >> 6
    assert did_flag == 0 and not fhd & 0x04, f"unexpected frame header descriptor {fhd:#x}"
    fcs_bytes = {0: 1 if single else 0, 1: 2, 2: 4, 3: 8}[fcs_flag]
    window = b"" if single else frame[5:6]
    blocks = frame[5 + len(window) + fcs_bytes:]
    return frame[:4] + bytes([(2 << 6) | (fhd & 0x3F)]) + window + struct.pack("<I", announced) + blocks


def compressed(method: str, payload: bytes) -> list[bytes]:
    return [frame_header([albedo(compression=method)]), payload]


def seeds() -> dict[str, tuple[list[bytes], str]]:
    zeros = bytes(SIZE)
    big = bytes(SIZE * 64)
    target = {"scope": "object", "ids": list(range(1025))}
    deep: Any = {}
    for _ in range(8):
        deep = {"k": deep}
    return {
        # msgpack announcing more than the input holds
        "array32_4g": ([b"\xdd\xff\xff\xff\xff"], "MALFORMED"),
        "map32_4g": ([b"\xdf\xff\xff\xff\xff\x00"], "MALFORMED"),
        "str32_4g": ([b"\x82\xa3nrb\x01\xa4type\xdb\xff\xff\xff\xffFRAME"], "MALFORMED"),
        "bin32_4g": ([b"\x81\xa3nrb\xc6\xff\xff\xff\xff\x00"], "MALFORMED"),
        "buffers_array32_4g": ([frame_header()[:-20] + b"\xdd\xff\xff\xff\xff"], "MALFORMED"),
        # compressed payloads (both compressions are negotiated in the fuzzer and in the tests)
        "lz4_announces_1gib": (compressed("lz4", lz4_with_content_size(zeros, 1 << 30)), "PAYLOAD_MISMATCH"),
        "lz4_announces_nothing": (compressed("lz4", lz4_with_content_size(zeros, None)), "PAYLOAD_MISMATCH"),
        "lz4_bomb": (compressed("lz4", lz4_with_content_size(big, SIZE)), "PAYLOAD_MISMATCH"),
        "zstd_announces_1gib": (compressed("zstd", zstd_with_content_size(zeros, 1 << 30)), "PAYLOAD_MISMATCH"),
        "zstd_bomb": (compressed("zstd", zstd_with_content_size(bytes(256 << 20), SIZE)), "PAYLOAD_MISMATCH"),
        # protocol limits, one past
        "buffers_33": ([frame_header([albedo(name=f"x_b{i}") for i in range(33)])], "LIMIT_EXCEEDED"),
        "width_16385": ([frame_header([albedo(width=16385, stride=16385 * 4)])], "LIMIT_EXCEEDED"),
        "ids_1025": ([frame_header(events=[{"name": "hit", "params": {}, "target": target}]), zeros],
                     "LIMIT_EXCEEDED"),
        "event_name_65": ([frame_header(events=[{"name": "e" * 65, "params": {}, "target": {"scope": "global",
                                                                                           "ids": []}}]), zeros],
                          "LIMIT_EXCEEDED"),
        "params_depth_9": ([frame_header(events=[{"name": "e", "params": deep, "target": {"scope": "global",
                                                                                        "ids": []}}]), zeros],
                           "LIMIT_EXCEEDED"),
        "engine_257": ([msgpack.packb({"nrb": 1, "type": "HELLO", "min_version": 1, "engine": "e" * 257,
                                       "engine_version": "1", "client": "c", "capabilities": [],
                                       "render_size": [64, 64], "output_size": [64, 64], "buffers": []})],
                       "LIMIT_EXCEEDED"),
    }


def main() -> None:
    expected = {}
    for name, (frames, error) in seeds().items():
        (OUT / f"hostile_{name}.bin").write_bytes(pack_frames(frames))
        expected[f"hostile_{name}"] = error
    (HERE / "hostile_seeds.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
