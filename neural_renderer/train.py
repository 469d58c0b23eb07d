"""Training loop behind ``nrb train``: random crops, random style maps, L1 in display space, resumable.

Loss: :func:`image_loss` (L1 + L1 of image gradients) in display space, optionally plus a differentiable FLIP
term (``flip_weight``, :mod:`neural_renderer.flip`), plus a temporal-consistency term on unrolled frame pairs
(:func:`training_loss`).

Batches (:func:`training_loss`): random ``crop`` x ``crop`` windows with random style maps
(:func:`random_style_map`); when the temporal path is trained, half the batches are unrolled pairs of
consecutive frames in which the network's own reprojected output of the first frame is the history of the
second.

Targets: ``Σ_s w_s · T_s`` with ``T_s`` from :mod:`neural_renderer.data.styles`, precomputed once per frame.

Checkpoints (``RUN/last.pt``, every ``checkpoint_every`` steps and at the end) hold the network config and
weights, the optimizer, the step and the loss history, so ``nrb train`` resumes exactly where it stopped;
``RUN/loss.png`` is the loss curve (training loss and held-out loss).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bridge.style.library import DEFAULT_LIBRARY, GRADING_START
from neural_renderer.data.styles import NEUTRAL_STYLES, all_style_targets, mix_targets
from neural_renderer.flip import FlipLoss
from neural_renderer.models.features import GBUFFER_INPUTS, LIGHTING_INPUTS, GBuffers, house_lighting
from neural_renderer.models.net import (
    NetConfig,
    NeuralRendererNet,
    load_checkpoint,
    params_from_styles,
    widen_for_lighting,
)

#: Probability of each style being drawn as "the" style of an example: photoreal is what matters most.
STYLE_PRIOR = {"identity": 0.1, "photoreal": 0.3}


@dataclass
class TrainConfig:
    data: list[Path]
    out: Path
    steps: int = 4000
    minutes: float | None = None
    batch: int = 8
    crop: int = 96
    lr: float = 2e-3
    seed: int = 0
    width: int = 32
    #: residual blocks in the 1/8-resolution trunk: capacity that costs little per pixel (see docs/model.md)
    trunk_blocks: int = 2
    #: albedo-modulated head (``NetConfig.modulate``)
    modulate: bool = False
    #: decay of the exponential moving average of the weights that is evaluated and exported (0 = none):
    #: averaging the last few thousand steps' weights smooths out the optimizer's noise for free
    ema: float = 0.999
    temporal: bool = True
    upscale: int = 1
    #: torch intra-op threads. 1 by default: on a shared CPU, OpenMP workers that wait for a descheduled
    #: sibling made a 2-thread step 40x slower than a 1-thread step here (measured); pass 2+ on a dedicated
    #: machine.
    threads: int = 1
    #: "cpu", "cuda" or "auto" (cuda when torch sees one). On a GPU the whole frame bank moves there and the
    #: batches are cut there too; only the random draws stay on the CPU.
    device: str = "cpu"
    checkpoint_every: int = 250
    eval_every: int = 250
    max_frames: int | None = None
    #: Train only these styles (None = all of the library); e.g. ("photoreal",) for a quick photoreal-only
    #: model.
    styles: tuple[str, ...] | None = None
    #: Start from this checkpoint's weights (its weight average when it has one) instead of a random
    #: initialisation: fine-tuning, e.g. the shipped model on a game's own captures. The network's shape comes
    #: from the checkpoint (width, trunk_blocks, modulate, upscale are ignored); only a fresh run uses it.
    init: Path | None = None
    #: Weight of a differentiable LDR-FLIP term (:mod:`neural_renderer.flip`) added to :func:`image_loss`:
    #: the benchmark's own metric, so that fine-tuning spends capacity on what FLIP (and a viewer) sees --
    #: colour after the eye's blur, amplified at edges. 0 = L1 terms only (how the shipped model started).
    flip_weight: float = 0.0
    #: Lighting inputs (``NetConfig.lighting``). With ``init`` from a checkpoint without them, the network is
    #: widened: the new input weights start at zero, so training starts from exactly the initial network.
    lighting: bool = False
    #: Styles as parameters (``NetConfig.params``, issue 17): condition on the per-pixel parameter map and train
    #: over parameter vectors drawn across the whole space (:func:`random_param_map`), targets from
    #: :func:`neural_renderer.data.styles.param_target`.
    params: bool = False
    #: The engine's lit image as an input (``NetConfig.engine``, issue 15); frames without one (older datasets)
    #: are fed "no engine image", as are :data:`ENGINE_DROPOUT` of the others.
    engine: bool = False
    #: With ``params``: the share of drawn looks that are random parameter vectors rather than presets.
    random_looks: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)


class FrameBank:
    """All training frames in memory as float16 tensors (C, H, W), with their style targets precomputed.

    ``frames[i]`` holds the network inputs by protocol name, ``object_id`` (int32), ``motion_vectors``, the
    (S, 3, H, W) ``targets`` and ``prev``: the index of the previous frame of the same camera path or -1.
    """

    def __init__(self, frames: list[dict[str, torch.Tensor]], prev: list[int]) -> None:
        self.frames = frames
        self.prev = prev

    def __len__(self) -> int:
        return len(self.frames)

    def to(self, device: torch.device) -> FrameBank:
        """Move every frame to ``device`` in place (a GPU then cuts the batches too: on the CPU, cutting a
        batch of 32 costs more than the network's step on the GPU)."""
        # "allowed" stays with the CPU generator that draws the styles
        self.frames = [{k: v if k == "allowed" else v.to(device) for k, v in f.items()} for f in self.frames]
        return self

    @staticmethod
    def from_arrays(paths: list[list[dict[str, np.ndarray]]], params: bool = False) -> FrameBank:
        """``paths``: per camera path, its frames as protocol-named (H, W[, C]) arrays incl. ``reference``
        (linear radiance) or ``target`` (display sRGB, e.g. an engine capture's result: used for every
        style), and optionally ``engine_linear`` (the engine image in linear light). With ``params`` the
        frame keeps what :func:`param_target` needs (``reference``, ``valid``) instead of one target per preset,
        since the looks are drawn per batch."""
        if params:
            return FrameBank._param_frames(paths)
        frames: list[dict[str, torch.Tensor]] = []
        prev: list[int] = []
        for path in paths:
            for k, a in enumerate(path):
                t = {
                    n: _chw(a[n])
                    for n in (
                        "albedo",
                        "normals",
                        "linear_depth",
                        "roughness",
                        "metallic",
                        "emissive",
                        "motion_vectors",
                    )
                }
                t["object_id"] = torch.from_numpy(a["object_id"].astype(np.int32))
                t["lighting"] = frame_lighting(a)
                valid = t["normals"].abs().sum(0, keepdim=True) > 0.1
                if "reference" in a:
                    tg = all_style_targets(
                        _chw(a["reference"])[None],
                        t["normals"][None],
                        t["linear_depth"][None],
                        t["emissive"][None],
                        valid[None],
                    )[0]
                    t["allowed"] = torch.ones(len(DEFAULT_LIBRARY), dtype=torch.bool)
                else:  # an engine capture: one look, the neutral styles only
                    tg = _chw(a["target"])[None].expand(len(DEFAULT_LIBRARY), -1, -1, -1).contiguous()
                    t["allowed"] = torch.tensor([n in NEUTRAL_STYLES for n in DEFAULT_LIBRARY.names])
                t["targets"] = tg.to(torch.float16)
                for n in ("albedo", "normals", "roughness", "metallic", "emissive"):
                    t[n] = t[n].to(torch.float16)
                prev.append(len(frames) - 1 if k > 0 else -1)
                frames.append(t)
        return FrameBank(frames, prev)


    @staticmethod
    def _param_frames(paths: list[list[dict[str, np.ndarray]]]) -> FrameBank:
        frames: list[dict[str, torch.Tensor]] = []
        prev: list[int] = []
        for path in paths:
            for k, a in enumerate(path):
                t = {n: _chw(a[n]) for n in (*INPUT_NAMES, "motion_vectors")}
                t["object_id"] = torch.from_numpy(a["object_id"].astype(np.int32))
                t["lighting"] = frame_lighting(a)
                t["valid"] = t["normals"].abs().sum(0, keepdim=True) > 0.1
                if "reference" in a:
                    t["reference"] = _chw(a["reference"]).to(torch.float16)
                else:  # an engine capture: its one look is the identity's
                    t["fixed_target"] = _chw(a["target"]).to(torch.float16)
                h, w = t["linear_depth"].shape[-2:]
                if "engine_linear" in a:
                    t["engine"] = torch.cat([_chw(a["engine_linear"]), torch.ones(1, h, w)]).to(torch.float16)
                else:
                    t["engine"] = torch.zeros(4, h, w, dtype=torch.float16)
                for n in ("albedo", "normals", "roughness", "metallic", "emissive"):
                    t[n] = t[n].to(torch.float16)
                prev.append(len(frames) - 1 if k > 0 else -1)
                frames.append(t)
        return FrameBank(frames, prev)


def frame_lighting(arrays: Mapping[str, np.ndarray]) -> torch.Tensor:
    """(9, 1, 1) a frame's lighting inputs (sun direction, sun irradiance, sky radiance) from its
    ``x_sun_direction`` / ``x_sun_irradiance`` / ``x_sky_radiance`` arrays; the house lighting's value for
    any the frame lacks (an engine capture from an engine that did not send them)."""
    house = house_lighting()[0]
    parts = []
    for k, (name, _) in enumerate(LIGHTING_INPUTS):
        if name in arrays:
            parts.append(torch.as_tensor(np.asarray(arrays[name], np.float32).reshape(-1)[:3]).view(3, 1, 1))
        else:
            parts.append(house[3 * k : 3 * k + 3])
    return torch.cat(parts)


def _chw(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a, dtype=np.float32)
    return torch.from_numpy(a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1)))


