"""ONNX renderer: runs any user model whose inputs are named after protocol buffers, on onnxruntime (CPU).

Model contract:

* every input is float32 NCHW with N = 1 and is named after a protocol buffer (``albedo``, ``normals``, ``depth``,
  ``material_id``, a vendor extension such as the 1x1 lighting constant ``x_sun_direction``, …;
  ``normals``/``roughness``/``metallic`` may be derived, see ``bridge.renderer.DERIVED``), or is
  called ``style_map`` and receives the (1, S, H, W) style weights; an input with a fixed channel count C gets the
  buffer's first C channels (so ``albedo`` can be declared with 3 channels);
* the first output is (1, C, H', W') with C = 3 (RGB) or 4 (RGBA), **linear** colour unless the renderer is created
  with ``output_srgb=True`` (then 0..1 sRGB-encoded). H', W' fixed in the model set the output size (an upscaler);
  dynamic ones mean "same as the render size".

Inference sessions come from ``bridge.renderers.ort_session`` (one cache for every ONNX-backed renderer, keyed by
model, threads, render worker and device), so that each engine session gets its own renderer instance without
reloading the model. ``device`` (``nrb serve --device``): ``cpu`` (default), ``auto``, ``cuda[:N]`` or
``tensorrt[:N]``, see that module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bridge.protocol import BufferSpec, is_buffer_name
from bridge.renderer import DERIVED, USUAL_FORMAT, Renderer, RenderInputs, current_worker, to_srgb8
from bridge.renderers.ort_session import DeviceChoice, ModelSession, get_session, open_model


def _dim(v: Any) -> int | None:
    return v if isinstance(v, int) and v > 0 else None


class OnnxRenderer(Renderer):
    """A user ONNX model as a renderer (see the module docstring for the model contract)."""

    name = "onnx"

    def __init__(self, path: str | Path, *, threads: int | None = None, output_srgb: bool = False,
                 device: str = "cpu") -> None:
        self.path = str(path)
        self.name = f"onnx:{Path(path).name}"
        self.output_srgb = bool(output_srgb)
        self.threads = None if threads is None else int(threads)
        threads_now, worker = self._budget()
        session, choice = open_model(self.path, device, threads=threads_now, worker=worker,
                                     runtime="onnxruntime")  # any graph: only the neural model has a PyTorch twin
        #: where the model runs (``auto`` resolved) and why
        self.device_choice: DeviceChoice = choice
        self.device = self.device_choice.device
        self.device_description = self.device_choice.describe()
        self.inputs: list[tuple[str, int | None]] = []
        for inp in session.get_inputs():
            if inp.type != "tensor(float)":
                raise ValueError(f"{self.path}: input {inp.name!r} is {inp.type}, expected tensor(float)")
            if len(inp.shape) != 4:
                raise ValueError(f"{self.path}: input {inp.name!r} must be NCHW (rank 4), has shape {inp.shape}")
            if inp.name != "style_map" and not is_buffer_name(inp.name) and inp.name not in DERIVED:
                raise ValueError(f"{self.path}: input {inp.name!r} is neither a protocol buffer name nor style_map")
            self.inputs.append((inp.name, _dim(inp.shape[1])))
        out = session.get_outputs()[0]
        self.output_name = out.name
        self.fixed_out = (_dim(out.shape[3]), _dim(out.shape[2])) if len(out.shape) == 4 else (None, None)

    def required(self) -> list[BufferSpec]:
        return [BufferSpec(n, USUAL_FORMAT.get(n, "rgba16f")) for n, _ in self.inputs if n != "style_map"]

    def output_size(self, render_size: tuple[int, int], requested: tuple[int, int]) -> tuple[int, int]:
        w, h = self.fixed_out
        return (w, h) if w is not None and h is not None else render_size

    def _budget(self) -> tuple[int, int]:
        """(threads, worker) for the calling thread: the render worker's current frame budget, 1 thread elsewhere."""
        worker = current_worker()
        if worker is None:
            return self.threads or 1, -1
        return self.threads or worker[1], worker[0]

    @property
    def session(self) -> ModelSession:
        """The ONNX Runtime session for the calling render worker on this renderer's device (see
        ``bridge.renderers.ort_session.get_session``)."""
        threads, worker = self._budget()
        return get_session(self.path, threads=threads, worker=worker, device=self.device_choice)

    def render(self, inputs: RenderInputs, style_map: np.ndarray) -> np.ndarray:
        feed: dict[str, np.ndarray] = {}
        for name, channels in self.inputs:
            arr = style_map if name == "style_map" else inputs[name]
            if channels is not None:
                if arr.shape[2] < channels:
                    raise ValueError(f"model input {name!r} wants {channels} channels, the buffer has {arr.shape[2]}")
                arr = arr[..., :channels]
            feed[name] = np.ascontiguousarray(arr.transpose(2, 0, 1)[None], dtype=np.float32)
        out = self.session.run([self.output_name], feed)[0]
        if out.ndim != 4 or out.shape[0] != 1 or out.shape[1] not in (3, 4):
            raise ValueError(f"model output has shape {out.shape}, expected (1, 3|4, H, W)")
        img = np.ascontiguousarray(out[0].transpose(1, 2, 0), dtype=np.float32)
        if not self.output_srgb:
            return img  # linear: the server encodes it
        rgba = np.empty(img.shape[:2] + (4,), np.uint8)
        rgba[..., :3] = to_srgb8(img[..., :3])
        rgba[..., 3] = to_srgb8(img[..., 3]) if img.shape[2] == 4 else 255
        return rgba


def example_model(path: str | Path) -> Path:
    """Write a tiny example model (output = albedo RGB × (1 - 0.5 · style weight of style 3), used by tests/docs)."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [
            helper.make_node("Slice", ["style_map", "s3", "s4", "axis1"], ["noir"]),
            helper.make_node("Mul", ["noir", "half"], ["dim"]),
            helper.make_node("Sub", ["one", "dim"], ["gain"]),
            helper.make_node("Mul", ["albedo", "gain"], ["rgb"]),
        ],
        "nrb_example",
        [helper.make_tensor_value_info("albedo", TensorProto.FLOAT, [1, 3, "h", "w"]),
         helper.make_tensor_value_info("style_map", TensorProto.FLOAT, [1, "s", "h", "w"])],
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor("s3", TensorProto.INT64, [1], [3]), helper.make_tensor("s4", TensorProto.INT64, [1], [4]),
         helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
         helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]), helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


__all__ = ["OnnxRenderer", "example_model"]
