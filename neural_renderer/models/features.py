"""Input normalisation and the temporal reprojection: protocol buffers in, network-ready tensors out.

Both live *inside* the exported graph, so an engine (or the ONNX renderer) feeds raw protocol buffers (linear
albedo, world normals, view depth in world units, ...) and never has to know the network's normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bridge.protocol import LIGHTING_CONSTANTS
from neural_renderer.data.scene import SKY_RADIANCE, SUN_DIRECTION, SUN_IRRADIANCE

#: Graph inputs in order: (protocol buffer name, channels). ``style_map`` follows them.
GBUFFER_INPUTS: tuple[tuple[str, int], ...] = (
    ("albedo", 3),
    ("normals", 3),
    ("linear_depth", 1),
    ("roughness", 1),
    ("metallic", 1),
    ("emissive", 3),
)
#: Extra inputs of the temporal graph (the renderer keeps them from the previous frame).
TEMPORAL_INPUTS: tuple[tuple[str, int], ...] = (
    ("motion_vectors", 2),
    ("x_prev_output", 3),
    ("x_prev_linear_depth", 1),
)
#: Optional lighting inputs (1x1 per-frame constants, vendor-extension buffers, see docs/protocol.md 6.1):
#: the engine's sun (unit vector *towards* it, world space) and its irradiance, and the sky/ambient radiance.
LIGHTING_INPUTS: tuple[tuple[str, int], ...] = tuple((name, 3) for name in LIGHTING_CONSTANTS)
FEATURE_CHANNELS = 14
HISTORY_CHANNELS = 4
LIGHTING_CHANNELS = 6
#: The style parameter map (``NetConfig.params``): the library table's shading columns, see
#: ``neural_renderer.data.styles.SHADING_COLUMNS``.
PARAM_CHANNELS = 19
#: The engine's lit image (``NetConfig.engine``): linear RGB plus a presence flag in, 7 features out.
ENGINE_INPUT_CHANNELS = 4
ENGINE_CHANNELS = 7


def house_lighting(batch: int = 1) -> torch.Tensor:
    """(batch, 9, 1, 1) the dataset's house lighting (what a frame without lighting inputs is assumed to
    have): sun direction, sun irradiance (mid of the dataset's range), sky radiance."""
    d = torch.tensor(SUN_DIRECTION, dtype=torch.float32)
    e = torch.tensor(SUN_IRRADIANCE, dtype=torch.float32)
    s = torch.tensor(SKY_RADIANCE, dtype=torch.float32)
    return torch.cat([d / d.norm(), e, s]).view(1, 9, 1, 1).expand(batch, -1, -1, -1).contiguous()


@dataclass
class GBuffers:
    """The six G-buffers the network reads, by protocol name, each NCHW float32: albedo (B,3,H,W) linear, normals
    (B,3,H,W) world space, linear_depth (B,1,H,W) world units, roughness and metallic (B,1,H,W) 0..1, emissive
    (B,3,H,W) linear radiance. The one container every signature of the model code takes (the network, its
    deployed form, the graph wrappers, training), instead of six positional tensors spelled out in each."""

    albedo: torch.Tensor
    normals: torch.Tensor
    linear_depth: torch.Tensor
    roughness: torch.Tensor
    metallic: torch.Tensor
    emissive: torch.Tensor

    @classmethod
    def of(cls, tensors: Sequence[torch.Tensor]) -> GBuffers:
        """From tensors in :data:`GBUFFER_INPUTS` order (the first six of a graph's inputs)."""
        return cls(*tensors[: len(GBUFFER_INPUTS)])

    @classmethod
    def take(cls, named: Mapping[str, torch.Tensor]) -> GBuffers:
        """From a mapping by protocol name (a training batch)."""
        return cls(*(named[n] for n, _ in GBUFFER_INPUTS))

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> GBuffers:
        """Each buffer through ``fn`` (padding, cropping, moving to a device)."""
        return GBuffers(*(fn(t) for t in self))

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.albedo, self.normals, self.linear_depth, self.roughness, self.metallic, self.emissive))


