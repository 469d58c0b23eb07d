"""Ground-truth style targets: deterministic transforms of the path-traced reference and the G-buffers.

Every style of ``bridge.style.library.DEFAULT_LIBRARY`` gets a target image so that the network can be trained
(and benchmarked) on all of them. The *numbers* come from the library's :class:`~bridge.style.library.Style`
fields (one source of truth shared with the deferred shader); this module only defines how they act on a
path-traced image:

1. ``identity`` and ``photoreal`` are the reference itself, tonemapped (:func:`tonemap`): the path tracer *is*
   the photoreal look, and identity, which lies under every mix, is the neural renderer's neutral output.
2. Every other style, in linear radiance ``L`` (reference) with luminance ``Y``:
   ``L ← L·tint``; paint: ``L ← lerp(L, Y·paint_color/Y(paint_color), paint)`` (recolour, luminance kept);
   metal: ``L ← L + metal·(1 − metal_roughness)·0.25·paint_color·max(n_y, 0)²`` (a sky sheen on up-facing
   surfaces, from the normals); ``L ← L·exposure``.
3. Display: ``d = srgb(aces(L))`` (:func:`tonemap`).
4. toon: luminance ``y`` of ``d``, averaged over the same surface (:func:`guided_blur`, 5x5), is quantized to
   ``levels`` bands, ``q = (floor(y_s·levels) + 0.5) / levels``, ``d ← lerp(d, d·q/y, toon)``.
5. Grading: ``d ← y + (d − y)·saturation``; ``d ← (d − 0.5)·contrast + 0.5``; clamped to [0, 1].
6. heat: ``h = clamp(y + 0.5·Y(tonemapped emissive))`` (emissive surfaces run hot) mapped through
   :data:`HEAT_STOPS`, ``d ← lerp(d, palette(h), heat)``.
7. outline: ``d ← lerp(d, srgb(outline_color), outline·edge)`` where ``edge`` marks pixels with a relative
   linear-depth jump > 6 % or a normal turn > 40° to a 4-neighbour (background counts as infinitely far), i.e.
   only from G-buffers the network sees.

A per-pixel mix of styles is the per-pixel mix of these targets: ``target = Σ_s w_s · T_s``.
All functions are batched torch: (B, C, H, W) float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bridge.style.library import DEFAULT_LIBRARY, Style, StyleLibrary

NEUTRAL_STYLES = ("identity", "photoreal")
HEAT_STOPS = (
    (0.00, (0.02, 0.0, 0.08)),
    (0.25, (0.30, 0.02, 0.55)),
    (0.50, (0.85, 0.12, 0.30)),
    (0.75, (1.00, 0.60, 0.05)),
    (1.00, (1.00, 1.00, 0.85)),
)
LUMA = (0.2126, 0.7152, 0.0722)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) Rec. 709 luminance."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def srgb_encode(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def srgb_decode(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def aces(x: torch.Tensor) -> torch.Tensor:
    """Narkowicz's ACES filmic fit: linear radiance (exposure 1) -> display-linear [0, 1]."""
    x = x.clamp_min(0.0)
    return ((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)).clamp(0.0, 1.0)


def tonemap(radiance: torch.Tensor) -> torch.Tensor:
    """Linear radiance -> display sRGB-encoded [0, 1]: the image every style target (and the model) lives
    in."""
    return srgb_encode(aces(radiance))


