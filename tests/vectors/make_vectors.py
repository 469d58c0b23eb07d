"""Write the shared NRB/1 test vectors (see README.md here).

Run from the repository root: ``python tests/vectors/make_vectors.py``. The output is checked in; a test re-runs
this into a temporary folder and compares, so the script and the fixtures cannot drift apart.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack

from bridge import protocol as p  # the installed package (make setup installs the checkout in editable mode)

#: tests/vectors/result_jpeg: a 16x8 JPEG of the flat colour (200, 100, 50), written once by Pillow (quality 90).
JPEG_16X8 = (
    "ffd8ffe000104a46494600010100000100010000ffdb0043000302020302020303030304030304050805050404050a070706080c"
    "0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514ffdb00430103040405040509050509"
    "140d0b0d141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414141414"
    "1414ffc00011080008001003012200021101031101ffc4001f000001050101010101010000000000000000010203040506070809"
    "0a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c115"
    "52d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a"
    "737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9ca"
    "d2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc4001f01000301010101010101010100000000000001"
    "02030405060708090a0bffc400b51100020102040403040705040400010277000102031104052131061241510761711322328108"
    "144291a1b1c109233352f0156272d10a162434e125f11718191a262728292a35363738393a434445464748494a53545556575859"
    "5a636465666768696a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9"
    "bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c03010002110311003f00a9"
    "451457e1e7f481ffd9"
)
#: tests/vectors/result_webp: the same flat colour as a 16x8 lossless WebP (VP8L), written once by Pillow: a lossless
#: bitstream, so every libwebp decodes it to exactly that colour (a lossy one rounds through YUV 4:2:0).
WEBP_16X8 = "524946461e000000574542505650384c110000002f0fc001000750b22257a6ff8188e87f0000"


def pack_frames(frames: list[bytes]) -> bytes:
    """The .bin layout: 4-byte little-endian length + bytes, per frame."""
    return b"".join(struct.pack("<I", len(f)) + f for f in frames)


def h(frame: bytes | memoryview) -> str:
    return bytes(frame).hex()


def pk(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed * 7) & 0xFF for i in range(n))


FULL_CAMERA = {
    "view_to_clip": [1.299, 0, 0, 0, 0, 1.732, 0, 0, 0, 0, -1.0002, -0.20002, 0, 0, -1, 0],
    "clip_to_view": [0.7698, 0, 0, 0, 0, 0.5774, 0, 0, 0, 0, 0, -1, 0, 0, -4.9995, 5.0005],
    "clip_to_prev_clip": [1, 0, 0, 0.01, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
    "prev_clip_to_clip": [1, 0, 0, -0.01, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
    "world_to_view": [1, 0, 0, 0, 0, 1, 0, -1.5, 0, 0, 1, -4, 0, 0, 0, 1],
    "position": [0, 1.5, 4],
    "up": [0, 1, 0],
    "right": [1, 0, 0],
    "forward": [0, 0, -1],
    "near": 0.1,
    "far": 1000,
    "fov_y": 1.0471975511965976,
    "aspect": 1.3333333333333333,
    "jitter": [0.25, -0.25],
    "mv_scale": [1, 1],
    "depth_inverted": False,
    "depth_infinite": False,
    "mv_jittered": False,
    "mv_3d": False,
    "mv_dilated": False,
    "camera_motion_included": True,
    "orthographic": False,
    "reset": False,
    "pre_exposure": 1,
    "render_size": [4, 3],
    "output_size": [8, 6],
}


def desc(name: str, fmt: str, w: int, hh: int, stride: int | None = None, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "format": fmt, "width": w, "height": hh,
                         "stride": stride if stride is not None else w * p.FORMATS[fmt].bytes_per_pixel}
    d.update(extra)
    return d


def frame_header(buffers: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    hd: dict[str, Any] = {"nrb": 1, "type": "FRAME", "session": 7, "frame": 1, "time_ns": 123456789,
                          "dt": 0.016666666666666666, "deadline_ms": 50, "buffers": buffers, "events": [],
                          "styles": []}
    hd.update(over)
    return hd


def timing() -> dict[str, Any]:
    return {"queue_ms": 0.5, "decode_ms": 0.25, "style_ms": 0.125, "render_ms": 4, "encode_ms": 0.0625,
            "total_ms": 5}


def canonical_order(value: Any, model: Any) -> Any:
    """``value`` with its map keys in the order of ``model`` (the codec's canonical header), values untouched,
    so the JSON reads in canonical order while keeping e.g. integers written in float fields."""
    if isinstance(value, dict) and isinstance(model, dict):
        keys = [k for k in model if k in value] + [k for k in value if k not in model]
        return {k: canonical_order(value[k], model.get(k)) for k in keys}
    if isinstance(value, list) and isinstance(model, list) and len(value) == len(model):
        return [canonical_order(v, m) for v, m in zip(value, model)]
    return value


POOL = {"name": "/nrb-test-pool", "slots": 4, "slot_size": 4096}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*.json"):
        f.unlink()
    for f in out.glob("*.bin"):
        f.unlink()

    def valid(name: str, header: dict[str, Any], payloads: list[bytes], note: str,
              context: dict[str, Any] | None = None, encode: bool = True,
              wire: list[bytes] | None = None) -> None:
        ctx = context or {}
        pool = p.ShmPool(**ctx["shm_pool"]) if "shm_pool" in ctx else None
        comp = ctx.get("compression", list(p.COMPRESSIONS))
        if wire is None:
            msg = p.message_from_header(header, payloads, compression=comp, shm_pool=pool, raw_payloads=True)
            wire = [bytes(x) for x in p.encode(msg)]
        # Sanity: what we claim must hold for the Python codec before it becomes a fixture.
        decoded = p.decode(wire, compression=comp, shm_pool=pool)
        expect = p.message_from_header(header, payloads, compression=comp, shm_pool=pool, raw_payloads=True)
        assert pk(p.header_map(decoded)) == pk(p.header_map(expect)), name
        got = [bytes(x or b"") for x in p.payload_data(decoded)]
        assert got == [bytes(x) for x in payloads], name
        desc_json: dict[str, Any] = {"name": name, "valid": True, "note": note}
        if context:
            desc_json["context"] = context
        desc_json.update(header=canonical_order(header, p.header_map(expect)), payloads=[h(x) for x in payloads],
                         encode=encode)
        (out / f"{name}.json").write_text(json.dumps(desc_json, indent=1) + "\n")
        (out / f"{name}.bin").write_bytes(pack_frames(wire))

    def invalid(name: str, frames: list[bytes], error: str, note: str,
                context: dict[str, Any] | None = None) -> None:
        ctx = context or {}
        pool = p.ShmPool(**ctx["shm_pool"]) if "shm_pool" in ctx else None
        try:
            p.decode(frames, compression=ctx.get("compression", p.COMPRESSIONS), shm_pool=pool)
        except p.ProtocolError as e:
            assert e.code.name == error, f"{name}: got {e.code.name}, want {error}: {e}"
        else:
            raise AssertionError(f"{name} decoded")
        d: dict[str, Any] = {"name": name, "valid": False, "note": note}
        if context:
            d["context"] = context
        d["error"] = error
        (out / f"{name}.json").write_text(json.dumps(d, indent=1) + "\n")
        (out / f"{name}.bin").write_bytes(pack_frames(frames))

    # ------------------------------------------------------------------------------------------- valid
    hello = {"nrb": 1, "type": "HELLO", "min_version": 1, "engine": "panda3d", "engine_version": "1.10.14",
             "client": "libnrb/0.1.0", "capabilities": ["shm", "lz4"], "render_size": [640, 360],
             "output_size": [1280, 720],
             "buffers": [{"name": "albedo", "format": "rgba8_srgb"}, {"name": "normals", "format": "rgba16f"},
                         {"name": "depth", "format": "r32f"}, {"name": "material_id", "format": "r16u"}]}
    valid("hello_basic", hello, [], "a HELLO offering four buffers, no shared memory")
    valid("hello_shm", {**hello, "shm": POOL}, [], "a HELLO offering a shared-memory pool")
    bell = {"to_renderer": "/dev/shm/nrb-4242-1a2b-to-renderer", "to_engine": "/dev/shm/nrb-4242-1a2b-to-engine"}
    valid("hello_doorbell", {**hello, "capabilities": ["shm", "doorbell"], "shm": POOL, "doorbell": bell}, [],
          "a HELLO offering a shared-memory pool and the doorbell FIFOs (section 7.1)")
    valid("welcome_basic",
          {"nrb": 1, "type": "WELCOME", "session": 4294967301, "renderer": "deferred/0.1.0",
           "capabilities": ["shm"],
           "required": [{"name": "albedo", "format": "rgba8_srgb"}, {"name": "normals", "format": "rgba16f"}],
           "optional": [{"name": "material_id", "format": "r16u"}],
           "output": {"name": "output", "format": "rgba8", "width": 1280, "height": 720}, "max_in_flight": 2,
           "styles": ["identity", "photoreal", "toon", "noir", "golden", "thermal"]},
          [], "WELCOME with a session id above 2^32 (uint64 encoding)")
    limits = {"frame_bytes": 8847424, "session_bytes": 32441344, "message_bytes": 268435456,
              "total_bytes": 4294967296, "max_pixels": 8294400, "sessions": 16, "sessions_per_peer": 4}
    welcome_limits = {"nrb": 1, "type": "WELCOME", "session": 7, "renderer": "deferred/0.1.0",
                      "capabilities": [], "required": [{"name": "albedo", "format": "rgba8_srgb"}],
                      "optional": [], "output": {"name": "output", "format": "rgba8_srgb", "width": 640,
                                                 "height": 360},
                      "max_in_flight": 4, "styles": ["identity"], "limits": limits}
    valid("welcome_limits", welcome_limits, [],
          "WELCOME announcing the renderer's memory budgets and session caps (section 11.1; uint32 and uint64 "
          "encodings)")
    invalid("welcome_limits_missing_key",
            [pk({**welcome_limits, "limits": {k: v for k, v in limits.items() if k != "sessions_per_peer"}})],
            "MISSING_FIELD", "limits without sessions_per_peer: every key of limits is required")
    invalid("welcome_limits_zero", [pk({**welcome_limits, "limits": {**limits, "frame_bytes": 0}})], "BAD_VALUE",
            "limits.frame_bytes 0: every limit is at least 1")
    invalid("welcome_limits_not_a_map", [pk({**welcome_limits, "limits": [1, 2]})], "WRONG_TYPE",
            "limits is an array, not a map")
    # Placement (section 5.10): a front door's redirect, and the ticket the engine brings to the worker.
    redirect = {"endpoint": "tcp://10.0.0.7:5601", "ticket": "c7f3a1e2-0001"}
    valid("welcome_redirect", {**welcome_limits, "redirect": redirect}, [],
          "WELCOME redirecting the engine to the worker a front door placed its session on (section 5.10)")
    valid("hello_ticket", {**hello, "capabilities": ["lz4", "redirect"], "ticket": "c7f3a1e2-0001"}, [],
          "a HELLO that follows redirects and brings a placement ticket (section 5.10)")
    invalid("welcome_redirect_not_tcp", [pk({**welcome_limits, "redirect": {**redirect,
                                                                           "endpoint": "inproc://worker"}})],
            "BAD_VALUE", "a redirect endpoint that is not tcp:// or ipc://")
    invalid("welcome_redirect_no_ticket", [pk({**welcome_limits, "redirect": {"endpoint": redirect["endpoint"]}})],
            "MISSING_FIELD", "a redirect without its ticket")
    invalid("hello_ticket_empty", [pk({**hello, "ticket": ""})], "BAD_VALUE", "an empty ticket")
    # Choosing the renderer (section 5.11) and lossy image return (section 6.3.1).
    lossy = {"codec": "jpeg", "quality": 90}
    valid("hello_renderer_lossy", {**hello, "capabilities": ["lz4", "redirect"], "renderer": "neural",
                                   "lossy_output": lossy}, [],
          "a HELLO naming the renderer it wants and allowing a JPEG image back at quality 90")
    invalid("hello_renderer_empty", [pk({**hello, "renderer": ""})], "BAD_VALUE", "an empty renderer name")
    invalid("hello_lossy_quality_zero", [pk({**hello, "lossy_output": {**lossy, "quality": 0}})], "BAD_VALUE",
            "lossy_output.quality 0 (1..100)")
    invalid("hello_lossy_quality_above_100", [pk({**hello, "lossy_output": {**lossy, "quality": 101}})],
            "BAD_VALUE", "lossy_output.quality 101 (1..100)")
    invalid("hello_lossy_unknown_codec", [pk({**hello, "lossy_output": {**lossy, "codec": "avif"}})], "BAD_VALUE",
            "lossy_output.codec outside the vocabulary (jpeg, webp)")
    valid("hello_lossy_webp", {**hello, "lossy_output": {"codec": "webp", "quality": 80}}, [],
          "lossy image return as WebP at quality 80 (section 6.3.1)")
    invalid("hello_lossy_no_quality", [pk({**hello, "lossy_output": {"codec": "jpeg"}})], "MISSING_FIELD",
            "lossy_output without its quality")
    # A 16x8 JPEG of one flat colour (200, 100, 50), quality 90, 4:2:0: every libjpeg-turbo decodes it to exactly
    # that colour, so both codecs can compare pixels. Fixed bytes, so the vector does not depend on the encoder.
    jpeg = bytes.fromhex(JPEG_16X8)
    jpeg_out = {**desc("output", "rgba8_srgb", 16, 8), "compression": "jpeg"}
    jpeg_result = {"nrb": 1, "type": "RESULT", "session": 7, "frame": 1, "status": "ok", "output": jpeg_out,
                   "timing": timing()}
    with_jpeg = {"compression": ["lz4", "zstd", "jpeg"]}
    valid("result_jpeg", jpeg_result, [bytes([200, 100, 50, 255]) * 128],
          "a RESULT whose image came back as JPEG (section 6.3.1); decode-only", context=with_jpeg, encode=False,
          wire=[pk(jpeg_result), jpeg])
    invalid("result_jpeg_not_negotiated", [pk(jpeg_result), jpeg], "BAD_VALUE",
            "a JPEG image the session did not negotiate (no lossy_output accepted)")
    invalid("result_jpeg_wrong_size", [pk({**jpeg_result, "output": {**jpeg_out, **desc("output", "rgba8_srgb", 8, 8)}}),
                                       jpeg], "PAYLOAD_MISMATCH",
            "a 16x8 JPEG where the descriptor says 8x8 (checked before decoding)", context=with_jpeg)
    invalid("result_jpeg_corrupt", [pk(jpeg_result), b"\xff\xd8\xff\xe0not a jpeg"], "PAYLOAD_MISMATCH",
            "JPEG data that does not decode", context=with_jpeg)
    invalid("result_jpeg_rgba16f", [pk({**jpeg_result, "output": {**desc("output", "rgba16f", 16, 8),
                                                                  "compression": "jpeg"}}), jpeg],
            "BAD_VALUE", "JPEG on an rgba16f image (8-bit RGBA only)", context=with_jpeg)
    invalid("frame_jpeg", [pk(frame_header([{**desc("albedo", "rgba8", 16, 8), "compression": "jpeg"}])), jpeg],
            "BAD_VALUE", "JPEG on a FRAME buffer (RESULT output only)", context=with_jpeg)
    # The same RESULT as WebP (section 6.3.1): decode-only, negotiated; a JPEG where WebP was negotiated is refused
    webp = bytes.fromhex(WEBP_16X8)
    webp_result = {**jpeg_result, "output": {**jpeg_out, "compression": "webp"}}
    with_webp = {"compression": ["lz4", "zstd", "webp"]}
    valid("result_webp", webp_result, [bytes([200, 100, 50, 255]) * 128],
          "a RESULT whose image came back as WebP (section 6.3.1); decode-only", context=with_webp, encode=False,
          wire=[pk(webp_result), webp])
    invalid("result_webp_not_negotiated", [pk(webp_result), webp], "BAD_VALUE",
            "a WebP image where only JPEG was negotiated", context=with_jpeg)
    invalid("result_webp_wrong_size", [pk({**webp_result, "output": {**webp_result["output"],
                                                                      **desc("output", "rgba8_srgb", 8, 8)}}), webp],
            "PAYLOAD_MISMATCH", "a 16x8 WebP where the descriptor says 8x8 (checked before decoding)",
            context=with_webp)
    invalid("result_webp_corrupt", [pk(webp_result), b"RIFF\x10\x00\x00\x00WEBPnot a webp"], "PAYLOAD_MISMATCH",
            "WebP data that does not decode", context=with_webp)
    invalid("hello_ticket_too_long", [pk({**hello, "ticket": "t" * 65})], "LIMIT_EXCEEDED",
            "a ticket longer than 64 bytes")
    alb = pattern(2 * 2 * 4, 1)
    valid("frame_minimal", frame_header([desc("albedo", "rgba8", 2, 2)]), [alb], "one 2x2 rgba8 buffer")
    full_bufs = [
        desc("hudless_color", "rgba8_srgb", 4, 3),
        desc("depth", "r32f", 4, 3, depth_reversed=True, depth_infinite=False),
        desc("motion_vectors", "rg16f", 4, 3),
        desc("normals", "rgba16f", 4, 3),
        desc("roughness_metallic", "rg8", 4, 3, stride=16),
        desc("material_id", "r16u", 4, 3),
        desc("object_id", "r32u", 4, 3),
        desc("x_studio_mask", "r8", 4, 3),
    ]
    full_payloads = [pattern(b["stride"] * b["height"], i) for i, b in enumerate(full_bufs)]
    events = [
        {"name": "weapon_powerup", "params": {"duration": 5.5, "level": 3, "tag": "gold", "flags": [1, -2, True],
                                               "nested": {"a": None, "b": [0.5, "x"]}},
         "target": {"scope": "object", "ids": [42]}},
        {"name": "player_damaged", "params": {"amount": -17}, "target": {"scope": "global", "ids": []}},
    ]
    styles = [
        {"style": "golden", "strength": 1, "over": 0.5, "target": {"scope": "material", "ids": [3, 70000]}},
        {"style": "noir", "strength": 0.9, "over": 2, "target": {"scope": "global", "ids": []}},
    ]
    valid("frame_full",
          frame_header(full_bufs, frame=18446744073709551615, camera=FULL_CAMERA, events=events, styles=styles),
          full_payloads, "camera, eight buffers (padded stride, vendor name, depth flags), events and styles")
    lit_bufs = [desc("albedo", "rgba8", 2, 2)] + [desc(n, "rgba32f", 1, 1) for n in
                                                  ("x_sun_direction", "x_sun_irradiance", "x_sky_radiance")]
    lit_payloads = [alb] + [struct.pack("<4f", *v) for v in ((0.45, 0.8, 0.4, 0), (2.3, 2.2, 2.1, 0),
                                                             (0.26, 0.31, 0.42, 0))]
    valid("frame_lighting_constants", frame_header(lit_bufs), lit_payloads,
          "a 2x2 G-buffer with the three 1x1 rgba32f lighting constants of section 6.1")
    light_rows = [  # section 6.1 x_lights: a point light (a torch) and a blue spot light, 4 texels each
        (0.5, 1.8, -2.0, 0), (0, 0, 0, 6.0), (3.6, 1.98, 0.79, 0), (0, 0, 0, 0),
        (1.0, 3.0, 0.0, 1), (0.0, -1.0, 0.0, 0), (0.77, 1.54, 3.52, 0), (0.2, 0.3, 0, 0),
    ]
    valid("frame_light_list", frame_header([desc("albedo", "rgba8", 2, 2), desc("x_lights", "rgba32f", 4, 2)]),
          [alb, b"".join(struct.pack("<4f", *t) for t in light_rows)],
          "a 2x2 G-buffer with the light list x_lights of section 6.1 (4 x N rgba32f, one row per light): a "
          "point light with a range and a spot light")
    valid("frame_shm",
          frame_header([desc("albedo", "rgba8", 4, 4, shm={"slot": 0, "offset": 0}),
                        desc("depth", "r32f", 4, 4, shm={"slot": 0, "offset": 128}),
                        desc("normals", "rgba16f", 4, 4)],
                       result_slot=3),
          [pattern(128, 5)], "two buffers in shared memory, one inline, and a result slot",
          context={"shm_pool": POOL})
    valid("result_ok",
          {"nrb": 1, "type": "RESULT", "session": 7, "frame": 1, "status": "ok",
           "output": desc("output", "rgba8", 3, 2, stride=16), "timing": timing()},
          [pattern(32, 9)], "an rgba8 result with a padded stride")
    valid("result_skipped",
          {"nrb": 1, "type": "RESULT", "session": 7, "frame": 2, "status": "skipped", "timing": timing()},
          [], "a frame that was past its deadline")
    valid("error_basic",
          {"nrb": 1, "type": "ERROR", "code": 8, "name": "PAYLOAD_MISMATCH",
           "message": "albedo: payload is 3 bytes, stride × height = 16", "session": 7, "frame": 3},
          [], "an ERROR with a non-ASCII message")
    valid("ping", {"nrb": 1, "type": "PING", "nonce": 99, "time_ns": 5000000000}, [], "PING")
    valid("pong", {"nrb": 1, "type": "PONG", "nonce": 99, "time_ns": 5000000000}, [], "PONG")
    valid("bye", {"nrb": 1, "type": "BYE", "session": 7, "reason": "engine shutting down"}, [], "BYE")
    valid("bye_empty", {"nrb": 1, "type": "BYE"}, [], "BYE with no optional keys")

    import lz4.frame
    import zstandard

    raw = bytes(64) + pattern(64, 3)
    for method, comp in (("lz4", lz4.frame.compress(raw, store_size=True)),
                         ("zstd", zstandard.ZstdCompressor(write_content_size=True).compress(raw))):
        hd = frame_header([desc("albedo", "rgba8", 8, 4, compression=method)])
        valid(f"frame_{method}", hd, [raw], f"{method}-compressed payload; decode-only",
              encode=False, wire=[pk(hd), comp])
    chunk_vectors(valid, invalid, raw)
    shuffle_vectors(valid, invalid)
    streamed_vectors(valid, invalid)
    unknown = frame_header([desc("albedo", "rgba8", 2, 2)])
    valid("frame_unknown_optional_key", frame_header([desc("albedo", "rgba8", 2, 2)]), [alb],
          "unknown keys (top level and in a descriptor) are ignored; decode-only", encode=False,
          wire=[pk({**unknown, "x_future": {"a": 1}, "buffers": [{**desc("albedo", "rgba8", 2, 2), "hdr": True}]}),
                alb])
    valid("ping_must_understand_known", {"nrb": 1, "type": "PING", "nonce": 1, "time_ns": 2}, [],
          "must_understand naming a defined key is fine; decode-only", encode=False,
          wire=[pk({"nrb": 1, "type": "PING", "nonce": 1, "time_ns": 2, "must_understand": ["nonce"]})])
    valid("frame_float_as_int", frame_header([], dt=0, deadline_ms=33), [],
          "float fields given as integers on the wire are accepted; decode-only", encode=False,
          wire=[pk({**frame_header([]), "dt": 0, "deadline_ms": 33})])

    # ----------------------------------------------------------------------------------------- invalid
    base = frame_header([desc("albedo", "rgba8", 2, 2)])
    good = pk(base)

    def with_(**kw: Any) -> bytes:
        return pk({**base, **kw})

    def with_desc(**kw: Any) -> bytes:
        return pk({**base, "buffers": [{**desc("albedo", "rgba8", 2, 2), **kw}]})

    invalid("empty_message", [], "MALFORMED", "no frames at all")
    invalid("header_truncated", [good[:-5], alb], "MALFORMED", "header cut short")
    invalid("header_trailing_bytes", [good + b"\xc0", alb], "MALFORMED", "a second msgpack object after the map")
    invalid("header_not_map", [pk([1, "FRAME"])], "MALFORMED", "header is an array")
    invalid("header_too_large", [pk({**base, "x_pad": "a" * 65536}), alb], "LIMIT_EXCEEDED",
            "header frame over 65536 bytes")
    invalid("header_invalid_utf8", [pk({"nrb": 1, "type": "PING", "nonce": 1, "time_ns": 2})
                                     .replace(b"PING", b"P\xffNG")], "MALFORMED", "invalid UTF-8 in a str")
    invalid("header_non_str_key", [pk({"nrb": 1, "type": "PING", "nonce": 1, "time_ns": 2, 5: 1})], "MALFORMED",
            "an integer map key")
    invalid("header_ext_type", [pk({"nrb": 1, "type": "PING", "nonce": 1, "time_ns": 2,
                                    "x": msgpack.ExtType(5, b"ab")})], "MALFORMED", "an ext value")
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    invalid("header_too_deep", [pk({"nrb": 1, "type": "PING", "nonce": 1, "time_ns": 2, "x_deep": deep})],
            "MALFORMED", "nesting deeper than 16")
    ping = {"nrb": 1, "type": "PING", "nonce": 1, "time_ns": 2}
    invalid("header_duplicate_key", [pk(ping).replace(b"\x84", b"\x85", 1) + b"\xa5nonce\x02"], "MALFORMED",
            "nonce appears twice in the header map")
    nest16: Any = 0
    for _ in range(15):
        nest16 = [nest16]
    valid("ping_nested_16_ok", ping, [], "16 nested containers (header map included) are allowed; decode-only",
          encode=False, wire=[pk({**ping, "x_deep": nest16})])
    invalid("header_17_deep", [pk({**ping, "x_deep": [nest16]})], "MALFORMED", "17 nested containers")
    invalid("result_output_nil", [pk({"nrb": 1, "type": "RESULT", "session": 7, "frame": 1, "status": "ok",
                                      "output": None, "timing": timing()})], "WRONG_TYPE",
            "a present key with the value nil is a wrong type, not an absent key")
    invalid("missing_nrb", [pk({"type": "PING", "nonce": 1, "time_ns": 2})], "MISSING_FIELD", "no nrb key")
    invalid("unknown_version", [pk({**base, "nrb": 2}), alb], "VERSION_UNSUPPORTED", "FRAME with nrb 2")
    invalid("hello_no_common_version", [pk({**hello, "nrb": 3, "min_version": 2})], "VERSION_UNSUPPORTED",
            "engine speaks only 2..3")
    for vname, bad, note in (
            ("hello_doorbell_relative_path", {**bell, "to_engine": "nrb-to-engine"}, "a relative doorbell path"),
            ("hello_doorbell_dotdot", {**bell, "to_renderer": "/dev/shm/../etc/nrb-x"}, "a doorbell path with .."),
            ("hello_doorbell_not_nrb", {**bell, "to_renderer": "/dev/shm/pipe"}, "a FIFO not named nrb-..."),
            ("hello_doorbell_same_path", {**bell, "to_engine": bell["to_renderer"]}, "both directions on one FIFO")):
        invalid(vname, [pk({**hello, "shm": POOL, "doorbell": bad})], "BAD_VALUE", note)
    invalid("unknown_type", [pk({"nrb": 1, "type": "TELEPORT"})], "UNKNOWN_TYPE", "type TELEPORT")
    invalid("type_not_str", [pk({"nrb": 1, "type": 4})], "WRONG_TYPE", "type is an integer")
    invalid("must_understand_unknown", [pk({"nrb": 1, "type": "PING", "nonce": 1, "time_ns": 2,
                                            "must_understand": ["x_hologram"]})], "UNKNOWN_REQUIRED",
            "a key the receiver must understand but does not know")
    missing = dict(base)
    del missing["deadline_ms"]
    invalid("frame_missing_deadline", [pk(missing), alb], "MISSING_FIELD", "FRAME without deadline_ms")
    invalid("width_is_str", [with_desc(width="2"), alb], "WRONG_TYPE", "width given as a string")
    invalid("session_negative", [with_(session=-1), alb], "WRONG_TYPE", "negative uint")
    invalid("frame_id_bool", [with_(frame=True), alb], "WRONG_TYPE", "boolean where a uint belongs")
    invalid("absurd_dimensions", [with_desc(width=100000, stride=400000), alb], "LIMIT_EXCEEDED",
            "width 100000")
    invalid("zero_height", [with_desc(height=0), alb], "BAD_VALUE", "height 0")
    invalid("buffer_over_1gib", [pk({**base, "buffers": [desc("albedo", "rgba32f", 16384, 16384)]})],
            "LIMIT_EXCEEDED", "16384² rgba32f is 4 GiB")
    invalid("stride_too_small", [with_desc(stride=7), alb], "BAD_VALUE", "stride below width × 4")
    invalid("payload_too_short", [good, alb[:-1]], "PAYLOAD_MISMATCH", "payload one byte short")
    invalid("payload_too_long", [good, alb + b"\0"], "PAYLOAD_MISMATCH", "payload one byte long")
    invalid("payload_missing", [good], "MALFORMED", "no payload frame for the inline buffer")
    invalid("payload_extra", [good, alb, alb], "MALFORMED", "one payload frame too many")
    invalid("too_many_buffers", [pk({**base, "buffers": [desc(f"x_b{i}", "r8", 1, 1) for i in range(33)]})]
            + [b"\0"] * 33, "LIMIT_EXCEEDED", "33 buffers")
    invalid("unknown_format", [with_desc(format="rgb565"), alb], "BAD_VALUE", "format rgb565")
    invalid("unknown_buffer_name", [with_desc(name="sparkles"), alb], "BAD_VALUE", "not a tag nor x_")
    invalid("duplicate_buffer", [pk({**base, "buffers": [desc("albedo", "rgba8", 2, 2)] * 2}), alb, alb],
            "BAD_VALUE", "albedo twice")
    invalid("dt_nan", [with_(dt=float("nan")), alb], "BAD_VALUE", "dt is NaN")
    invalid("deadline_zero", [with_(deadline_ms=0.0), alb], "BAD_VALUE", "deadline 0")
    invalid("strength_above_one", [with_(styles=[{"style": "noir", "strength": 1.5, "over": 0.0,
                                                  "target": {"scope": "global", "ids": []}}]), alb],
            "BAD_VALUE", "style strength 1.5")
    invalid("global_target_with_ids", [with_(events=[{"name": "e", "params": {},
                                                      "target": {"scope": "global", "ids": [1]}}]), alb],
            "BAD_VALUE", "global target with ids")
    invalid("object_target_without_ids", [with_(events=[{"name": "e", "params": {},
                                                         "target": {"scope": "object", "ids": []}}]), alb],
            "BAD_VALUE", "object target with no ids")
    nested: Any = 1
    for _ in range(9):
        nested = {"k": nested}
    invalid("params_too_deep", [with_(events=[{"name": "e", "params": nested,
                                                "target": {"scope": "global", "ids": []}}]), alb],
            "LIMIT_EXCEEDED", "params nest 9 deep")
    invalid("params_too_large", [with_(events=[{"name": "e", "params": {"blob": "z" * 5000},
                                                 "target": {"scope": "global", "ids": []}}]), alb],
            "LIMIT_EXCEEDED", "params over 4096 bytes")
    invalid("too_many_events", [with_(events=[{"name": "e", "params": {},
                                                "target": {"scope": "global", "ids": []}}] * 257), alb],
            "LIMIT_EXCEEDED", "257 events")
    invalid("event_name_empty", [with_(events=[{"name": "", "params": {},
                                                 "target": {"scope": "global", "ids": []}}]), alb],
            "BAD_VALUE", "empty event name")
    invalid("shm_without_pool", [with_desc(shm={"slot": 0, "offset": 0})], "BAD_VALUE",
            "a shared-memory reference with no negotiated pool")
    invalid("shm_slot_out_of_range", [with_desc(shm={"slot": 4, "offset": 0})], "BAD_VALUE",
            "slot 4 of a 4-slot pool", context={"shm_pool": POOL})
    invalid("shm_offset_unaligned", [with_desc(shm={"slot": 0, "offset": 8})], "BAD_VALUE",
            "offset not a multiple of 64", context={"shm_pool": POOL})
    invalid("compression_not_negotiated", [with_desc(compression="zstd"), alb], "BAD_VALUE",
            "zstd payload when only lz4 was negotiated", context={"compression": ["lz4"]})
    zs = zstandard.ZstdCompressor(write_content_size=True).compress(alb + b"\0")
    invalid("zstd_wrong_size", [with_desc(compression="zstd"), zs], "PAYLOAD_MISMATCH",
            "zstd frame decompressing to one byte too many")
    invalid("zstd_trailing_bytes", [with_desc(compression="zstd"),
                                     zstandard.ZstdCompressor(write_content_size=True).compress(alb) + b"\0"],
            "PAYLOAD_MISMATCH", "a byte after the one zstd frame")
    invalid("lz4_two_frames", [with_desc(compression="lz4"), lz4.frame.compress(alb[:8], store_size=True)
                               + lz4.frame.compress(alb[8:], store_size=True)],
            "PAYLOAD_MISMATCH", "two lz4 frames where one is allowed")
    invalid("result_ok_without_output", [pk({"nrb": 1, "type": "RESULT", "session": 7, "frame": 1,
                                             "status": "ok", "timing": timing()})], "MISSING_FIELD",
            "status ok but no output")
    invalid("timing_negative", [pk({"nrb": 1, "type": "RESULT", "session": 7, "frame": 1,
                                    "status": "skipped", "timing": {**timing(), "render_ms": -1.0}})],
            "BAD_VALUE", "negative render time")
    invalid("welcome_session_zero", [pk({"nrb": 1, "type": "WELCOME", "session": 0, "renderer": "r",
                                         "capabilities": [], "required": [], "optional": [],
                                         "output": {"name": "output", "format": "rgba8", "width": 1,
                                                    "height": 1},
                                         "max_in_flight": 2, "styles": []})], "BAD_VALUE", "session 0")
    invalid("camera_matrix_short", [with_(camera={"view_to_clip": [1.0] * 15}), alb], "BAD_VALUE",
            "a 15-entry matrix")
    style_vectors(valid, invalid, with_, alb)
    print(f"wrote {len(list(out.glob('*.json')))} vectors to {out}")


def chunk_vectors(valid: Any, invalid: Any, raw: bytes) -> None:
    """Section 6.3.2: payloads in independent chunks, and each check of step 4 (one vector per check)."""
    import lz4.frame
    import zstandard

    chunked = {"compression": ["lz4", "zstd", "chunked"]}

    def lz4c(b: bytes) -> bytes:
        return bytes(lz4.frame.compress(b, store_size=True))

    def zstdc(b: bytes) -> bytes:
        return bytes(zstandard.ZstdCompressor(level=1, write_content_size=True).compress(b))

    # 8x4 rgba8 = 128 bytes in chunks of 48: 48 + 48 + 32 (the last holds the rest)
    parts = [lz4c(raw[i:i + 48]) for i in range(0, 128, 48)]
    table = [len(x) for x in parts]
    d = desc("albedo", "rgba8", 8, 4, compression="lz4", chunks=table, chunk_bytes=48)
    hd = frame_header([d])
    valid("frame_lz4_chunked", hd, [raw], "an lz4 payload in three chunks of 48, 48 and 32 raw bytes "
          "(section 6.3.2); decode-only", context=chunked, encode=False, wire=[pk(hd), b"".join(parts)])
    img = bytes((i * 7) % 251 for i in range(512))  # 16x8 rgba8
    zparts = [zstdc(img[i:i + 200]) for i in range(0, 512, 200)]
    out = {**desc("output", "rgba8", 16, 8), "compression": "zstd", "chunks": [len(x) for x in zparts],
           "chunk_bytes": 200}
    res = {"nrb": 1, "type": "RESULT", "session": 7, "frame": 1, "status": "ok", "output": out,
           "timing": {"queue_ms": 0.5, "decode_ms": 0.25, "style_ms": 0.125, "render_ms": 4.0, "encode_ms": 0.0625,
                      "total_ms": 5.0}}
    valid("result_zstd_chunked", res, [img], "a RESULT image in three zstd chunks (200, 200, 112 raw bytes); "
          "decode-only", context=chunked, encode=False, wire=[pk(res), b"".join(zparts)])
    payload = b"".join(parts)

    def bad(name: str, error: str, note: str, frames: list[bytes] | None = None, ctx: dict[str, Any] | None = None,
            **over: Any) -> None:
        fields = {**d, **over}
        fields = {k: v for k, v in fields.items() if v is not None}
        invalid(name, frames or [pk(frame_header([fields])), payload], error, note,
                context=chunked if ctx is None else ctx)

    bad("chunks_not_negotiated", "BAD_VALUE", "chunks where only lz4 and zstd were negotiated, not chunked",
        ctx={"compression": ["lz4", "zstd"]})
    bad("chunks_without_compression", "BAD_VALUE", "a chunk table on a raw payload", compression=None)
    bad("chunks_empty", "BAD_VALUE", "a chunk table with no entries", chunks=[])
    bad("chunks_zero_entry", "BAD_VALUE", "a chunk of 0 compressed bytes", chunks=[table[0], 0, table[2]])
    bad("chunks_too_many", "LIMIT_EXCEEDED", "257 chunks (256 at most)", chunks=[1] * 257, chunk_bytes=1)
    bad("chunk_bytes_missing", "MISSING_FIELD", "chunks without chunk_bytes", chunk_bytes=None)
    bad("chunk_bytes_without_chunks", "BAD_VALUE", "chunk_bytes without chunks", chunks=None)
    bad("chunk_bytes_zero", "BAD_VALUE", "chunk_bytes 0", chunk_bytes=0)
    bad("chunk_bytes_over_limit", "LIMIT_EXCEEDED", "chunk_bytes above 2^30", chunk_bytes=(1 << 30) + 1)
    bad("chunks_count_mismatch", "BAD_VALUE", "two chunk entries where 128 bytes in chunks of 48 make three",
        chunks=table[:2])
    bad("chunks_sum_mismatch", "PAYLOAD_MISMATCH", "a chunk table adding up to one byte more than the payload",
        chunks=[table[0], table[1], table[2] + 1])
    halves = [lz4c(raw[:64]), lz4c(raw[64:])]
    two = {**d, "chunks": [len(x) for x in halves], "chunk_bytes": 65}
    invalid("chunk_wrong_size", [pk(frame_header([two])), b"".join(halves)], "PAYLOAD_MISMATCH",
            "chunk_bytes 65 but the first chunk announces 64 raw bytes (the second 64, where 63 are due)",
            context=chunked)
    corrupt = bytearray(payload)
    corrupt[table[0] + 7] ^= 0xFF  # inside chunk 1's compressed block (after its 7-byte frame header)
    bad("chunk_corrupt", "PAYLOAD_MISMATCH", "chunk 1's compressed data corrupted", frames=[pk(hd), bytes(corrupt)])
    trailing = parts[0] + parts[1] + b"\x00" + parts[2]
    bad("chunk_trailing_bytes", "PAYLOAD_MISMATCH", "a byte after chunk 1's lz4 frame (the table counts it)",
        frames=[pk(frame_header([{**d, "chunks": [table[0], table[1] + 1, table[2]]}])), trailing])


def shuffle_vectors(valid: Any, invalid: Any) -> None:
    """Section 6.3.3: byte-shuffled lz4/zstd payloads (whole, with a tail of bytes after the last whole texel, and
    chunk by chunk), and each check of step 3 (one vector per check)."""
    import lz4.frame
    import zstandard

    shuffled = {"compression": ["lz4", "zstd", "shuffle"]}

    def lz4c(b: bytes) -> bytes:
        return bytes(lz4.frame.compress(b, store_size=True))

    def zstdc(b: bytes) -> bytes:
        return bytes(zstandard.ZstdCompressor(level=1, write_content_size=True).compress(b))

    # 6x3 rg16f motion (texel 4), stride 28 (4 bytes of row padding): 84 bytes, 21 whole texels
    mv = bytes((i * 5 + (i % 4) * 60) % 256 for i in range(84))
    d = desc("motion_vectors", "rg16f", 6, 3, stride=28, compression="lz4", filter="shuffle")
    hd = frame_header([d])
    valid("frame_lz4_shuffled", hd, [mv], "an lz4 payload of byte planes: 4 planes of 21 bytes for rg16f's 4-byte "
          "texels (section 6.3.3); decode-only", context=shuffled, encode=False,
          wire=[pk(hd), lz4c(p.shuffle_bytes(mv, 4))])
    # 3x3 r32f depth, stride 13: 39 bytes = 9 whole texels + 3 bytes that stay at the end
    dep = pattern(39, 5)
    dz = desc("depth", "r32f", 3, 3, stride=13, compression="zstd", filter="shuffle")
    hz = frame_header([dz])
    valid("frame_zstd_shuffled_tail", hz, [dep], "a zstd payload of byte planes where stride x height (39) is not a "
          "multiple of the 4-byte texel: the last 3 bytes stay at the end; decode-only", context=shuffled,
          encode=False, wire=[pk(hz), zstdc(p.shuffle_bytes(dep, 4))])
    # 16x4 r16f depth (128 bytes) in chunks of 45: each chunk shuffled on its own (45 = 22 texels + 1 byte)
    half = bytes((i // 2 * 3) % 256 if i % 2 == 0 else 60 + i // 32 for i in range(128))
    parts = [lz4c(p.shuffle_bytes(half[i:i + 45], 2)) for i in range(0, 128, 45)]
    dc = desc("depth", "r16f", 16, 4, compression="lz4", chunks=[len(x) for x in parts], chunk_bytes=45,
              filter="shuffle")
    hc = frame_header([dc])
    both = {"compression": ["lz4", "zstd", "chunked", "shuffle"]}
    valid("frame_lz4_shuffled_chunked", hc, [half], "a shuffled lz4 payload in chunks of 45, 45 and 38 raw bytes, "
          "each chunk shuffled on its own (2 planes of 22 and a byte; of 19); decode-only", context=both,
          encode=False, wire=[pk(hc), b"".join(parts)])
    payload = lz4c(p.shuffle_bytes(mv, 4))

    def bad(name: str, error: str, note: str, ctx: dict[str, Any] | None = None, **over: Any) -> None:
        fields = {k: v for k, v in {**d, **over}.items() if v is not None}
        frames = [pk(frame_header([fields])), payload if fields.get("compression") else mv]
        invalid(name, frames, error, note, context=shuffled if ctx is None else ctx)

    bad("shuffle_not_negotiated", "BAD_VALUE", "filter shuffle where only lz4 and zstd were negotiated",
        ctx={"compression": ["lz4", "zstd"]})
    bad("shuffle_unknown_filter", "BAD_VALUE", "a filter outside the vocabulary", filter="bitshuffle")
    bad("shuffle_filter_not_string", "WRONG_TYPE", "filter is an integer", filter=1)
    bad("shuffle_without_compression", "BAD_VALUE", "filter shuffle on a raw payload", compression=None)
    r8 = bytes(range(18))
    one = {**desc("material_id", "r8", 6, 3, compression="lz4", filter="shuffle")}
    invalid("shuffle_one_byte_format", [pk(frame_header([one])), lz4c(r8)], "BAD_VALUE",
            "filter shuffle on r8 (1 byte per pixel: nothing to split)", context=shuffled)


#: tests/vectors/result_streamed and part: the 16x8 rgba8 image bytes((i * 7) % 251 for i in range(512)) in lz4
#: chunks of 200, 200 and 112 raw bytes, each shuffled (4 planes), as python-lz4 wrote them once: fixed here so that
#: the vectors do not change with the lz4 build (the chunk table is in the header).
STREAMED_CHUNKS = (
    "04224d186840c800000000000000d4c8000080001c3854708ca8c4e0011d3955718da9c5e1021e3a56728eaac6e2031f3b57738fabc7"
    "e304203c587490acc8e405213d597507233f5b7793afcbe70824405c7894b0cce80925415d7995b1cde90a26425e7a96b2ceea0b2743"
    "5f7b97b3cfeb0c2844607c0e2a46627e9ab6d2ee0f2b47637f9bb7d3ef102c4864809cb8d4f0112d4965819db9d5f1122e4a66829eba"
    "d6f2132f4b678315314d6985a1bdd9f516324e6a86a2bedaf617334f6b87a3bfdbf71834506c88a4c0dcf81935516d89a5c1ddf91a36"
    "526e8a00000000",
    "04224d186840c800000000000000d4c800008091adc9e506223e5a7692aecae607233f5b7793afcbe70824405c7894b0cce80925415d"
    "7995b1cde90a26425e7a96b2ceea0b98b4d0ec0d2945617d99b5d1ed0e2a46627e9ab6d2ee0f2b47637f9bb7d3ef102c4864809cb8d4"
    "f0112d4965819db9d5f1129fbbd7f314304c6884a0bcd8f415314d6985a1bdd9f516324e6a86a2bedaf617334f6b87a3bfdbf7183450"
    "6c88a4c0dcf819a6c2defa1b37536f8ba7c3df001c3854708ca8c4e0011d3955718da9c5e1021e3a56728eaac6e2031f3b57738fabc7"
    "e3042000000000",
    "04224d1868407000000000000000d67000008027435f7b97b3cfeb0c2844607c98b4d0ec0d2945617d99b5d1ed0e2a2e4a66829ebad6"
    "f2132f4b67839fbbd7f314304c6884a0bcd8f4153135516d89a5c1ddf91a36526e8aa6c2defa1b37536f8ba7c3df001c383c587490ac"
    "c8e405213d597591adc9e506223e5a7692aecae607233f00000000",
)


def streamed_vectors(valid: Any, invalid: Any) -> None:
    """Section 6.3.4: a RESULT image streamed in PART messages ahead of its RESULT, and each check of section 5.12
    and of step 4 (one vector per check)."""
    import lz4.frame

    ctx = {"compression": ["lz4", "zstd", "chunked", "shuffle", "streamed_output"]}
    chunks = [bytes.fromhex(x) for x in STREAMED_CHUNKS]
    img = bytes((i * 7) % 251 for i in range(512))
    for i, c in enumerate(chunks):  # the constants are what they say
        assert lz4.frame.decompress(c) == bytes(p.shuffle_bytes(img[i * 200:(i + 1) * 200], 4))
    part = {"nrb": 1, "type": "PART", "session": 7, "frame": 1, "buffer": "output", "index": 2}
    valid("part", part, [chunks[2]], "chunk 2 of a streamed RESULT image, ahead of its RESULT (section 5.12); the "
          "payload is the compressed chunk as it travels", context=ctx)
    out = {**desc("output", "rgba8", 16, 8), "compression": "lz4", "chunks": [len(c) for c in chunks],
           "chunk_bytes": 200, "filter": "shuffle", "streamed": True}
    res = {"nrb": 1, "type": "RESULT", "session": 7, "frame": 1, "status": "ok", "output": out,
           "timing": timing()}
    valid("result_streamed", res, [], "a RESULT whose shuffled lz4 image came ahead in three PARTs (section 6.3.4): "
          "the chunk table, streamed true, no payload frame", context=ctx)
    invalid("part_no_payload", [pk(part)], "MALFORMED", "a PART without its payload frame", context=ctx)
    invalid("part_two_payloads", [pk(part), chunks[2], chunks[2]], "MALFORMED", "a PART with two payload frames",
            context=ctx)
    invalid("part_index_256", [pk({**part, "index": 256}), chunks[2]], "LIMIT_EXCEEDED",
            "index 256 (a buffer has 256 chunks at most: 0..255)", context=ctx)
    invalid("part_empty_payload", [pk(part), b""], "BAD_VALUE", "a PART whose chunk is empty", context=ctx)
    invalid("part_buffer_albedo", [pk({**part, "buffer": "albedo"}), chunks[2]], "BAD_VALUE",
            "a PART of a FRAME buffer where only streamed_output was negotiated (streamed_frames, section 6.3.5, "
            "was not)", context=ctx)
    invalid("part_not_negotiated", [pk(part), chunks[2]], "BAD_VALUE",
            "a PART where streamed_output was not negotiated",
            context={"compression": ["lz4", "zstd", "chunked", "shuffle"]})
    invalid("result_streamed_with_payload", [pk(res), b"".join(chunks)], "MALFORMED",
            "a streamed RESULT with a payload frame for its output (it has none)", context=ctx)
    invalid("result_streamed_not_negotiated", [pk(res)], "BAD_VALUE",
            "streamed true where streamed_output was not negotiated",
            context={"compression": ["lz4", "zstd", "chunked", "shuffle"]})
    plain = {k: v for k, v in out.items() if k not in ("chunks", "chunk_bytes", "filter")}
    invalid("result_streamed_without_chunks", [pk({**res, "output": plain})], "BAD_VALUE",
            "streamed true on an lz4 image without a chunk table", context=ctx)
    fb = {**desc("albedo", "rgba8", 16, 8), "compression": "lz4", "chunks": [len(c) for c in chunks],
          "chunk_bytes": 200, "filter": "shuffle", "streamed": True}
    invalid("frame_streamed", [pk(frame_header([fb]))], "BAD_VALUE",
            "streamed true on a FRAME buffer where only streamed_output was negotiated (streamed_frames, section "
            "6.3.5, was not)", context=ctx)
    invalid("streamed_not_bool", [pk({**res, "output": {**out, "streamed": 1}})], "WRONG_TYPE",
            "streamed is an integer", context=ctx)
    streamed_frame_vectors(valid, invalid, part, chunks)


def streamed_frame_vectors(valid: Any, invalid: Any, part: dict[str, Any], chunks: list[bytes]) -> None:
    """Section 6.3.5: a FRAME's buffers streamed in PART messages ahead of the FRAME."""
    ctx = {"compression": ["lz4", "zstd", "chunked", "streamed_frames"]}
    valid("part_frame_buffer", {**part, "buffer": "albedo"}, [chunks[2]],
          "chunk 2 of a streamed FRAME buffer, ahead of its FRAME (sections 5.12 and 6.3.5)", context=ctx)
    fb = {**desc("albedo", "rgba8", 16, 8), "compression": "lz4", "chunks": [len(c) for c in chunks],
          "chunk_bytes": 200, "streamed": True}
    valid("frame_streamed_frames", frame_header([fb]), [],
          "a FRAME whose chunked lz4 albedo came ahead in three PARTs (section 6.3.5): the chunk table, streamed "
          "true, no payload frame", context=ctx)
    invalid("part_output_streamed_frames_only", [pk(part), chunks[2]], "BAD_VALUE",
            "a PART of output where only streamed_frames was negotiated (streamed_output was not)", context=ctx)


def style_vectors(valid: Any, invalid: Any, with_: Any, alb: bytes) -> None:
    """Styles as data (issue 17, section 5.3): stylecmd ``params``, FRAME ``controls``, the ``neural_mask`` buffer,
    and the camera's ``pre_exposure`` / ``tone_mapping`` (section 8)."""
    glob = {"scope": "global", "ids": []}
    poison = {"style": "poison", "strength": 1, "over": 0.5, "target": glob,
              "params": {"hue": 35, "saturation": 0.6, "gain": [0.85, 1.1, 0.75], "tint": 1.5, "lut": "sunset",
                         "base": "photoreal"}}
    valid("frame_style_params",
          frame_header([desc("albedo", "rgba8", 2, 2)], styles=[
              poison, {"style": "poison", "strength": 0.5, "over": 0, "target": {"scope": "object", "ids": [9]}}]),
          [alb], "a style defined by a parameter set (numbers, RGB, lut, base; keys in the sender's order), then "
                 "named again without params")
    valid("frame_controls",
          frame_header([desc("albedo", "rgba8", 2, 2)], controls=[
              {"control": "intensity", "value": 0.25, "over": 1.5, "target": glob},
              {"control": "exclude", "value": 1, "over": 0, "target": {"scope": "object", "ids": [7, 8]}},
              {"control": "exclude", "value": 0, "over": 0, "target": {"scope": "material", "ids": [3]}},
              {"control": "exclude", "value": 0, "over": 0, "target": glob}]),
          [alb], "intensity with a tween, excluding objects, including a material and every id again")
    mask = bytes([0, 255, 128, 0])
    valid("frame_neural_mask",
          frame_header([desc("hudless_color", "rgba8_srgb", 2, 2), desc("neural_mask", "r8", 2, 2)]),
          [alb, mask], "the engine's image and a per-pixel exclusion mask (r8: 0 re-rendered, 255 the engine's)")
    valid("frame_camera_tone_mapping",
          frame_header([desc("albedo", "rgba8", 2, 2)], camera={"pre_exposure": 0.35, "tone_mapping": "aces"}),
          [alb], "how hudless_color was made: pre-exposure and tone curve")
    invalid("stylecmd_params_not_map", [with_(styles=[{**poison, "params": [1.0]}]), alb], "WRONG_TYPE",
            "params is an array")
    invalid("stylecmd_params_rgb_two", [with_(styles=[{**poison, "params": {"gain": [1.0, 1.0]}}]), alb],
            "BAD_VALUE", "an RGB value with two numbers")
    invalid("stylecmd_params_str_value", [with_(styles=[{**poison, "params": {"hue": "red"}}]), alb],
            "WRONG_TYPE", "a str for a number parameter")
    invalid("stylecmd_params_rgb_str", [with_(styles=[{**poison, "params": {"gain": [1.0, "x", 1.0]}}]), alb],
            "WRONG_TYPE", "a str inside an RGB value")
    invalid("stylecmd_params_nan", [with_(styles=[{**poison, "params": {"hue": float("nan")}}]), alb],
            "BAD_VALUE", "NaN parameter")
    invalid("stylecmd_params_lut_number", [with_(styles=[{**poison, "params": {"lut": 3}}]), alb], "WRONG_TYPE",
            "lut is a style's name")
    invalid("stylecmd_params_empty_key", [with_(styles=[{**poison, "params": {"": 1.0}}]), alb], "BAD_VALUE",
            "an empty parameter name")
    invalid("stylecmd_params_33", [with_(styles=[{**poison, "params": {f"p{i}": 1.0 for i in range(33)}}]), alb],
            "LIMIT_EXCEEDED", "33 entries (the limit is 32)")
    ctl = {"control": "intensity", "value": 0.5, "over": 0, "target": glob}
    excl = {"control": "exclude", "value": 1, "over": 0, "target": {"scope": "object", "ids": [1]}}
    invalid("control_unknown", [with_(controls=[{**ctl, "control": "blur"}]), alb], "BAD_VALUE",
            "a control outside the vocabulary")
    invalid("control_intensity_above_one", [with_(controls=[{**ctl, "value": 1.5}]), alb], "BAD_VALUE",
            "intensity 1.5")
    invalid("control_intensity_object_target",
            [with_(controls=[{**ctl, "target": {"scope": "object", "ids": [1]}}]), alb], "BAD_VALUE",
            "intensity is per session")
    invalid("control_exclude_half", [with_(controls=[{**excl, "value": 0.5}]), alb], "BAD_VALUE",
            "exclusion is 0 or 1")
    invalid("control_exclude_over", [with_(controls=[{**excl, "over": 1}]), alb], "BAD_VALUE",
            "exclusion has no tween")
    invalid("control_exclude_global", [with_(controls=[{**excl, "target": glob}]), alb], "BAD_VALUE",
            "excluding everything (that is intensity 0)")
    invalid("control_missing_value",
            [with_(controls=[{"control": "intensity", "over": 0, "target": glob}]), alb], "MISSING_FIELD",
            "a control without value")
    invalid("controls_not_array", [with_(controls={"control": "intensity"}), alb], "WRONG_TYPE",
            "controls is a map")
    invalid("camera_tone_mapping_unknown", [with_(camera={"tone_mapping": "filmic"}), alb], "BAD_VALUE",
            "a tone curve outside the vocabulary")
    invalid("camera_pre_exposure_zero", [with_(camera={"pre_exposure": 0.0}), alb], "BAD_VALUE",
            "pre-exposure 0")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
