"""``nrb export``: checkpoint -> ONNX graphs the bridge runs with ONNX Runtime.

Two graphs, both with dynamic height and width (any size; padded to a multiple of 8 inside the graph and
cropped back):

* ``OUT.onnx`` -- single frame. Inputs are named after protocol buffers (float32 NCHW, N = 1): ``albedo`` (3
  ch, linear), ``normals`` (3), ``linear_depth`` (1), ``roughness`` (1), ``metallic`` (1), ``emissive`` (3,
  linear), and ``style_map`` (S). Output ``output`` (1, 3, H, W) **linear** RGB, which is the contract of
  ``bridge.renderers.onnx_renderer.OnnxRenderer`` (the server sRGB-encodes it), so ``nrb serve --renderer
  OUT.onnx`` runs it unchanged.
* ``OUT_temporal.onnx`` -- adds ``motion_vectors`` (2) and the vendor-extension inputs ``x_prev_output`` (3,
  the previous frame's ``x_output_srgb``) and ``x_prev_linear_depth`` (1, zeros = no history); outputs
  ``output`` (linear) and ``x_output_srgb`` (display-encoded, to feed back next frame). Used by the ``neural``
  renderer.

A model trained with lighting inputs (``NetConfig.lighting``) takes three more inputs at the end of both graphs,
each (1, 3, 1, 1): ``x_sun_direction``, ``x_sun_irradiance`` and ``x_sky_radiance`` (the 1x1 vendor buffers of
docs/protocol.md 6.1); its metadata ``nrb_house_lighting`` holds the 9 values to feed when an engine sends none.

The exporter is PyTorch's TorchScript-based one (``dynamo=False``): it needs no extra package and handles the
in-graph padding arithmetic with dynamic shapes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neural_renderer.data.styles import srgb_decode
from neural_renderer.models.features import GBUFFER_INPUTS, LIGHTING_INPUTS, TEMPORAL_INPUTS, house_lighting
from neural_renderer.models.net import NeuralRendererNet, example_inputs, load_checkpoint

OPSET = 17
#: Largest |torch - ONNX Runtime| accepted by the parity check, on linear output in [0, 1].
PARITY_TOLERANCE = 2e-3


def _pad8(x: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    h, w = x.shape[-2], x.shape[-1]
    return F.pad(
        x,
        (0, (multiple - w % multiple) % multiple, 0, (multiple - h % multiple) % multiple),
        mode="replicate",
    )


class SingleFrameGraph(nn.Module):
    """Protocol buffers + style map -> (1, 3, uH, uW) linear RGB, any H x W."""

    def __init__(self, net: NeuralRendererNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        albedo: torch.Tensor,
        normals: torch.Tensor,
        linear_depth: torch.Tensor,
        roughness: torch.Tensor,
        metallic: torch.Tensor,
        emissive: torch.Tensor,
        style_map: torch.Tensor,
        *lighting: torch.Tensor,
    ) -> torch.Tensor:
        h, w = albedo.shape[-2], albedo.shape[-1]
        u = self.net.config.upscale
        args = [_pad8(t) for t in (albedo, normals, linear_depth, roughness, metallic, emissive, style_map)]
        out = self.net(*args, lighting=_lighting(lighting))[..., : h * u, : w * u]
        return srgb_decode(out)


class TemporalGraph(nn.Module):
    """Single-frame inputs + motion_vectors + previous output/depth -> (linear RGB, display sRGB to feed
    back)."""

    def __init__(self, net: NeuralRendererNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        albedo: torch.Tensor,
        normals: torch.Tensor,
        linear_depth: torch.Tensor,
        roughness: torch.Tensor,
        metallic: torch.Tensor,
        emissive: torch.Tensor,
        style_map: torch.Tensor,
        motion_vectors: torch.Tensor,
        x_prev_output: torch.Tensor,
        x_prev_linear_depth: torch.Tensor,
        *lighting: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = albedo.shape[-2], albedo.shape[-1]
        u = self.net.config.upscale
        args = [
            _pad8(t)
            for t in (albedo, normals, linear_depth, roughness, metallic, emissive, style_map, motion_vectors)
        ]
        prev = _pad8(x_prev_output, 8 * u)
        pdepth = _pad8(x_prev_linear_depth)
        out = self.net.forward_temporal(*args, prev, pdepth, _lighting(lighting))[..., : h * u, : w * u]
        return srgb_decode(out), out


def _lighting(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
    """The graph's three (1, 3, 1, 1) lighting inputs as the network's (1, 9, 1, 1), or None without them."""
    return torch.cat(inputs, 1) if inputs else None


def input_names(styles: int, temporal: bool, lighting: bool = False) -> list[str]:
    names = [n for n, _ in GBUFFER_INPUTS] + ["style_map"]
    names += [n for n, _ in TEMPORAL_INPUTS] if temporal else []
    return names + [n for n, _ in LIGHTING_INPUTS] if lighting else names


def _export(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, names: list[str], outputs: list[str]
) -> None:
    lighting = {n for n, _ in LIGHTING_INPUTS}
    axes = {n: {2: "height", 3: "width"} for n in names if n not in lighting}
    for o in outputs:
        axes[o] = {2: "out_height", 3: "out_width"}
    if "x_prev_output" in names:
        axes["x_prev_output"] = {2: "out_height", 3: "out_width"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


def _tag(path: Path, net: NeuralRendererNet) -> None:
    """Record what the renderer needs to know without torch: the upscale factor and the style count."""
    import onnx

    model = onnx.load(str(path))
    tags: list[tuple[str, object]] = [("nrb_upscale", net.config.upscale), ("nrb_styles", net.config.styles)]
    if net.config.lighting:
        tags.append(("nrb_house_lighting", json.dumps(house_lighting().view(-1).tolist())))
    for key, value in tags:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def parity(
    module: nn.Module,
    path: Path,
    names: list[str],
    sizes: tuple[tuple[int, int], ...] = ((64, 64), (36, 52)),
    temporal: bool = False,
) -> float:
    """Largest |torch - ONNX Runtime| over random inputs at ``sizes`` (H, W), first output."""
    import onnxruntime as ort

    net = module.net  # type: ignore[union-attr]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for k, (h, w) in enumerate(sizes):
        args = example_inputs(
            net.config.styles,
            h,
            w,
            upscale=net.config.upscale,
            temporal=temporal,
            seed=k + 1,
            lighting=net.config.lighting,
        )
        with torch.no_grad():
            ref = module(*args)
        ref = ref[0] if isinstance(ref, tuple) else ref
        got = sess.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})[0]
        if got.shape != tuple(ref.shape):
            raise AssertionError(f"ONNX output {got.shape} != torch {tuple(ref.shape)} at {h}x{w}")
        worst = max(worst, float(np.abs(got - ref.numpy()).max()))
    return worst


def export_onnx(
    checkpoint: Path | NeuralRendererNet, out: Path, *, temporal: bool = False, check: bool = True
) -> list[Path]:
    """Write ``out`` (and ``out`` with ``_temporal`` before the suffix when ``temporal``); returns the paths.
    ``check`` runs the ONNX Runtime parity check and raises when it exceeds :data:`PARITY_TOLERANCE`."""
    net = checkpoint if isinstance(checkpoint, NeuralRendererNet) else load_checkpoint(checkpoint)[0]
    net = net.eval()
    out = Path(out)
    s = net.config.styles
    written = []
    light = net.config.lighting
    graph = SingleFrameGraph(net).eval()
    names = input_names(s, False, light)
    _export(graph, example_inputs(s, 64, 64, lighting=light), out, names, ["output"])
    _tag(out, net)
    written.append(out)
    if check and (err := parity(graph, out, names)) > PARITY_TOLERANCE:
        raise AssertionError(f"{out}: torch vs ONNX Runtime differ by {err:.2e} > {PARITY_TOLERANCE}")
    if temporal:
        tpath = out.with_name(out.stem + "_temporal" + out.suffix)
        tgraph = TemporalGraph(net).eval()
        tnames = input_names(s, True, light)
        _export(
            tgraph,
            example_inputs(s, 64, 64, upscale=net.config.upscale, temporal=True, lighting=light),
            tpath,
            tnames,
            ["output", "x_output_srgb"],
        )
        _tag(tpath, net)
        written.append(tpath)
        if check and (err := parity(tgraph, tpath, tnames, temporal=True)) > PARITY_TOLERANCE:
            raise AssertionError(f"{tpath}: torch vs ONNX Runtime differ by {err:.2e} > {PARITY_TOLERANCE}")
    return written
