"""NRB/1 wire codec (Python side).

This module is the Python implementation of ``docs/protocol.md``. It must produce exactly the same bytes as the
C++ codec in ``cpp/src/protocol.cpp`` and reject malformed input with the same error code, which the shared vectors
in ``tests/vectors/`` check. It therefore follows the spec's canonical key order (section 3.1) and its decoding
algorithm (section 9.1) literally, rather than leaning on msgpack-python's defaults.

Decoded buffers are ``memoryview`` slices of the received frames, so ``Buffer.array()`` is a zero-copy numpy view.
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, NoReturn, Union

import msgpack
import numpy as np

PROTOCOL_VERSION = 1

MAX_HEADER_BYTES = 65536
MAX_DIMENSION = 16384
MAX_BUFFERS = 32
MAX_EVENTS = 256
MAX_STYLE_COMMANDS = 256
MAX_IDS = 1024
MAX_STR = 256
MAX_NAME = 64
MAX_ERROR_MESSAGE = 1024
MAX_LIST = 256
MAX_PARAMS_BYTES = 4096
MAX_PARAMS_DEPTH = 8
MAX_NESTING = 16
MAX_BUFFER_BYTES = 1 << 30
MAX_STRIDE = 1 << 31
MAX_SLOTS = 256
MAX_IN_FLIGHT = 64
MAX_DT = 10.0
MAX_DEADLINE_MS = 60000.0
MAX_OVER = 3600.0
SHM_ALIGN = 64
COMPRESSIONS = ("lz4", "zstd")
#: Image codecs for the RESULT image only (protocol section 6.3.1), allowed by HELLO ``lossy_output``.
LOSSY_COMPRESSIONS = ("jpeg", "webp")
#: Formats a lossy image may have (8-bit RGBA; the codec carries RGB, alpha is 255).
LOSSY_FORMATS = ("rgba8", "rgba8_srgb")
#: ``lossy_output.quality`` when an engine allows lossy return without choosing one (protocol section 6.3.1).
DEFAULT_LOSSY_QUALITY = 90
#: The capability that allows lz4/zstd payloads in independent chunks (protocol section 6.3.2). It travels in the
#: negotiated ``compression`` collection the decoder is given, beside the codecs it allows.
CHUNKED = "chunked"
#: The capability that allows ``filter: "shuffle"`` on lz4/zstd payloads (protocol section 6.3.3): each compressed
#: frame holds its raw bytes split into byte planes of the format's pixel size. It travels like ``CHUNKED``.
SHUFFLE = "shuffle"
#: The capability that allows a RESULT image back in PART messages ahead of its RESULT (protocol section 6.3.4): the
#: ``output`` descriptor then says ``streamed: true`` and has no payload frame. It travels like ``CHUNKED``.
STREAMED_OUTPUT = "streamed_output"
#: The capability that allows a FRAME's compressed buffers in PART messages ahead of the FRAME (protocol section
#: 6.3.5): such a buffer says ``streamed: true`` and has no payload frame. It travels like ``CHUNKED``.
STREAMED_FRAMES = "streamed_frames"
MAX_CHUNKS = 256
#: What a recorded message (a capture) may carry: it was accepted by a live session, which may have negotiated any of
#: these, so replay and inspection decode with all of them allowed.
RECORDED_CODECS = (*COMPRESSIONS, CHUNKED, SHUFFLE, *LOSSY_COMPRESSIONS)
MAX_CHUNK_BYTES = 1 << 30
MAX_CHUNK_WIRE_BYTES = 1 << 31
#: Buffers this large or larger are sent in chunks when the peer allows it (section 6.3.2 step 5); chunk sizes are
#: rounded up to ``CHUNK_ALIGN``.
CHUNK_MIN_BUFFER = 512 * 1024
CHUNK_ALIGN = 64 * 1024
#: Raw bytes per chunk of a streamed image (section 6.3.4 step 7): small enough that the first chunk is ready, and
#: on the link, soon.
STREAM_CHUNK_BYTES = 1 << 20
#: PARTs an engine holds per frame (section 6.3.4 step 5): at most ``MAX_CHUNKS`` of them and this many bytes over
#: twice the image's size.
PART_SLACK_BYTES = 1 << 20
#: PARTs a renderer holds per session ahead of their FRAMEs (section 6.3.5 step 5): at most this many, and their
#: payloads at most ``frame_bytes`` + ``frame_bytes`` / 128 + ``PART_SLACK_BYTES``.
MAX_HELD_FRAME_PARTS = 1024


class ErrorCode(enum.IntEnum):
    """Error codes of protocol section 9. The numbers are part of the wire format."""

    MALFORMED = 1
    VERSION_UNSUPPORTED = 2
    UNKNOWN_TYPE = 3
    MISSING_FIELD = 4
    WRONG_TYPE = 5
    BAD_VALUE = 6
    LIMIT_EXCEEDED = 7
    PAYLOAD_MISMATCH = 8
    NO_SESSION = 9
    UNKNOWN_REQUIRED = 10
    RENDER_FAILED = 11
    OVERLOADED = 12
    UNAUTHORIZED = 13
    INTERNAL = 14
    UNSUPPORTED = 15


class ProtocolError(Exception):
    """A message violates NRB/1. ``code`` says which rule, ``message`` says where."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FormatInfo:
    """Pixel layout of one format: bytes per pixel, channel count and the numpy type of one channel."""

    bytes_per_pixel: int
    channels: int
    dtype: np.dtype[Any]


FORMATS: dict[str, FormatInfo] = {
    "rgba8": FormatInfo(4, 4, np.dtype(np.uint8)),
    "rgba8_srgb": FormatInfo(4, 4, np.dtype(np.uint8)),
    "rgba16f": FormatInfo(8, 4, np.dtype("<f2")),
    "rgba32f": FormatInfo(16, 4, np.dtype("<f4")),
    "rg8": FormatInfo(2, 2, np.dtype(np.uint8)),
    "rg16f": FormatInfo(4, 2, np.dtype("<f2")),
    "rg32f": FormatInfo(8, 2, np.dtype("<f4")),
    "r8": FormatInfo(1, 1, np.dtype(np.uint8)),
    "r16f": FormatInfo(2, 1, np.dtype("<f2")),
    "r32f": FormatInfo(4, 1, np.dtype("<f4")),
    "r16u": FormatInfo(2, 1, np.dtype("<u2")),
    "r32u": FormatInfo(4, 1, np.dtype("<u4")),
}

#: Streamline resource tags (snake case) followed by the names nrb adds (protocol section 6.1).
BUFFER_NAMES: frozenset[str] = frozenset(
    {
        "depth", "linear_depth", "motion_vectors", "hudless_color", "scaling_input_color", "normals",
        "roughness", "normal_roughness", "albedo", "specular_albedo", "emissive", "exposure", "position",
        "alpha", "opaque_color", "ui_color_and_alpha", "reactive_mask", "transparency_and_composition_mask",
        "disocclusion_mask",
        "metallic", "roughness_metallic", "normals_oct", "material_id", "object_id", "output",
        "neural_mask",
    }
)
_VENDOR_NAME = re.compile(r"x_[a-z0-9_]{1,61}")
#: The well-known per-frame lighting constants (section 6.1): 1x1 vendor buffers, xyz / rgb in the first three
#: channels.
LIGHTING_CONSTANTS: tuple[str, ...] = ("x_sun_direction", "x_sun_irradiance", "x_sky_radiance")
_SHM_NAME = re.compile(r"/[A-Za-z0-9._-]+")
#: Doorbell FIFO paths (section 7.1): absolute, plain components, the last one ``nrb-...``.
_DOORBELL_PATH = re.compile(r"(?:/[A-Za-z0-9._-]+)*/nrb-[A-Za-z0-9._-]*")
MAX_DOORBELL_PATH = 255
SCOPES = ("global", "material", "object")
#: FRAME ``controls`` kinds (section 5.3) and camera ``tone_mapping`` values (section 8; ``bridge.tonemap``).
CONTROLS = ("intensity", "exclude")
TONE_MAPPINGS = ("none", "clamp", "reinhard", "aces", "agx", "other")
#: stylecmd ``params`` (section 5.3): at most this many entries; these keys take a str, every other key numbers.
MAX_STYLE_PARAMS = 32
STYLE_PARAM_STR_KEYS = ("lut", "base")
MESSAGE_TYPES = ("HELLO", "WELCOME", "FRAME", "RESULT", "ERROR", "PING", "PONG", "BYE", "PART")


def is_buffer_name(name: str) -> bool:
    """A valid buffer name (section 6.1): a standard one or a vendor extension ``x_...``."""
    return name in BUFFER_NAMES or _VENDOR_NAME.fullmatch(name) is not None


# --------------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Target:
    """What an event or style command applies to: the whole frame, or pixels with these material/object ids."""

    scope: str = "global"
    ids: tuple[int, ...] = ()


@dataclass
class Event:
    """A gameplay event; ``params`` is free-form (protocol 'value' types)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    target: Target = field(default_factory=Target)


#: A stylecmd parameter value once decoded: one number, (R, G, B), or a str (``lut``, ``base``).
StyleParamValue = float | tuple[float, float, float] | str


@dataclass
class StyleCommand:
    """``set_style``: move ``target`` to ``style`` at ``strength`` over ``over`` seconds. With ``params`` the command
    first defines (or redefines) ``style`` from that parameter set (section 5.3, styles defined at run time); the
    codec checks the shapes, the renderer the names and ranges (``bridge.session.StylePipeline.check``)."""

    style: str
    strength: float = 1.0
    over: float = 0.0
    target: Target = field(default_factory=Target)
    params: dict[str, StyleParamValue] | None = None


@dataclass
class Control:
    """A post control (FRAME ``controls``, section 5.3): ``intensity`` (``value`` 0..1 over ``over`` seconds, global
    target) or ``exclude`` (``value`` 1 excludes the target's ids from re-rendering, 0 includes them again)."""

    control: str
    value: float
    over: float = 0.0
    target: Target = field(default_factory=Target)


@dataclass
class BufferSpec:
    """A buffer a peer can provide or needs: name and format, no pixels."""

    name: str
    format: str


@dataclass
class ShmRef:
    """Where a buffer lives in the engine's shared-memory pool (protocol section 7)."""

    slot: int
    offset: int = 0


@dataclass
class ShmPool:
    """The engine's shared-memory pool, announced in HELLO."""

    name: str
    slots: int
    slot_size: int


@dataclass
class DoorbellSpec:
    """The engine's two doorbell FIFOs, announced in HELLO (section 7.1): per-frame headers bypass ZeroMQ."""

    to_renderer: str
    to_engine: str


@dataclass
class OutputSpec:
    """The image a renderer will return (WELCOME ``output``)."""

    format: str
    width: int
    height: int
    name: str = "output"


@dataclass
class Buffer:
    """One image buffer: its descriptor plus, unless it lives in shared memory, its raw (uncompressed) bytes.

    ``compression`` only says how the bytes travel on the wire; ``data`` is always the raw pixels. A message decoded
    with ``defer_decompression`` holds a compressed buffer's wire payload in ``compressed`` (and no ``data``) until
    ``inflate`` is called: the server decompresses on its render worker, not on its I/O thread.
    """

    name: str
    format: str
    width: int
    height: int
    stride: int
    data: memoryview | bytes | None = None
    compression: str | None = None
    depth_reversed: bool | None = None
    depth_infinite: bool | None = None
    shm: ShmRef | None = None
    #: Section 6.3.2: the compressed length of each chunk (set by the decoder, and by ``encode`` when it compresses
    #: a buffer that has ``chunk_bytes``) and the raw bytes per chunk. A sender sets ``chunk_bytes`` only.
    chunks: list[int] | None = None
    chunk_bytes: int | None = None
    #: Section 6.3.3: ``"shuffle"`` when the payload's frames hold byte planes (set by the decoder; a sender sets it
    #: on an lz4/zstd buffer and ``encode`` shuffles before compressing).
    filter: str | None = None
    #: Sections 6.3.4 and 6.3.5: a RESULT ``output`` or FRAME buffer whose chunks came ahead in PART messages; it
    #: has no payload frame, and its compressed chunks reach ``compressed`` through ``attach_parts`` (or
    #: ``pieces`` through ``attach_frame_parts``).
    streamed: bool = False
    compressed: memoryview | None = field(default=None, repr=False, compare=False)
    #: Section 6.3.5: a streamed FRAME buffer's chunks as their PARTs carried them, in index order (no copy), and
    #: per chunk what a receiver decompressed of it ahead (``EarlyChunk`` or None); ``inflate`` uses both.
    pieces: list[memoryview] | None = field(default=None, repr=False, compare=False)
    early: list[EarlyChunk | None] | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        """Bytes the buffer occupies: stride × height."""
        return self.stride * self.height

    def array(self) -> np.ndarray:
        """A zero-copy view of the pixels, shape (H, W, C), honouring ``stride``."""
        if self.data is None:
            raise ValueError(f"buffer {self.name!r} has no data (shared-memory buffers are resolved by bridge.shm)")
        return view_pixels(self.data, self.format, self.width, self.height, self.stride)

    @classmethod
    def from_array(
        cls, name: str, format: str, arr: np.ndarray, compression: str | None = None, **flags: Any
    ) -> Buffer:
        """Wrap an (H, W, C) or (H, W) array whose dtype matches ``format``; copies only if not C-contiguous."""
        info = FORMATS[format]
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] != info.channels:
            raise ValueError(f"{format} needs shape (H, W, {info.channels}), got {arr.shape}")
        if arr.dtype != info.dtype:
            raise ValueError(f"{format} needs dtype {info.dtype}, got {arr.dtype}")
        arr = np.ascontiguousarray(arr)
        h, w = arr.shape[:2]
        data = memoryview(arr.reshape(-1).view(np.uint8))  # type: ignore[arg-type]  # numpy arrays export buffers
        return cls(name, format, w, h, w * info.bytes_per_pixel, data, compression, **flags)


