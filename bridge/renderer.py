"""The renderer interface, the inputs a renderer sees, and the registry behind ``nrb serve --renderer``.

A renderer turns one frame's G-buffers plus a per-pixel style map into an image. It knows nothing of sockets,
sessions or the wire format: the server decodes the frame, builds the style map (``bridge.style``) and hands both
over, so the same renderer runs live, in ``nrb replay`` and in tests.

Output contract of ``Renderer.render``: an (H, W, 4) or (H, W, 3) array of the size ``output_size`` announced, either

* ``uint8``: display-referred, **sRGB-encoded** colour (alpha linear), sent as is; or
* ``float32`` (or float16/float64): **linear** RGB(A), finite; the server sRGB-encodes it (or sends it as rgba16f
  when the renderer's ``output_format`` is ``rgba16f``).

Anything else (wrong shape, dtype, NaN) is "bad output": the server answers that frame with RENDER_FAILED.

A renderer instance belongs to one session (the server calls the factory once per HELLO), so temporal history may
live in the instance or in ``RenderInputs.history``; ``reset()`` is called when the engine signals a cut
(camera ``reset``). Factories should share heavy, read-only resources (weights, ONNX sessions) between instances.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import importlib.util
import json
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bridge.protocol import FORMATS, LIGHTING_CONSTANTS, Buffer, BufferSpec, Camera
from bridge.style.library import DEFAULT_LIBRARY, StyleLibrary

# ------------------------------------------------------------------------------------------------ colour helpers

def _srgb_table() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_SRGB_TO_LINEAR = _srgb_table()


def srgb8_to_linear(arr: np.ndarray) -> np.ndarray:
    """uint8 sRGB → float32 linear, via an exact 256-entry table."""
    return _SRGB_TO_LINEAR[arr]


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """float linear → float sRGB-encoded (clamped to 0..1)."""
    x = np.clip(x, 0.0, 1.0, dtype=np.float32)
    return np.where(x <= 0.0031308, x * np.float32(12.92), np.float32(1.055) * x ** np.float32(1 / 2.4) - 0.055)


def to_srgb8(x: np.ndarray) -> np.ndarray:
    """float sRGB-encoded 0..1 → uint8 (round to nearest)."""
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------- inputs

#: Buffers that can stand in for a missing one: name → [(source buffer, channel slice)].
DERIVED: dict[str, list[tuple[str, slice]]] = {
    "normals": [("normal_roughness", slice(0, 3)), ("normals_oct", slice(0, 2))],
    "roughness": [("normal_roughness", slice(3, 4)), ("roughness_metallic", slice(0, 1))],
    "metallic": [("roughness_metallic", slice(1, 2))],
}

#: The format a renderer usually asks for, per buffer name (protocol section 6.1).
USUAL_FORMAT: dict[str, str] = {
    "depth": "r32f", "linear_depth": "r32f", "motion_vectors": "rg16f", "hudless_color": "rgba8_srgb",
    "scaling_input_color": "rgba16f", "normals": "rgba16f", "roughness": "r8", "normal_roughness": "rgba16f",
    "albedo": "rgba8_srgb", "specular_albedo": "rgba8", "emissive": "rgba16f", "exposure": "r32f",
    "position": "rgba32f", "alpha": "r8", "opaque_color": "rgba16f", "metallic": "r8", "roughness_metallic": "rg8",
    "normals_oct": "rg16f", "material_id": "r16u", "object_id": "r16u",
    **{name: "rgba32f" for name in LIGHTING_CONSTANTS},  # 1x1 per-frame constants
}

_NORMAL_NAMES = {"normals", "normal_roughness"}


def available(name: str, offered: Mapping[str, Any] | set[str] | list[str]) -> bool:
    """Whether buffer ``name`` is offered directly or can be derived from an offered one (see ``DERIVED``)."""
    return name in offered or any(src in offered for src, _ in DERIVED.get(name, []))


def _oct_decode(e: np.ndarray) -> np.ndarray:
    """Octahedral-encoded (rg in [-1, 1]) → unit normals (xyz)."""
    x, y = e[..., 0], e[..., 1]
    z = 1.0 - np.abs(x) - np.abs(y)
    t = np.clip(-z, 0.0, None)
    x = x - np.where(x >= 0, t, -t)
    y = y - np.where(y >= 0, t, -t)
    n = np.stack([x, y, z], axis=-1)
    return (n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)).astype(np.float32)


class RenderInputs(Mapping[str, np.ndarray]):
    """A frame as a renderer sees it: ``inputs["albedo"]`` is a float32 (H, W, C) array, converted lazily and cached.

    Conversions: unorm8 formats → 0..1; ``*_srgb`` → linear RGB (alpha 0..1); float16 → float32; r16u/r32u →
    float32 (use ``ids()`` for exact ids); ``normals`` in rgba8 → [-1, 1]. ``normals``, ``roughness`` and
    ``metallic`` are derived from ``normal_roughness`` / ``normals_oct`` / ``roughness_metallic`` when not sent.
    ``raw(name)`` is the zero-copy view of the wire bytes.
    """

    def __init__(self, buffers: Mapping[str, Buffer], *, size: tuple[int, int], camera: Camera | None = None,
                 time: float = 0.0, dt: float = 0.0, frame: int = 0, history: dict[str, Any] | None = None,
                 style_table: np.ndarray | None = None) -> None:
        self.buffers = dict(buffers)
        #: (S, P) the server's style table (``StyleLibrary.shading_table()``: one row of shading parameters per
        #: style, presets first, then styles the game defined), for a renderer with ``style_params`` = True, whose
        #: style map then has those S columns; None: the style map's columns are the renderer's presets
        self.style_table = style_table
        self.size = size
        self.camera = camera
        self.time = time
        self.dt = dt
        self.frame = frame
        self.history: dict[str, Any] = {} if history is None else history
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, tuple[str, np.ndarray]], **kw: Any) -> RenderInputs:
        """Build inputs from ``{name: (format, array)}`` (tests, offline tools)."""
        bufs = {n: Buffer.from_array(n, f, a) for n, (f, a) in arrays.items()}
        first = next(iter(bufs.values()))
        kw.setdefault("size", (first.width, first.height))
        return cls(bufs, **kw)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._cache:
            return self._cache[name]
        if name in self.buffers:
            out = self._convert(self.buffers[name])
        else:
            for src, channels in DERIVED.get(name, []):
                if src in self.buffers:
                    out = self._convert(self.buffers[src])[..., channels]
                    if src == "normals_oct":
                        out = _oct_decode(out)
                    break
            else:
                raise KeyError(f"buffer {name!r} was not sent (sent: {', '.join(self.buffers) or 'none'})")
        self._cache[name] = out
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and available(name, self.buffers)

    def __iter__(self) -> Iterator[str]:
        return iter(self.buffers)

    def __len__(self) -> int:
        return len(self.buffers)

    def constant(self, name: str, channels: int) -> np.ndarray | None:
        """A per-frame constant sent as a 1x1 buffer (e.g. ``x_sun_direction``): its first ``channels`` values as
        float32, or None when not sent. Raises ValueError when the buffer is not 1x1, has too few channels or
        holds a non-finite value (the server then answers RENDER_FAILED and keeps serving)."""
        if name not in self.buffers:
            return None
        b = self.buffers[name]
        v = self[name]
        if (b.width, b.height) != (1, 1) or v.shape[-1] < channels:
            raise ValueError(f"{name} must be a 1x1 buffer with at least {channels} channels, got "
                             f"{b.width}x{b.height} {b.format}")
        out = np.asarray(v[0, 0, :channels], np.float32)
        if not np.isfinite(out).all():
            raise ValueError(f"{name} holds a non-finite value: {out.tolist()}")
        return out

    def raw(self, name: str) -> np.ndarray:
        """The buffer's pixels as sent: (H, W, C) view in the wire dtype, no conversion."""
        return self.buffers[name].array()

    def ids(self, name: str) -> np.ndarray | None:
        """An id buffer (``material_id`` / ``object_id``) as exact (H, W) integers, or None when not sent."""
        b = self.buffers.get(name)
        return None if b is None else b.array()[..., 0]

    def sky_mask(self) -> np.ndarray | None:
        """(H, W) bool: the pixels without geometry (the sky, protocol 6.5), or None when neither depth buffer was
        sent. ``depth`` at the far plane (1, or 0 when reversed) when sent; else ``linear_depth`` at the camera's
        ``far`` or beyond (or not finite). Renderers show the engine's ``albedo`` there, unlit (``composite_sky``)."""
        if "depth" in self.buffers:
            d = self["depth"][..., 0]
            return d <= 0.0 if self.depth_reversed() else d >= 1.0
        if "linear_depth" in self.buffers:
            z = self["linear_depth"][..., 0]
            far = self.camera.far if self.camera is not None and self.camera.far is not None else np.inf
            return ~np.isfinite(z) | (z >= np.float32(far))
        return None

    def depth_reversed(self) -> bool:
        """Whether ``depth`` is reversed-Z (protocol 6.4: the descriptor's ``depth_reversed`` when present wins,
        else the camera's ``depth_inverted``, else not reversed)."""
        b = self.buffers.get("depth")
        if b is not None and b.depth_reversed is not None:
            return b.depth_reversed
        return bool(self.camera and self.camera.depth_inverted)

    def linear_depth(self) -> np.ndarray:
        """(H, W) view distance: ``linear_depth`` if sent, else ``depth`` linearised with the camera's near/far
        (D3D-style [0, 1] depth, reversed and infinite variants), else the raw depth (monotonic, good enough for
        edge detection)."""
        if "linear_depth" in self.buffers:
            return self["linear_depth"][..., 0]
        d = self["depth"][..., 0].astype(np.float64)
        cam = self.camera
        if cam is None or cam.near is None:
            return d.astype(np.float32)
        n = cam.near
        f = cam.far if cam.far is not None else float("inf")
        infinite = bool(cam.depth_infinite) or not np.isfinite(f)
        if self.depth_reversed():
            z = n / np.maximum(d, 1e-12) if infinite else n * f / (n + d * (f - n))
        else:
            z = n / np.maximum(1.0 - d, 1e-12) if infinite else n * f / np.maximum(f - d * (f - n), 1e-12)
        return z.astype(np.float32)

    @staticmethod
    def _convert(b: Buffer) -> np.ndarray:
        a = b.array()
        if b.format == "rgba8_srgb":
            out = np.empty(a.shape, np.float32)
            out[..., :3] = srgb8_to_linear(a[..., :3])
            out[..., 3] = a[..., 3] * np.float32(1 / 255)
            return out
        info = FORMATS[b.format]
        if info.dtype == np.uint8:
            out = a.astype(np.float32) * np.float32(1 / 255)
            if b.name in _NORMAL_NAMES:
                out[..., :3] = out[..., :3] * 2.0 - 1.0
            return out
        return a.astype(np.float32)


