"""The neural renderer: a compact style-conditioned U-Net with a low-resolution trunk.

Data flow (H x W input, width w, S styles, E = embedding width)::

    G-buffers --GBufferFeatures--> 14 ch ┐
    history (warped prev output+mask) 4 ┤
    lighting (optional) --LightingFeatures--> 6 ┴ cat 18 (24) ch, H x W --space-to-depth 2--> 72 (96) ch, H/2
    enc0  ConvFiLM 72 (96) -> w     H/2
    enc1  ConvFiLM w -> 1.5w, s2    H/4
    enc2  ConvFiLM 1.5w -> 2w, s2   H/8   + 2 x ResFiLM(2w)   (trunk)
    dec1  up2, cat enc1, ConvFiLM -> 1.5w    H/4
    dec0  up2, cat enc0, ConvFiLM -> w       H/2
    fuse  cat space-to-depth(style map) 4S and the 72 (96) input channels again, conv1x1 -> w     H/2
    head  conv3x3 -> 3·(2u)², depth-to-space 2u, sigmoid -> (B, 3, uH, uW)

Why this shape: on a CPU the cost is dominated by full-resolution layers with few channels, which run far
below the matrix units' peak. Folding 2x2 pixels into channels first means *no* layer runs at full resolution
while every pixel's own G-buffer values and style weights still reach the output: the ``fuse`` layer sees them
again, unblurred, next to the decoder's features, so texture edges, silhouettes and per-object style
boundaries stay sharp (without that skip the first model we trained came out visibly soft). Style
conditioning: one learned embedding table (``StyleEmbedding``), applied to the style map averaged to each
level's resolution, FiLM-modulates every block.

Output: display-referred sRGB-encoded colour in [0, 1] (what ``neural_renderer.data.styles`` targets are).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neural_renderer.models.blocks import (
    ConvFiLM,
    ParamEmbedding,
    ResFiLM,
    StyleEmbedding,
    downsample_style,
    upsample2,
)
from neural_renderer.models.features import (
    ENGINE_CHANNELS,
    ENGINE_INPUT_CHANNELS,
    FEATURE_CHANNELS,
    HISTORY_CHANNELS,
    LIGHTING_CHANNELS,
    PARAM_CHANNELS,
    EngineFeatures,
    GBufferFeatures,
    GBuffers,
    LightingFeatures,
    ParamFeatures,
    Reproject,
    house_lighting,
)


@dataclass
class NetConfig:
    """Hyper-parameters stored in every checkpoint (so a checkpoint rebuilds its own network)."""

    styles: int = 6
    width: int = 32
    embed: int = 16
    trunk_blocks: int = 2
    upscale: int = 1
    #: Albedo-modulated head: the network predicts, per output pixel, a gain ``m`` in [0, 2] and an offset ``a``
    #: in [-1, 1], and the image is ``m * sqrt(albedo) + a`` (sqrt ~ display encoding). Texture and silhouette
    #: detail then reach the output exactly instead of through the half-resolution decoder, which otherwise
    #: hedges with soft edges. Non-photoreal styles can ignore the albedo (m = 0). False in older checkpoints.
    modulate: bool = False
    #: Lighting inputs (``LightingFeatures``): the engine's sun direction and irradiance and its sky radiance as
    #: per-frame constants. Without them the sun's per-scene jitter and the sun and sky intensities are
    #: unobservable, and their effect on shading and shadows is noise the network can only average. False in
    #: older checkpoints.
    lighting: bool = False
    #: Styles as parameters (issue 17): the ``style_map`` input is the per-pixel *parameter* map (B, 19, H, W),
    #: the library table's shading columns mixed per pixel, instead of weights over ``styles`` named presets;
    #: embedded by a small MLP (``ParamEmbedding``). A style a game defines at run time is then just another row.
    #: False in older checkpoints.
    params: bool = False
    #: The engine's lit image as an input (issue 15): ``engine`` (B, 4, H, W), its ``hudless_color`` in linear
    #: light plus a presence flag (``EngineFeatures``), so the network keeps the game's own lights. False in
    #: older checkpoints.
    engine: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NeuralRendererNet(nn.Module):
    """G-buffers + style map (+ optional history) -> image. See the module docstring for the data flow.

    Inputs (NCHW float32): the G-buffers (``GBuffers``), style_map (B,S,H,W), history (B,4,H,W) or None (no temporal input:
    treated as zeros = "nothing reprojected"), lighting (B,9,1,1) sun direction, sun irradiance, sky radiance
    (only with ``config.lighting``; None = the house lighting). H and W must be multiples of 8.
    Output: (B, 3, uH, uW) display sRGB in [0, 1], u = ``config.upscale``.
    """

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or NetConfig()
        w, e, s = cfg.width, cfg.embed, cfg.styles
        w1, w2 = w * 3 // 2, w * 2
        self.features = GBufferFeatures()
        self.reproject = Reproject()
        self.lighting = LightingFeatures() if cfg.lighting else None
        self.engine = EngineFeatures() if cfg.engine else None
        if cfg.params:
            s = PARAM_CHANNELS  # the fuse layer sees the (folded) parameter features where it saw the weights
            self.param_features: ParamFeatures | None = ParamFeatures()
            self.param_embed: ParamEmbedding | None = ParamEmbedding(PARAM_CHANNELS, e)
        else:
            self.param_features = self.param_embed = None
            self.style_embed = StyleEmbedding(s, e)
        cin = (
            FEATURE_CHANNELS
            + HISTORY_CHANNELS
            + (LIGHTING_CHANNELS if cfg.lighting else 0)
            + (ENGINE_CHANNELS if cfg.engine else 0)
        ) * 4
        self.enc0 = ConvFiLM(cin, w, e)
        self.enc1 = ConvFiLM(w, w1, e, stride=2)
        self.enc2 = ConvFiLM(w1, w2, e, stride=2)
        self.trunk = nn.ModuleList([ResFiLM(w2, e) for _ in range(cfg.trunk_blocks)])
        self.dec1 = ConvFiLM(w2 + w1, w1, e)
        self.dec0 = ConvFiLM(w1 + w, w, e)
        self.fuse = nn.Conv2d(w + 4 * s + cin, w, 1)
        head_out = (6 if cfg.modulate else 3) * (2 * cfg.upscale) ** 2
        self.head = nn.Conv2d(w, head_out, 3, padding=1)

    def forward(
        self,
        g: GBuffers,
        style_map: torch.Tensor,
        history: torch.Tensor | None = None,
        lighting: torch.Tensor | None = None,
        engine: torch.Tensor | None = None,
    ) -> torch.Tensor:
        albedo, normals = g.albedo, g.normals
        x = self.features(g)
        if history is None:
            history = torch.zeros_like(x[:, :HISTORY_CHANNELS])
        parts = [x, history]
        if self.lighting is not None:
            if lighting is None:
                lighting = house_lighting(x.shape[0]).to(x)
            parts.append(self.lighting(normals, x[:, FEATURE_CHANNELS - 1 : FEATURE_CHANNELS], lighting))
        if self.engine is not None:
            if engine is None:  # no engine image: zeros, presence 0
                engine = torch.zeros_like(x[:, :ENGINE_INPUT_CHANNELS])
            parts.append(self.engine(engine, albedo))
        # newer inputs go last so that a network widened to take them keeps every old channel's index
        x = F.pixel_unshuffle(torch.cat(parts, 1), 2)
        if self.param_features is not None and self.param_embed is not None:
            style_map = self.param_features(style_map)  # from here on the parameter features
            emb0 = self.param_embed(F.avg_pool2d(style_map, 2))
            emb1 = F.avg_pool2d(emb0, 2)
            emb2 = F.avg_pool2d(emb1, 2)
        else:
            emb0 = self.style_embed(downsample_style(style_map, 2))
            emb1 = self.style_embed(downsample_style(style_map, 4))
            emb2 = self.style_embed(downsample_style(style_map, 8))
        e0 = self.enc0(x, emb0)
        e1 = self.enc1(e0, emb1)
        t = self.enc2(e1, emb2)
        for block in self.trunk:
            t = block(t, emb2)
        d1 = self.dec1(torch.cat([upsample2(t), e1], 1), emb1)
        d0 = self.dec0(torch.cat([upsample2(d1), e0], 1), emb0)
        fused = F.leaky_relu(self.fuse(torch.cat([d0, F.pixel_unshuffle(style_map, 2), x], 1)), 0.1)
        out = F.pixel_shuffle(self.head(fused), 2 * self.config.upscale)
        if not self.config.modulate:
            return torch.sigmoid(out)
        u = self.config.upscale
        base = albedo.clamp(0.0, 1.0).sqrt()
        if u > 1:
            base = F.interpolate(base, scale_factor=u, mode="nearest")
        img = base * 2.0 * torch.sigmoid(out[:, :3]) + torch.tanh(out[:, 3:])
        # clamp to the display range, letting the gradient through where it clamps (a plain clamp would leave
        # a pixel that overshoots with no gradient to come back)
        return img + (img.clamp(0.0, 1.0) - img).detach()

    def forward_temporal(
        self,
        g: GBuffers,
        style_map: torch.Tensor,
        motion_vectors: torch.Tensor,
        prev_output: torch.Tensor,
        prev_linear_depth: torch.Tensor,
        lighting: torch.Tensor | None = None,
        engine: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Like ``forward`` with the history built in-graph: prev_output (B,3,uH,uW) is the last frame's
        output, prev_linear_depth (B,1,H,W) its depth (zeros = no history), motion_vectors (B,2,H,W) in input
        pixels."""
        u = self.config.upscale
        prev = F.avg_pool2d(prev_output, u) if u > 1 else prev_output
        history = self.reproject(prev, prev_linear_depth, motion_vectors, g.linear_depth)
        return self.forward(g, style_map, history, lighting, engine)