def view_pixels(data: Any, format: str, width: int, height: int, stride: int) -> np.ndarray:
    """View raw bytes as an (H, W, C) array without copying."""
    info = FORMATS[format]
    return np.ndarray(
        (height, width, info.channels),
        dtype=info.dtype,
        buffer=data,
        strides=(stride, info.bytes_per_pixel, info.dtype.itemsize),
    )


@dataclass
class Camera:
    """Camera constants (protocol section 8); matrices are 16 floats, row-major, for column vectors."""

    view_to_clip: tuple[float, ...] | None = None
    clip_to_view: tuple[float, ...] | None = None
    clip_to_prev_clip: tuple[float, ...] | None = None
    prev_clip_to_clip: tuple[float, ...] | None = None
    world_to_view: tuple[float, ...] | None = None
    position: tuple[float, ...] | None = None
    up: tuple[float, ...] | None = None
    right: tuple[float, ...] | None = None
    forward: tuple[float, ...] | None = None
    near: float | None = None
    far: float | None = None
    fov_y: float | None = None
    aspect: float | None = None
    jitter: tuple[float, ...] | None = None
    mv_scale: tuple[float, ...] | None = None
    depth_inverted: bool | None = None
    depth_infinite: bool | None = None
    mv_jittered: bool | None = None
    mv_3d: bool | None = None
    mv_dilated: bool | None = None
    camera_motion_included: bool | None = None
    orthographic: bool | None = None
    reset: bool | None = None
    pre_exposure: float | None = None
    tone_mapping: str | None = None
    render_size: tuple[int, int] | None = None
    output_size: tuple[int, int] | None = None


@dataclass
class Hello:
    """Engine → renderer: open a session and say what the engine offers."""

    engine: str
    engine_version: str
    client: str
    capabilities: list[str]
    render_size: tuple[int, int]
    output_size: tuple[int, int]
    buffers: list[BufferSpec]
    shm: ShmPool | None = None
    min_version: int = PROTOCOL_VERSION
    version: int = PROTOCOL_VERSION
    doorbell: DoorbellSpec | None = None
    #: a placement ticket from an earlier WELCOME ``redirect`` (protocol section 5.10): to the worker it names the
    #: placed session; back at the front door after a failure, the session whose style state to restore
    ticket: str | None = None
    #: the renderer (and model) the engine wants (protocol section 5.11): a WELCOME ``renderer`` label, whole or cut
    #: before its first ``/`` or ``@``; None: whatever the renderer is
    renderer: str | None = None
    #: the engine allows the RESULT image back lossily at this codec and quality (protocol section 6.3.1)
    lossy_output: LossyOutput | None = None


@dataclass
class LossyOutput:
    """HELLO ``lossy_output`` (protocol section 6.3.1): the engine allows the renderer to return its image with a
    lossy codec at ``quality`` (1..100); without it every image comes back exact."""

    codec: str = "jpeg"
    quality: int = DEFAULT_LOSSY_QUALITY


def renderer_matches(wanted: str, label: str) -> bool:
    """Whether a renderer announcing ``label`` in WELCOME is the one HELLO ``renderer`` asks for (protocol section
    5.11): the whole label, or the label cut before its first ``/`` or ``@`` (``neural`` is ``neural/0.1.0@cuda:0``)."""
    if wanted == label:
        return True
    return label.startswith(wanted) and label[len(wanted)] in "/@"


@dataclass
class Redirect:
    """WELCOME ``redirect`` (protocol section 5.10): a front door placed the session on a worker; the engine opens
    it at ``endpoint`` with the same HELLO plus ``ticket``, so frames never pass through the front door."""

    endpoint: str
    ticket: str


#: Endpoint schemes a redirect may name (an engine connects to nothing else).
REDIRECT_SCHEMES: tuple[str, ...] = ("tcp://", "ipc://")
#: Longest redirect endpoint and ticket, in UTF-8 bytes.
MAX_ENDPOINT_BYTES = 256
MAX_TICKET_BYTES = 64


@dataclass
class Limits:
    """WELCOME ``limits`` (protocol section 11.1): the renderer's memory budgets and session caps, so that an engine
    knows in advance what it would be refused. Byte counts are ``stride × height`` summed over buffers."""

    frame_bytes: int  # the most one FRAME of this session may carry, all its buffers together
    session_bytes: int  # what the renderer reserved for this session (counted against ``total_bytes``)
    message_bytes: int  # the renderer's per-message budget: no session's ``frame_bytes`` exceeds it
    total_bytes: int  # the renderer's budget over all sessions
    max_pixels: int  # width × height cap of ``render_size`` and ``output_size``
    sessions: int  # sessions per renderer
    sessions_per_peer: int  # sessions per engine connection (and per CurveZMQ key)


LIMIT_KEYS: tuple[str, ...] = ("frame_bytes", "session_bytes", "message_bytes", "total_bytes", "max_pixels",
                               "sessions", "sessions_per_peer")


@dataclass
class Welcome:
    """Renderer → engine: the session id and what the renderer needs and returns."""

    session: int
    renderer: str
    capabilities: list[str]
    required: list[BufferSpec]
    optional: list[BufferSpec]
    output: OutputSpec
    max_in_flight: int
    styles: list[str]
    version: int = PROTOCOL_VERSION
    limits: Limits | None = None
    redirect: Redirect | None = None  # present: the session is not open here; open it at redirect.endpoint


@dataclass
class Frame:
    """Engine → renderer: one frame's buffers, camera, and the events/style commands issued since the last one."""

    session: int
    frame: int
    time_ns: int
    dt: float
    deadline_ms: float
    buffers: list[Buffer] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    styles: list[StyleCommand] = field(default_factory=list)
    camera: Camera | None = None
    result_slot: int | None = None
    controls: list[Control] = field(default_factory=list)

    def buffer(self, name: str) -> Buffer | None:
        """The buffer called ``name``, or None."""
        for b in self.buffers:
            if b.name == name:
                return b
        return None


@dataclass
class Timing:
    """Server-side time breakdown of one RESULT, in milliseconds."""

    queue_ms: float = 0.0
    decode_ms: float = 0.0
    style_ms: float = 0.0
    render_ms: float = 0.0
    encode_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class Result:
    """Renderer → engine: the rendered image for ``frame`` (status "ok") or "skipped"."""

    session: int
    frame: int
    status: str
    timing: Timing
    output: Buffer | None = None


@dataclass
class Error:
    """Either direction: a rejected message or a failed frame."""

    code: int
    name: str
    message: str
    session: int | None = None
    frame: int | None = None


@dataclass
class Ping:
    """Liveness probe; answered by a Pong with the same nonce and time."""

    nonce: int
    time_ns: int


@dataclass
class Pong:
    """Answer to a Ping."""

    nonce: int
    time_ns: int


@dataclass
class Bye:
    """Close a session."""

    session: int | None = None
    reason: str | None = None


@dataclass
class Part:
    """Chunk ``index`` of a streamed buffer, sent ahead of its message (protocol section 5.12): renderer → engine,
    of frame ``frame``'s RESULT ``output`` (section 6.3.4); engine → renderer, of a buffer of FRAME ``frame``
    (section 6.3.5). ``data`` is the chunk's compressed bytes, as they travel."""

    session: int
    frame: int
    buffer: str
    index: int
    data: memoryview | bytes = field(default=b"", repr=False)


Message = Union[Hello, Welcome, Frame, Result, Error, Ping, Pong, Bye, Part]

_TYPE_NAMES: dict[type, str] = {
    Hello: "HELLO", Welcome: "WELCOME", Frame: "FRAME", Result: "RESULT",
    Error: "ERROR", Ping: "PING", Pong: "PONG", Bye: "BYE", Part: "PART",
}

#: Header keys of each message type in canonical order (after ``nrb`` and ``type``).
KEYS: dict[str, tuple[str, ...]] = {
    "HELLO": ("min_version", "engine", "engine_version", "client", "capabilities", "render_size",
              "output_size", "buffers", "shm", "doorbell", "ticket", "renderer", "lossy_output"),
    "WELCOME": ("session", "renderer", "capabilities", "required", "optional", "output", "max_in_flight",
                "styles", "limits", "redirect"),
    "FRAME": ("session", "frame", "time_ns", "dt", "deadline_ms", "camera", "buffers", "events", "styles",
              "controls", "result_slot"),
    "RESULT": ("session", "frame", "status", "output", "timing"),
    "ERROR": ("code", "name", "message", "session", "frame"),
    "PING": ("nonce", "time_ns"),
    "PONG": ("nonce", "time_ns"),
    "BYE": ("session", "reason"),
    "PART": ("session", "frame", "buffer", "index"),
}
_COMMON_KEYS = ("nrb", "type", "must_understand")
CAMERA_KEYS: tuple[str, ...] = tuple(Camera.__dataclass_fields__)
_MAT4 = {"view_to_clip", "clip_to_view", "clip_to_prev_clip", "prev_clip_to_clip", "world_to_view"}
_VEC3 = {"position", "up", "right", "forward"}
_VEC2 = {"jitter", "mv_scale"}
_SIZE = {"render_size", "output_size"}
_BOOL = {"depth_inverted", "depth_infinite", "mv_jittered", "mv_3d", "mv_dilated", "camera_motion_included",
         "orthographic", "reset"}