def load_bank(
    dirs: list[Path], split: str = "train", max_frames: int | None = None, params: bool = False
) -> FrameBank:
    """Synthetic datasets (``manifest.json``) and engine captures (see ``neural_renderer.data.capture``)."""
    from neural_renderer.data.dataset import MANIFEST, iter_frames

    paths: list[list[dict[str, np.ndarray]]] = []
    n = 0
    for d in dirs:
        if (Path(d) / MANIFEST).exists():
            it = ([f.arrays for f in fr] for fr in iter_frames(Path(d), split))
        else:
            from neural_renderer.data.capture import iter_capture_paths

            it = iter_capture_paths(Path(d), split)
        for path in it:
            paths.append(path)
            n += len(path)
            if max_frames is not None and n >= max_frames:
                break
    if not paths:
        raise ValueError(f"no {split} frames in {[str(d) for d in dirs]}")
    return FrameBank.from_arrays(paths, params=params)


def random_style_map(
    object_id: torch.Tensor, styles: int, gen: torch.Generator, allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """(H, W) ids -> (S, H, W) weights: a global style, a global two-style mix, per-object styles, or a
    screen-space ramp between two styles (how games use the bridge: global looks, per-object overrides,
    transitions)."""
    names = DEFAULT_LIBRARY.names
    rest = (1.0 - sum(STYLE_PRIOR.values())) / (styles - len(STYLE_PRIOR))
    prior = torch.tensor([STYLE_PRIOR.get(n, rest) for n in names[:styles]])
    if allowed is not None:
        prior = prior * allowed

    def draw(k: int = 1) -> torch.Tensor:
        return torch.multinomial(prior, k, replacement=True, generator=gen)

    h, w = object_id.shape
    dev = object_id.device  # the draws stay on the generator's CPU; the maps are made where the ids live
    kind = torch.rand(1, generator=gen).item()
    out = torch.zeros(styles, h, w, device=dev)
    if kind < 0.4:
        out[draw()[0]] = 1.0
    elif kind < 0.6:
        a, b = draw(2)
        t = torch.rand(1, generator=gen).item()
        out[a] += t
        out[b] += 1 - t
    elif kind < 0.85:
        ids = object_id.long()
        table = draw(int(ids.max().item()) + 1).to(dev)
        out = F.one_hot(table[ids], styles).permute(2, 0, 1).float()
    else:
        a, b = draw(2)
        ang = torch.rand(1, generator=gen).item() * 2 * math.pi
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, device=dev), torch.linspace(-1, 1, w, device=dev), indexing="ij"
        )
        t = ((xs * math.cos(ang) + ys * math.sin(ang)) * 1.5 + 0.5).clamp(0, 1)
        out[a] += t
        out[b] += 1 - t
    return out


