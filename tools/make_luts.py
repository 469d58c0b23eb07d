"""Generate the repository's own ``.cube`` LUT, ``bridge/style/looks/nrb_sunset.cube``: a warm "sunset" grade.

    .venv/bin/python tools/make_luts.py            # rewrites the committed file (deterministic)

The grade works on display-referred (sRGB-encoded) colour, as the LUTs grading tools export do: a warm white
balance, an S-curve, orange highlights and violet shadows (split toning) and a little more saturation. It is a
17-point lattice (4913 lines, what Resolve calls a "17 point cube"), small enough to commit and review.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.style.lut import Lut3D  # noqa: E402

SIZE = 17
OUT = ROOT / "bridge" / "style" / "looks" / "nrb_sunset.cube"
LUMA = np.array([0.2126, 0.7152, 0.0722])


def sunset(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB-encoded 0..1 → graded, same space."""
    x = rgb * np.array([1.06, 0.98, 0.84])  # warm white balance (display-referred)
    x = x - 0.09 * np.sin(2 * np.pi * x) / (2 * np.pi)  # gentle S-curve: darker below mid grey, brighter above
    x = np.clip(x, 0.0, 1.0)
    luma = (x @ LUMA)[..., None]
    x = luma + (x - luma) * 1.15  # a little more saturation
    high = np.clip((luma - 0.45) / 0.55, 0.0, 1.0) ** 1.5
    low = np.clip((0.45 - luma) / 0.45, 0.0, 1.0) ** 2
    x = x + high * np.array([0.06, 0.015, -0.05]) + low * np.array([0.025, -0.01, 0.05])  # split toning
    return np.clip(x, 0.0, 1.0)


def main() -> None:
    g = np.linspace(0.0, 1.0, SIZE)
    b, gg, r = np.meshgrid(g, g, g, indexing="ij")
    table = sunset(np.stack([r, gg, b], axis=-1)).astype(np.float32)
    lut = Lut3D(table, title="NRB sunset (tools/make_luts.py)")
    text = "# Warm 'sunset' grade made for Neural Render Bridge by tools/make_luts.py; input is sRGB-encoded.\n"
    text += lut.to_cube().replace("0.000000", "0").replace(".000000", "")
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes, {SIZE}^3 points)")


if __name__ == "__main__":
    main()
