"""Small composable building blocks of the neural renderer. Every module documents its tensor shapes.

Notation: B batch, C channels, H x W spatial size, S number of styles, E style-embedding width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StyleEmbedding(nn.Module):
    """Per-pixel style embedding: the style map's weights mix learned per-style vectors.

    (B, S*k, H, W) -> (B, E, H, W). A 1x1 convolution without bias *is* ``Σ_s w_s · e_s``: linear in the
    weights, so a 30/70 mix of two styles is exactly the 30/70 mix of their embeddings and transitions are
    smooth. ``k`` > 1 when the map was space-to-depth folded (each sub-pixel gets its own weights).
    """

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 1, bias=False)
        nn.init.normal_(self.proj.weight, std=1.0)

    def forward(self, style: torch.Tensor) -> torch.Tensor:
        return self.proj(style)


class ParamEmbedding(nn.Module):
    """Per-pixel style embedding from a style *parameter* map (``NetConfig.params``).

    (B, P, H, W) parameter features -> (B, E, H, W) through a small per-pixel MLP (1x1 convolutions). Unlike
    :class:`StyleEmbedding` it need not be linear: mixes and tweens happen in parameter space before it, so a
    30/70 mix is already the parameters of the mixed look.
    """

    def __init__(self, in_channels: int, dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.leaky_relu(self.fc1(params), 0.1))


class FiLM(nn.Module):
    """Feature-wise affine modulation from a per-pixel embedding (SPADE without its spatial conv).

    features (B, C, H, W), embedding (B, E, H, W) -> (B, C, H, W): ``x · (1 + γ(e)) + β(e)`` with γ, β linear
    in
    ``e`` (zero-initialised, so an untrained FiLM is the identity).
    """

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.to_gb = nn.Conv2d(dim, 2 * channels, 1)
        nn.init.zeros_(self.to_gb.weight)
        nn.init.zeros_(self.to_gb.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_gb(emb).chunk(2, dim=1)
        return x * (1 + gamma) + beta


class ConvFiLM(nn.Module):
    """3x3 conv -> FiLM -> activation. (B, Cin, H, W), (B, E, H/s, W/s) -> (B, Cout, H/s, W/s), s =
    ``stride``."""

    def __init__(self, cin: int, cout: int, dim: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.film = FiLM(cout, dim)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.act(self.film(self.conv(x), emb))


class ResFiLM(nn.Module):
    """Residual block of two 3x3 convs, the second FiLM-modulated. (B, C, H, W), (B, E, H, W) -> (B, C, H,
    W)."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = FiLM(channels, dim)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(x))
        return self.act(x + self.film(self.conv2(h), emb))


def downsample_style(style: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, S, H, W) -> (B, S, H/f, W/f): average weights (still rows summing to 1)."""
    return F.avg_pool2d(style, factor) if factor > 1 else style


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W), bilinear (half-pixel centres, exports as ONNX Resize)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
