"""The network rearranged for inference on a CPU: the same function as ``NeuralRendererNet``, fewer memory passes.

Profiling the straightforward export with ONNX Runtime (2 threads, 640x360) showed the convolutions taking only
42 % of the time: the rest went to the space-to-depth folds (a 6-D ``Transpose`` of the 24 full-resolution input
channels alone took 14 %), to re-ordering tensors between ONNX Runtime's blocked ``NCHWc`` layout and plain NCHW
around every op it cannot run blocked (``Split`` in FiLM, ``Concat`` of odd channel counts), and to concatenations.
:class:`DeployNet` computes the same image with weights rearranged so that none of those are needed:

* ``space-to-depth 2 -> 3x3 conv`` (``enc0``) is one 6x6 convolution of stride 2 on the full-resolution input;
  the ``fuse`` layer's 1x1 convolution over ``[decoder, folded style map, folded input]`` is the sum of a 1x1
  convolution and two 2x2 convolutions of stride 2 (no fold, no concatenation);
* ``conv(concat(a, b))`` in the decoder is ``conv_a(a) + conv_b(b)`` (ONNX Runtime fuses the sum into the
  convolution);
* FiLM's ``embedding -> to_gb -> split`` is folded into two 1x1 convolutions straight from the pooled style map
  (the embedding is linear, so ``G·(P·s) = (G·P)·s``), with the ``1 +`` of ``x · (1 + γ)`` in γ's bias;
* the full-resolution input (features, history, lighting, engine features) is concatenated once from the pieces
  each module computes (``parts``), not module by module and then again (a second full-resolution copy);
* two of its channels enter scaled by a power of two (:data:`LOCAL_DEPTH_SCALE`), divided out of the weights, so
  that one int8 scale suits every channel (``neural_renderer.quantize``).

Inputs and output are exactly those of ``NeuralRendererNet.forward`` / ``forward_temporal``; the export checks
parity against the original network (``neural_renderer.export.parity``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neural_renderer.models.blocks import ConvFiLM, ParamEmbedding, ResFiLM, upsample2
from neural_renderer.models.features import (
    ENGINE_INPUT_CHANNELS,
    FEATURE_CHANNELS,
    HISTORY_CHANNELS,
    LIGHTING_CHANNELS,
    PARAM_CHANNELS,
    GBuffers,
    house_lighting,
)
from neural_renderer.models.net import NeuralRendererNet

#: ONNX Runtime runs a convolution in its blocked NCHWc layout only when its input channels are a multiple of its
#: block (8 on AVX2): the 31 full-resolution input channels of a network with the engine image (issue 15) made
#: ``enc0``, a quarter of the frame's work, run unblocked at 4.5x its blocked time (profiled at 640x360, one
#: thread), so DeployNet pads them, and the 19 parameter features, with zero channels (zero weights).
CHANNEL_BLOCK = 8

#: Scales of full-resolution input channels (the input of ``enc0`` and ``fuse``), folded out of those two
#: convolutions' weights, so the float network computes the same image (both scales are powers of two: exact).
#: Why: an int8 graph (``neural_renderer.quantize``) quantizes that input with one scale for all its channels,
#: and on the training frames the local-depth feature spans [-6.1, 5.8] while every other channel stays within
#: [-1, 1.12] and the five lighting constants within [-0.23, 0.2]; one uint8 step was then 0.047, a fifth of the
#: lighting constants' whole range. Scaled, every channel spans about [-1.5, 1.5] and a step is 0.012.
LOCAL_DEPTH_SCALE = 0.25
#: the local-depth feature: its channel of the input and its piece of ``GBufferFeatures.parts``
LOCAL_DEPTH, LOCAL_DEPTH_PART = 7, 3
LIGHTING_CONST_SCALE = 4.0


def _conv(weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    out, cin, kh, kw = weight.shape
    conv = nn.Conv2d(cin, out, (kh, kw), stride=stride, padding=padding, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None and conv.bias is not None:
            conv.bias.copy_(bias)
    return conv


class _Film(nn.Module):
    """γ and β of one FiLM straight from the style map pooled to the block's level: (B, S, h, w) -> 2 x (B, C,
    h, w), γ already ``1 + γ``."""

    def __init__(self, film_to_gb: nn.Conv2d, embed: nn.Conv2d | None) -> None:
        super().__init__()
        c = film_to_gb.out_channels // 2
        g = film_to_gb.weight[:, :, 0, 0]  # (2C, E): from an embedding (a parameter-conditioned network's)
        if embed is not None:  # from the style weights through the linear style embedding: (2C, S)
            g = g @ embed.weight[:, :, 0, 0]
        b = film_to_gb.bias
        assert b is not None
        self.gamma_w = nn.Parameter(g[:c].detach().clone(), requires_grad=False)
        self.gamma_b = nn.Parameter((b[:c] + 1.0).detach().clone().view(c, 1), requires_grad=False)
        self.beta_w = nn.Parameter(g[c:].detach().clone(), requires_grad=False)
        self.beta_b = nn.Parameter(b[c:].detach().clone().view(c, 1), requires_grad=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # matrix products rather than 1x1 convolutions: their outputs stay in plain NCHW, where the elementwise
        # FiLM runs, instead of ONNX Runtime's blocked layout (which would add a re-order pass for each)
        flat = style.flatten(2)
        gamma = (self.gamma_w @ flat + self.gamma_b).view_as(x)
        beta = (self.beta_w @ flat + self.beta_b).view_as(x)
        return x * gamma + beta


class _ConvFilm(nn.Module):
    """``ConvFiLM`` with its convolution split over the parts of its (formerly concatenated) input."""

    def __init__(self, block: ConvFiLM, embed: nn.Conv2d | None, splits: tuple[int, ...] = ()) -> None:
        super().__init__()
        conv = block.conv
        stride, pad = conv.stride[0], int(conv.padding[0])
        w, b = conv.weight.detach(), conv.bias
        parts = splits or (w.shape[1],)
        starts = [sum(parts[:k]) for k in range(len(parts))]
        self.convs = nn.ModuleList(
            [
                _conv(w[:, s : s + n], b.detach() if k == 0 and b is not None else None, stride, pad)
                for k, (s, n) in enumerate(zip(starts, parts, strict=True))
            ]
        )
        self.film = _Film(block.film.to_gb, embed)
        self.slope = block.act.negative_slope

    def forward(self, style: torch.Tensor, *xs: torch.Tensor) -> torch.Tensor:
        y = self.convs[0](xs[0])
        for conv, x in zip(self.convs[1:], xs[1:], strict=True):
            y = y + conv(x)
        return F.leaky_relu(self.film(y, style), self.slope)


class _ResFilm(nn.Module):
    def __init__(self, block: ResFiLM, embed: nn.Conv2d | None) -> None:
        super().__init__()
        self.conv1, self.conv2 = block.conv1, block.conv2
        self.film = _Film(block.film.to_gb, embed)
        self.slope = block.act.negative_slope

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), self.slope)
        return F.leaky_relu(x + self.film(self.conv2(h), style), self.slope)


class DeployNet(nn.Module):
    """``NeuralRendererNet`` for inference (see the module docstring); built from a trained network, which it
    does not modify. Same call signatures as ``NeuralRendererNet.forward`` and ``forward_temporal``."""

    def __init__(self, net: NeuralRendererNet) -> None:
        super().__init__()
        cfg = self.config = net.config
        net = net.eval()
        self.features, self.reproject, self.lighting = net.features, net.reproject, net.lighting
        self.engine, self.param_features, self.param_embed = net.engine, net.param_features, net.param_embed
        # a parameter-conditioned network's FiLMs read its embedding; a style-weight network's read the pooled
        # weights through the (linear) embedding folded into them
        embed = None if cfg.params else net.style_embed.proj
        w, s = cfg.width, (PARAM_CHANNELS if cfg.params else cfg.styles)
        w1, w2 = w * 3 // 2, w * 2
        # enc0: space-to-depth 2 (channel c*4 + dy*2 + dx) then 3x3 = a 6x6 stride-2 conv, tap (2ky+dy, 2kx+dx)
        c0 = net.enc0.conv.weight.detach()
        full = c0.shape[1] // 4
        w6 = c0.view(w, full, 2, 2, 3, 3).permute(0, 1, 4, 2, 5, 3).reshape(w, full, 6, 6)
        # zero input channels up to a multiple of CHANNEL_BLOCK, for the convolutions that read the full-resolution
        # input and the parameter features (see CHANNEL_BLOCK)
        self.x_pad = -full % CHANNEL_BLOCK
        self.s_pad = -s % CHANNEL_BLOCK if cfg.params else 0
        w6 = F.pad(w6, (0, 0, 0, 0, 0, self.x_pad))
        # the input channels' scales (see LOCAL_DEPTH_SCALE), divided out of every weight that reads them
        self.x_scale = torch.ones(full + self.x_pad)
        self.x_scale[LOCAL_DEPTH] = LOCAL_DEPTH_SCALE
        if cfg.lighting:
            first = FEATURE_CHANNELS + HISTORY_CHANNELS + 1  # after the n.l term
            self.x_scale[first : first + LIGHTING_CHANNELS - 1] = LIGHTING_CONST_SCALE
        w6 = w6 / self.x_scale.view(1, -1, 1, 1)
        b0 = net.enc0.conv.bias
        self.enc0 = _conv(w6, None if b0 is None else b0.detach(), stride=2, padding=2)
        self.enc0_film = _Film(net.enc0.film.to_gb, embed)
        self.slope = net.enc0.act.negative_slope
        self.enc1 = _ConvFilm(net.enc1, embed)
        self.enc2 = _ConvFilm(net.enc2, embed)
        self.trunk = nn.ModuleList([_ResFilm(b, embed) for b in net.trunk])  # type: ignore[arg-type]
        self.dec1 = _ConvFilm(net.dec1, embed, (w2, w1))
        self.dec0 = _ConvFilm(net.dec0, embed, (w1, w))
        # fuse: 1x1 over [d0 (w), s2d(style) (4S), s2d(x) (4*full)] = 1x1(d0) + 2x2/2(style) + 2x2/2(x)
        fw = net.fuse.weight.detach()[:, :, 0, 0]
        fb = net.fuse.bias
        self.fuse_d = _conv(fw[:, :w, None, None], None if fb is None else fb.detach())
        self.fuse_s = _conv(F.pad(fw[:, w : w + 4 * s].reshape(w, s, 2, 2), (0, 0, 0, 0, 0, self.s_pad)), None,
                            stride=2)
        fx = F.pad(fw[:, w + 4 * s :].reshape(w, full, 2, 2), (0, 0, 0, 0, 0, self.x_pad))
        self.fuse_x = _conv(fx / self.x_scale.view(1, -1, 1, 1), None, stride=2)
        if self.param_embed is not None and self.s_pad:  # the embedding MLP reads the padded features too
            fc1 = self.param_embed.fc1
            padded = ParamEmbedding(s + self.s_pad, self.param_embed.fc2.out_channels, fc1.out_channels)
            padded.fc1 = _conv(F.pad(fc1.weight.detach(), (0, 0, 0, 0, 0, self.s_pad)),
                               None if fc1.bias is None else fc1.bias.detach())
            padded.fc2 = self.param_embed.fc2
            self.param_embed = padded
        self.head = net.head

    def forward(
        self,
        g: GBuffers,
        style_map: torch.Tensor,
        history: torch.Tensor | list[torch.Tensor] | None = None,
        lighting: torch.Tensor | None = None,
        engine: torch.Tensor | None = None,
    ) -> torch.Tensor:
        albedo = g.albedo
        x = torch.cat(self._input_parts(g, history, lighting, engine), 1)
        if self.param_features is not None and self.param_embed is not None:
            style_map = self.param_features(style_map, self.s_pad)
            s2 = self.param_embed(F.avg_pool2d(style_map, 2))  # the embedding, pooled further per level
        else:
            s2 = F.avg_pool2d(style_map, 2)
        s4 = F.avg_pool2d(s2, 2)
        s8 = F.avg_pool2d(s4, 2)
        e0 = F.leaky_relu(self.enc0_film(self.enc0(x), s2), self.slope)
        e1 = self.enc1(s4, e0)
        t = self.enc2(s8, e1)
        for block in self.trunk:
            t = block(t, s8)
        d1 = self.dec1(s4, upsample2(t), e1)
        d0 = self.dec0(s2, upsample2(d1), e0)
        fused = F.leaky_relu(self.fuse_d(d0) + self.fuse_s(style_map) + self.fuse_x(x), 0.1)
        out = F.pixel_shuffle(self.head(fused), 2 * self.config.upscale)
        if not self.config.modulate:
            return torch.sigmoid(out)
        u = self.config.upscale
        base = albedo.clamp(0.0, 1.0).sqrt()
        if u > 1:
            base = F.interpolate(base, scale_factor=u, mode="nearest")
        return (base * 2.0 * torch.sigmoid(out[:, :3]) + torch.tanh(out[:, 3:])).clamp(0.0, 1.0)

    def _input_parts(
        self,
        g: GBuffers,
        history: torch.Tensor | list[torch.Tensor] | None,
        lighting: torch.Tensor | None,
        engine: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """The full-resolution input ``[features, history, lighting, engine, zero padding]`` as the pieces its
        modules compute, concatenated once by the caller: nesting each module's own concatenation inside it
        copied the 14 feature channels (and the history and lighting ones) twice, 4-6 ms of the 640x360 frame on
        2 threads."""
        albedo, normals = g.albedo, g.normals
        feats = self.features.parts(g)
        valid = feats[-1]
        feats[LOCAL_DEPTH_PART] = feats[LOCAL_DEPTH_PART] * LOCAL_DEPTH_SCALE
        parts = list(feats)
        if history is None:
            history = torch.zeros_like(valid).expand(-1, HISTORY_CHANNELS, -1, -1)
        parts += history if isinstance(history, list) else [history]
        if self.lighting is not None:
            if lighting is None:
                lighting = house_lighting(valid.shape[0]).to(valid)
            parts += self.lighting.parts(normals, valid, lighting, LIGHTING_CONST_SCALE)
        if self.engine is not None:
            if engine is None:
                engine = torch.zeros_like(valid).expand(-1, ENGINE_INPUT_CHANNELS, -1, -1)
            parts += self.engine.parts(engine, albedo)
        if self.x_pad:
            parts.append(torch.zeros_like(valid).expand(-1, self.x_pad, -1, -1))
        return parts

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
        u = self.config.upscale
        prev = F.avg_pool2d(prev_output, u) if u > 1 else prev_output
        history = self.reproject.parts(prev, prev_linear_depth, motion_vectors, g.linear_depth)
        return self.forward(g, style_map, history, lighting, engine)
