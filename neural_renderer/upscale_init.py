"""Start a 2x-upscaling network from a trained 1x one, so that training it needs few steps.

``nrb train --init CKPT`` keeps the checkpoint's shape (its ``upscale`` included), and a fresh ``--upscale 2`` run
starts from random weights. Everything but the output head has the same shape at 1x and 2x (the encoders,
trunk and decoder run at input resolution either way), so those weights carry over unchanged; the head emits
(2u)^2 sub-pixels per half-resolution pixel instead of 2^2, and each new sub-pixel channel starts as a copy of
the 1x channel it falls in. The 2x network then starts out as the 1x network's output upscaled by nearest
neighbour (exactly, tested in ``tests/test_upscale_init.py``), and training only has to learn the sub-pixel
detail.

Usage: ``python -m neural_renderer.upscale_init neural_renderer/weights/default.pt OUT.pt`` then
``nrb train --init OUT.pt ...``. ``--compare X2.pt --data DATA`` measures what the 2x model buys on the held-out
frames (:func:`heldout_upscale_quality`): it against the 1x model run on the same half-resolution G-buffers and
upscaled bilinearly, the cheap alternative an engine has.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import torch

from neural_renderer.models.net import NeuralRendererNet, load_checkpoint


def upscaled_copy(net: NeuralRendererNet, upscale: int = 2) -> NeuralRendererNet:
    """A network with ``config.upscale = upscale`` whose output is ``net``'s, nearest-upscaled.

    pixel_shuffle(r) maps channel ``c * r * r + i * r + j`` to output channel ``c`` at sub-pixel ``(i, j)``; the
    1x head uses r = 2, the new one r = 2 * upscale, and sub-pixel ``(i, j)`` of the new head lies in sub-pixel
    ``(i // upscale, j // upscale)`` of the old one.
    """
    if net.config.upscale != 1:
        raise ValueError(f"expected a 1x network, got upscale={net.config.upscale}")
    new = NeuralRendererNet(replace(net.config, upscale=upscale))
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) == {"head.weight", "head.bias"}, (missing, unexpected)
    r_old, r_new = 2, 2 * upscale
    ch = net.head.out_channels // (r_old * r_old)  # 3 (sigmoid head) or 6 (modulated: gain and offset)
    src = [
        c * r_old * r_old + (i // upscale) * r_old + (j // upscale)
        for c in range(ch)
        for i in range(r_new)
        for j in range(r_new)
    ]
    with torch.no_grad():
        new.head.weight.copy_(net.head.weight[src])
        assert net.head.bias is not None and new.head.bias is not None
        new.head.bias.copy_(net.head.bias[src])
    new.eval()
    return new


def heldout_upscale_quality(x2: NeuralRendererNet, x1: NeuralRendererNet, data: list[Path],
                            style: str = "photoreal", limit: int = 64) -> dict[str, float]:
    """Photoreal quality at the full resolution of the held-out frames, from G-buffers at half of it (subsampled as
    in training): the 2x model, the 1x model + bilinear upscaling, and the 1x model given the full-resolution
    G-buffers (what the 2x model saves rendering). Whole frames, no history. L1 and PSNR in display sRGB, and the
    mean LDR-FLIP of :mod:`neural_renderer.flip`."""
    import numpy as np
    import torch.nn.functional as F

    from bridge.style.library import DEFAULT_LIBRARY
    from neural_renderer.flip import FlipLoss
    from neural_renderer.models.features import GBuffers
    from neural_renderer.train import INPUT_NAMES, load_bank

    bank = load_bank(data, "test", limit)
    s = DEFAULT_LIBRARY.index(style)
    flip = FlipLoss()
    rows: dict[str, list[list[float]]] = {"x2": [], "x1_bilinear": [], "x1_full_res": []}
    with torch.no_grad():
        for f in bank.frames:
            h, w = f["linear_depth"].shape[-2:]
            h, w = h // 16 * 16, w // 16 * 16
            smap = torch.zeros(1, len(DEFAULT_LIBRARY), h, w)
            smap[:, s] = 1
            light = f["lighting"].float()[None]
            full = GBuffers(*(f[n].float()[None][..., :h, :w] for n in INPUT_NAMES))
            half = full.map(lambda a: a[..., ::2, ::2])
            target = f["targets"][s].float()[None][..., :h, :w]
            outs = {
                "x2": x2(half, smap[..., ::2, ::2], lighting=light),
                "x1_bilinear": F.interpolate(x1(half, smap[..., ::2, ::2], lighting=light), scale_factor=2,
                                             mode="bilinear", align_corners=False).clamp(0, 1),
                "x1_full_res": x1(full, smap, lighting=light),
            }
            for k, out in outs.items():
                mse = float(F.mse_loss(out, target))
                rows[k].append([float(F.l1_loss(out, target)), 10 * math.log10(1 / max(mse, 1e-12)),
                                float(flip(out, target))])
    res: dict[str, float] = {"frames": float(len(bank.frames))}
    for k, v in rows.items():
        a = np.asarray(v)
        res[f"{k}_l1"], res[f"{k}_psnr"], res[f"{k}_flip"] = (round(float(x), 4) for x in a.mean(0))
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a 1x checkpoint (e.g. neural_renderer/weights/default.pt)")
    p.add_argument("out", type=Path, nargs="?", help="where to write the 2x initial checkpoint (for nrb train --init)")
    p.add_argument("--upscale", type=int, default=2, choices=(2,))
    p.add_argument("--compare", type=Path, help="a trained 2x checkpoint: print its held-out quality against the 1x")
    p.add_argument("--data", type=Path, nargs="+", default=[], help="dataset(s) with held-out frames (--compare)")
    args = p.parse_args(argv)
    if args.compare is not None:
        import json

        torch.set_num_threads(1)
        x1, _ = load_checkpoint(args.checkpoint)
        x2, _ = load_checkpoint(args.compare)
        print(json.dumps(heldout_upscale_quality(x2, x1, args.data), indent=1))
        return 0
    if args.out is None:
        p.error("OUT is needed to write an initial checkpoint")
    net, ckpt = load_checkpoint(args.checkpoint)
    new = upscaled_copy(net, args.upscale)
    torch.save(
        {
            "config": new.config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in new.state_dict().items()},
            "initialised_from": {"path": str(args.checkpoint), "step": ckpt.get("step")},
        },
        args.out,
    )
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
