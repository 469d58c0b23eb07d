"""The ``neural`` renderer: the shipped style-conditioned network, on ONNX Runtime, with a temporal path.

It runs ``neural_renderer/weights/default_temporal.onnx`` or its int8 copy (``precision`` below; see
``neural_renderer.export`` for the graph contract): each frame feeds the G-buffers, the style map, the motion vectors and the previous frame's output
and depth, which the graph reprojects and masks by a depth test before the network sees them. Without motion
vectors, after a ``reset()`` (camera cut) or when the size changes, the history inputs are zeros, which the
network was trained to read as "no history". History lives in the instance: one instance per session (see
``bridge.renderer``).

The default graph takes the G-buffers in their wire formats (``nrb_inputs`` = ``wire`` in its metadata, see
``neural_renderer.export``): the renderer hands ONNX Runtime zero-copy views of the frame's bytes and gets the
RESULT's uint8 RGBA back, converting in numpy only a buffer an engine sent in another format than the graph
takes. Float-input graphs (``default.onnx``, models exported before) run too, converted in numpy as before.
``precision`` picks between a graph and its int8 copy (``neural_renderer.quantize``, next to it as
``NAME_int8.onnx``): ``fp32``, ``int8`` (the quantized copy, which passed its FLIP guard) or ``auto`` (int8 when its
quantize step measured it faster than fp32 on a CPU and this renderer runs on one, else fp32); ``auto`` is the
default for the shipped model, ``fp32`` for a model named with ``model``.

Buffers: ``albedo``, ``normals`` and one of ``linear_depth`` / ``depth`` (linearised with the camera's
near/far) are required; ``roughness`` (default 0.5), ``metallic`` (0), ``emissive`` (0) and ``motion_vectors``
are used when sent, and so are the lighting constants ``x_sun_direction``, ``x_sun_irradiance`` and
``x_sky_radiance`` (1x1 buffers, docs/protocol.md 6.1) when the model has them among its inputs; a frame without
them gets the model's house lighting (``nrb_house_lighting`` in its metadata), the light it was trained under. Returns
display-referred sRGB uint8, as trained.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bridge.protocol import FORMATS, LIGHTING_CONSTANTS, BufferSpec
from bridge.renderer import Renderer, RenderInputs, available, current_worker, linear_to_srgb, to_srgb8
from bridge.renderers.engine_light import EngineLight
from bridge.renderers.ort_session import DeviceChoice, ModelSession, get_session, open_model, select_device
from bridge.style.library import SHADING_PARAMS

WEIGHTS = Path(__file__).resolve().parents[2] / "neural_renderer" / "weights"
DEFAULT_MODEL = WEIGHTS / "default_temporal.onnx"
#: The quantized copy of ``DEFAULT_MODEL`` (``python -m neural_renderer.quantize``), shipped when it passed its guard.
INT8_MODEL = WEIGHTS / "default_temporal_int8.onnx"
PRECISIONS = ("auto", "fp32", "int8")


def int8_copy(model: Path) -> Path:
    """Where ``python -m neural_renderer.quantize MODEL`` writes its int8 copy: ``MODEL`` with ``_int8`` before the
    suffix."""
    return model.with_name(model.stem + "_int8" + model.suffix)


def pick_precision(model: Path, precision: str = "auto", gpu: bool = False) -> Path:
    """The graph to run for ``model`` (an fp32 export) at ``precision``: ``fp32`` is ``model`` itself; ``int8`` its
    int8 copy (:func:`int8_copy`; raises ValueError when there is none or it was quantized from another fp32 graph
    than ``model``); ``auto`` the int8 copy when that one is valid and its quantize step measured it faster than
    fp32 (``nrb_int8_time_ratio`` < 1 in its metadata), else ``model``; always ``model`` for a ``gpu`` (the int8
    speed was measured on a CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return model
    ratio, why = _int8_status(model)
    if precision == "int8":
        if why:
            raise ValueError(f"precision=int8: {why}")
        return int8_copy(model)
    return int8_copy(model) if not why and ratio < 1.0 and not gpu else model


def default_model(precision: str = "auto", gpu: bool = False) -> Path:
    """The shipped graph for ``precision`` (:func:`pick_precision` of ``default_temporal.onnx``)."""
    return pick_precision(DEFAULT_MODEL, precision, gpu)


def _int8_status(model: Path) -> tuple[float, str]:
    """(int8/fp32 time ratio the quantize step of ``model``'s int8 copy recorded, why it cannot be used or "")."""
    import hashlib

    import onnx

    int8 = int8_copy(model)
    if not int8.is_file():
        return float("inf"), f"no int8 model at {int8} (python -m neural_renderer.quantize {model} writes it)"
    try:
        meta = {p.key: p.value for p in onnx.load(str(int8), load_external_data=False).metadata_props}
    except Exception as exc:  # unreadable: the fp32 graph runs
        return float("inf"), f"{int8} is unreadable: {exc}"
    if meta.get("nrb_source_sha256") != hashlib.sha256(model.read_bytes()).hexdigest():
        # a stale copy from an earlier model would render that model's weights next to this one's
        return float("inf"), (f"{int8.name} was quantized from another {model.name}; rerun "
                              f"python -m neural_renderer.quantize {model}")
    return float(meta.get("nrb_int8_time_ratio", "inf")), ""


#: dtype and channel count of a wire-graph input -> the protocol format it takes (``albedo``: rgba8_srgb)
_WIRE_FORMAT = {(np.dtype(i.dtype), i.channels): name for name, i in FORMATS.items()
                if name in ("rgba16f", "rg16f", "r32f", "r8")}
_ORT_DTYPE: dict[str, np.dtype[Any]] = {"tensor(uint8)": np.dtype(np.uint8), "tensor(float16)": np.dtype(np.float16),
              "tensor(float)": np.dtype(np.float32)}


def _session(path: Path, threads: int, worker: int = -1, device: DeviceChoice | None = None) -> ModelSession:
    """The ONNX Runtime session for (model, threads, render worker, device), from the cache every ONNX-backed
    renderer shares (``bridge.renderers.ort_session``: full graph optimisation, no busy-waiting threads)."""
    return get_session(path, threads=threads, worker=worker, device=device)


def _nchw(a: np.ndarray, channels: int) -> np.ndarray:
    return np.ascontiguousarray(a[..., :channels].transpose(2, 0, 1)[None], dtype=np.float32)


class NeuralRenderer(Renderer):
    """The shipped neural renderer. Options: ``model`` (path to a ``*_temporal.onnx`` or single-frame
    ``.onnx``),
    ``precision`` (``auto``, ``fp32``, ``int8``: the model or its int8 copy, see ``pick_precision``; default
    ``auto`` for the shipped model, ``fp32``, i.e. exactly the file, for a ``model`` named),
    ``temporal`` (feed history back, default true), ``threads`` (ONNX Runtime intra-op threads; default: the render
    worker's thread budget in ``nrb serve``, 2 elsewhere), ``device`` (``cpu``, ``auto``, ``cuda[:N]``,
    ``tensorrt[:N]``: see ``bridge.renderers.ort_session``; ``nrb serve --device`` sets it), ``runtime``
    (``auto``: ONNX Runtime, or PyTorch's CUDA on a GPU ONNX Runtime cannot use; ``onnxruntime``; ``torch``: the
    network in PyTorch, ``neural_renderer.runtime``, which needs the checkpoint next to the graph)."""

    name = "neural"
    version = "0.1.0"
    output_format = "rgba8_srgb"

    def __init__(self, model: str | Path | None = None, temporal: bool = True, threads: int | None = None,
                 device: str = "cpu", precision: str | None = None, runtime: str = "auto") -> None:
        named = Path(model) if model is not None else DEFAULT_MODEL
        if not named.is_file():
            raise ValueError(
                f"neural renderer model {named} does not exist (python -m neural_renderer.recipe "
                "trains and exports the default one)"
            )
        # the shipped model defaults to auto; a model the user names runs as named unless a precision is asked for
        precision = precision or ("auto" if model is None else "fp32")
        if runtime == "torch" and precision == "int8":
            raise ValueError("precision=int8 is an ONNX Runtime graph; runtime=torch runs the fp32 checkpoint")
        # PyTorch runs the checkpoint the fp32 graph was exported from; the int8 copy is ONNX Runtime's alone
        gpu = precision == "auto" and (select_device(device).on_gpu or runtime == "torch")
        path = pick_precision(named, precision, gpu)
        self.path = path
        self.threads = None if threads is None else int(threads)
        worker = current_worker()
        session, choice = open_model(path, device, threads=self.threads or (worker[1] if worker else 2),
                                     worker=worker[0] if worker else -1, runtime=runtime)
        #: where the model runs (``device`` option: cpu, auto, cuda[:N], tensorrt[:N]; ``auto`` resolved) and why
        self.device_choice: DeviceChoice = choice
        self.device = choice.device
        self.device_description = choice.describe()
        self.input_names = [i.name for i in session.get_inputs()]
        self.has_history_inputs = "x_prev_output" in self.input_names
        self.temporal = bool(temporal) and self.has_history_inputs
        meta = session.get_modelmeta().custom_metadata_map
        self.upscale = int(meta.get("nrb_upscale", "1"))
        #: whether the graph takes wire formats (NHWC uint8 / float16 / float32) and returns packed uint8 RGBA
        self.wire = meta.get("nrb_inputs") == "wire"
        #: wire graph: G-buffer input -> (protocol format it takes, numpy dtype, channels)
        self.wire_inputs: dict[str, tuple[str, np.dtype[Any], int]] = {}
        smap = next(i for i in session.get_inputs() if i.name == "style_map")
        #: how many styles the model was trained on (its style embedding's rows; the style map's channels)
        self.styles = smap.shape[3 if self.wire else 1]
        self.styles = self.styles if isinstance(self.styles, int) else None
        if self.wire:
            for i in session.get_inputs():
                dtype = _ORT_DTYPE.get(i.type)
                if i.name in ("style_map", "x_mv_scale") or i.name.startswith("x_") or dtype is None:
                    continue
                channels = int(i.shape[3])
                fmt = "rgba8_srgb" if i.name == "albedo" else _WIRE_FORMAT[(dtype, channels)]
                self.wire_inputs[i.name] = (fmt, dtype, channels)
        self._defaults: dict[tuple[str, int, int], np.ndarray] = {}
        #: the house lighting (9 floats: sun direction, sun irradiance, sky radiance) of a model that takes
        #: lighting inputs, fed when the engine sends none; None for a model without lighting inputs
        self.house_lighting: np.ndarray | None = None
        if "x_sun_direction" in self.input_names:
            self.house_lighting = np.asarray(json.loads(meta["nrb_house_lighting"]), np.float32).reshape(9)
        #: a parameter-conditioned model (issue 17): draws any style from its row of the style table, so the
        #: server hands it every style (``Renderer.style_params``); it also takes the engine's lit image (15)
        self.style_params = "x_style_table" in self.input_names
        self.engine_image = "x_engine_linear" in self.input_names or "hudless_color" in self.input_names
        if self.style_params:
            self.styles = None  # any number of styles: the table says what each one is
            names = json.loads(meta.get("nrb_style_params", "[]"))
            if names != list(SHADING_PARAMS):
                raise ValueError(f"{path}: conditioned on style parameters {names}, the server's library has "
                                 f"{list(SHADING_PARAMS)}; re-export the model for this library")
        self._broadcast: tuple[tuple[Any, ...], np.ndarray] | None = None
        self._engine_light = EngineLight()  # hudless_color -> linear light, per frame
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def required(self) -> list[BufferSpec]:
        return [
            BufferSpec("albedo", "rgba8_srgb"),
            BufferSpec("normals", "rgba16f"),
            BufferSpec("depth", "r32f"),
        ]

    def optional(self) -> list[BufferSpec]:
        return [
            BufferSpec("linear_depth", "r32f"),
            BufferSpec("roughness", "r8"),
            BufferSpec("metallic", "r8"),
            BufferSpec("emissive", "rgba16f"),
            BufferSpec("motion_vectors", "rg16f"),
            BufferSpec("material_id", "r16u"),
            BufferSpec("object_id", "r16u"),
        ] + ([BufferSpec(n, "rgba32f") for n in LIGHTING_CONSTANTS] if self.house_lighting is not None else []) \
            + ([BufferSpec("hudless_color", "rgba16f")] if self.engine_image else [])

    def check_offer(self, offered: Mapping[str, str]) -> str | None:
        missing = [n for n in ("albedo", "normals") if not available(n, offered)]
        if "depth" not in offered and "linear_depth" not in offered:
            missing.append("depth or linear_depth")
        return (
            f"renderer 'neural' needs buffers {missing}, which the engine does not offer" if missing else None
        )

    def reset(self) -> None:
        self._prev = None

    def _style_channels(self, style_map: np.ndarray) -> int:
        s = style_map.shape[2]
        if self.styles is not None and s != self.styles:
            # A model trained on another style library would read every weight as the wrong style: refuse (the
            # server answers RENDER_FAILED and the engine keeps its own image) rather than render nonsense.
            raise ValueError(
                f"the neural model was trained on {self.styles} styles but the server's style library has {s}; "
                "retrain or re-export the model for this library (python -m neural_renderer.recipe)"
            )
        return s

    def feed(self, inputs: RenderInputs, style_map: np.ndarray) -> dict[str, np.ndarray]:
        """The graph inputs for one frame (exposed for tests and the benchmark)."""
        return self._feed_wire(inputs, style_map) if self.wire else self._feed_float(inputs, style_map)

    def _wire_buffer(self, inputs: RenderInputs, name: str, h: int, w: int) -> np.ndarray:
        """(1, H, W, C) in the format the wire graph takes: a view of the frame's bytes when the engine sent that
        format, else converted from ``inputs[name]`` (or the default when not sent)."""
        fmt, dtype, channels = self.wire_inputs[name]
        b = inputs.buffers.get(name)
        if b is not None and b.format == fmt:
            return np.ascontiguousarray(b.array())[None]  # a view unless the rows are padded (stride)
        if name == "linear_depth":
            return np.ascontiguousarray(inputs.linear_depth(), np.float32).reshape(1, h, w, 1)
        if name not in inputs:
            key = (name, h, w)
            if key not in self._defaults:  # read-only, shared by every frame of this size
                value = {"roughness": 128}.get(name, 0)  # 128/255 ~ the float graph's default roughness 0.5
                self._defaults[key] = np.full((1, h, w, channels), value, dtype)
            return self._defaults[key]
        x = inputs[name]
        out = np.zeros((h, w, channels), dtype)
        c = min(channels, x.shape[2])
        if fmt == "rgba8_srgb":
            out[..., :c] = to_srgb8(linear_to_srgb(x[..., :c]))
            out[..., 3:] = 255
        elif dtype == np.uint8:
            out[..., :c] = to_srgb8(x[..., :c])  # unorm8: round(x * 255)
        else:
            out[..., :c] = x[..., :c]
        return out[None]

    def _style_input(self, style_map: np.ndarray) -> np.ndarray:
        """(1, H, W, S) float32 style map. One mix for every pixel (a broadcast view, the usual case) is made
        contiguous once and reused while the mix and size stay the same: materialising it cost about 1 % of a
        640x360 frame."""
        if style_map.strides[0] == 0 and style_map.strides[1] == 0:
            key = (style_map.shape, np.asarray(style_map[0, 0], np.float32).tobytes())
            if self._broadcast is None or self._broadcast[0] != key:
                self._broadcast = (key, np.ascontiguousarray(style_map, np.float32)[None])
            return self._broadcast[1]
        return np.ascontiguousarray(style_map, np.float32)[None]

    def _feed_params(self, inputs: RenderInputs, style_map: np.ndarray, feed: dict[str, np.ndarray]) -> None:
        """A parameter-conditioned graph's ``x_style_table`` (1, S, 19) and ``x_engine_linear`` (1, H, W, 4)."""
        from bridge.style.library import DEFAULT_LIBRARY, GRADING_START

        w, h = inputs.size
        table = inputs.style_table
        if table is None:
            table = DEFAULT_LIBRARY.table()[:, :GRADING_START]
        table = np.asarray(table, np.float32)[:, : len(SHADING_PARAMS)]
        if table.shape[0] != style_map.shape[2]:
            raise ValueError(f"style map has {style_map.shape[2]} styles, the style table {table.shape[0]}")
        feed["x_style_table"] = np.ascontiguousarray(table)[None]
        if "hudless_color" in inputs:
            key = ("x_engine_linear:sent", h, w)
            eng = self._defaults.get(key)
            if eng is None:  # reused every frame (ONNX Runtime is done with it when render returns)
                eng = self._defaults[key] = np.ones((1, h, w, 4), np.float32)
            eng[0, ..., :3] = self._engine_light(inputs)
            feed["x_engine_linear"] = eng
        else:
            key = ("x_engine_linear", h, w)
            if key not in self._defaults:  # no engine image: zeros, presence 0
                self._defaults[key] = np.zeros((1, h, w, 4), np.float32)
            feed["x_engine_linear"] = self._defaults[key]

    def _feed_wire(self, inputs: RenderInputs, style_map: np.ndarray) -> dict[str, np.ndarray]:
        w, h = inputs.size
        self._style_channels(style_map)
        feed = {name: self._wire_buffer(inputs, name, h, w) for name in self.wire_inputs if name != "motion_vectors"}
        feed["style_map"] = self._style_input(style_map)
        if self.style_params:
            self._feed_params(inputs, style_map, feed)
        self._lighting(inputs, feed)
        if self.has_history_inputs:
            sent = "motion_vectors" in inputs
            feed["motion_vectors"] = self._wire_buffer(inputs, "motion_vectors", h, w)
            cam = inputs.camera
            scale = cam.mv_scale[:2] if sent and cam is not None and cam.mv_scale is not None else (1.0, 1.0)
            feed["x_mv_scale"] = np.asarray(scale, np.float32).reshape(1, 2, 1, 1)
            self._history(feed, sent, h, w)
        return feed

    def _lighting(self, inputs: RenderInputs, feed: dict[str, np.ndarray]) -> None:
        if self.house_lighting is not None:
            for k, name in enumerate(LIGHTING_CONSTANTS):  # graph-input order
                value = inputs.constant(name, 3)
                if value is None:
                    value = self.house_lighting[3 * k : 3 * k + 3]
                feed[name] = value.reshape(1, 3, 1, 1).astype(np.float32)

    def _history(self, feed: dict[str, np.ndarray], has_motion: bool, h: int, w: int) -> None:
        prev = self._prev
        usable = self.temporal and prev is not None and has_motion and prev[1].shape[-2:] == (h, w)
        out_hw = prev[0].shape[-2:] if usable and prev is not None else self._out_hw(h, w)
        feed["x_prev_output"] = prev[0] if usable and prev is not None else np.zeros((1, 3, *out_hw), np.float32)
        feed["x_prev_linear_depth"] = (
            prev[1] if usable and prev is not None else np.zeros((1, 1, h, w), np.float32)
        )

    def _feed_float(self, inputs: RenderInputs, style_map: np.ndarray) -> dict[str, np.ndarray]:
        w, h = inputs.size
        depth = inputs.linear_depth()[..., None]

        def opt(name: str, channels: int, default: float) -> np.ndarray:
            if name in inputs:
                return _nchw(inputs[name], channels)
            return np.full((1, channels, h, w), default, np.float32)

        feed = {
            "albedo": _nchw(inputs["albedo"], 3),
            "normals": _nchw(inputs["normals"], 3),
            "linear_depth": _nchw(depth, 1),
            "roughness": opt("roughness", 1, 0.5),
            "metallic": opt("metallic", 1, 0.0),
            "emissive": opt("emissive", 3, 0.0),
            "style_map": _nchw(style_map, self._style_channels(style_map)),
        }
        self._lighting(inputs, feed)
        if "hudless_color" in self.input_names:  # a float graph of a model that reads the engine's image
            eng = np.zeros((1, 4, h, w), np.float32)
            if "hudless_color" in inputs:
                eng[0, :3] = self._engine_light(inputs).transpose(2, 0, 1)
                eng[0, 3] = 1.0
            feed["hudless_color"] = eng
        if self.has_history_inputs:
            mv = inputs["motion_vectors"][..., :2] if "motion_vectors" in inputs else None
            cam = inputs.camera
            if mv is not None and cam is not None and cam.mv_scale is not None:
                mv = mv * np.asarray(cam.mv_scale[:2], np.float32)
            feed["motion_vectors"] = _nchw(mv, 2) if mv is not None else np.zeros((1, 2, h, w), np.float32)
            self._history(feed, mv is not None, h, w)
        return feed

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        return h * self.upscale, w * self.upscale

    def output_size(self, render_size: tuple[int, int], requested: tuple[int, int]) -> tuple[int, int]:
        """An upscaling model (``nrb_upscale`` in its metadata) returns ``upscale`` x the render size."""
        return render_size[0] * self.upscale, render_size[1] * self.upscale

    @property
    def session(self) -> ModelSession:
        """The ONNX Runtime session for the calling render worker (its own, sized by its current frame's thread
        budget; on a GPU one per device), on this renderer's device (``run`` binds inputs and outputs there)."""
        worker = current_worker()
        if worker is None:
            return _session(self.path, self.threads or 2, device=self.device_choice)
        return _session(self.path, self.threads or worker[1], worker[0], self.device_choice)

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        feed = self.feed(inputs, style_map)
        outs = self.session.run(None, feed)
        if self.wire:
            if self.temporal:
                w, h = inputs.size  # a copy: the depth may be a view of a shared-memory slot the next frame reuses
                self._prev = (outs[1], np.array(feed["linear_depth"], np.float32).reshape(1, 1, h, w))
            rgba: np.ndarray = outs[0][0]  # (uH, uW, 4) uint8, packed by the graph
            return rgba
        srgb = outs[1] if len(outs) > 1 else None
        if self.temporal and srgb is not None:
            self._prev = (srgb, feed["linear_depth"])
        img = outs[0][0].transpose(1, 2, 0)  # linear RGB
        if srgb is not None:
            rgb8 = to_srgb8(srgb[0].transpose(1, 2, 0))
        else:
            rgb8 = to_srgb8(linear_to_srgb(img))
        out = np.empty(rgb8.shape[:2] + (4,), np.uint8)
        out[..., :3] = rgb8
        out[..., 3] = 255
        return out


def factory(**options: Any) -> NeuralRenderer:
    """Registry entry point (``"bridge.renderers.neural:factory"``)."""
    return NeuralRenderer(**options)