TIMING_KEYS: tuple[str, ...] = tuple(Timing.__dataclass_fields__)


def error_message(err: ProtocolError, *, session: int | None = None, frame: int | None = None) -> Error:
    """The ERROR message that answers a rejected message."""
    text = err.message.encode()[:MAX_ERROR_MESSAGE].decode(errors="ignore")
    return Error(int(err.code), err.code.name, text, session, frame)


# ----------------------------------------------------------------------------------------------------- encode


def _target_map(t: Target) -> dict[str, Any]:
    return {"scope": t.scope, "ids": [int(i) for i in t.ids]}


def _spec_map(s: BufferSpec) -> dict[str, Any]:
    return {"name": s.name, "format": s.format}


def _desc_map(b: Buffer) -> dict[str, Any]:
    d: dict[str, Any] = {"name": b.name, "format": b.format, "width": int(b.width), "height": int(b.height),
                         "stride": int(b.stride)}
    if b.compression is not None:
        d["compression"] = b.compression
    if b.chunks is not None and b.compression in COMPRESSIONS:  # a copy made raw (a capture) drops its table
        d["chunks"] = [int(n) for n in b.chunks]
        d["chunk_bytes"] = int(b.chunk_bytes or 0)
    if b.filter is not None and b.compression in COMPRESSIONS:  # section 6.3.3; a copy made raw drops it
        d["filter"] = b.filter
    if b.streamed and b.chunks is not None and b.compression in COMPRESSIONS:  # section 6.3.4
        d["streamed"] = True
    if b.depth_reversed is not None:
        d["depth_reversed"] = bool(b.depth_reversed)
    if b.depth_infinite is not None:
        d["depth_infinite"] = bool(b.depth_infinite)
    if b.shm is not None:
        d["shm"] = {"slot": int(b.shm.slot), "offset": int(b.shm.offset)}
    return d


def _camera_map(c: Camera) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k in CAMERA_KEYS:
        v = getattr(c, k)
        if v is None:
            continue
        if k in _BOOL:
            d[k] = bool(v)
        elif k in _SIZE:
            d[k] = [int(x) for x in v]
        elif k in _MAT4 or k in _VEC3 or k in _VEC2:
            d[k] = [float(x) for x in v]
        elif k == "tone_mapping":
            d[k] = str(v)
        else:
            d[k] = float(v)
    return d


def _stylecmd_map(s: StyleCommand) -> dict[str, Any]:
    d: dict[str, Any] = {"style": s.style, "strength": float(s.strength), "over": float(s.over),
                         "target": _target_map(s.target)}
    if s.params is not None:
        d["params"] = {k: v if isinstance(v, str) else [float(x) for x in v] if isinstance(v, (tuple, list))
                       else float(v) for k, v in s.params.items()}
    return d


def header_map(msg: Message) -> dict[str, Any]:
    """The header of ``msg`` as an ordered dict in canonical key order (protocol section 3.1)."""
    kind = _TYPE_NAMES[type(msg)]
    h: dict[str, Any] = {"nrb": getattr(msg, "version", PROTOCOL_VERSION), "type": kind}
    if isinstance(msg, Hello):
        h.update(min_version=int(msg.min_version), engine=msg.engine, engine_version=msg.engine_version,
                 client=msg.client, capabilities=list(msg.capabilities),
                 render_size=[int(x) for x in msg.render_size], output_size=[int(x) for x in msg.output_size],
                 buffers=[_spec_map(s) for s in msg.buffers])
        if msg.shm is not None:
            h["shm"] = {"name": msg.shm.name, "slots": int(msg.shm.slots), "slot_size": int(msg.shm.slot_size)}
        if msg.doorbell is not None:
            h["doorbell"] = {"to_renderer": msg.doorbell.to_renderer, "to_engine": msg.doorbell.to_engine}
        if msg.ticket is not None:
            h["ticket"] = msg.ticket
        if msg.renderer is not None:
            h["renderer"] = msg.renderer
        if msg.lossy_output is not None:
            h["lossy_output"] = {"codec": msg.lossy_output.codec, "quality": int(msg.lossy_output.quality)}
    elif isinstance(msg, Welcome):
        h.update(session=int(msg.session), renderer=msg.renderer, capabilities=list(msg.capabilities),
                 required=[_spec_map(s) for s in msg.required], optional=[_spec_map(s) for s in msg.optional],
                 output={"name": msg.output.name, "format": msg.output.format, "width": int(msg.output.width),
                         "height": int(msg.output.height)},
                 max_in_flight=int(msg.max_in_flight), styles=list(msg.styles))
        if msg.limits is not None:
            h["limits"] = {k: int(getattr(msg.limits, k)) for k in LIMIT_KEYS}
        if msg.redirect is not None:
            h["redirect"] = {"endpoint": msg.redirect.endpoint, "ticket": msg.redirect.ticket}
    elif isinstance(msg, Frame):
        h.update(session=int(msg.session), frame=int(msg.frame), time_ns=int(msg.time_ns), dt=float(msg.dt),
                 deadline_ms=float(msg.deadline_ms))
        if msg.camera is not None:
            h["camera"] = _camera_map(msg.camera)
        h["buffers"] = [_desc_map(b) for b in msg.buffers]
        h["events"] = [{"name": e.name, "params": e.params, "target": _target_map(e.target)} for e in msg.events]
        h["styles"] = [_stylecmd_map(s) for s in msg.styles]
        if msg.controls:
            h["controls"] = [{"control": c.control, "value": float(c.value), "over": float(c.over),
                              "target": _target_map(c.target)} for c in msg.controls]
        if msg.result_slot is not None:
            h["result_slot"] = int(msg.result_slot)
    elif isinstance(msg, Result):
        h.update(session=int(msg.session), frame=int(msg.frame), status=msg.status)
        if msg.output is not None:
            h["output"] = _desc_map(msg.output)
        h["timing"] = {k: float(getattr(msg.timing, k)) for k in TIMING_KEYS}
    elif isinstance(msg, Error):
        h.update(code=int(msg.code), name=msg.name, message=msg.message)
        if msg.session is not None:
            h["session"] = int(msg.session)
        if msg.frame is not None:
            h["frame"] = int(msg.frame)
    elif isinstance(msg, (Ping, Pong)):
        h.update(nonce=int(msg.nonce), time_ns=int(msg.time_ns))
    elif isinstance(msg, Bye):
        if msg.session is not None:
            h["session"] = int(msg.session)
        if msg.reason is not None:
            h["reason"] = msg.reason
    elif isinstance(msg, Part):
        h.update(session=int(msg.session), frame=int(msg.frame), buffer=msg.buffer, index=int(msg.index))
    return h


def _native_shuffle() -> Any | None:
    """libnrb's shuffle kernels (``bridge._native.shuffle_into`` / ``unshuffle_into``: SSE2 for 2-, 4- and 8-byte
    texels, 0.4-0.9 ms per 8 MB on the bench machine against 3 ms or more for numpy's strided copies below; they
    release the GIL), or ``None`` where the native module is not built. Looked up once, at the first shuffle."""
    global _NATIVE_SHUFFLE
    if _NATIVE_SHUFFLE is False:
        try:
            from bridge import _native
        except ImportError:
            _NATIVE_SHUFFLE = None
        else:
            _NATIVE_SHUFFLE = _native if hasattr(_native, "shuffle_into") else None
    return _NATIVE_SHUFFLE


_NATIVE_SHUFFLE: Any = False  # not looked up yet; tests set None to run the numpy kernels
#: the texel sizes libnrb shuffles with SSE2; for the others (rgba32f's 16 bytes) its scalar loops are no faster
#: than numpy's strided copies, which then run
_NATIVE_TEXELS = (2, 4, 8)


def shuffle_bytes(data: Any, texel: int) -> memoryview:
    """Section 6.3.3: ``data``'s bytes as ``texel`` byte planes (byte j of whole texel i at j × n + i, n whole
    texels); the bytes after the last whole texel stay at the end. The high bytes of neighbouring 16-bit and 32-bit
    values repeat, so the codecs find long matches in a plane that the interleaved bytes break up."""
    a = np.frombuffer(data, np.uint8)
    dst = np.empty(len(a), np.uint8)
    native = _native_shuffle()
    if native is not None and texel in _NATIVE_TEXELS:
        native.shuffle_into(a, dst, texel)
        return dst.data
    n = len(a) // texel if texel > 1 else 0
    texels = a[:n * texel].reshape(n, texel)
    for j in range(texel if n else 0):  # one plane at a time: contiguous writes (a transposed copy is 5-8x slower)
        dst[j * n:(j + 1) * n] = texels[:, j]
    dst[n * texel:] = a[n * texel:]
    return dst.data


def unshuffle_bytes(data: Any, texel: int, out: Any = None) -> memoryview:
    """The inverse of ``shuffle_bytes``: byte planes back to texels, into ``out`` when given (a chunk straight into
    its range of the whole buffer, section 6.3.2)."""
    a = np.frombuffer(data, np.uint8)
    dst = np.empty(len(a), np.uint8) if out is None else np.frombuffer(out, np.uint8)
    native = _native_shuffle()
    if native is not None and texel in _NATIVE_TEXELS:
        native.unshuffle_into(a, dst, texel)
        return dst.data
    n = len(a) // texel if texel > 1 else 0
    texels = dst[:n * texel].reshape(n, texel)
    for j in range(texel if n else 0):
        texels[:, j] = a[j * n:(j + 1) * n]
    dst[n * texel:] = a[n * texel:]
    return dst.data


def _texel(b: Buffer) -> int:
    """The shuffle's plane count for ``b`` (section 6.3.3): its format's bytes per pixel when it is shuffled."""
    return FORMATS[b.format].bytes_per_pixel if b.filter == SHUFFLE else 0


def _compress(data: Any, method: str, texel: int = 0) -> bytes:
    if texel > 1:
        data = shuffle_bytes(data, texel)
    if method == "lz4":
        import lz4.frame

        return bytes(lz4.frame.compress(data, store_size=True))
    if method == "zstd":
        import zstandard

        # level 1, as libnrb: a rendered image is sent every frame, so speed counts more than the last few percent
        return bytes(zstandard.ZstdCompressor(level=1, write_content_size=True).compress(data))
    raise ValueError(f"unknown compression {method!r}")