def composite_sky(image: np.ndarray, inputs: RenderInputs) -> np.ndarray:
    """Show the engine's sky where there is no geometry (protocol 6.5): the pixels of ``inputs.sky_mask()`` take
    the ``albedo`` colour, unlit, in ``image`` (uint8 sRGB (H, W, 3|4), or float linear), in place; returned for
    chaining. An output larger than the render size by an integer factor (an upscaler) takes each mask pixel's
    block. A learned renderer has seen little sky: left to itself it paints it in colours of its own."""
    mask = inputs.sky_mask()
    if mask is None or not mask.any() or "albedo" not in inputs:
        return image
    fy, fx = image.shape[0] // mask.shape[0], image.shape[1] // mask.shape[1]
    if fy < 1 or fx < 1 or (image.shape[0], image.shape[1]) != (mask.shape[0] * fy, mask.shape[1] * fx):
        raise ValueError(f"image {image.shape[1]}x{image.shape[0]} is not a multiple of the render size "
                         f"{mask.shape[1]}x{mask.shape[0]}")
    # This runs on every frame of the neural fast path, so the usual case (sRGB albedo into a uint8 RGBA image of
    # the render size) moves whole pixels as uint32 under the mask, byte for byte; anything else converts only the
    # sky pixels, through linear light.
    albedo = inputs.buffers.get("albedo")
    srgb = image.dtype == np.uint8 and albedo is not None and albedo.format == "rgba8_srgb"
    if srgb and image.shape[2] == 4 and image.strides[1:] == (4, 1):
        raw = inputs.raw("albedo")
        if raw.strides[1:] == (4, 1):
            src, where = raw.view(np.uint32)[..., 0], mask
            if (fy, fx) != (1, 1):  # an upscaler: each render pixel's block
                src = np.repeat(np.repeat(src, fy, axis=0), fx, axis=1)
                where = np.repeat(np.repeat(mask, fy, axis=0), fx, axis=1)
            keep_alpha = image[..., 3].copy()  # the image's alpha stays; only colour comes from the sky
            np.copyto(image.view(np.uint32)[..., 0], src, where=where)
            image[..., 3] = keep_alpha
            return image
    ys, xs = np.nonzero(mask)
    if srgb:
        colour = inputs.raw("albedo")[ys, xs, :3]
    else:
        sky = inputs["albedo"][ys, xs, :3]
        colour = to_srgb8(linear_to_srgb(sky)) if image.dtype == np.uint8 else sky.astype(image.dtype)
    if (fy, fx) == (1, 1):
        image[ys, xs, :3] = colour
    else:
        for dy in range(fy):
            for dx in range(fx):
                image[ys * fy + dy, xs * fx + dx, :3] = colour
    return image