def random_look(gen: torch.Generator) -> torch.Tensor:
    """(19,) a random look as a row of the library's shading table (premultiplied, ``Style.params`` layout):
    each group of parameters (tint, paint, metal, exposure, saturation, contrast, toon, outline, heat) is set
    with its own probability, to a value drawn over the range games plausibly use (inside the documented one);
    the rest stay neutral. What the network sees of a style a game defines at run time."""

    def u(lo: float = 0.0, hi: float = 1.0, n: int = 1) -> list[float]:
        return (lo + (hi - lo) * torch.rand(n, generator=gen)).tolist()

    def on(p: float) -> bool:
        return bool(torch.rand(1, generator=gen).item() < p)

    tint = [2.0 ** v for v in u(-1.3, 0.7, 3)] if on(0.3) else [1.0, 1.0, 1.0]
    paint, paint_color = (u()[0], u(0.0, 1.0, 3)) if on(0.25) else (0.0, [1.0, 1.0, 1.0])
    metal, metal_rough = (u()[0], u(0.05, 0.8)[0]) if on(0.2) else (0.0, 0.3)
    exposure = 2.0 ** u(-2.0, 2.0)[0] if on(0.4) else 1.0
    saturation = u(0.0, 2.2)[0] if on(0.4) else 1.0
    contrast = u(0.6, 1.8)[0] if on(0.4) else 1.0
    toon, levels = (u(0.3, 1.0)[0], float(torch.randint(2, 9, (1,), generator=gen))) if on(0.2) else (0.0, 4.0)
    outline = u(0.2, 1.0)[0] if on(0.2) else 0.0
    ink = u(0.0, 1.0, 3) if on(0.5) else [0.0, 0.0, 0.0]
    heat = u(0.3, 1.0)[0] if on(0.1) else 0.0
    row = [
        *tint,
        paint, *(paint * c for c in paint_color),
        metal, metal * metal_rough,
        exposure, saturation, contrast,
        toon, toon * levels,
        outline, *(outline * c for c in ink),
        heat,
    ]
    return torch.tensor(row, dtype=torch.float32)