class GBufferFeatures(nn.Module):
    """Raw G-buffers -> (B, 14, H, W) normalised features.

    albedo (B,3,H,W) linear base colour -> sqrt (perceptual spacing); normals (B,3,H,W) world space in [-1,
    1], zero on background; linear_depth (B,1,H,W) world units -> two scale-free features: log depth minus its
    mean over covered pixels (global layout) and minus its 5x5 local mean (creases, contact, silhouettes);
    roughness, metallic (B,1,H,W) in [0, 1]; emissive (B,3,H,W) linear radiance -> e / (1 + e); plus a
    coverage mask (normals non-zero). The background's depth is replaced by "2 e-folds behind the mean" so
    that engines with different far planes look alike.
    """

    def forward(self, g: GBuffers) -> torch.Tensor:
        return torch.cat(self.parts(g), 1)

    def parts(self, g: GBuffers) -> list[torch.Tensor]:
        """The feature channels as the pieces :meth:`forward` concatenates (the coverage mask last), so that the
        inference network concatenates them with its other inputs in one pass instead of two (each a full-resolution
        copy)."""
        albedo, normals, linear_depth, roughness, metallic, emissive = g
        valid = (normals.abs().sum(1, keepdim=True) > 0.1).to(albedo.dtype)
        ld = torch.log(linear_depth.clamp(1e-3, 1e5))
        mean = (ld * valid).sum((2, 3), keepdim=True) / valid.sum((2, 3), keepdim=True).clamp_min(1.0)
        ld = valid * ld + (1 - valid) * (mean + 2.0)
        local = ld - F.avg_pool2d(F.pad(ld, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
        emis = emissive.clamp_min(0.0)
        return [
            albedo.clamp(0.0, 1.0).sqrt(),
            normals,
            (ld - mean) * 0.5,
            local * 4.0,
            roughness,
            metallic,
            emis / (1 + emis),
            valid,
        ]


class LightingFeatures(nn.Module):
    """Per-frame lighting constants -> (B, 6, H, W) features, relative to the house lighting.

    normals (B,3,H,W) world space, valid (B,1,H,W) coverage, lighting (B,9,1,1) = sun direction (towards the
    sun, need not be normalised), sun irradiance (linear RGB), sky radiance (linear RGB). Features, zero on
    background: the sun's cosine term n.l scaled by the irradiance relative to the house sun's (so a shadowless
    direct-light estimate the network can correct), the relative sun and sky intensities minus 1, and the sun
    direction minus the house direction. At house lighting all but the first are zero, which is why a network
    widened with zero weights for them (``neural_renderer.train``, ``--lighting``) starts out as the network
    it was widened from.
    """

    def forward(self, normals: torch.Tensor, valid: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.parts(normals, valid, lighting), 1)

    def parts(self, normals: torch.Tensor, valid: torch.Tensor, lighting: torch.Tensor,
              const_scale: float = 1.0) -> list[torch.Tensor]:
        """:meth:`forward`'s channels unconcatenated (see ``GBufferFeatures.parts``): the masked n.l term, then the
        five constants times the mask (broadcast, the same values as expanding them first), times ``const_scale``
        (applied to the 1x1 constants, so free: the inference network uses it to give them the range of the other
        input channels, see ``neural_renderer.deploy.INPUT_SCALES``)."""
        house = house_lighting().to(lighting)
        d = lighting[:, 0:3]
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-6)
        sun = lighting[:, 3:6].mean(1, keepdim=True) / house[:, 3:6].mean(1, keepdim=True)
        sky = lighting[:, 6:9].mean(1, keepdim=True) / house[:, 6:9].mean(1, keepdim=True)
        ndl = (normals * d).sum(1, keepdim=True).clamp_min(0.0) * sun
        consts = torch.cat([sun - 1.0, sky - 1.0, d - house[:, 0:3]], 1)
        if const_scale != 1.0:
            consts = consts * const_scale
        return [valid * ndl, valid * consts]


def pixel_grid(motion: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) motion in pixels -> (B, H, W, 2) ``grid_sample`` coordinates of ``centre + motion``."""
    h, w = motion.shape[-2:]
    xs = (torch.arange(w, dtype=motion.dtype, device=motion.device) + 0.5).view(1, 1, w)
    ys = (torch.arange(h, dtype=motion.dtype, device=motion.device) + 0.5).view(1, h, 1)
    gx = (xs + motion[:, 0]) * (2.0 / w) - 1.0
    gy = (ys + motion[:, 1]) * (2.0 / h) - 1.0
    return torch.stack([gx, gy], -1)


class Reproject(nn.Module):
    """Previous output warped into the current frame, with a disocclusion mask from depth.

    prev_output (B, 3, H, W), prev_linear_depth (B, 1, H, W), motion_vectors (B, 2, H, W) current->previous in
    pixels, linear_depth (B, 1, H, W) -> (B, 4, H, W): warped colour times mask, and the mask. The mask is 1
    where the reprojected point lands on screen and the previous depth found there is within ``tolerance``
    (relative) of the current depth -- i.e. the surface was visible last frame. A zero ``prev_linear_depth``
    (no history) gives an all-zero result.
    """

    def __init__(self, tolerance: float = 0.08) -> None:
        super().__init__()
        self.tolerance = tolerance

    def forward(
        self,
        prev_output: torch.Tensor,
        prev_linear_depth: torch.Tensor,
        motion_vectors: torch.Tensor,
        linear_depth: torch.Tensor,
    ) -> torch.Tensor:
        return torch.cat(self.parts(prev_output, prev_linear_depth, motion_vectors, linear_depth), 1)

    def parts(
        self,
        prev_output: torch.Tensor,
        prev_linear_depth: torch.Tensor,
        motion_vectors: torch.Tensor,
        linear_depth: torch.Tensor,
    ) -> list[torch.Tensor]:
        """:meth:`forward`'s (warped colour times mask, mask), unconcatenated (see ``GBufferFeatures.parts``)."""
        grid = pixel_grid(motion_vectors)
        color = F.grid_sample(prev_output, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        pdepth = F.grid_sample(
            prev_linear_depth, grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        inside = (grid.abs() <= 1.0).all(-1, keepdim=True).permute(0, 3, 1, 2)
        close = (pdepth - linear_depth).abs() <= self.tolerance * linear_depth
        mask = (inside & close & (pdepth > 0)).to(prev_output.dtype)
        return [color * mask, mask]


class ParamFeatures(nn.Module):
    """Style parameter map -> (B, 19, H, W) features centred on the neutral look.

    params (B, 19, H, W): the library table's shading columns mixed per pixel (``bridge.style.library``:
    tint rgb, paint and premultiplied paint rgb, metal, premultiplied metal roughness, exposure, saturation,
    contrast, toon, premultiplied toon levels, outline, premultiplied outline rgb, heat). Each column becomes
    ``(value - neutral) * scale`` so that the neutral look is all zeros and every feature spans about [-1, 1] over
    the documented ranges; exposure, a multiplier over 0..16, goes through log2 (1/64 and below count as 1/64).
    Elementwise only, so it runs at any resolution and exports as a few ONNX ops.
    """

    def __init__(self) -> None:
        super().__init__()
        scale = torch.ones(PARAM_CHANNELS)
        shift = torch.zeros(PARAM_CHANNELS)
        shift[0:3] = -1.0  # tint: 1 is neutral
        shift[10] = shift[11] = -1.0  # saturation, contrast
        scale[13] = 1.0 / 8.0  # toon levels (premultiplied, 0..16)
        self.register_buffer("scale", scale.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, -1, 1, 1), persistent=False)

    def forward(self, params: torch.Tensor, pad: int = 0) -> torch.Tensor:
        """``pad`` (at most 19) zero channels are appended: the inference graph's convolutions run in ONNX
        Runtime's blocked layout only on a multiple of 8 input channels (``neural_renderer.deploy``)."""
        scale = torch.as_tensor(self.scale)
        shift = torch.as_tensor(self.shift)
        x = (params + shift) * scale
        exposure = torch.log2(params[:, 9:10].clamp_min(1.0 / 64.0)) * 0.5
        return torch.cat([x[:, :9], exposure, x[:, 10:]] + ([torch.zeros_like(x[:, :pad])] if pad else []), 1)


class EngineFeatures(nn.Module):
    """The engine's own lit image -> (B, 7, H, W) features.

    engine (B, 4, H, W): the engine's ``hudless_color`` taken back to linear light (its tone curve and
    pre-exposure undone, ``bridge.tonemap.engine_linear``) in channels 0-2, and 1 where the engine sent it (0:
    none; the colour channels are then 0); albedo (B, 3, H, W) linear. Features: the radiance compressed as
    r / (1 + r), the shading the engine computed (radiance over albedo, compressed the same way: what its lights
    did to the surface, independent of the texture), and the presence flag. An engine that sends no image gets
    all zeros: the network then renders from the G-buffers and lighting constants alone, as it was also trained
    to.
    """

    def forward(self, engine: torch.Tensor, albedo: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.parts(engine, albedo), 1)

    def parts(self, engine: torch.Tensor, albedo: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`forward`'s channels unconcatenated (see ``GBufferFeatures.parts``)."""
        present = engine[:, 3:4]
        rad = engine[:, :3].clamp_min(0.0) * present
        shade = rad / (albedo.clamp(0.0, 1.0) + 0.04)
        return [rad / (1.0 + rad), shade / (1.0 + shade), present]