def count_macs(model: nn.Module, height: int, width: int, temporal: bool = False) -> int:
    """Multiply-accumulates of one forward pass on a (height, width) frame, counted from the convolutions
    actually executed (forward hooks), so the number follows the architecture rather than a hand formula.
    Elementwise ops, pooling, resampling and activations are not counted (they are < 2 % here and are not
    matrix work)."""
    net = model
    assert isinstance(net, NeuralRendererNet)
    total = 0

    def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(mod, nn.Conv2d)
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            cfg = net.config
            args = example_inputs(
                cfg.styles, height, width, upscale=cfg.upscale, temporal=temporal, params=cfg.params
            )
            engine = torch.zeros(1, 4, height, width) if cfg.engine else None
            g = GBuffers.of(args)
            if temporal:
                net.forward_temporal(g, *args[6:10], engine=engine)
            else:
                net(g, args[6], engine=engine)
    finally:
        for h in handles:
            h.remove()
    return total


def example_inputs(
    styles: int,
    height: int,
    width: int,
    batch: int = 1,
    upscale: int = 1,
    temporal: bool = False,
    seed: int = 0,
    lighting: bool = False,
    params: bool = False,
    engine: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Plausible random inputs in graph-input order (export, parity tests, benchmarks); with ``lighting``
    the three (B, 3, 1, 1) lighting inputs come next, then with ``engine`` the (B, 4, H, W) engine image (linear
    RGB + presence). With ``params`` the style input is a parameter map (B, 19, H, W) mixing random presets."""
    g = torch.Generator().manual_seed(seed)
    b, h, w = batch, height, width
    n = torch.randn(b, 3, h, w, generator=g)
    n = n / n.norm(dim=1, keepdim=True)
    style = torch.rand(b, styles, h, w, generator=g)
    style = style / style.sum(1, keepdim=True)
    if params:
        from bridge.style.library import DEFAULT_LIBRARY, GRADING_START

        table = torch.from_numpy(DEFAULT_LIBRARY.table()[:, :GRADING_START].copy())
        mix = torch.rand(b, len(table), h, w, generator=g)
        style = torch.einsum("bshw,sp->bphw", mix / mix.sum(1, keepdim=True), table)
    args: list[torch.Tensor] = [
        torch.rand(b, 3, h, w, generator=g),
        n,
        1 + 9 * torch.rand(b, 1, h, w, generator=g),
        torch.rand(b, 1, h, w, generator=g),
        (torch.rand(b, 1, h, w, generator=g) > 0.7).float(),
        torch.zeros(b, 3, h, w),
        style,
    ]
    if temporal:
        args += [
            torch.randn(b, 2, h, w, generator=g),
            torch.rand(b, 3, h * upscale, w * upscale, generator=g),
            args[2] * (1 + 0.01 * torch.randn(b, 1, h, w, generator=g)),
        ]
    if lighting:
        house = house_lighting(b)
        args += [
            house[:, 3 * k : 3 * k + 3] * (0.8 + 0.4 * torch.rand(b, 3, 1, 1, generator=g)) for k in range(3)
        ]
    if engine:
        rad = args[0] * 2.0 * torch.rand(b, 1, h, w, generator=g)
        args.append(torch.cat([rad, torch.ones(b, 1, h, w)], 1))
    return tuple(args)


def _copy_widened(old_state: dict[str, torch.Tensor], wide: NeuralRendererNet) -> NeuralRendererNet:
    """Copy ``old_state`` into ``wide`` where ``wide`` only has more *input* channels, appended at the end
    (``enc0`` and ``fuse`` see the pixel_unshuffled inputs last, and newer inputs go last there): the old
    channels keep their weights, the new ones start at zero, so ``wide`` computes what the old network did
    whatever its new inputs carry. Weights of ``wide`` that ``old_state`` lacks are left as they are."""
    state = wide.state_dict()
    for name, old in old_state.items():
        new = state[name]
        if new.shape == old.shape:
            new.copy_(old)
        else:  # only the input-channel dim grows, at its end
            assert new.shape[0] == old.shape[0] and new.shape[2:] == old.shape[2:], name
            new.zero_()
            new[:, : old.shape[1]].copy_(old)
    wide.load_state_dict(state)
    return wide


def widen_for_lighting(net: NeuralRendererNet) -> NeuralRendererNet:
    """``net`` rebuilt with lighting inputs (``NetConfig.lighting``), its weights copied and the weights of the
    new input channels (the last ones of ``enc0`` and ``fuse``) set to zero: the widened network computes
    exactly what ``net`` does, whatever the lighting, until training moves those weights."""
    wide = NeuralRendererNet(NetConfig(**(net.config.to_dict() | {"lighting": True})))
    return _copy_widened(net.state_dict(), wide).train(net.training)


#: Parameter feature left out of the warm start's linear maps: exposure, the one feature that is not affine in
#: the parameters (``ParamFeatures`` takes its log2), so that maps which ignore it are affine in the parameter
#: map and a parameter-space mix of presets gets exactly the mix of what the presets get.
_NONAFFINE_PARAM = 9


def _preset_solve(pf: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum-norm affine map (W, c), W (O, P) with column ``_NONAFFINE_PARAM`` zero, such that
    ``W @ pf[s] + c == targets[:, s]`` for every preset s. pf (S, P) float64, targets (O, S) float64."""
    s = pf.shape[0]
    a = torch.cat([pf, torch.ones(s, 1, dtype=pf.dtype)], 1)
    a[:, _NONAFFINE_PARAM] = 0.0
    sol = targets @ torch.linalg.pinv(a).T  # (O, P + 1)
    resid = (sol @ a.T - targets).abs().max().item()
    if resid > 1e-6:
        raise ValueError(f"the presets' parameter rows are not affinely independent (residual {resid:.2e})")
    return sol[:, :-1], sol[:, -1]


def params_from_styles(net: NeuralRendererNet, preset_table: torch.Tensor, margin: float = 0.1) -> NeuralRendererNet:
    """A styles-as-weights network (``NetConfig.params`` False) rebuilt to take the style *parameter* map and
    the engine image (``params=True, engine=True``), computing exactly what ``net`` computes on every map of
    its presets, with or without an engine image: the warm start that lets a short run keep what the shipped
    model learnt on the presets instead of relearning it (a from-scratch CPU run lost 15-70 % FLIP on them).

    preset_table (S, 19): the shading columns of the presets in ``net``'s style order
    (``DEFAULT_LIBRARY.table()[:, :GRADING_START]``).

    Construction (both maps below ignore the exposure feature, the one that is not affine in the parameters):

    * ``param_embed``: an affine map E(pf) with E(pf(row_s)) = the old embedding column of preset s, built as
      ``fc2 @ leaky_relu(fc1 @ pf)`` with fc1 a fixed orthonormal-column lift whose biases keep every hidden
      unit positive, by ``margin``, on the convex hull of the presets' features (there the MLP is linear;
      random looks outside the hull reach the nonlinearity, which training can then shape).
    * ``fuse``: its 4 x S weight columns (pixel_unshuffle interleaves channel c as c*4 + k, k the sub-pixel) become
      4 x 19 parameter-feature columns solved per sub-pixel so that W_k @ pf(row_s) + c_k = W_old[:, s*4+k]; the
      c_k go into the bias (the old weights sum to 1 per pixel).
    * the engine's input channels (the last of ``enc0``'s and ``fuse``'s inputs) start at zero, as in
      :func:`widen_for_lighting`.

    Guarantee: for any style map whose pixels are convex mixes of presets (old: the weights; new: the same mix
    of the rows, in parameter space), the new network's output equals the old one's up to float rounding; for a
    pure-preset map this needs no assumption at all about exposure. Raises if the presets' rows are not affinely
    independent (then no such map exists)."""
    cfg = net.config
    if cfg.params:
        raise ValueError("the network already takes style parameters")
    if tuple(preset_table.shape) != (cfg.styles, PARAM_CHANNELS):
        raise ValueError(f"preset_table must be ({cfg.styles}, {PARAM_CHANNELS}), got {tuple(preset_table.shape)}")
    wide = NeuralRendererNet(NetConfig(**(cfg.to_dict() | {"params": True, "engine": True})))
    assert wide.param_features is not None and wide.param_embed is not None
    old = net.state_dict()
    with torch.no_grad():
        pf = wide.param_features(preset_table.float().view(cfg.styles, PARAM_CHANNELS, 1, 1))
        pf = pf.view(cfg.styles, PARAM_CHANNELS).double()
        # embedding: old column s of proj is preset s's embedding (the weights sum to 1, so no bias)
        emb = old.pop("style_embed.proj.weight")[:, :, 0, 0].double()  # (E, S)
        lin, bias = _preset_solve(pf, emb)
        fc1, fc2 = wide.param_embed.fc1, wide.param_embed.fc2
        assert fc1.bias is not None and fc2.bias is not None
        hidden = fc1.out_channels
        if hidden < PARAM_CHANNELS:
            raise ValueError(f"ParamEmbedding needs at least {PARAM_CHANNELS} hidden units for an exact warm start")
        gen = torch.Generator().manual_seed(0)
        lift = torch.linalg.qr(torch.randn(hidden, PARAM_CHANNELS, generator=gen, dtype=torch.float64))[0]
        lift_bias = margin - (pf @ lift.T).min(0).values  # every hidden unit >= margin at every preset
        fc1.weight.copy_(lift.view(hidden, PARAM_CHANNELS, 1, 1))
        fc1.bias.copy_(lift_bias)
        w2 = lin @ lift.T  # lift has orthonormal columns: lift.T @ lift = I, so w2 @ lift = lin
        fc2.weight.copy_(w2.view(*w2.shape, 1, 1))
        fc2.bias.copy_(bias - w2 @ lift_bias)
        # fuse: [d0 (w) | style 4S | x], the style block becomes 4 x 19 parameter-feature columns
        w = cfg.width
        fw, fb = old["fuse.weight"][:, :, 0, 0].double(), old["fuse.bias"].double()
        style_old = fw[:, w : w + 4 * cfg.styles]
        style_new = torch.zeros(fw.shape[0], 4 * PARAM_CHANNELS, dtype=torch.float64)
        for k in range(4):
            wk, ck = _preset_solve(pf, style_old[:, k::4])
            style_new[:, k::4] = wk
            fb = fb + ck
        fw = torch.cat([fw[:, :w], style_new, fw[:, w + 4 * cfg.styles :]], 1)
        old["fuse.weight"] = fw.float().view(*fw.shape, 1, 1)
        old["fuse.bias"] = fb.float()
    return _copy_widened(old, wide).train(net.training)


def load_checkpoint(path: str | Any, map_location: str = "cpu") -> tuple[NeuralRendererNet, dict[str, Any]]:
    """Rebuild the network stored in a checkpoint; returns (net in eval mode, the checkpoint dict). A training
    checkpoint's weight average (``ema``), what its held-out monitor evaluated, wins over the raw weights."""
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    net = NeuralRendererNet(NetConfig(**ckpt["config"]))
    net.load_state_dict({**ckpt["model"], **(ckpt.get("ema") or {})})
    net.eval()
    return net, ckpt
