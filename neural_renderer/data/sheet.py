"""Contact sheet of the lit generator: per scene, the G-buffer albedo, the engine image and the path-traced target.

``python -m neural_renderer.data.sheet --out docs/images/lights_contact_sheet.png`` draws the picture in
docs/model.md. The engine image is shown as the engine sends it (its own tone mapping and exposure, which the
label names); the target through the same exposure and an ACES curve, so the two compare by eye. The first
label names the layout, whether there is a sun, and the kinds of local light (Area, Point, Spot).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def contact_sheet(
    seeds: list[tuple[str, int]], size: int = 112, spp: int = 64, out: Path | None = None
) -> np.ndarray:
    """Render ``(lighting, scene seed)`` pairs and tile albedo | engine image | target per row (uint8)."""
    from PIL import Image, ImageDraw

    from neural_renderer.data.engine import random_look, tone_map
    from neural_renderer.data.render import render_with_engine
    from neural_renderer.data.scene import scene_for

    rows = []
    for lighting, seed in seeds:
        spec = scene_for(lighting, seed, frames=1)
        look = random_look(np.random.default_rng([seed, 0xE9]))
        frames, look = render_with_engine(spec, size, size, spp, look, seed=seed)
        f = frames[0]
        assert look.pre_exposure is not None
        engine = f["hudless_color"] if look.tone_mapping != "none" else tone_map(f["hudless_color"], "clamp")
        target = tone_map(f["reference"] * look.pre_exposure, "aces")
        tiles = [_srgb(f["albedo"]), _srgb(engine), _srgb(target)]
        row = (np.concatenate(tiles, axis=1) * 255 + 0.5).astype(np.uint8)
        img = Image.fromarray(row)
        draw = ImageDraw.Draw(img)
        kinds = "".join(sorted({li.kind[0].upper() for li in spec.lights}))  # Area, Point, Spot
        sun = "sun" if any(spec.sun_irradiance) else "no sun"
        draw.text((3, 2), f"{spec.layout} {sun} {kinds}", fill=(255, 255, 255))
        draw.text(
            (size + 3, 2),
            f"{look.tone_mapping} x{look.pre_exposure:.2g} {look.shadows}",
            fill=(255, 255, 255),
        )
        draw.text((2 * size + 3, 2), "path traced", fill=(255, 255, 255))
        rows.append(np.asarray(img))
    sheet = np.concatenate(rows, axis=0)
    if out is not None:
        Image.fromarray(sheet).save(out, optimize=True)
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--spp", type=int, default=64)
    ap.add_argument("--seeds", default="every:0,every:3,every:4,every:12,every:15,corridor:1")
    a = ap.parse_args()
    pairs = [(s.split(":")[0], int(s.split(":")[1])) for s in a.seeds.split(",")]
    contact_sheet(pairs, a.size, a.spp, a.out)


if __name__ == "__main__":
    main()