def edges(linear_depth: torch.Tensor, normals: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) depth, (B,3,H,W) normals, (B,1,H,W) bool -> (B,1,H,W) {0,1} outline mask (see module doc)."""
    d = torch.where(valid, linear_depth, torch.full_like(linear_depth, 1e6))
    dp = F.pad(d, (1, 1, 1, 1), mode="replicate")
    npad = F.pad(normals, (1, 1, 1, 1), mode="replicate")
    h, w = d.shape[-2:]
    e = torch.zeros_like(d, dtype=torch.bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        dn = dp[..., dy : dy + h, dx : dx + w]
        nn_ = npad[..., dy : dy + h, dx : dx + w]
        rel = (dn - d).abs() / torch.minimum(dn, d).clamp_min(1e-4)
        cos = (nn_ * normals).sum(1, keepdim=True)
        e |= rel > 0.06
        e |= valid & (cos < 0.766) & (nn_.abs().sum(1, keepdim=True) > 0)
    return e.to(linear_depth.dtype)


def guided_blur(
    y: torch.Tensor, normals: torch.Tensor, linear_depth: torch.Tensor, valid: torch.Tensor, radius: int = 2
) -> torch.Tensor:
    """(B,1,H,W) -> (B,1,H,W): mean of ``y`` over the (2r+1)² window restricted to pixels of the same surface
    (normal within ~25°, depth within 3 %, same validity). Toon bands are decided on this, so that
    path-tracing noise near a band threshold does not turn into speckles that no network could predict."""
    k = 2 * radius + 1
    h, w = y.shape[-2:]
    pad = (radius,) * 4
    yp = F.pad(y, pad, mode="replicate")
    npd = F.pad(normals, pad, mode="replicate")
    dp = F.pad(linear_depth, pad, mode="replicate")
    vp = F.pad(valid.to(y.dtype), pad, mode="replicate")
    acc = torch.zeros_like(y)
    wsum = torch.zeros_like(y)
    vf = valid.to(y.dtype)
    for dy in range(k):
        for dx in range(k):
            sl = (..., slice(dy, dy + h), slice(dx, dx + w))
            same = ((npd[sl] * normals).sum(1, keepdim=True) > 0.9) | (vf == 0)
            same &= ((dp[sl] - linear_depth).abs() <= 0.03 * linear_depth) | (vf == 0)
            same &= vp[sl] == vf
            wgt = same.to(y.dtype)
            acc = acc + wgt * yp[sl]
            wsum = wsum + wgt
    return acc / wsum.clamp_min(1.0)


def heat_palette(h: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) in [0,1] -> (B,3,H,W) false colour, piecewise linear through :data:`HEAT_STOPS`."""
    h = h.clamp(0.0, 1.0)
    out = torch.zeros(h.shape[0], 3, *h.shape[2:], dtype=h.dtype, device=h.device)
    for (t0, c0), (t1, c1) in zip(HEAT_STOPS[:-1], HEAT_STOPS[1:], strict=True):
        a = ((h - t0) / (t1 - t0)).clamp(0.0, 1.0)
        seg = (h >= t0) & ((h < t1) | (t1 == 1.0))
        c0t = torch.tensor(c0, dtype=h.dtype, device=h.device).view(1, 3, 1, 1)
        c1t = torch.tensor(c1, dtype=h.dtype, device=h.device).view(1, 3, 1, 1)
        out = torch.where(seg, c0t + (c1t - c0t) * a, out)
    return out