# -------------------------------------------------------------------------------------------------- interface


class Renderer(abc.ABC):
    """What ``nrb serve`` needs from a renderer. Subclass it and implement ``render`` (and usually ``required``).

    Class attributes: ``name`` and ``version`` (announced in WELCOME as ``name/version``), ``output_format`` (the
    RESULT format: ``rgba8_srgb`` or ``rgba16f``), ``library`` (the styles whose weights the style map carries).
    """

    name: str = "renderer"
    version: str = "0.1.0"
    output_format: str = "rgba8_srgb"
    library: StyleLibrary = DEFAULT_LIBRARY
    #: True for a renderer that draws any style from its parameters (a parameter-conditioned neural model, issue
    #: 17): the server then hands it the style map over *every* style, presets and styles a game defined, with
    #: ``RenderInputs.style_table`` saying each one's parameters. False: the style map is over ``library`` only
    #: (a defined style's weight goes to its base preset).
    style_params: bool = False
    #: where it runs (``cpu``, ``cuda:0``): a GPU device is part of ``label``, since its images differ slightly
    device: str = "cpu"
    #: one line on which device it runs and why (``nrb serve`` prints it at startup), for renderers that choose
    device_description: str | None = None

    def required(self) -> list[BufferSpec]:
        """Buffers needed on every frame (a HELLO that cannot provide them is refused)."""
        return []

    def optional(self) -> list[BufferSpec]:
        """Buffers used when present (``material_id`` / ``object_id`` make per-object styles possible)."""
        return []

    def check_offer(self, offered: Mapping[str, str]) -> str | None:
        """Why the engine's offered buffers (name → format) are not enough, or None. Default: all ``required``."""
        missing = [s.name for s in self.required() if not available(s.name, offered)]
        return f"renderer {self.name!r} needs buffers {missing}, which the engine does not offer" if missing else None

    def output_size(self, render_size: tuple[int, int], requested: tuple[int, int]) -> tuple[int, int]:
        """The (width, height) this renderer returns for G-buffers of ``render_size`` when the engine asked for
        ``requested``. Default: the render size (no upscaling); an upscaling renderer returns ``requested``."""
        return render_size

    @abc.abstractmethod
    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        """Render one frame. ``style_map`` is (H, W, len(library)) float32, rows summing to 1. See the module
        docstring for the output contract."""

    def reset(self) -> None:  # noqa: B027 - a no-op default is the point
        """Forget temporal history (camera cut, new session state)."""

    @property
    def label(self) -> str:
        """``name/version`` as announced in WELCOME, ``name/version@cuda:N`` when it runs on a GPU."""
        return f"{self.name}/{self.version}" + ("" if self.device == "cpu" else f"@{self.device}")


