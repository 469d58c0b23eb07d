"""Any ONNX model whose inputs are named after protocol buffers is a renderer (onnxruntime, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.serverkit import SIZE, served
from onnx import TensorProto, helper

from bridge.protocol import Buffer, BufferSpec, StyleCommand
from bridge.renderer import RenderInputs, linear_to_srgb, load_renderer, srgb8_to_linear, to_srgb8
from bridge.renderers.onnx_renderer import OnnxRenderer, example_model
from bridge.style import DEFAULT_LIBRARY, StyleState, build_style_map


def shade_model(path: Path) -> Path:
    """rgb = albedo · max(normals.y, 0) + 0.1 · style_map[golden] (NCHW, dynamic height and width)."""
    golden = DEFAULT_LIBRARY.index("golden")
    nodes = [
        helper.make_node("Slice", ["normals", "c1", "c2", "axis"], ["ny"]),
        helper.make_node("Relu", ["ny"], ["lit"]),
        helper.make_node("Mul", ["albedo", "lit"], ["shaded"]),
        helper.make_node("Slice", ["style_map", "g0", "g1", "axis"], ["gold"]),
        helper.make_node("Mul", ["gold", "tenth"], ["glow"]),
        helper.make_node("Add", ["shaded", "glow"], ["rgb"]),
    ]
    consts = [helper.make_tensor("c1", TensorProto.INT64, [1], [1]), helper.make_tensor("c2", TensorProto.INT64, [1], [2]),
              helper.make_tensor("g0", TensorProto.INT64, [1], [golden]),
              helper.make_tensor("g1", TensorProto.INT64, [1], [golden + 1]),
              helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
              helper.make_tensor("tenth", TensorProto.FLOAT, [], [0.1])]
    inputs = [helper.make_tensor_value_info("albedo", TensorProto.FLOAT, [1, 3, "h", "w"]),
              helper.make_tensor_value_info("normals", TensorProto.FLOAT, [1, 3, "h", "w"]),
              helper.make_tensor_value_info("style_map", TensorProto.FLOAT, [1, "s", "h", "w"])]
    graph = helper.make_graph(nodes, "shade", inputs,
                              [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [1, 3, "h", "w"])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_model_inputs_are_fed_from_the_named_buffers_and_the_style_map(tmp_path: Path) -> None:
    r = OnnxRenderer(shade_model(tmp_path / "shade.onnx"))
    assert [s.name for s in r.required()] == ["albedo", "normals"]
    rng = np.random.default_rng(0)
    albedo = rng.integers(0, 255, (6, 5, 4), dtype=np.uint8)
    normals = rng.uniform(-1, 1, (6, 5, 4)).astype(np.float16)
    inputs = RenderInputs.from_arrays({"albedo": ("rgba8_srgb", albedo), "normals": ("rgba16f", normals)})
    state = StyleState()
    state.set("golden", 0.5)
    smap = build_style_map(state.snapshot(), (5, 6))
    out = r.render(inputs, smap)
    expected = srgb8_to_linear(albedo[..., :3]) * np.maximum(normals[..., 1:2].astype(np.float32), 0) + 0.05
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_onnx_renderer_rejects_models_with_inputs_that_are_not_buffers(tmp_path: Path) -> None:
    g = helper.make_graph([helper.make_node("Identity", ["foo"], ["out"])], "g",
                          [helper.make_tensor_value_info("foo", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "foo.onnx"))
    with pytest.raises(ValueError, match="'foo' is neither a protocol buffer name nor style_map"):
        load_renderer(str(tmp_path / "foo.onnx"))


def test_server_renders_with_a_user_onnx_model_given_by_path(tmp_path: Path) -> None:
    model = example_model(tmp_path / "example.onnx")  # rgb = albedo · (1 - 0.5 · noir weight)
    w, h = SIZE
    albedo = np.random.default_rng(1).integers(0, 255, (h, w, 4), dtype=np.uint8)
    with served(tmp_path, "--renderer", str(model)) as srv, srv.client() as c:
        welcome = c.hello(SIZE, [BufferSpec("albedo", "rgba8_srgb")])
        assert welcome.renderer.startswith("onnx:example.onnx")
        buf = [Buffer.from_array("albedo", "rgba8_srgb", albedo)]
        plain = c.render(buf).output
        noir = c.render(buf, styles=[StyleCommand("noir", 1.0, 0.0)]).output
        c.bye()
    assert plain is not None and noir is not None
    lin = srgb8_to_linear(albedo[..., :3])
    for out, gain in ((plain, 1.0), (noir, 0.5)):
        expected = to_srgb8(linear_to_srgb(lin * np.float32(gain)))
        assert np.abs(out.array()[..., :3].astype(int) - expected).max() <= 1