def random_param_map(
    object_id: torch.Tensor,
    gen: torch.Generator,
    allowed: torch.Tensor | None = None,
    random_share: float = 0.5,
) -> torch.Tensor:
    """(H, W) ids -> (19, H, W) parameter map: the same recipes as :func:`random_style_map` (a global look, a
    two-look mix, per-object looks, a screen-space ramp), mixed in parameter space, each look a preset (drawn
    with :data:`STYLE_PRIOR`) or, with probability ``random_share``, :func:`random_look`. ``allowed`` (S,) bool
    restricts the presets (and, unless every preset is allowed, turns random looks off: an engine capture only
    has its own look)."""
    from bridge.style.library import GRADING_START

    table = torch.from_numpy(DEFAULT_LIBRARY.table()[:, :GRADING_START].copy())
    names = DEFAULT_LIBRARY.names
    rest = (1.0 - sum(STYLE_PRIOR.values())) / (len(names) - len(STYLE_PRIOR))
    prior = torch.tensor([STYLE_PRIOR.get(n, rest) for n in names])
    share = random_share
    if allowed is not None:
        prior = prior * allowed
        share = share if bool(allowed.all()) else 0.0

    def rows(k: int) -> torch.Tensor:
        out = []
        for _ in range(k):
            if share > 0 and torch.rand(1, generator=gen).item() < share:
                out.append(random_look(gen))
            else:
                out.append(table[int(torch.multinomial(prior, 1, generator=gen))])
        return torch.stack(out)

    h, w = object_id.shape
    dev = object_id.device
    kind = torch.rand(1, generator=gen).item()
    if kind < 0.4:
        return rows(1)[0].to(dev).view(-1, 1, 1).expand(-1, h, w).contiguous()
    if kind < 0.6:
        a, b = rows(2).to(dev)
        t = torch.rand(1, generator=gen).item()
        return (a * t + b * (1 - t)).view(-1, 1, 1).expand(-1, h, w).contiguous()
    if kind < 0.85:
        ids = object_id.long()
        per_id = rows(int(ids.max().item()) + 1).to(dev)
        return per_id[ids].permute(2, 0, 1).contiguous()
    a, b = rows(2).to(dev)
    ang = torch.rand(1, generator=gen).item() * 2 * math.pi
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=dev), torch.linspace(-1, 1, w, device=dev), indexing="ij")
    t = ((xs * math.cos(ang) + ys * math.sin(ang)) * 1.5 + 0.5).clamp(0, 1)
    return a.view(-1, 1, 1) * t + b.view(-1, 1, 1) * (1 - t)


#: Share of examples (with ``TrainConfig.engine``) fed "no engine image": engines that do not send
#: ``hudless_color`` get that, and the network should then render from the G-buffers alone.
ENGINE_DROPOUT = 0.15
#: Share of examples whose ``emissive`` input is zeroed: engines may not send it (the ``neural`` renderer then
#: feeds zeros), and the network should degrade gracefully rather than see an out-of-distribution input.
EMISSIVE_DROPOUT = 0.1
#: Share of examples fed the house lighting instead of their own: engines that do not send lighting inputs get
#: the house lighting, and the network should then behave as a network trained without them.
LIGHTING_DROPOUT = 0.1
INPUT_NAMES = tuple(n for n, _ in GBUFFER_INPUTS)