RendererFactory = Callable[..., Renderer]

#: NAME → factory, or "module:attr" string resolved on first use (so registering does not import heavy modules).
RENDERERS: dict[str, RendererFactory | str] = {
    "passthrough": "bridge.renderers.passthrough:PassthroughRenderer",
    "deferred": "bridge.renderers.deferred:DeferredRenderer",
    "neural": "bridge.renderers.neural:factory",
}
#: What renders a ``path.onnx`` spec.
ONNX_RENDERER = "bridge.renderers.onnx_renderer:OnnxRenderer"


def register_renderer(name: str, factory: RendererFactory | str) -> None:
    """Make ``nrb serve --renderer NAME`` work; ``factory`` is a callable returning a Renderer or a lazy
    ``"module:attr"`` string, resolved on first use (the shipped renderers are listed this way in ``RENDERERS``)."""
    RENDERERS[name] = factory


def _resolve(ref: str) -> RendererFactory:
    module_name, _, attr = ref.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"renderer spec {ref!r} is not module:factory")
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise ValueError(f"renderer module file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"nrb_renderer_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"cannot import renderer module {module_name!r}: {exc}") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(factory):
        raise ValueError(f"{ref} is not callable")
    return factory


def renderer_factory(spec: str, **options: Any) -> Callable[[], Renderer]:
    """A zero-argument factory for ``spec`` = ``NAME`` | ``path.onnx`` | ``module:factory`` |
    ``path/file.py:factory``; ``options`` are passed to the factory as keyword arguments.

    Resolving happens now, so a bad spec fails at startup with a ``ValueError`` that says why.
    """
    factory: RendererFactory
    if spec.endswith(".onnx"):
        if not Path(spec).is_file():
            raise ValueError(f"ONNX model {spec} does not exist")
        onnx_renderer = _resolve(ONNX_RENDERER)  # by name, like RENDERERS: this module imports no renderer

        def factory(**kw: Any) -> Renderer:
            return onnx_renderer(spec, **kw)
    elif spec in RENDERERS:
        entry = RENDERERS[spec]
        factory = _resolve(entry) if isinstance(entry, str) else entry
    elif ":" in spec:
        factory = _resolve(spec)
    else:
        raise ValueError(f"unknown renderer {spec!r}: use one of {', '.join(sorted(RENDERERS))}, "
                         "a path ending in .onnx, or module:factory")

    def make() -> Renderer:
        r = factory(**options)
        if not isinstance(r, Renderer):
            raise TypeError(f"renderer factory for {spec!r} returned {type(r).__name__}, not a bridge.Renderer")
        return r

    return make