def style_target(
    style: Style,
    reference: torch.Tensor,
    normals: torch.Tensor,
    linear_depth: torch.Tensor,
    emissive: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """Target image of one style: (B,3,H,W) display sRGB [0,1]. Inputs: linear ``reference`` (B,3,H,W), world
    ``normals`` (B,3,H,W), ``linear_depth`` (B,1,H,W), linear ``emissive`` (B,3,H,W), ``valid`` (B,1,H,W)
    bool."""
    if style.name in NEUTRAL_STYLES:
        return tonemap(reference)
    from bridge.style.library import GRADING_START

    row = torch.as_tensor(style.params()[:GRADING_START], dtype=reference.dtype, device=reference.device)
    return param_target(row.view(1, -1, 1, 1).expand(reference.shape[0], -1, *reference.shape[2:]), reference,
                        normals, linear_depth, emissive, valid)


def all_style_targets(
    reference: torch.Tensor,
    normals: torch.Tensor,
    linear_depth: torch.Tensor,
    emissive: torch.Tensor,
    valid: torch.Tensor,
    library: StyleLibrary = DEFAULT_LIBRARY,
) -> torch.Tensor:
    """(B, S, 3, H, W): :func:`style_target` for every style of ``library``, in library order."""
    return torch.stack(
        [style_target(s, reference, normals, linear_depth, emissive, valid) for s in library], 1
    )


def mix_targets(targets: torch.Tensor, style_map: torch.Tensor) -> torch.Tensor:
    """(B,S,3,H,W) targets, (B,S,H,W) weights -> (B,3,H,W) per-pixel mix."""
    return (targets * style_map.unsqueeze(2)).sum(1)


# ---------------------------------------------------------------------------------------------------------------
# Styles as parameters (issue 17): the target of a per-pixel *parameter* map, not of a mix of named styles.

#: Columns of the parameter map the network is conditioned on: the library table's shading columns
#: (``bridge.style.library.SHADING_PARAMS``, premultiplied the way the table stores them). The grading columns
#: (hue, white balance, lift/gamma/gain, fog, LUTs) are applied exactly after the network and are not learned.
SHADING_COLUMNS = 19


def param_target(
    params: torch.Tensor,
    reference: torch.Tensor,
    normals: torch.Tensor,
    linear_depth: torch.Tensor,
    emissive: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """Target image of a per-pixel parameter map: (B,3,H,W) display sRGB [0,1].

    ``params`` (B, 19, H, W): per pixel Σ w_s · row_s of the library's shading table (the same map the deferred
    shader draws), so mixes, tweens and per-object looks are mixes *in parameter space* and a style a game defines
    at run time is just another row. Colours are premultiplied by their amounts (``paint_r = paint ·
    paint_color.r``, ``toon_levels = toon · levels``, ...), so a 50/50 mix of gold paint and no paint is half as
    much gold paint, not half-gold. For a single preset row this is :func:`style_target` step for step (without
    its "neutral styles are the reference" shortcut: ``photoreal``'s own exposure and grading now apply): it is
    how :func:`style_target` computes every other preset."""
    eps = 1e-6

    def col(i: int, n: int = 1) -> torch.Tensor:
        return params[:, i : i + n]

    L = reference * col(0, 3)
    paint = col(3)
    pc = col(4, 3) / paint.clamp_min(eps)
    L = L + (luminance(L) * pc / luminance(pc).clamp_min(eps) - L) * paint
    metal = col(7)
    if bool((metal > 0).any()):
        sheen_color = torch.where(paint > 0, pc, torch.ones_like(pc))
        ny = normals[:, 1:2].clamp_min(0.0) ** 2 * valid
        L = L + (metal - col(8)).clamp_min(0.0) * 0.25 * sheen_color * ny  # metal·(1 − roughness)
    d = tonemap(L * col(9))
    toon = col(12)
    if bool((toon > 0).any()):
        levels = (col(13) / toon.clamp_min(eps)).clamp_min(1.0)
        y = luminance(d).clamp_min(1e-3)
        ys = guided_blur(y, normals, linear_depth, valid)
        q = (torch.minimum(torch.floor(ys * levels), levels - 1) + 0.5) / levels
        d = d + (d * q / y - d) * toon
    y = luminance(d)
    d = y + (d - y) * col(10)
    d = ((d - 0.5) * col(11) + 0.5).clamp(0.0, 1.0)
    heat = col(18)
    if bool((heat > 0).any()):
        h = luminance(d) + 0.5 * luminance(srgb_encode(aces(emissive)))
        d = d + (heat_palette(h) - d) * heat
    outline = col(14)
    if bool((outline > 0).any()):
        e = edges(linear_depth, normals, valid)
        oc = col(15, 3) / outline.clamp_min(eps)
        d = d + (srgb_encode(oc) - d) * (outline * e)
    return d.clamp(0.0, 1.0)