def chunk_bytes_for(size: int, workers: int) -> int | None:
    """The chunk size section 6.3.2 step 5 asks of libnrb and ``nrb serve``: ``size`` split over ``workers``
    threads, rounded up to 64 KiB; ``None`` (one frame) for a buffer under 512 KiB or a single worker."""
    if workers < 2 or size < CHUNK_MIN_BUFFER:
        return None
    per = -(-size // min(workers, MAX_CHUNKS))
    per = -(-per // CHUNK_ALIGN) * CHUNK_ALIGN
    return per if per < size else None


def _compress_chunked(data: memoryview, method: str, chunk_bytes: int,
                      pool: Executor | None, texel: int = 0) -> tuple[bytes, list[int]]:
    """``data`` as independent frames of ``chunk_bytes`` raw bytes each (the last holds the rest), compressed on
    ``pool`` when given (python-lz4 and zstandard release the GIL, so the chunks use as many cores as the pool has
    threads); returns the payload and the chunk table."""
    pieces = [data[i:i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
    parts = list(pool.map(lambda x: _compress(x, method, texel), pieces)) if pool is not None and len(pieces) > 1 \
        else [_compress(x, method, texel) for x in pieces]
    return b"".join(parts), [len(x) for x in parts]


def _payload_buffers(msg: Message) -> list[Buffer]:
    """The buffers of ``msg`` that have a payload frame: not in shared memory, not streamed (section 2)."""
    if isinstance(msg, Frame):
        return [b for b in msg.buffers if b.shm is None and not b.streamed]
    if isinstance(msg, Result) and msg.output is not None and msg.output.shm is None and not msg.output.streamed:
        return [msg.output]
    return []


def payload_data(msg: Message) -> list[memoryview | bytes | None]:
    """What each payload frame of ``msg`` holds once decoded, in order: each inline buffer's raw pixels, or a
    PART's chunk as it travels (compressed)."""
    if isinstance(msg, Part):
        return [msg.data]
    return [b.data for b in _payload_buffers(msg)]


def _raw_bytes(b: Buffer) -> memoryview:
    """``b``'s raw pixels as one flat byte view, checked against its descriptor's size (what ``encode`` and the
    streaming encoders send, whole or in chunks)."""
    if b.data is None:
        raise ValueError(f"buffer {b.name!r} has neither data nor a shared-memory reference")
    data = b.data if isinstance(b.data, memoryview) else memoryview(b.data)
    data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    if len(data) != b.size:
        raise ValueError(f"buffer {b.name!r}: {len(data)} bytes, descriptor says {b.size}")
    return data


def encode_header(msg: Message) -> bytes:
    """The first frame of ``encode(msg)`` alone: its canonical msgpack header (no payload is touched)."""
    return bytes(msgpack.packb(header_map(msg), use_bin_type=True))


def encode(msg: Message, pool: Executor | None = None) -> list[bytes | memoryview]:
    """Encode ``msg`` to ZeroMQ frames: the canonical msgpack header, then one raw payload per inline buffer.

    Raw payloads are passed through as the caller's memory (no copy), so ``zmq`` can send them zero-copy. A
    buffer with ``compression`` lz4/zstd and ``chunk_bytes`` is compressed in chunks (section 6.3.2), on ``pool``
    when given, and gets its ``chunks`` table filled in (the header is written after the payloads for that).
    """
    frames: list[bytes | memoryview] = [b""]
    if isinstance(msg, Result) and msg.output is not None and msg.output.streamed and not msg.output.chunks:
        raise ValueError("a streamed output needs its chunk table: stream it with encode_streamed first")
    if isinstance(msg, Frame) and any(b.streamed and not b.chunks for b in msg.buffers):
        raise ValueError("a streamed FRAME buffer needs its chunk table: stream it with encode_streamed_frame first")
    if isinstance(msg, Part):
        data = _as_memoryview(msg.data)
        if not data.nbytes:
            raise ValueError("a PART carries one chunk of 1 byte or more")
        frames.append(msg.data)
    for b in _payload_buffers(msg):
        data = _raw_bytes(b)
        if b.compression in LOSSY_COMPRESSIONS:
            # a renderer encodes its image once, at the session's quality (bridge.image_codec), and sends those bytes
            frames.append(b.compressed if b.compressed is not None
                          else _image_codec().encode_image(b, DEFAULT_LOSSY_QUALITY, b.compression))
        elif b.compression and b.chunk_bytes:
            payload, b.chunks = _compress_chunked(data, b.compression, b.chunk_bytes, pool, _texel(b))
            frames.append(payload)
        else:
            b.chunks = None
            frames.append(_compress(data, b.compression, _texel(b)) if b.compression else data)
    frames[0] = msgpack.packb(header_map(msg), use_bin_type=True)
    return frames


def stream_chunk_bytes_for(size: int) -> int:
    """The chunk size of a streamed image (section 6.3.4 step 7): 1 MiB of raw bytes, more where ``size`` would
    need more than 256 chunks, rounded up to 64 KiB; an image of 1 MiB or less is one chunk."""
    per = max(STREAM_CHUNK_BYTES, -(-size // MAX_CHUNKS))
    return -(-per // CHUNK_ALIGN) * CHUNK_ALIGN


def encode_streamed(result: Result, pool: Executor | None = None) -> Iterator[list[bytes | memoryview]]:
    """Stream ``result``'s image (section 6.3.4): yield the wire frames of each PART, chunk 0 first, each as soon
    as its chunk and every chunk before it are compressed (on ``pool`` when given, all chunks at once; the codecs
    release the GIL). ``result.output`` needs ``compression`` lz4/zstd and ``chunk_bytes``; once the generator is
    exhausted its ``chunks`` table is filled in and ``streamed`` is set, so ``encode(result)`` is the RESULT's
    header alone."""
    b = result.output
    if b is None or not _streamable(b):
        raise ValueError("only an inline lz4/zstd RESULT output with chunk_bytes is streamed")
    yield from _stream_buffers(result.session, result.frame, [b], pool)


def _streamable(b: Buffer) -> bool:
    return b.compression in COMPRESSIONS and bool(b.chunk_bytes) and b.shm is None


def encode_streamed_frame(frame: Frame, pool: Executor | None = None,
                          names: Collection[str] | None = None) -> Iterator[list[bytes | memoryview]]:
    """Stream ``frame``'s compressed buffers (section 6.3.5), as ``encode_streamed`` streams an image: every inline
    buffer with ``compression`` lz4/zstd and ``chunk_bytes`` (of those in ``names``, when given) has all its chunks
    compressed at once (on ``pool`` when given); the wire frames of each PART are yielded, buffer by buffer and
    chunk 0 first, each as soon as it and every chunk before it are ready. Once the generator is exhausted those
    buffers have their ``chunks`` tables and ``streamed`` set, so ``encode(frame)`` is the FRAME with the other
    buffers' payloads only. Only where ``"streamed_frames"`` was negotiated."""
    chosen = [b for b in frame.buffers if _streamable(b) and (names is None or b.name in names)]
    yield from _stream_buffers(frame.session, frame.frame, chosen, pool)


def _stream_buffers(session: int, frame: int, buffers: Sequence[Buffer],
                    pool: Executor | None) -> Iterator[list[bytes | memoryview]]:
    """The PARTs of ``buffers`` (each one lz4/zstd with ``chunk_bytes``), compressed on ``pool`` all at once, each
    yielded in order as soon as it is ready; then each buffer's table and ``streamed`` are set."""
    jobs: list[tuple[Buffer, int, memoryview]] = []
    for b in buffers:
        data = _raw_bytes(b)
        step = b.chunk_bytes or 0
        if -(-b.size // step) > MAX_CHUNKS:
            raise ValueError(f"buffer {b.name!r}: chunks of {step} bytes make more than {MAX_CHUNKS}")
        jobs += [(b, i // step, data[i:i + step]) for i in range(0, len(data), step)]
    futures: list[Future[bytes]] | None = None
    if pool is not None and len(jobs) > 1:
        futures = [pool.submit(_compress, x, b.compression or "", _texel(b)) for b, _, x in jobs]
    tables: dict[int, list[int]] = {id(b): [] for b in buffers}
    try:
        for k, (b, i, piece) in enumerate(jobs):
            chunk = futures[k].result() if futures is not None else _compress(piece, b.compression or "", _texel(b))
            tables[id(b)].append(len(chunk))
            yield [encode_header(Part(session, frame, b.name, i)), chunk]
    finally:
        if futures is not None:
            for f in futures:
                f.cancel()
    for b in buffers:
        b.chunks = tables[id(b)]
        b.streamed = True


def attach_parts(output: Buffer, parts: Mapping[int, Any] | Iterable[tuple[int, Any]], *,
                 decompress: bool = True, pool: Executor | None = None) -> None:
    """Give a streamed RESULT ``output`` (section 6.3.4) the chunks its PARTs carried: ``parts`` maps each PART's
    ``index`` to its payload (or lists (index, payload) pairs in arrival order, so a repeated index shows). They must
    be exactly the indexes 0..n-1 of the ``chunks`` table, each as long as its entry (``PAYLOAD_MISMATCH``
    otherwise, before anything is decompressed). The chunks, joined, become ``output.compressed``, where a deferred
    decode leaves a chunked payload; ``decompress`` inflates them at once (on ``pool``, as ``inflate``)."""
    if not output.streamed or output.chunks is None or output.chunk_bytes is None:
        raise ValueError(f"{output.name}: not a streamed buffer")
    pairs = list(parts.items()) if isinstance(parts, Mapping) else list(parts)
    got = _match_chunks(output, pairs)
    n = len(got)
    joined = got[0] if n == 1 else memoryview(b"".join(got))
    output.compressed = joined
    output.data = None
    if decompress:
        inflate([output], pool)


def _match_chunks(b: Buffer, pairs: Sequence[tuple[int, Any]]) -> list[memoryview]:
    """Sections 6.3.4 step 4 and 6.3.5 step 4: the (index, payload) pairs of ``b``'s PARTs, in arrival order, must be
    exactly the indexes of its chunk table, each as long as its entry; returns the payloads in index order."""
    assert b.chunks is not None
    n = len(b.chunks)
    got: dict[int, memoryview] = {}
    for index, payload in pairs:
        if index in got:
            _fail(ErrorCode.PAYLOAD_MISMATCH, f"{b.name}: chunks[{index}]: more than one PART arrived")
        if not 0 <= index < n:
            _fail(ErrorCode.PAYLOAD_MISMATCH, f"{b.name}: chunks[{index}]: a PART arrived, the table has {n} "
                                              "entries")
        got[index] = _as_memoryview(payload)
    for i, want in enumerate(b.chunks):
        piece = got.get(i)
        if piece is None:
            _fail(ErrorCode.PAYLOAD_MISMATCH, f"{b.name}: chunks[{i}]: no PART arrived")
        if len(piece) != want:
            _fail(ErrorCode.PAYLOAD_MISMATCH, f"{b.name}: chunks[{i}]: the PART holds {len(piece)} bytes, "
                                              f"the table says {want}")
    return [got[i] for i in range(n)]


@dataclass
class EarlyChunk:
    """A held PART's chunk decompressed ahead of its FRAME (section 6.3.5 step 5): ``method`` is the codec its
    frame magic names, ``size`` the raw size its frame announced, ``future`` gives the raw bytes (None: it did not
    decompress to exactly that size). ``inflate`` uses it once the FRAME's table confirms it."""

    method: str
    size: int
    future: Future[bytes | None]


_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def announced_chunk(data: Any, methods: Collection[str]) -> tuple[str, int] | None:
    """The codec (of ``methods``) and raw size a compressed chunk's frame announces, read from its frame header
    only (cheap enough for an I/O thread); None when it names neither, announces no size or more than 2^30."""
    mv = _as_memoryview(data)
    magic = bytes(mv[:4])
    try:
        if magic == _LZ4_MAGIC and "lz4" in methods:
            import lz4.frame

            method, size = "lz4", int(lz4.frame.get_frame_info(mv).get("content_size", 0) or 0)
        elif magic == _ZSTD_MAGIC and "zstd" in methods:
            import zstandard

            method, size = "zstd", int(zstandard.frame_content_size(mv))
        else:
            return None
    except Exception:  # noqa: BLE001 - a corrupt frame header: decompressed (and reported) with its FRAME
        return None
    return (method, size) if 0 < size <= MAX_CHUNK_BYTES else None


def decompress_announced(data: Any, method: str, size: int) -> bytes | None:
    """Decompress one chunk at the size its frame announced (section 6.3.5 step 5: its FRAME has not come yet, so
    its table cannot be checked); None when it does not decompress to exactly that (``inflate`` then decompresses
    it again, with the table's size and the usual messages)."""
    try:
        return _decompress(_as_memoryview(data), method, size, "")
    except Exception:  # noqa: BLE001 - reported by inflate, at the FRAME
        return None


def attach_frame_parts(buffers: Sequence[Buffer], parts: Iterable[tuple[str, int, Any, EarlyChunk | None]]) -> None:
    """Give a FRAME's streamed buffers (section 6.3.5) the chunks held for it: ``parts`` lists (buffer, index,
    payload, early decompression or None) in arrival order. Each streamed buffer needs exactly the indexes 0..n-1 of
    its table, each as long as its entry, and no PART may name a buffer the FRAME does not stream:
    ``PAYLOAD_MISMATCH`` otherwise, before anything is decompressed. The payloads become the buffers' ``pieces``
    (no copy) and the early decompressions their ``early``, for ``inflate``."""
    streamed = {b.name: b for b in buffers if b.streamed}
    pairs: dict[str, list[tuple[int, Any]]] = {name: [] for name in streamed}
    early: dict[tuple[str, int], EarlyChunk | None] = {}
    for name, index, payload, ahead in parts:
        if name not in streamed:
            _fail(ErrorCode.PAYLOAD_MISMATCH, f"{name}: a PART arrived for a buffer the FRAME does not stream")
        pairs[name].append((index, payload))
        early.setdefault((name, index), ahead)
    for name, b in streamed.items():
        b.pieces = _match_chunks(b, pairs[name])
        b.early = [early.get((name, i)) for i in range(len(b.pieces))]
        b.data = None
        b.compressed = None


def cancel_early(buffers: Iterable[Buffer]) -> None:
    """Let go of what was decompressed ahead for ``buffers`` (a frame superseded, skipped or dropped): the
    decompressions not started yet are cancelled."""
    for b in buffers:
        for e in b.early or ():
            if e is not None:
                e.future.cancel()
        b.early = None
        b.pieces = None


# ----------------------------------------------------------------------------------------------------- decode


def _fail(code: ErrorCode, message: str) -> NoReturn:
    raise ProtocolError(code, message)


def _check_tree(obj: Any, depth: int, where: str) -> None:
    """Reject what msgpack-python lets through but NRB/1 forbids: ext types, non-str keys, deep nesting.

    ``depth`` counts containers only (the header map is 1), as the C++ decoder does.
    """
    if isinstance(obj, (dict, list)) and depth > MAX_NESTING:
        _fail(ErrorCode.MALFORMED, f"nesting deeper than {MAX_NESTING}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                _fail(ErrorCode.MALFORMED, f"{where}: map key {k!r} is not a str")
            _check_tree(v, depth + 1, where)
    elif isinstance(obj, list):
        for v in obj:
            _check_tree(v, depth + 1, where)
    elif isinstance(obj, (msgpack.ExtType, msgpack.Timestamp)):
        _fail(ErrorCode.MALFORMED, f"{where}: ext types are not allowed")


def _unique_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """msgpack map → dict, refusing duplicate keys (a second value would hide the first from the checks)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate map key")
    return out


class _Reader:
    """Field checks of protocol section 9.1, each naming the path of the offending value."""

    def __init__(self, compression: Collection[str], pool: ShmPool | None) -> None:
        self.compression = compression
        self.image = False  # reading a RESULT's output, where a lossy codec may be (section 6.3.1)
        self.pool = pool

    # scalars ---------------------------------------------------------------------------------------------
    @staticmethod
    def field(m: dict[str, Any], key: str, path: str, required: bool = True) -> Any:
        if key not in m:
            if required:
                _fail(ErrorCode.MISSING_FIELD, f"{path}{key} is required")
            return None
        if m[key] is None:  # no NRB/1 key is typed nil: a present nil is a wrong type, not an absent key
            _fail(ErrorCode.WRONG_TYPE, f"{path}{key} is nil")
        return m[key]

    @staticmethod
    def uint(v: Any, path: str, lo: int = 0, hi: int = (1 << 64) - 1, limit: bool = False) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            _fail(ErrorCode.WRONG_TYPE, f"{path} must be an unsigned integer")
        if v < lo:
            _fail(ErrorCode.BAD_VALUE, f"{path}={v} is below {lo}")
        if v > hi:
            _fail(ErrorCode.LIMIT_EXCEEDED if limit else ErrorCode.BAD_VALUE, f"{path}={v} is above {hi}")
        return int(v)

    @staticmethod
    def float_(v: Any, path: str, lo: float = -math.inf, hi: float = math.inf, allow_inf: bool = False,
               lo_open: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            _fail(ErrorCode.WRONG_TYPE, f"{path} must be a number")
        f = float(v)
        if math.isnan(f) or (math.isinf(f) and not (allow_inf and f > 0)):
            _fail(ErrorCode.BAD_VALUE, f"{path} must be finite")
        if f < lo or f > hi or (lo_open and f <= lo):
            # the interval as it is: "(0.0, 60000.0]" for a bound that excludes 0, ")" for no upper bound
            _fail(ErrorCode.BAD_VALUE, f"{path}={f} is outside {'(' if lo_open else '['}{lo}, "
                                       f"{hi}{')' if math.isinf(hi) else ']'}")
        return f

    @staticmethod
    def bool_(v: Any, path: str) -> bool:
        if not isinstance(v, bool):
            _fail(ErrorCode.WRONG_TYPE, f"{path} must be a boolean")
        return v

    @staticmethod
    def str_(v: Any, path: str, max_len: int = MAX_STR, nonempty: bool = False,
             vocabulary: Collection[str] | None = None) -> str:
        if not isinstance(v, str):
            _fail(ErrorCode.WRONG_TYPE, f"{path} must be a str")
        if len(v.encode()) > max_len:
            _fail(ErrorCode.LIMIT_EXCEEDED, f"{path} is longer than {max_len} bytes")
        if nonempty and not v:
            _fail(ErrorCode.BAD_VALUE, f"{path} must not be empty")
        if vocabulary is not None and v not in vocabulary:
            _fail(ErrorCode.BAD_VALUE, f"{path}={v!r} is not one of {sorted(vocabulary)}")
        return v

    @staticmethod
    def array(v: Any, path: str, max_len: int, fixed: int | None = None) -> list[Any]:
        if not isinstance(v, list):
            _fail(ErrorCode.WRONG_TYPE, f"{path} must be an array")
        if fixed is not None:
            if len(v) != fixed:
                _fail(ErrorCode.BAD_VALUE, f"{path} must have {fixed} entries")
        elif len(v) > max_len:
            _fail(ErrorCode.LIMIT_EXCEEDED, f"{path} has more than {max_len} entries")
        return v

    @staticmethod
    def map_(v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            _fail(ErrorCode.WRONG_TYPE, f"{path} must be a map")
        return v

    # composites ------------------------------------------------------------------------------------------
    def str_list(self, v: Any, path: str) -> list[str]:
        return [self.str_(x, f"{path}[{i}]") for i, x in enumerate(self.array(v, path, MAX_LIST))]

    def size(self, v: Any, path: str) -> tuple[int, int]:
        a = self.array(v, path, 2, fixed=2)
        w = self.uint(a[0], f"{path}[0]", 1, MAX_DIMENSION, limit=True)
        h = self.uint(a[1], f"{path}[1]", 1, MAX_DIMENSION, limit=True)
        return (w, h)

    def floats(self, v: Any, path: str, n: int) -> tuple[float, ...]:
        a = self.array(v, path, n, fixed=n)
        return tuple(self.float_(x, f"{path}[{i}]") for i, x in enumerate(a))

    def buffer_name(self, v: Any, path: str) -> str:
        name = self.str_(v, path, MAX_NAME, nonempty=True)
        if not is_buffer_name(name):
            _fail(ErrorCode.BAD_VALUE, f"{path}={name!r} is not a known buffer name nor an x_ extension")
        return name

    def buffer_format(self, v: Any, path: str) -> str:
        return self.str_(v, path, vocabulary=FORMATS)

    def bufspec(self, v: Any, path: str) -> BufferSpec:
        m = self.map_(v, path)
        name = self.buffer_name(self.field(m, "name", path + "."), path + ".name")
        fmt = self.buffer_format(self.field(m, "format", path + "."), path + ".format")
        return BufferSpec(name, fmt)

    def bufspecs(self, v: Any, path: str) -> list[BufferSpec]:
        return [self.bufspec(x, f"{path}[{i}]") for i, x in enumerate(self.array(v, path, MAX_BUFFERS))]

    def target(self, v: Any, path: str) -> Target:
        m = self.map_(v, path)
        scope = self.str_(self.field(m, "scope", path + "."), path + ".scope", vocabulary=SCOPES)
        ids_v = self.array(self.field(m, "ids", path + "."), path + ".ids", MAX_IDS)
        ids = tuple(self.uint(x, f"{path}.ids[{i}]", 0, (1 << 32) - 1) for i, x in enumerate(ids_v))
        if scope == "global" and ids:
            _fail(ErrorCode.BAD_VALUE, f"{path}: a global target takes no ids")
        if scope != "global" and not ids:
            _fail(ErrorCode.BAD_VALUE, f"{path}: a {scope} target needs ids")
        return Target(scope, ids)

    def params(self, v: Any, path: str) -> dict[str, Any]:
        m = self.map_(v, path)
        if _depth(m) > MAX_PARAMS_DEPTH:
            _fail(ErrorCode.LIMIT_EXCEEDED, f"{path} nests deeper than {MAX_PARAMS_DEPTH}")
        if len(msgpack.packb(m, use_bin_type=True)) > MAX_PARAMS_BYTES:
            _fail(ErrorCode.LIMIT_EXCEEDED, f"{path} is larger than {MAX_PARAMS_BYTES} bytes")
        return m

    def event(self, v: Any, path: str) -> Event:
        m = self.map_(v, path)
        name = self.str_(self.field(m, "name", path + "."), path + ".name", MAX_NAME, nonempty=True)
        params = self.params(self.field(m, "params", path + "."), path + ".params")
        target = self.target(self.field(m, "target", path + "."), path + ".target")
        return Event(name, params, target)

    def stylecmd(self, v: Any, path: str) -> StyleCommand:
        m = self.map_(v, path)
        style = self.str_(self.field(m, "style", path + "."), path + ".style", MAX_NAME, nonempty=True)
        strength = self.float_(self.field(m, "strength", path + "."), path + ".strength", 0.0, 1.0)
        over = self.float_(self.field(m, "over", path + "."), path + ".over", 0.0, MAX_OVER)
        target = self.target(self.field(m, "target", path + "."), path + ".target")
        pv = self.field(m, "params", path + ".", required=False)
        params = self.style_params(pv, path + ".params") if pv is not None else None
        return StyleCommand(style, strength, over, target, params)

    def style_params(self, v: Any, path: str) -> dict[str, StyleParamValue]:
        """stylecmd ``params`` (section 5.3): shapes only; names and ranges are the renderer's check."""
        m = self.map_(v, path)
        if len(m) > MAX_STYLE_PARAMS:
            _fail(ErrorCode.LIMIT_EXCEEDED, f"{path} has more than {MAX_STYLE_PARAMS} entries")
        out: dict[str, StyleParamValue] = {}
        for key, x in m.items():
            k = self.str_(key, f"{path} key", MAX_NAME, nonempty=True)
            p = f"{path}.{k}"
            if k in STYLE_PARAM_STR_KEYS:
                out[k] = self.str_(x, p, MAX_NAME, nonempty=True)
            elif isinstance(x, list):
                a = self.array(x, p, 3, fixed=3)
                r, g, b = (self.float_(c, f"{p}[{i}]") for i, c in enumerate(a))
                out[k] = (r, g, b)
            else:
                out[k] = self.float_(x, p)
        return out

    def control(self, v: Any, path: str) -> Control:
        m = self.map_(v, path)
        kind = self.str_(self.field(m, "control", path + "."), path + ".control", vocabulary=CONTROLS)
        value = self.float_(self.field(m, "value", path + "."), path + ".value", 0.0, 1.0)
        over = self.float_(self.field(m, "over", path + "."), path + ".over", 0.0, MAX_OVER)
        target = self.target(self.field(m, "target", path + "."), path + ".target")
        if kind == "intensity" and target.scope != "global":
            _fail(ErrorCode.BAD_VALUE, f"{path}: intensity is per session; its target must be global")
        if kind == "exclude":
            if value not in (0.0, 1.0):
                _fail(ErrorCode.BAD_VALUE, f"{path}.value={value} must be 1 (exclude) or 0 (include again)")
            if over != 0.0:
                _fail(ErrorCode.BAD_VALUE, f"{path}.over must be 0 for exclude")
            if target.scope == "global" and value == 1.0:
                _fail(ErrorCode.BAD_VALUE, f"{path}: excluding everything is intensity 0; a global target only "
                                           "includes every id again (value 0)")
        return Control(kind, value, over, target)

    def bufdesc(self, v: Any, path: str) -> Buffer:
        m = self.map_(v, path)
        p = path + "."
        name = self.buffer_name(self.field(m, "name", p), p + "name")
        fmt = self.buffer_format(self.field(m, "format", p), p + "format")
        width = self.uint(self.field(m, "width", p), p + "width", 1, MAX_DIMENSION, limit=True)
        height = self.uint(self.field(m, "height", p), p + "height", 1, MAX_DIMENSION, limit=True)
        stride = self.uint(self.field(m, "stride", p), p + "stride")
        if stride < width * FORMATS[fmt].bytes_per_pixel:
            _fail(ErrorCode.BAD_VALUE, f"{p}stride={stride} is less than width × {FORMATS[fmt].bytes_per_pixel}")
        if stride > MAX_STRIDE:
            _fail(ErrorCode.LIMIT_EXCEEDED, f"{p}stride={stride} is above 2^31")
        if stride * height > MAX_BUFFER_BYTES:
            _fail(ErrorCode.LIMIT_EXCEEDED, f"{path} is {stride * height} bytes, more than 1 GiB")
        b = Buffer(name, fmt, width, height, stride)
        c = self.field(m, "compression", p, required=False)
        if c is not None:
            b.compression = self.str_(c, p + "compression", vocabulary=COMPRESSIONS + LOSSY_COMPRESSIONS)
            if b.compression in LOSSY_COMPRESSIONS:  # section 6.3.1: the RESULT image only, 8-bit RGBA, tight rows
                if not self.image:
                    _fail(ErrorCode.BAD_VALUE, f"{p}compression={c!r} is for a RESULT output only")
                if fmt not in LOSSY_FORMATS or stride != width * 4:
                    _fail(ErrorCode.BAD_VALUE, f"{p}compression={c!r} needs rgba8 or rgba8_srgb with stride = width "
                                               f"× 4, not {fmt} with stride {stride}")
            if b.compression not in self.compression:
                _fail(ErrorCode.BAD_VALUE, f"{p}compression={c!r} was not negotiated")
        self.chunk_table(m, p, b)
        flt = self.field(m, "filter", p, required=False)
        if flt is not None:  # section 6.3.3
            b.filter = self.str_(flt, p + "filter", vocabulary=(SHUFFLE,))
            if b.compression not in COMPRESSIONS:
                _fail(ErrorCode.BAD_VALUE, f"{p}filter: only an lz4 or zstd payload is shuffled, not "
                                           f"{b.compression or 'a raw one'}")
            if FORMATS[fmt].bytes_per_pixel < 2:
                _fail(ErrorCode.BAD_VALUE, f"{p}filter: shuffle needs 2 or more bytes per pixel; {fmt} has 1")
            if SHUFFLE not in self.compression:
                _fail(ErrorCode.BAD_VALUE, f"{p}filter: shuffle was not negotiated")
        st = self.field(m, "streamed", p, required=False)
        if st is not None and self.bool_(st, p + "streamed"):  # section 6.3.4 step 4
            if b.chunks is None:
                _fail(ErrorCode.BAD_VALUE, f"{p}streamed: a streamed buffer comes in chunks (chunks is absent)")
            if "shm" in m:
                _fail(ErrorCode.BAD_VALUE, f"{p}streamed: a shared-memory buffer is not streamed")
            need = STREAMED_OUTPUT if self.image else STREAMED_FRAMES  # a RESULT output, or a FRAME buffer (6.3.5)
            if need not in self.compression:
                _fail(ErrorCode.BAD_VALUE, f"{p}streamed: {need} was not negotiated")
            b.streamed = True
        for key in ("depth_reversed", "depth_infinite"):
            f = self.field(m, key, p, required=False)
            if f is not None:
                setattr(b, key, self.bool_(f, p + key))
        s = self.field(m, "shm", p, required=False)
        if s is not None:
            b.shm = self.shmref(s, p + "shm", b.size)
            if b.compression is not None:
                _fail(ErrorCode.BAD_VALUE, f"{p}shm: shared-memory buffers cannot be compressed")
        return b

    def chunk_table(self, m: dict[str, Any], p: str, b: Buffer) -> None:
        """``chunks`` and ``chunk_bytes`` (section 6.3.2 step 4), in canonical order after ``compression``."""
        c = self.field(m, "chunks", p, required=False)
        if c is not None:
            entries = self.array(c, p + "chunks", MAX_CHUNKS)
            if not entries:
                _fail(ErrorCode.BAD_VALUE, f"{p}chunks is empty (one chunk at least)")
            b.chunks = [self.uint(x, f"{p}chunks[{i}]", 1, MAX_CHUNK_WIRE_BYTES, limit=True)
                        for i, x in enumerate(entries)]
            if b.compression not in COMPRESSIONS:
                _fail(ErrorCode.BAD_VALUE, f"{p}chunks: only an lz4 or zstd payload comes in chunks, not "
                                           f"{b.compression or 'a raw one'}")
            if CHUNKED not in self.compression:
                _fail(ErrorCode.BAD_VALUE, f"{p}chunks: chunked payloads were not negotiated")
        n = self.field(m, "chunk_bytes", p, required=b.chunks is not None)
        if n is None:
            return
        if b.chunks is None:
            _fail(ErrorCode.BAD_VALUE, f"{p}chunk_bytes without chunks")
        b.chunk_bytes = self.uint(n, p + "chunk_bytes", 1, MAX_CHUNK_BYTES, limit=True)
        want = -(-b.size // b.chunk_bytes)
        if len(b.chunks) != want:
            _fail(ErrorCode.BAD_VALUE, f"{p}chunks has {len(b.chunks)} entries; stride × height = {b.size} in chunks "
                                       f"of {b.chunk_bytes} bytes makes {want}")

    def bufdescs(self, v: Any, path: str) -> list[Buffer]:
        out: list[Buffer] = []
        seen: set[str] = set()
        for i, x in enumerate(self.array(v, path, MAX_BUFFERS)):
            b = self.bufdesc(x, f"{path}[{i}]")
            if b.name in seen:
                _fail(ErrorCode.BAD_VALUE, f"{path}[{i}]: buffer {b.name!r} appears twice")
            seen.add(b.name)
            out.append(b)
        return out

    def shmref(self, v: Any, path: str, size: int) -> ShmRef:
        m = self.map_(v, path)
        slot = self.uint(self.field(m, "slot", path + "."), path + ".slot")
        offset = self.uint(self.field(m, "offset", path + "."), path + ".offset")
        self.check_slot_range(slot, offset, size, path)
        return ShmRef(slot, offset)

    def check_slot_range(self, slot: int, offset: int, size: int, path: str) -> None:
        pool = self.pool
        if pool is None:
            _fail(ErrorCode.BAD_VALUE, f"{path}: no shared-memory pool was negotiated")
        if slot >= pool.slots:
            _fail(ErrorCode.BAD_VALUE, f"{path}: slot {slot} is outside the pool's {pool.slots} slots")
        if offset % SHM_ALIGN:
            _fail(ErrorCode.BAD_VALUE, f"{path}: offset {offset} is not a multiple of {SHM_ALIGN}")
        if offset + size > pool.slot_size:
            _fail(ErrorCode.BAD_VALUE, f"{path}: [{offset}, {offset + size}) overruns the slot")

    def shmpool(self, v: Any, path: str) -> ShmPool:
        m = self.map_(v, path)
        name = self.str_(self.field(m, "name", path + "."), path + ".name", MAX_NAME, nonempty=True)
        if not _SHM_NAME.fullmatch(name):
            _fail(ErrorCode.BAD_VALUE, f"{path}.name={name!r} is not /[A-Za-z0-9._-]+")
        slots = self.uint(self.field(m, "slots", path + "."), path + ".slots", 1, MAX_SLOTS, limit=True)
        slot_size = self.uint(self.field(m, "slot_size", path + "."), path + ".slot_size", 1, MAX_BUFFER_BYTES,
                              limit=True)
        if slot_size % SHM_ALIGN:
            _fail(ErrorCode.BAD_VALUE, f"{path}.slot_size={slot_size} is not a multiple of {SHM_ALIGN}")
        return ShmPool(name, slots, slot_size)

    def doorbell(self, v: Any, path: str) -> DoorbellSpec:
        m = self.map_(v, path)
        paths = []
        for key in ("to_renderer", "to_engine"):
            p = self.str_(self.field(m, key, path + "."), f"{path}.{key}", MAX_DOORBELL_PATH, nonempty=True)
            if not _DOORBELL_PATH.fullmatch(p) or any(c in (".", "..") for c in p.split("/")):
                _fail(ErrorCode.BAD_VALUE, f"{path}.{key}={p!r} is not an absolute path of [A-Za-z0-9._-] "
                                           "components ending in nrb-...")
            paths.append(p)
        if paths[0] == paths[1]:
            _fail(ErrorCode.BAD_VALUE, f"{path}.to_engine must differ from to_renderer")
        return DoorbellSpec(paths[0], paths[1])

    def camera(self, v: Any, path: str) -> Camera:
        m = self.map_(v, path)
        cam = Camera()
        for k in CAMERA_KEYS:
            x = self.field(m, k, path + ".", required=False)
            if x is None:
                continue
            p = f"{path}.{k}"
            val: Any
            if k in _MAT4:
                val = self.floats(x, p, 16)
            elif k in _VEC3:
                val = self.floats(x, p, 3)
            elif k in _VEC2:
                val = self.floats(x, p, 2)
            elif k in _BOOL:
                val = self.bool_(x, p)
            elif k in _SIZE:
                val = self.size(x, p)
            elif k == "near":
                val = self.float_(x, p, 0.0, lo_open=True)
            elif k == "far":
                val = self.float_(x, p, 0.0, allow_inf=True, lo_open=True)
                if cam.near is not None and val <= cam.near:
                    _fail(ErrorCode.BAD_VALUE, f"{p} must be greater than near")
            elif k == "fov_y":
                val = self.float_(x, p, 0.0, math.pi, lo_open=True)
                if val >= math.pi:
                    _fail(ErrorCode.BAD_VALUE, f"{p} must be below pi")
            elif k in ("aspect", "pre_exposure"):
                val = self.float_(x, p, 0.0, lo_open=True)
            elif k == "tone_mapping":
                val = self.str_(x, p, vocabulary=TONE_MAPPINGS)
            else:  # pragma: no cover - every camera key has a branch
                raise AssertionError(k)
            setattr(cam, k, val)
        return cam

    def timing(self, v: Any, path: str) -> Timing:
        m = self.map_(v, path)
        return Timing(**{k: self.float_(self.field(m, k, path + "."), f"{path}.{k}", 0.0) for k in TIMING_KEYS})


def _depth(obj: Any) -> int:
    if isinstance(obj, dict):
        return 1 + max((_depth(v) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((_depth(v) for v in obj), default=0)
    return 0


def _as_memoryview(f: Any) -> memoryview:
    buf = getattr(f, "buffer", None)  # zmq.Frame
    mv = buf if isinstance(buf, memoryview) else memoryview(f)
    return mv.cast("B") if (mv.format != "B" or mv.ndim != 1) else mv


def _image_codec() -> Any:
    from bridge import image_codec  # Pillow, needed only by sessions that use a lossy image

    return image_codec


def _chunk_jobs(b: Buffer, data: memoryview | None) -> list[tuple[memoryview, int, int, str, EarlyChunk | None]]:
    """Each chunk of a chunked payload (section 6.3.2), or of a streamed buffer's ``pieces`` (section 6.3.5): its
    compressed bytes, where its raw bytes start in the buffer, the raw length it must decompress to, its path, and
    what was decompressed of it ahead (or None)."""
    assert b.chunks is not None and b.chunk_bytes is not None
    jobs = []
    start = 0
    for i, n in enumerate(b.chunks):
        raw = min(b.chunk_bytes, b.size - i * b.chunk_bytes)
        if b.pieces is not None:
            piece, ahead = b.pieces[i], b.early[i] if b.early is not None else None
        else:
            assert data is not None
            piece, ahead = data[start:start + n], None
        jobs.append((piece, i * b.chunk_bytes, raw, f"{b.name}: chunks[{i}]", ahead))
        start += n
    return jobs


def _check_chunk_sum(b: Buffer, data: memoryview) -> None:
    """Section 6.3.2 step 4: the chunk table must add up to the payload frame, checked before decompressing."""
    if b.chunks is not None and sum(b.chunks) != len(data):
        _fail(ErrorCode.PAYLOAD_MISMATCH, f"{b.name}: the chunks add up to {sum(b.chunks)} bytes, the payload is "
                                          f"{len(data)}")


def _unfilter(b: Buffer, raw: bytes) -> bytes | memoryview:
    """One decompressed frame (the whole buffer or one chunk) with section 6.3.3's shuffle undone, if it has one."""
    texel = _texel(b)
    return unshuffle_bytes(raw, texel) if texel > 1 else raw


def _decompress(data: memoryview, method: str, size: int, path: str, shape: tuple[int, int] = (0, 0)) -> bytes:
    """Decompress one payload, checking the announced size before allocating (protocol section 6.3).
    ``shape`` (width, height) is what a lossy image must measure (section 6.3.1)."""
    try:
        if method in LOSSY_COMPRESSIONS:
            out = _image_codec().decode_image(data, *shape, path, method)
        elif method == "zstd":
            import zstandard

            announced = zstandard.frame_content_size(data)
            if announced != size:
                _fail(ErrorCode.PAYLOAD_MISMATCH, f"{path}: zstd frame announces {announced} bytes, need {size}")
            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=size, allow_extra_data=False)
        else:
            import lz4.frame

            announced = lz4.frame.get_frame_info(data).get("content_size", 0)
            if announced != size:
                _fail(ErrorCode.PAYLOAD_MISMATCH, f"{path}: lz4 frame announces {announced} bytes, need {size}")
            out, used = lz4.frame.decompress(data, return_bytes_read=True)
            if used != len(data):
                _fail(ErrorCode.PAYLOAD_MISMATCH, f"{path}: {len(data) - used} bytes after the lz4 frame")
    except ProtocolError:
        raise
    except Exception as exc:  # corrupt compressed stream: the library's own exception types vary
        _fail(ErrorCode.PAYLOAD_MISMATCH, f"{path}: cannot decompress {method}: {exc}")
    if len(out) != size:
        _fail(ErrorCode.PAYLOAD_MISMATCH, f"{path}: decompressed to {len(out)} bytes, need {size}")
    return bytes(out)


def parse_header(frame0: Any) -> dict[str, Any]:
    """Steps 1-2 of the decoding algorithm: the header frame as a checked msgpack map."""
    raw = _as_memoryview(frame0)
    if len(raw) > MAX_HEADER_BYTES:
        _fail(ErrorCode.LIMIT_EXCEEDED, f"header is {len(raw)} bytes, more than {MAX_HEADER_BYTES}")
    try:
        h = msgpack.unpackb(raw, raw=False, strict_map_key=False, use_list=True, object_pairs_hook=_unique_map)
    except Exception as exc:  # msgpack raises ValueError, ExtraData, UnicodeDecodeError, FormatError, ...
        _fail(ErrorCode.MALFORMED, f"header is not valid msgpack: {type(exc).__name__}: {exc}")
    _check_tree(h, 1, "header")
    if not isinstance(h, dict):
        _fail(ErrorCode.MALFORMED, "header is not a msgpack map")
    return h


def decode(
    frames: Sequence[Any],
    *,
    compression: Collection[str] = COMPRESSIONS,
    shm_pool: ShmPool | None = None,
) -> Message:
    """Decode one multipart message (protocol section 9.1), or raise ``ProtocolError``.

    ``compression`` lists the methods negotiated for this session; ``shm_pool`` is the session's pool, without
    which a shared-memory reference is rejected. Raw payloads are returned as views of ``frames``.
    """
    if len(frames) == 0:
        _fail(ErrorCode.MALFORMED, "message has no frames")
    return message_from_header(parse_header(frames[0]), frames[1:], compression=compression, shm_pool=shm_pool)


def message_from_header(
    h: dict[str, Any],
    payloads: Sequence[Any],
    *,
    compression: Collection[str] = COMPRESSIONS,
    shm_pool: ShmPool | None = None,
    raw_payloads: bool = False,
    max_frame_bytes: int | None = None,
    defer_decompression: bool = False,
) -> Message:
    """Steps 3-8 of the decoding algorithm on an already parsed header map.

    With ``raw_payloads`` the payloads are taken as already decompressed pixels (building a message to send
    from a description, as the test vectors do) instead of as wire frames. ``max_frame_bytes`` is a renderer's
    budget for one FRAME (WELCOME ``limits.frame_bytes``, section 11.1): a FRAME whose buffers add up to more is
    ``LIMIT_EXCEEDED`` after its header checks and before any payload is looked at or decompressed.
    ``defer_decompression`` leaves compressed payloads compressed (``Buffer.compressed``) for ``inflate`` to
    decompress later, on another thread (their announced sizes are still checked then, section 6.3).
    """
    r = _Reader(compression, shm_pool)
    version = r.uint(r.field(h, "nrb", ""), "nrb")
    kind = r.str_(r.field(h, "type", ""), "type")
    if kind not in MESSAGE_TYPES:
        _fail(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}")
    if kind != "HELLO" and version != PROTOCOL_VERSION:
        _fail(ErrorCode.VERSION_UNSUPPORTED, f"protocol version {version} is not supported (this side speaks 1)")
    mu = r.field(h, "must_understand", "", required=False)
    if mu is not None:
        known = set(KEYS[kind]) | set(_COMMON_KEYS)
        for i, name in enumerate(r.array(mu, "must_understand", MAX_LIST)):
            r.str_(name, f"must_understand[{i}]")
            if name not in known:
                _fail(ErrorCode.UNKNOWN_REQUIRED, f"key {name!r} must be understood but is not part of NRB/1")
    msg = _PARSERS[kind](r, h, version)
    if max_frame_bytes is not None and isinstance(msg, Frame):
        total = sum(b.size for b in msg.buffers)
        if total > max_frame_bytes:
            _fail(ErrorCode.LIMIT_EXCEEDED, f"buffers: {total} bytes in all, more than this session's budget of "
                                            f"{max_frame_bytes} bytes per frame (WELCOME limits.frame_bytes)")
    _attach_payloads(msg, payloads, raw_payloads, defer_decompression)
    return msg


def inflate(buffers: Sequence[Buffer], pool: Executor | None = None) -> float:
    """Decompress the buffers a ``defer_decompression`` decode left compressed; return the milliseconds it took.
    A corrupt payload or a wrong length raises ``ProtocolError`` ``PAYLOAD_MISMATCH`` naming the buffer (and the
    chunk). With ``pool``, every chunk of every chunked buffer is decompressed on it at once (section 6.3.2; the
    codecs release the GIL); the first failing chunk in buffer order is the error. A streamed FRAME buffer's chunks
    (``pieces``, section 6.3.5) are used where they were decompressed ahead (``early``: waited for, and taken when
    they hold exactly the chunk's raw size in the buffer's codec); the others are decompressed here."""
    t0 = time.perf_counter()
    chunked = [b for b in buffers if b.compression is not None and b.chunks
               and (b.compressed is not None or b.pieces is not None)]
    if chunked:
        jobs = [(b, j) for b in chunked for j in _chunk_jobs(b, b.compressed)]

        # each chunk decompresses (and unshuffles) straight into its range of its buffer's one output array
        wholes = {id(b): np.empty(b.size, np.uint8) for b in chunked}

        def one(job: tuple[Buffer, tuple[memoryview, int, int, str, EarlyChunk | None]]) -> ProtocolError | None:
            b, (piece, start, raw, path, ahead) = job
            plain: bytes | None = None
            if ahead is not None:
                # submitted when its PART arrived, before any job of this frame: the pool's queue is in order, so
                # it is running or done, never waiting behind this job
                try:
                    plain = ahead.future.result()
                except BaseException:  # noqa: BLE001 - cancelled or failed: decompressed below, with the checks
                    plain = None
                if plain is not None and (ahead.method != b.compression or len(plain) != raw):
                    plain = None
            try:
                if plain is None:
                    plain = _decompress(piece, b.compression or "", raw, path)
            except ProtocolError as exc:
                return exc
            dst = wholes[id(b)][start:start + raw]
            texel = _texel(b)
            if texel > 1:
                unshuffle_bytes(plain, texel, dst)
            else:
                dst[:] = np.frombuffer(plain, np.uint8)
            return None

        outs = list(pool.map(one, jobs)) if pool is not None and len(jobs) > 1 else [one(j) for j in jobs]
        for out in outs:
            if out is not None:
                raise out
        for b in chunked:
            whole = wholes[id(b)]
            whole.flags.writeable = False  # read-only, as the bytes it replaces
            b.data = whole.data
            b.compressed = None
            b.pieces = None
            b.early = None
    for b in buffers:
        if b.compressed is not None and b.compression is not None:
            b.data = _unfilter(b, _decompress(b.compressed, b.compression, b.size, b.name, (b.width, b.height)))
            b.compressed = None
    return (time.perf_counter() - t0) * 1e3


def _attach_payloads(msg: Message, payloads: Sequence[Any], raw: bool, defer: bool = False) -> None:
    if isinstance(msg, Part):  # section 5.12: exactly one payload, the chunk as it travels (never decompressed here)
        if len(payloads) != 1:
            _fail(ErrorCode.MALFORMED, f"{len(payloads)} payload frames for a PART (exactly 1)")
        data = _as_memoryview(payloads[0])
        if not len(data):
            _fail(ErrorCode.BAD_VALUE, f"PART {msg.buffer}: chunks[{msg.index}] is empty")
        if len(data) > MAX_CHUNK_WIRE_BYTES:
            _fail(ErrorCode.LIMIT_EXCEEDED, f"PART {msg.buffer}: chunks[{msg.index}] is {len(data)} bytes, more "
                                            "than 2^31")
        msg.data = data
        return
    inline = _payload_buffers(msg)
    if len(payloads) != len(inline):
        _fail(ErrorCode.MALFORMED, f"{len(payloads)} payload frames for {len(inline)} inline buffers")
    for b, f in zip(inline, payloads):
        data = _as_memoryview(f)
        if not raw:
            _check_chunk_sum(b, data)
        if b.compression is not None and not raw and (defer or b.chunks):
            b.compressed = data
            if not defer:
                inflate([b])
        elif b.compression is not None and not raw:
            b.data = _unfilter(b, _decompress(data, b.compression, b.size, b.name, (b.width, b.height)))
        elif len(data) != b.size:
            _fail(ErrorCode.PAYLOAD_MISMATCH, f"{b.name}: payload is {len(data)} bytes, stride × height = {b.size}")
        else:
            b.data = data


def _parse_hello(r: _Reader, h: dict[str, Any], version: int) -> Hello:
    f = r.field
    minv = r.uint(f(h, "min_version", ""), "min_version")
    if minv > version:
        _fail(ErrorCode.BAD_VALUE, f"min_version {minv} is above nrb {version}")
    if not minv <= PROTOCOL_VERSION <= version:
        _fail(ErrorCode.VERSION_UNSUPPORTED, f"engine speaks {minv}..{version}, this side speaks 1")
    engine = r.str_(f(h, "engine", ""), "engine")
    engine_version = r.str_(f(h, "engine_version", ""), "engine_version")
    client = r.str_(f(h, "client", ""), "client")
    caps = r.str_list(f(h, "capabilities", ""), "capabilities")
    render_size = r.size(f(h, "render_size", ""), "render_size")
    output_size = r.size(f(h, "output_size", ""), "output_size")
    buffers = r.bufspecs(f(h, "buffers", ""), "buffers")
    shm_v = f(h, "shm", "", required=False)
    shm = r.shmpool(shm_v, "shm") if shm_v is not None else None
    bell_v = f(h, "doorbell", "", required=False)
    bell = r.doorbell(bell_v, "doorbell") if bell_v is not None else None
    ticket_v = f(h, "ticket", "", required=False)
    ticket = r.str_(ticket_v, "ticket", MAX_TICKET_BYTES, nonempty=True) if ticket_v is not None else None
    ren_v = f(h, "renderer", "", required=False)
    renderer = r.str_(ren_v, "renderer", nonempty=True) if ren_v is not None else None
    lossy_v = f(h, "lossy_output", "", required=False)
    lossy = None
    if lossy_v is not None:
        lm = r.map_(lossy_v, "lossy_output")
        codec = r.str_(f(lm, "codec", "lossy_output."), "lossy_output.codec", vocabulary=LOSSY_COMPRESSIONS)
        quality = r.uint(f(lm, "quality", "lossy_output."), "lossy_output.quality", 1, 100)
        lossy = LossyOutput(codec, quality)
    return Hello(engine, engine_version, client, caps, render_size, output_size, buffers, shm, minv, version, bell,
                 ticket, renderer, lossy)


def _parse_welcome(r: _Reader, h: dict[str, Any], version: int) -> Welcome:
    f = r.field
    session = r.uint(f(h, "session", ""), "session", 1)
    renderer = r.str_(f(h, "renderer", ""), "renderer")
    caps = r.str_list(f(h, "capabilities", ""), "capabilities")
    required = r.bufspecs(f(h, "required", ""), "required")
    optional = r.bufspecs(f(h, "optional", ""), "optional")
    om = r.map_(f(h, "output", ""), "output")
    name = r.str_(f(om, "name", "output."), "output.name", vocabulary=("output",))
    fmt = r.buffer_format(f(om, "format", "output."), "output.format")
    w = r.uint(f(om, "width", "output."), "output.width", 1, MAX_DIMENSION, limit=True)
    hh = r.uint(f(om, "height", "output."), "output.height", 1, MAX_DIMENSION, limit=True)
    mif = r.uint(f(h, "max_in_flight", ""), "max_in_flight", 1, MAX_IN_FLIGHT, limit=True)
    styles = r.str_list(f(h, "styles", ""), "styles")
    lim_v = f(h, "limits", "", required=False)
    limits = None
    if lim_v is not None:
        lm = r.map_(lim_v, "limits")
        limits = Limits(**{k: r.uint(f(lm, k, "limits."), f"limits.{k}", 1) for k in LIMIT_KEYS})
    red_v = f(h, "redirect", "", required=False)
    redirect = None
    if red_v is not None:
        rm = r.map_(red_v, "redirect")
        endpoint = r.str_(f(rm, "endpoint", "redirect."), "redirect.endpoint", MAX_ENDPOINT_BYTES, nonempty=True)
        if not endpoint.startswith(REDIRECT_SCHEMES):
            _fail(ErrorCode.BAD_VALUE, f"redirect.endpoint {endpoint[:64]!r} is not tcp://... or ipc://...")
        ticket = r.str_(f(rm, "ticket", "redirect."), "redirect.ticket", MAX_TICKET_BYTES, nonempty=True)
        redirect = Redirect(endpoint, ticket)
    return Welcome(session, renderer, caps, required, optional, OutputSpec(fmt, w, hh, name), mif, styles, version,
                   limits, redirect)


def _parse_frame(r: _Reader, h: dict[str, Any], version: int) -> Frame:
    f = r.field
    session = r.uint(f(h, "session", ""), "session")
    frame = r.uint(f(h, "frame", ""), "frame")
    time_ns = r.uint(f(h, "time_ns", ""), "time_ns")
    dt = r.float_(f(h, "dt", ""), "dt", 0.0, MAX_DT)
    deadline = r.float_(f(h, "deadline_ms", ""), "deadline_ms", 0.0, MAX_DEADLINE_MS, lo_open=True)
    cam_v = f(h, "camera", "", required=False)
    camera = r.camera(cam_v, "camera") if cam_v is not None else None
    buffers = r.bufdescs(f(h, "buffers", ""), "buffers")
    events = [r.event(x, f"events[{i}]") for i, x in enumerate(r.array(f(h, "events", ""), "events", MAX_EVENTS))]
    styles = [
        r.stylecmd(x, f"styles[{i}]")
        for i, x in enumerate(r.array(f(h, "styles", ""), "styles", MAX_STYLE_COMMANDS))
    ]
    ctl_v = f(h, "controls", "", required=False)
    controls = [] if ctl_v is None else [
        r.control(x, f"controls[{i}]") for i, x in enumerate(r.array(ctl_v, "controls", MAX_STYLE_COMMANDS))
    ]
    rs_v = f(h, "result_slot", "", required=False)
    result_slot = None
    if rs_v is not None:
        result_slot = r.uint(rs_v, "result_slot")
        if r.pool is None or result_slot >= r.pool.slots:
            _fail(ErrorCode.BAD_VALUE, f"result_slot {result_slot} is not a slot of a negotiated pool")
    return Frame(session, frame, time_ns, dt, deadline, buffers, events, styles, camera, result_slot, controls)


def _parse_result(r: _Reader, h: dict[str, Any], version: int) -> Result:
    f = r.field
    session = r.uint(f(h, "session", ""), "session")
    frame = r.uint(f(h, "frame", ""), "frame")
    status = r.str_(f(h, "status", ""), "status", vocabulary=("ok", "skipped"))
    out_v = f(h, "output", "", required=status == "ok")
    output = None
    if out_v is not None:
        if status != "ok":
            _fail(ErrorCode.BAD_VALUE, "a skipped RESULT carries no output")
        r.image = True  # a lossy codec is valid here only (section 6.3.1)
        output = r.bufdesc(out_v, "output")
        if output.name != "output":
            _fail(ErrorCode.BAD_VALUE, f"output.name={output.name!r} must be 'output'")
    timing = r.timing(f(h, "timing", ""), "timing")
    return Result(session, frame, status, timing, output)


def _parse_error(r: _Reader, h: dict[str, Any], version: int) -> Error:
    f = r.field
    code = r.uint(f(h, "code", ""), "code")
    name = r.str_(f(h, "name", ""), "name")
    message = r.str_(f(h, "message", ""), "message", MAX_ERROR_MESSAGE)
    s = f(h, "session", "", required=False)
    fr = f(h, "frame", "", required=False)
    return Error(code, name, message, None if s is None else r.uint(s, "session"),
                 None if fr is None else r.uint(fr, "frame"))


def _parse_ping(r: _Reader, h: dict[str, Any], version: int) -> Ping:
    return Ping(r.uint(r.field(h, "nonce", ""), "nonce"), r.uint(r.field(h, "time_ns", ""), "time_ns"))


def _parse_pong(r: _Reader, h: dict[str, Any], version: int) -> Pong:
    return Pong(r.uint(r.field(h, "nonce", ""), "nonce"), r.uint(r.field(h, "time_ns", ""), "time_ns"))


def _parse_bye(r: _Reader, h: dict[str, Any], version: int) -> Bye:
    s = r.field(h, "session", "", required=False)
    reason = r.field(h, "reason", "", required=False)
    return Bye(None if s is None else r.uint(s, "session"), None if reason is None else r.str_(reason, "reason"))


def _parse_part(r: _Reader, h: dict[str, Any], version: int) -> Part:
    f = r.field
    session = r.uint(f(h, "session", ""), "session")
    frame = r.uint(f(h, "frame", ""), "frame")
    buffer = r.buffer_name(f(h, "buffer", ""), "buffer")
    index = r.uint(f(h, "index", ""), "index", 0, MAX_CHUNKS - 1, limit=True)
    # section 5.12: the RESULT's output where streamed_output was negotiated, a FRAME buffer where streamed_frames was
    need = STREAMED_OUTPUT if buffer == "output" else STREAMED_FRAMES
    if need not in r.compression:
        _fail(ErrorCode.BAD_VALUE, f"PART of {buffer!r}: {need} was not negotiated")
    return Part(session, frame, buffer, index)


_PARSERS: dict[str, Callable[[_Reader, dict[str, Any], int], Any]] = {
    "HELLO": _parse_hello, "WELCOME": _parse_welcome, "FRAME": _parse_frame, "RESULT": _parse_result,
    "ERROR": _parse_error, "PING": _parse_ping, "PONG": _parse_pong, "BYE": _parse_bye, "PART": _parse_part,
}
