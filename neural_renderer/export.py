"""``nrb export``: checkpoint -> ONNX graphs the bridge runs with ONNX Runtime.

Two graphs, both with dynamic height and width (any size; padded to a multiple of 8 inside the graph and
cropped back):

* ``OUT.onnx`` -- single frame. Inputs are named after protocol buffers (float32 NCHW, N = 1): ``albedo`` (3
  ch, linear), ``normals`` (3), ``linear_depth`` (1), ``roughness`` (1), ``metallic`` (1), ``emissive`` (3,
  linear), and ``style_map`` (S). Output ``output`` (1, 3, H, W) **linear** RGB, which is the contract of
  ``bridge.renderers.onnx_renderer.OnnxRenderer`` (the server sRGB-encodes it), so ``nrb serve --renderer
  OUT.onnx`` runs it unchanged.
* ``OUT_temporal.onnx`` -- the ``neural`` renderer's graph, fed the G-buffers **in their wire formats**
  (``docs/protocol.md`` 6.1), N = 1, NHWC as the engine sends them, so the renderer hands over zero-copy views of
  the frame's bytes and converts in Python only what an engine sent in another format (:data:`WIRE_INPUTS`):
  ``albedo`` uint8 (1, H, W, 4) sRGB (decoded by a 256-entry table inside the graph), ``normals`` float16
  (1, H, W, 4), ``linear_depth`` float32 (1, H, W, 1), ``roughness`` / ``metallic`` uint8 (1, H, W, 1),
  ``emissive`` float16 (1, H, W, 4), ``style_map`` float32 (1, H, W, S) (the server's style map as it is),
  ``motion_vectors`` float16 (1, H, W, 2) with ``x_mv_scale`` (1, 2, 1, 1) (the camera's ``mv_scale``), and the
  history ``x_prev_output`` (1, 3, uH, uW) / ``x_prev_linear_depth`` (1, 1, H, W) float32 (zeros = none).
  Outputs: ``rgba8`` (1, uH, uW, 4) uint8, display sRGB with alpha 255, ready to send, and ``x_output_srgb``
  (1, 3, uH, uW) float32 to feed back as ``x_prev_output``. Metadata ``nrb_inputs`` = ``wire``. Older
  float-input temporal graphs (no such tag) still run in the renderer, converted in Python.

Both graphs compute with :class:`neural_renderer.deploy.DeployNet`, the network rearranged for CPU inference
(same function, checked against the trained network). ``neural_renderer.quantize`` makes an int8 copy of either.

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
from neural_renderer.deploy import DeployNet
from neural_renderer.models.features import (
    GBUFFER_INPUTS,
    LIGHTING_INPUTS,
    TEMPORAL_INPUTS,
    GBuffers,
    house_lighting,
)
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


class FloatGraph(nn.Module):
    """The network as an ONNX graph over float NCHW protocol buffers, any H x W (padded to a multiple of 8 inside,
    cropped back); the one wrapper both float graphs use.

    Inputs in :func:`input_names` order: the six G-buffers, the style input, with ``temporal`` the motion vectors
    and the previous output and depth, then the lighting constants and the engine image (``hudless_color``, linear
    light, alpha = presence) when the network takes them. Single frame (``OUT.onnx``): the style input is the
    weights over the presets (a parameter network's preset table is baked in), output (1, 3, uH, uW) linear RGB.
    Temporal (inside :class:`WireTemporalGraph`): the style input is what the network takes (the parameter map for
    a parameter network), outputs (linear RGB, display sRGB to feed back)."""

    def __init__(self, net: NeuralRendererNet | DeployNet, temporal: bool = False) -> None:
        super().__init__()
        self.net = net
        self.temporal = temporal
        if net.config.params and not temporal:  # the presets' shading rows: weights -> parameter map, a 1x1 conv
            self.register_buffer("table", _preset_table().t()[:, :, None, None].contiguous(), persistent=False)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        cfg = self.net.config
        u = cfg.upscale
        g = GBuffers.of(inputs)
        h, w = g.albedo.shape[-2], g.albedo.shape[-1]
        style_map, rest = inputs[len(GBUFFER_INPUTS)], inputs[len(GBUFFER_INPUTS) + 1 :]
        history, rest = (rest[:3], rest[3:]) if self.temporal else ((), rest)
        lighting, engine = _extra(cfg.lighting, cfg.engine, rest)
        if cfg.params and not self.temporal:
            style_map = F.conv2d(style_map, torch.as_tensor(self.table))
        g8, s8 = g.map(_pad8), _pad8(style_map)
        eng = None if engine is None else _pad8(engine)
        if not self.temporal:
            return srgb_decode(self.net(g8, s8, lighting=lighting, engine=eng)[..., : h * u, : w * u])
        mv, prev, pdepth = history
        out = self.net.forward_temporal(g8, s8, _pad8(mv), _pad8(prev, 8 * u), _pad8(pdepth), lighting, eng)
        out = out[..., : h * u, : w * u]
        return srgb_decode(out), out


def _preset_table() -> torch.Tensor:
    """(S, 19) the shipped presets' rows of the shading table (``bridge.style.library``)."""
    from bridge.style.library import DEFAULT_LIBRARY, GRADING_START

    return torch.from_numpy(DEFAULT_LIBRARY.table()[:, :GRADING_START].copy())


def _extra(lighting: bool, engine: bool, extra: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor | None, ...]:
    """A graph's trailing inputs -> (the network's (1, 9, 1, 1) lighting or None, the engine input or None)."""
    k = 3 if lighting else 0
    return _lighting(extra[:k]), (extra[k] if engine else None)


#: The wire graph's G-buffer inputs: name -> (protocol format it takes, channels of that format). What the
#: plugins send (docs/plugins.md) and ``bridge.renderer.USUAL_FORMAT``; the renderer converts anything else.
WIRE_INPUTS: dict[str, tuple[str, int]] = {
    "albedo": ("rgba8_srgb", 4),
    "normals": ("rgba16f", 4),
    "linear_depth": ("r32f", 1),
    "roughness": ("r8", 1),
    "metallic": ("r8", 1),
    "emissive": ("rgba16f", 4),
    "motion_vectors": ("rg16f", 2),
}
_WIRE_DTYPES = {"rgba8_srgb": torch.uint8, "r8": torch.uint8, "rgba16f": torch.float16, "rg16f": torch.float16,
                "r32f": torch.float32}


def _srgb_lut() -> torch.Tensor:
    """sRGB code value -> linear, the exact 256-entry table of ``bridge.renderer.srgb8_to_linear``."""
    return srgb_decode(torch.arange(256, dtype=torch.float64) / 255.0).float()


def _planes(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(1, H, W, C) wire buffer -> its first ``channels`` as (1, channels, H, W), still in the wire type. Transposed
    whole first, then sliced: a channel slice of NCHW copies whole planes, where slicing the NHWC buffer first
    (as the graph did) is a strided copy that cost more than the transpose (profiled at 640x360, 2 threads)."""
    x = x.permute(0, 3, 1, 2)
    return x[:, :channels] if channels < x.shape[1] else x


def _nchw(x: torch.Tensor, channels: int) -> torch.Tensor:
    return _planes(x, channels).float()


class WireTemporalGraph(nn.Module):
    """Wire-format G-buffers (NHWC, see the module docstring) + history -> (rgba8 NHWC uint8, x_output_srgb).

    Decodes in the graph what the renderer used to decode in numpy (sRGB albedo by table lookup, unorm8 / 255,
    float16 -> float32, NHWC -> NCHW, ``mv_scale``), then runs :class:`FloatGraph`'s temporal computation and packs
    the display image as the RESULT's uint8 RGBA."""

    def __init__(self, net: NeuralRendererNet | DeployNet) -> None:
        super().__init__()
        self.inner = FloatGraph(net, temporal=True)
        self.net = net
        self.register_buffer("albedo_lut", _srgb_lut(), persistent=False)

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
        x_mv_scale: torch.Tensor,
        x_prev_output: torch.Tensor,
        x_prev_linear_depth: torch.Tensor,
        *extra: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lut = torch.as_tensor(self.albedo_lut)
        cfg = self.net.config
        tail = list(extra)
        if cfg.params:  # x_style_table (1, S, 19) then x_engine_linear (1, H, W, 4)
            table, engine = tail[-2], tail[-1]
            style_map = torch.matmul(style_map, table)  # weights over the server's styles -> parameter map
            tail = [*tail[:-2], engine.permute(0, 3, 1, 2).float()]
        srgb = self.inner(
            lut[_planes(albedo, 3).long()],
            _nchw(normals, 3),
            _nchw(linear_depth, 1),
            _nchw(roughness, 1) * (1.0 / 255.0),
            _nchw(metallic, 1) * (1.0 / 255.0),
            _nchw(emissive, 3),
            style_map.permute(0, 3, 1, 2),
            _nchw(motion_vectors, 2) * x_mv_scale,
            x_prev_output,
            x_prev_linear_depth,
            *tail,
        )[1]
        rgba = F.pad(srgb * 255.0 + 0.5, (0, 0, 0, 0, 0, 1), value=255.5)  # alpha 255 after truncation
        return rgba.to(torch.uint8).permute(0, 2, 3, 1), srgb


#: The parameter-conditioned wire graph's extra inputs (``NetConfig.params`` with ``engine``): the server's style
#: table, shading columns (1, S, 19), which turns the (1, H, W, S) style weights into the parameter map in the
#: graph (so styles a game defines at run time are rows like the presets), and the engine image in linear light
#: plus a presence flag (1, H, W, 4) float32 (``bridge.tonemap.engine_linear`` of ``hudless_color``; zeros = none).
PARAM_WIRE_INPUTS = ("x_style_table", "x_engine_linear")


def wire_input_names(lighting: bool = False, params: bool = False) -> list[str]:
    names = [n for n, _ in GBUFFER_INPUTS] + ["style_map", "motion_vectors", "x_mv_scale"]
    names += ["x_prev_output", "x_prev_linear_depth"]
    names += [n for n, _ in LIGHTING_INPUTS] if lighting else []
    return names + list(PARAM_WIRE_INPUTS) if params else names


def wire_example_inputs(net: NeuralRendererNet, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """:func:`example_inputs` encoded as the wire graph takes them (quantised the way an engine's formats are)."""
    cfg = net.config
    a = example_inputs(cfg.styles, height, width, upscale=cfg.upscale, temporal=True, seed=seed,
                       lighting=cfg.lighting)
    g = torch.Generator().manual_seed(seed + 100)
    tail: list[torch.Tensor] = []
    if cfg.params:
        rad = torch.rand(1, height, width, 3, generator=g) * 3.0
        tail = [_preset_table()[None].contiguous(), torch.cat([rad, torch.ones(1, height, width, 1)], -1)]

    def nhwc(t: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
        x = t.permute(0, 2, 3, 1)
        if x.shape[-1] < channels:
            x = torch.cat([x, torch.zeros(*x.shape[:-1], channels - x.shape[-1])], -1)
        return x.to(dtype).contiguous()

    def unorm8(t: torch.Tensor, channels: int) -> torch.Tensor:
        return nhwc((t.clamp(0, 1) * 255 + 0.5).floor(), channels, torch.uint8)

    albedo = torch.randint(0, 256, (1, height, width, 4), generator=g, dtype=torch.uint8)
    return (
        albedo,
        nhwc(a[1], 4, torch.float16),
        nhwc(a[2], 1, torch.float32),
        unorm8(a[3], 1),
        unorm8(a[4], 1),
        nhwc(a[5], 4, torch.float16),
        a[6].permute(0, 2, 3, 1).contiguous(),
        nhwc(a[7], 2, torch.float16),
        torch.tensor([1.0, 1.0]).view(1, 2, 1, 1),
        a[8],
        a[9],
        *a[10:],
        *tail,
    )


def wire_parity(graph: WireTemporalGraph, path: Path, sizes: tuple[tuple[int, int], ...] = ((64, 64), (36, 52))
                ) -> float:
    """Largest |torch - ONNX Runtime| of the wire graph over random wire inputs at ``sizes``: the history
    output (display sRGB in [0, 1]), and the packed image in units of 1/255 (it may differ by one code value
    where the float image lies on a rounding boundary)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    worst = 0.0
    for k, (h, w) in enumerate(sizes):
        args = wire_example_inputs(graph.inner.net, h, w, seed=k + 1)  # type: ignore[arg-type]
        with torch.no_grad():
            ref8, ref = graph(*args)
        got8, got = sess.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})
        if got8.shape != tuple(ref8.shape) or got8.dtype != np.uint8:
            raise AssertionError(f"ONNX output {got8.shape} {got8.dtype} != torch {tuple(ref8.shape)} at {h}x{w}")
        px = np.abs(got8.astype(np.int16) - ref8.numpy().astype(np.int16)).max()
        worst = max(worst, float(np.abs(got - ref.numpy()).max()), float(px) / 255.0 if px > 1 else 0.0)
    return worst


def _lighting(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
    """The graph's three (1, 3, 1, 1) lighting inputs as the network's (1, 9, 1, 1), or None without them."""
    return torch.cat(inputs, 1) if inputs else None


def input_names(styles: int, temporal: bool, lighting: bool = False, engine: bool = False) -> list[str]:
    names = [n for n, _ in GBUFFER_INPUTS] + ["style_map"]
    names += [n for n, _ in TEMPORAL_INPUTS] if temporal else []
    names += [n for n, _ in LIGHTING_INPUTS] if lighting else []
    return names + ["hudless_color"] if engine else names


def graph_example_inputs(net: NeuralRendererNet, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """:func:`example_inputs` as a single-frame :class:`FloatGraph` takes them: style weights over the presets, and
    ``hudless_color`` (linear RGB, alpha = presence) last for a network with the engine input."""
    cfg = net.config
    return example_inputs(cfg.styles, height, width, upscale=cfg.upscale, seed=seed, lighting=cfg.lighting,
                          engine=cfg.engine)


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    names: list[str],
    outputs: list[str],
    wire: bool = False,
) -> None:
    fixed = {n for n, _ in LIGHTING_INPUTS} | {"x_mv_scale", "x_style_table"}
    nhwc = set(WIRE_INPUTS) | {"style_map", "x_engine_linear"} if wire else set()
    axes = {n: {1: "height", 2: "width"} if n in nhwc else {2: "height", 3: "width"} for n in names if n not in fixed}
    if wire and "x_style_table" in names:  # any number of styles: the presets and those a game defines
        axes["style_map"] = {1: "height", 2: "width", 3: "styles"}
        axes["x_style_table"] = {1: "styles"}
    for o in outputs:
        axes[o] = {1: "out_height", 2: "out_width"} if o == "rgba8" else {2: "out_height", 3: "out_width"}
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


def _tag(path: Path, net: NeuralRendererNet, wire: bool = False) -> None:
    """Record what the renderer needs to know without torch: the upscale factor, the style count and whether the
    graph takes wire formats."""
    import onnx

    model = onnx.load(str(path))
    tags: list[tuple[str, object]] = [("nrb_upscale", net.config.upscale), ("nrb_styles", net.config.styles)]
    if wire:
        tags.append(("nrb_inputs", "wire"))
    if net.config.lighting:
        tags.append(("nrb_house_lighting", json.dumps(house_lighting().view(-1).tolist())))
    if net.config.params:  # conditioned on the shading columns of the style table, in this order
        from bridge.style.library import SHADING_PARAMS

        tags.append(("nrb_style_params", json.dumps(list(SHADING_PARAMS))))
    if net.config.engine:
        tags.append(("nrb_engine_image", 1))
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
        if temporal:
            args = example_inputs(
                net.config.styles,
                h,
                w,
                upscale=net.config.upscale,
                temporal=temporal,
                seed=k + 1,
                lighting=net.config.lighting,
            )
        else:
            args = graph_example_inputs(net, h, w, seed=k + 1)  # type: ignore[arg-type]
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
    """Write ``out`` (and, when ``temporal``, the wire-format temporal graph: ``out`` with ``_temporal`` before
    the suffix); returns the paths. Both compute with :class:`DeployNet`; ``check`` runs the ONNX Runtime parity
    check against the *trained* network's PyTorch forward and raises when it exceeds :data:`PARITY_TOLERANCE`."""
    net = checkpoint if isinstance(checkpoint, NeuralRendererNet) else load_checkpoint(checkpoint)[0]
    net = net.eval()
    deploy = DeployNet(net).eval()
    out = Path(out)
    s = net.config.styles
    written = []
    light = net.config.lighting
    names = input_names(s, False, light, net.config.engine)
    _export(FloatGraph(deploy).eval(), graph_example_inputs(net, 64, 64), out, names, ["output"])
    _tag(out, net)
    written.append(out)
    if check and (err := parity(FloatGraph(net).eval(), out, names)) > PARITY_TOLERANCE:
        raise AssertionError(f"{out}: torch vs ONNX Runtime differ by {err:.2e} > {PARITY_TOLERANCE}")
    if temporal:
        tpath = out.with_name(out.stem + "_temporal" + out.suffix)
        _export(
            WireTemporalGraph(deploy).eval(),
            wire_example_inputs(net, 64, 64),
            tpath,
            wire_input_names(light, net.config.params),
            ["rgba8", "x_output_srgb"],
            wire=True,
        )
        _tag(tpath, net, wire=True)
        written.append(tpath)
        if check and (err := wire_parity(WireTemporalGraph(net).eval(), tpath)) > PARITY_TOLERANCE:
            raise AssertionError(f"{tpath}: torch vs ONNX Runtime differ by {err:.2e} > {PARITY_TOLERANCE}")
    return written