def load_renderer(spec: str, **options: Any) -> Renderer:
    """One renderer instance for ``spec`` (see ``renderer_factory``)."""
    return renderer_factory(spec, **options)()


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["light_dir=[0,1,0]", "ambient=0.2", "name=x"]`` → kwargs; values are JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"renderer option {pair!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------------- output


class BadOutput(Exception):
    """A renderer returned something that is not an image of the announced size (answered as RENDER_FAILED)."""


def image_to_output(image: Any, format: str, size: tuple[int, int]) -> np.ndarray:
    """Validate a renderer's image (see the module docstring) and convert it to (H, W, 4) pixels of ``format``
    (``rgba8_srgb``/``rgba8``: uint8 sRGB; ``rgba16f``: float16 linear). Raises ``BadOutput``."""
    w, h = size
    if not isinstance(image, np.ndarray):
        raise BadOutput(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise BadOutput(f"expected shape (H, W, 3|4), got {image.shape}")
    if image.shape[:2] != (h, w):
        raise BadOutput(f"image is {image.shape[1]}x{image.shape[0]}, expected {w}x{h}")
    has_alpha = image.shape[2] == 4
    if image.dtype == np.uint8:
        if format == "rgba16f":
            out = np.empty((h, w, 4), np.float16)
            out[..., :3] = srgb8_to_linear(image[..., :3])
            out[..., 3] = image[..., 3] / 255.0 if has_alpha else 1.0
            return out
        if has_alpha:
            return np.ascontiguousarray(image)
        out8 = np.empty((h, w, 4), np.uint8)
        out8[..., :3] = image
        out8[..., 3] = 255
        return out8
    if image.dtype.kind != "f":
        raise BadOutput(f"image dtype {image.dtype} is neither uint8 (sRGB) nor float (linear)")
    if not np.isfinite(image).all():
        raise BadOutput("image contains NaN or infinity")
    if format == "rgba16f":
        out = np.empty((h, w, 4), np.float16)
        out[..., :3] = image[..., :3]
        out[..., 3] = image[..., 3] if has_alpha else 1.0
        return out
    out8 = np.empty((h, w, 4), np.uint8)
    out8[..., :3] = to_srgb8(linear_to_srgb(image[..., :3].astype(np.float32)))
    out8[..., 3] = to_srgb8(image[..., 3]) if has_alpha else 255
    return out8


def display_rgba8(pixels: np.ndarray) -> np.ndarray:
    """Output pixels of any output format as uint8 sRGB RGBA, for PNGs and videos."""
    if pixels.dtype == np.uint8:
        return pixels
    out = np.empty(pixels.shape[:2] + (4,), np.uint8)
    out[..., :3] = to_srgb8(linear_to_srgb(pixels[..., :3].astype(np.float32)))
    out[..., 3] = to_srgb8(pixels[..., 3].astype(np.float32))
    return out


# ------------------------------------------------------------------------------------------------- render workers
_WORKER = threading.local()


@contextlib.contextmanager
def worker_context(index: int, threads: int) -> Iterator[None]:
    """Mark the calling thread as ``nrb serve``'s render worker ``index`` with a budget of ``threads`` renderer
    threads (``set_worker_threads`` changes it frame by frame; the budgets of the busy workers sum to at most the
    machine's cores). Renderers that run a thread pool of their own (ONNX Runtime) size it from
    ``current_worker()`` at each render and keep one instance of it per (worker, budget)."""
    _WORKER.slot = (int(index), max(1, int(threads)))
    try:
        yield
    finally:
        _WORKER.slot = None


def set_worker_threads(threads: int) -> None:
    """Set the calling render worker's thread budget for the frame it is about to render (``nrb serve`` does so
    per frame: all the cores for a lone busy session, a share when several sessions render at once). No effect
    outside a worker."""
    slot: tuple[int, int] | None = getattr(_WORKER, "slot", None)
    if slot is not None:
        _WORKER.slot = (slot[0], max(1, int(threads)))


def count_inference(ms: float) -> None:
    """Count ``ms`` of model inference (a model runtime's own call, e.g. ONNX Runtime's ``session.run``) against
    the frame the calling thread is rendering. ``nrb serve`` reads it per frame (``take_inference_ms``), so that a
    frame's time splits into the model's and the server's own (the part issue 14 holds under 5 %) on the same frame,
    where a comparison with the model timed alone at another moment would also measure the machine's drift."""
    _WORKER.inference_ms = getattr(_WORKER, "inference_ms", 0.0) + float(ms)
    _WORKER.inference_counted = True


def take_inference_ms() -> float | None:
    """The inference time counted on the calling thread since the last call (``count_inference``), and start
    again; None when nothing counted any (a renderer without a model: passthrough, deferred)."""
    counted = getattr(_WORKER, "inference_counted", False)
    ms = float(getattr(_WORKER, "inference_ms", 0.0))
    _WORKER.inference_ms, _WORKER.inference_counted = 0.0, False
    return ms if counted else None


def current_worker() -> tuple[int, int] | None:
    """(worker index, thread budget for the current frame) of the render worker calling, or None outside one."""
    slot: tuple[int, int] | None = getattr(_WORKER, "slot", None)
    return slot
