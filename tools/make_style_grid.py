"""Render docs/images/styles_grid.png: one frame of the synthetic scene in every preset, the LUT style and the
parameter style of ``bridge/style/looks/demo.toml``, through the deferred renderer and the exact grading stage
(exactly what ``nrb serve --renderer deferred --styles bridge/style/looks/demo.toml`` returns).

    .venv/bin/python tools/make_style_grid.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.renderer import RenderInputs, image_to_output  # noqa: E402
from bridge.renderers.deferred import DeferredRenderer  # noqa: E402
from bridge.scene import SyntheticScene  # noqa: E402
from bridge.style.defined import StyleSource  # noqa: E402
from bridge.style.grading import grade  # noqa: E402
from bridge.style.library import DEFAULT_LIBRARY  # noqa: E402
from bridge.style.state import StyleState  # noqa: E402
from bridge.style.stylemap import build_style_map  # noqa: E402

W, H = 256, 144
OUT = ROOT / "docs" / "images" / "styles_grid.png"


def main() -> None:
    source = StyleSource(DEFAULT_LIBRARY, ROOT / "bridge" / "style" / "looks" / "demo.toml")
    lib = source.library
    bufs, cam = SyntheticScene(W, H, animate=False).buffers(0.0)
    renderer = DeferredRenderer()
    tiles = []
    for name in lib.names:
        inputs = RenderInputs({b.name: b for b in bufs}, size=(W, H), camera=cam)
        state = StyleState(lib)
        state.set(name)
        sm = build_style_map(state.snapshot(), (W, H))
        image = grade(renderer.render(inputs, lib.renderer_map(sm)), sm, lib, inputs)
        tile = Image.fromarray(image_to_output(image, "rgba8_srgb", (W, H))[..., :3])
        label = name + (" (LUT)" if lib[name].lut is not None else " (params)" if name not in DEFAULT_LIBRARY else "")
        draw = ImageDraw.Draw(tile)
        draw.rectangle((0, 0, 8 + 6 * len(label), 14), fill=(0, 0, 0))
        draw.text((4, 2), label, fill=(255, 255, 255))
        tiles.append(tile)
    cols = 3
    rows = (len(tiles) + cols - 1) // cols
    grid = Image.new("RGB", (cols * W, rows * H))
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % cols) * W, (i // cols) * H))
    grid.save(OUT, optimize=True)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes, {len(tiles)} styles)")


if __name__ == "__main__":
    main()