def _crop_example(
    f: dict[str, torch.Tensor],
    win: tuple[Any, ...],
    step: int,
    smap: torch.Tensor,
    drop_emissive: bool,
    drop_lighting: bool = False,
    drop_engine: bool = False,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One frame's network inputs (G-buffers subsampled by ``step`` for upscaling, the (9, 1, 1) lighting)
    and its mixed target."""
    ins = {n: f[n].float()[win][..., ::step, ::step] for n in INPUT_NAMES}
    if drop_emissive:
        ins["emissive"] = torch.zeros_like(ins["emissive"])
    light = f["lighting"].float()
    ins["lighting"] = house_lighting()[0].to(light) if drop_lighting else light  # .to: the bank may be on a GPU
    ins["style_map"] = smap[win][..., ::step, ::step]
    ins["motion_vectors"] = f["motion_vectors"][win][..., ::step, ::step] / step
    if "engine" in f:  # a parameter bank (TrainConfig.params): the target is made per batch, see make_batch
        eng = f["engine"].float()[win][..., ::step, ::step]
        ins["engine"] = torch.zeros_like(eng) if drop_engine else eng
        if "fixed_target" in f:
            return ins, f["fixed_target"].float()[win]
        cut = {n: f[n].float()[win] for n in ("reference", "normals", "linear_depth", "emissive")}
        cut["valid"] = f["valid"][win].float()
        cut["params"] = smap[win]
        return ins, torch.cat([cut[n] for n in _TARGET_PARTS], 0)
    target = mix_targets(f["targets"][win].float()[None], smap[win][None])[0]  # crop first: S x less work
    return ins, target


#: What :func:`param_target` needs of a crop, stacked as channels until the batch is complete (one call per
#: batch instead of one per example).
_TARGET_PARTS = ("reference", "normals", "linear_depth", "emissive", "valid", "params")


def _param_targets(stacked: torch.Tensor) -> torch.Tensor:
    """(B, 3+3+1+3+1+19, h, w) crops stacked by :func:`_crop_example` -> (B, 3, h, w) targets; rows that
    already are a target (3 channels: an engine capture) pass through."""
    from neural_renderer.data.styles import param_target

    r, n, d, e, v, p = stacked.split([3, 3, 1, 3, 1, 19], 1)
    return param_target(p, r, n, d, e, v > 0.5)


def make_batch(
    bank: FrameBank,
    idx: list[int],
    crop: int,
    gen: torch.Generator,
    *,
    pairs: bool = False,
    upscale: int = 1,
    styles: int = len(DEFAULT_LIBRARY),
    random_looks: float = 0.5,
) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Random crops of frames ``idx`` with random style maps: ``[(inputs, target)]`` with inputs (B, C, c, c)
    by protocol name plus ``style_map`` and ``motion_vectors``, target (B, 3, u·c, u·c). With ``pairs`` each
    index must have a previous frame and the result is ``[previous frames, current frames]``: same crop window
    and same style recipe (drawn again from the same generator state) on both, as a camera path would show
    them."""
    per: list[list[tuple[dict[str, torch.Tensor], torch.Tensor]]] = [[], []] if pairs else [[]]
    for i in idx:
        f = bank.frames[i]
        h, w = f["linear_depth"].shape[-2:]
        c = min(crop, h // 8 * 8, w // 8 * 8)
        y0 = int(torch.randint(0, h - c + 1, (1,), generator=gen)) // upscale * upscale
        x0 = int(torch.randint(0, w - c + 1, (1,), generator=gen)) // upscale * upscale
        win = (..., slice(y0, y0 + c), slice(x0, x0 + c))
        drop = torch.rand(1, generator=gen).item() < EMISSIVE_DROPOUT
        drop_light = torch.rand(1, generator=gen).item() < LIGHTING_DROPOUT
        drop_engine = "engine" in f and torch.rand(1, generator=gen).item() < ENGINE_DROPOUT
        frames = [bank.frames[bank.prev[i]], f] if pairs else [f]
        state = gen.get_state()
        for k, fr in enumerate(frames):
            g = gen
            if k < len(frames) - 1:  # replay the same recipe for the earlier frame(s)
                g = torch.Generator()
                g.set_state(state)
            if "engine" in fr:
                allowed = None if "reference" in fr else torch.tensor([n == "identity" for n in DEFAULT_LIBRARY.names])
                smap = random_param_map(fr["object_id"], g, allowed, random_looks)
            else:
                smap = random_style_map(fr["object_id"], styles, g, fr["allowed"])
            per[k].append(_crop_example(fr, win, upscale, smap, drop, drop_light, drop_engine))
    out = []
    for examples in per:
        keys = examples[0][0].keys()
        ins = {n: torch.stack([e[0][n] for e in examples]) for n in keys}
        if "engine" in ins:
            whole = [e[1] for e in examples if e[1].shape[0] != 3]
            made: Iterator[torch.Tensor] = iter(_param_targets(torch.stack(whole)) if whole else [])
            target = torch.stack([e[1] if e[1].shape[0] == 3 else next(made) for e in examples])
        else:
            target = torch.stack([e[1] for e in examples])
        out.append((ins, target))
    return out


#: Weight of the temporal-consistency term of unrolled pairs: the masked L1 between the current output and the
#: reprojected previous one -- the benchmark's warping error. Without it the loss never rewards stability and
#: the network has no reason to use its history (measured: warping error with history = without, 0.0075 vs
#: 0.0073).
TEMPORAL_WEIGHT = 0.5


Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def training_loss(
    net: NeuralRendererNet,
    bank: FrameBank,
    cfg: TrainConfig,
    gen: torch.Generator,
    crop: int,
    criterion: Criterion | None = None,
) -> torch.Tensor:
    """One batch's loss. Half the batches (when ``cfg.temporal``) are *unrolled* camera-path pairs: the
    network renders the previous frame without history, its output (detached) is reprojected and masked
    exactly as at inference (``forward_temporal``), and the current frame is rendered with it; the loss covers
    both frames plus
    ``TEMPORAL_WEIGHT`` x the masked difference between the current output and the reprojected previous one.
    So the network learns to use its *own* history (a perturbed ground truth would teach it to trust a cleaner
    history than it will ever get) and to stay stable where the history is valid. The other batches are single
    frames without history. ``criterion(pred, target)`` scores each image (default :func:`image_loss`)."""
    criterion = criterion or image_loss
    with_prev = [i for i in range(len(bank)) if bank.prev[i] >= 0]
    if cfg.temporal and with_prev and torch.rand(1, generator=gen).item() < 0.5:
        n = max(1, cfg.batch // 2)
        pick = torch.randint(0, len(with_prev), (n,), generator=gen).tolist()
        (prev_in, prev_t), (cur_in, cur_t) = make_batch(
            bank, [with_prev[j] for j in pick], crop, gen, pairs=True, upscale=cfg.upscale,
            random_looks=cfg.random_looks,
        )
        mv = cur_in.pop("motion_vectors")
        prev_in.pop("motion_vectors")
        prev_out = net(GBuffers.take(prev_in), prev_in["style_map"], lighting=prev_in["lighting"],
                       engine=prev_in.get("engine"))
        history = prev_out.detach()
        cur_out = net.forward_temporal(
            GBuffers.take(cur_in), cur_in["style_map"], mv, history, prev_in["linear_depth"],
            lighting=cur_in["lighting"], engine=cur_in.get("engine"),
        )
        u = net.config.upscale  # the consistency term lives at input resolution, like the history
        warped = net.reproject(
            F.avg_pool2d(history, u) if u > 1 else history,
            prev_in["linear_depth"],
            mv,
            cur_in["linear_depth"],
        )
        mask = warped[:, 3:]
        cur_lr = F.avg_pool2d(cur_out, u) if u > 1 else cur_out
        flicker = ((cur_lr - warped[:, :3]).abs() * mask).sum() / (3 * mask.sum()).clamp_min(1.0)
        return 0.5 * (criterion(prev_out, prev_t) + criterion(cur_out, cur_t)) + TEMPORAL_WEIGHT * flicker
    idx = torch.randint(0, len(bank), (cfg.batch,), generator=gen).tolist()
    ((ins, target),) = make_batch(bank, idx, crop, gen, upscale=cfg.upscale, random_looks=cfg.random_looks)
    ins.pop("motion_vectors")
    out = net(GBuffers.take(ins), ins["style_map"], lighting=ins["lighting"], engine=ins.get("engine"))
    return criterion(out, target)


class WeightAverage:
    """Exponential moving average of a network's floating-point weights (decay ramped up from 0 over the
    first steps, as in the usual EMA recipes, so that the random initialisation is forgotten quickly).
    ``swapped_in()`` evaluates with the averaged weights; checkpoints store them next to the raw ones and
    ``neural_renderer.recipe`` exports them."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.net, self.decay = net, decay
        self.avg = {k: v.detach().clone() for k, v in net.state_dict().items() if v.dtype.is_floating_point}

    def update(self, step: int) -> None:
        if self.decay <= 0:
            return
        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in self.net.state_dict().items():
                if k in self.avg:
                    self.avg[k].lerp_(v, 1 - d)

    def state(self) -> dict[str, torch.Tensor] | None:
        return {k: v.detach().cpu() for k, v in self.avg.items()} if self.decay > 0 else None

    def load(self, state: dict[str, torch.Tensor] | None) -> None:
        if state is not None:
            for k, v in state.items():
                self.avg[k].copy_(v)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        if self.decay <= 0:
            yield
            return
        raw = {k: v.detach().clone() for k, v in self.net.state_dict().items() if k in self.avg}
        self.net.load_state_dict(self.avg, strict=False)
        try:
            yield
        finally:
            self.net.load_state_dict(raw, strict=False)


def _device_of(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; anything else as given (a missing cuda is an error)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    return dev


#: Weight of the gradient term in :func:`image_loss`.
GRADIENT_WEIGHT = 0.5


def image_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 on pixels plus ``GRADIENT_WEIGHT`` x L1 on horizontal and vertical pixel differences: plain L1 lets
    the network settle for soft edges (the cheapest way to hedge), the gradient term makes blur cost what it
    looks."""
    l1 = F.l1_loss(pred, target)
    gx = F.l1_loss(pred[..., :, 1:] - pred[..., :, :-1], target[..., :, 1:] - target[..., :, :-1])
    gy = F.l1_loss(pred[..., 1:, :] - pred[..., :-1, :], target[..., 1:, :] - target[..., :-1, :])
    return l1 + GRADIENT_WEIGHT * (gx + gy)


def make_criterion(flip_weight: float, device: torch.device) -> Criterion:
    """:func:`image_loss`, plus ``flip_weight`` x mean LDR-FLIP when the weight is positive."""
    if flip_weight <= 0:
        return image_loss
    flip = FlipLoss().to(device)

    def criterion(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return image_loss(pred, target) + flip_weight * flip(pred, target)

    return criterion


def evaluate(net: NeuralRendererNet, bank: FrameBank, style: str = "photoreal", limit: int = 16) -> float:
    """Mean L1 on whole frames of ``bank`` in one style, no history (the held-out monitor)."""
    s = DEFAULT_LIBRARY.index(style)
    losses = []
    dev = _device_of(net)
    net.eval()
    with torch.no_grad():
        for f in bank.frames[:limit]:
            h, w = f["linear_depth"].shape[-2:]
            h8, w8 = h // 8 * 8, w // 8 * 8
            crop = (..., slice(0, h8), slice(0, w8))
            g = GBuffers(*(f[n].float()[None][crop].to(dev) for n in INPUT_NAMES))
            if "engine" in f:  # a parameter bank: the style's row as the map, its target made here
                from bridge.style.library import GRADING_START
                from neural_renderer.data.styles import param_target

                row = torch.from_numpy(DEFAULT_LIBRARY.table()[s, :GRADING_START].copy())
                smap = row.view(1, -1, 1, 1).expand(1, -1, h8, w8).to(dev)
                out = net(g, smap, lighting=f["lighting"].float()[None].to(dev),
                          engine=f["engine"].float()[None][crop].to(dev))
                if "fixed_target" in f:
                    target = f["fixed_target"].float()[None][crop].to(dev)
                else:
                    target = param_target(smap, f["reference"].float()[None][crop].to(dev), g.normals,
                                          g.linear_depth, g.emissive, f["valid"][None][crop].to(dev))
                losses.append(F.l1_loss(out, target).item())
                continue
            smap = torch.zeros(1, len(DEFAULT_LIBRARY), h8, w8)
            smap[:, s] = 1
            out = net(g, smap.to(dev), lighting=f["lighting"].float()[None].to(dev))
            target = f["targets"][s].float()[None][crop].to(dev)
            losses.append(F.l1_loss(out, target).item())
    net.train()
    return float(np.mean(losses))


def plot_losses(history: dict[str, list[list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    tr = np.asarray(history.get("train", []))
    if len(tr):
        k = max(1, len(tr) // 100)
        sm = np.convolve(tr[:, 1], np.ones(k) / k, mode="valid")
        ax.plot(tr[:, 0], tr[:, 1], color="#bbb", lw=0.5, label="train (per step)")
        ax.plot(tr[k - 1 :, 0], sm, color="C0", label=f"train (mean of {k})")
    va = np.asarray(history.get("heldout", []))
    if len(va):
        ax.plot(va[:, 0], va[:, 1], "o-", color="C3", label="held-out photoreal")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (display sRGB)")
    ax.set_title(
        "train: L1 + 0.5 x gradient L1 (+ 0.5 x flicker on frame pairs); held-out: L1, no history", fontsize=9
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) into ``cfg.out``; returns a summary dict (also written to ``RUN/summary.json``)."""
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    t_load = time.perf_counter()
    if cfg.params != cfg.engine:
        raise ValueError("params and engine go together (one retrain for issues 15 and 17): pass both or neither")
    bank = load_bank(cfg.data, "train", cfg.max_frames, params=cfg.params)
    if cfg.styles is not None:
        if cfg.params:
            raise ValueError("styles cannot be restricted when training over the parameter space")
        keep = torch.tensor([n in cfg.styles for n in DEFAULT_LIBRARY.names])
        for f in bank.frames:
            f["allowed"] = f["allowed"] & keep
    try:
        heldout: FrameBank | None = load_bank(cfg.data, "test", 16, params=cfg.params)
    except ValueError:
        heldout = None
    device = resolve_device(cfg.device)
    if device.type != "cpu":
        bank.to(device)
        if heldout is not None:
            heldout.to(device)
    t_load = time.perf_counter() - t_load
    net = NeuralRendererNet(
        NetConfig(
            styles=len(DEFAULT_LIBRARY),
            width=cfg.width,
            trunk_blocks=cfg.trunk_blocks,
            upscale=cfg.upscale,
            modulate=cfg.modulate,
            lighting=cfg.lighting,
            params=cfg.params,
            engine=cfg.engine,
        )
    )
    if cfg.init is not None and not (resume and ckpt_path.exists()):
        net, _ = load_checkpoint(cfg.init)
        if net.config.styles != len(DEFAULT_LIBRARY):
            raise ValueError(f"{cfg.init} was trained on {net.config.styles} styles, the library has "
                             f"{len(DEFAULT_LIBRARY)}")
        if cfg.lighting and not net.config.lighting:
            net = widen_for_lighting(net)
        if cfg.params and not net.config.params:
            # warm start: the same network taking the parameter map and the engine image, exact on the presets
            net = params_from_styles(net, torch.from_numpy(DEFAULT_LIBRARY.table()[:, :GRADING_START].copy()))
        elif not cfg.params and net.config.params:
            raise ValueError(f"{cfg.init} takes style parameters: pass --params --engine to fine-tune it")
        net.train()
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step = 0
    history: dict[str, list[list[float]]] = {"train": [], "heldout": []}
    gen = torch.Generator().manual_seed(cfg.seed)
    elapsed = 0.0
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        net = NeuralRendererNet(NetConfig(**ck["config"]))
        net.load_state_dict(ck["model"])
        net.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        opt.load_state_dict(ck["optimizer"])
        step, history, elapsed = ck["step"], ck["history"], ck.get("elapsed", 0.0)
        gen.set_state(ck["rng"])
    ema = WeightAverage(net, cfg.ema)
    if resume and ckpt_path.exists() and "ema" in ck:
        ema.load(ck["ema"])
    net.train()

    def save() -> None:
        ck = {
            "config": net.config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "ema": ema.state(),
            "optimizer": opt.state_dict(),
            "step": step,
            "history": history,
            "rng": gen.get_state(),
            "elapsed": elapsed,
            "train_config": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "data"
            }
            | {"data": [str(d) for d in cfg.data]},
        }
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(ck, tmp)
        tmp.replace(ckpt_path)
        plot_losses(history, out / "loss.png")

    bar = tqdm(total=cfg.steps, initial=step, unit="step", disable=not progress, desc="training")
    t0 = time.perf_counter() - elapsed
    crop = cfg.crop // (8 * cfg.upscale) * (8 * cfg.upscale)
    criterion = make_criterion(cfg.flip_weight, device)
    while step < cfg.steps:
        if cfg.minutes is not None and time.perf_counter() - t0 > cfg.minutes * 60:
            break
        # Cosine decay over the run; a run bounded by --minutes decays over its time budget instead, so that it
        # still ends at a low learning rate whatever its step rate turns out to be.
        progress = step / cfg.steps
        if cfg.minutes is not None:
            progress = max(progress, (time.perf_counter() - t0) / (cfg.minutes * 60))
        lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
        for g in opt.param_groups:
            g["lr"] = lr
        loss = training_loss(net, bank, cfg, gen, crop, criterion)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(step)
        step += 1
        history["train"].append([step, float(loss.item())])
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.1e}")
        if heldout is not None and cfg.upscale == 1 and (step % cfg.eval_every == 0 or step == cfg.steps):
            with ema.swapped_in():
                history["heldout"].append([step, evaluate(net, heldout)])
        if step % cfg.checkpoint_every == 0:
            elapsed = time.perf_counter() - t0
            save()
    elapsed = time.perf_counter() - t0
    save()
    bar.close()
    tr = history["train"]
    summary = {
        "steps": step,
        "train_seconds": round(elapsed, 1),
        "load_seconds": round(t_load, 1),
        "train_frames": len(bank),
        "heldout_frames": len(heldout) if heldout else 0,
        "first_loss": float(np.mean([v for _, v in tr[:20]])) if tr else None,
        "final_loss": float(np.mean([v for _, v in tr[-50:]])) if tr else None,
        "heldout_l1": history["heldout"][-1][1] if history["heldout"] else None,
        "params": sum(p.numel() for p in net.parameters()),
        "config": net.config.to_dict(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
