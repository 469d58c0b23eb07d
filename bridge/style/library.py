"""The style library: named looks, each a set of parameters every renderer can understand.

A style has two faces. The neural renderer (a later issue) knows a style by its ``index`` into a learned embedding
table; the deferred shader knows it by its shader parameters (tint, saturation, contrast, toon levels, outline, …).
Both consume the same per-pixel style map (weights over this library), so one library serves all renderers.

Shader parameters are stored so that they can be *blended linearly*: the deferred shader computes, per pixel,
``params = Σ_s weight_s · table[s]``. Colours that only matter together with an amount (the paint colour, the
outline colour, the metal roughness) are therefore stored premultiplied by that amount, and the toon ``levels`` are
stored as ``toon · levels`` next to ``toon``, so that a 50 % mix of a toon and a non-toon style gives half-strength
toon shading with the toon style's band count rather than half the bands.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Style:
    """One named look. Colours are linear RGB; amounts are 0..1 unless stated.

    ``tint`` multiplies the base colour; ``paint`` mixes the base colour toward ``paint_color`` (a golden weapon is
    paint, not tint, so that a dark texture turns gold too); ``metal`` pushes the material toward a polished metal
    (metallic 1, roughness ``metal_roughness``); ``exposure`` scales the lit colour; ``saturation`` and ``contrast``
    grade the display-referred image (1 = unchanged); ``toon`` mixes in cel shading with ``levels`` light bands;
    ``outline`` darkens depth/normal edges toward ``outline_color``; ``heat`` replaces the colour by a thermal palette
    of its luminance.
    """

    name: str
    index: int
    description: str = ""
    tint: RGB = (1.0, 1.0, 1.0)
    paint: float = 0.0
    paint_color: RGB = (1.0, 1.0, 1.0)
    metal: float = 0.0
    metal_roughness: float = 0.3
    exposure: float = 1.0
    saturation: float = 1.0
    contrast: float = 1.0
    toon: float = 0.0
    levels: int = 4
    outline: float = 0.0
    outline_color: RGB = (0.0, 0.0, 0.0)
    heat: float = 0.0

    def params(self) -> np.ndarray:
        """This style's row of the blendable parameter table, in ``PARAM_NAMES`` order (float32)."""
        p, o, m, t = self.paint, self.outline, self.metal, self.toon
        row = [
            *self.tint,
            p, *(p * c for c in self.paint_color),
            m, m * self.metal_roughness,
            self.exposure, self.saturation, self.contrast,
            t, t * float(self.levels),
            o, *(o * c for c in self.outline_color),
            self.heat,
        ]
        return np.asarray(row, dtype=np.float32)


#: Columns of ``StyleLibrary.table()``; the premultiplied ones are explained in the module docstring.
PARAM_NAMES: tuple[str, ...] = (
    "tint_r", "tint_g", "tint_b",
    "paint", "paint_r", "paint_g", "paint_b",
    "metal", "metal_roughness",
    "exposure", "saturation", "contrast",
    "toon", "toon_levels",
    "outline", "outline_r", "outline_g", "outline_b",
    "heat",
)
P = {name: i for i, name in enumerate(PARAM_NAMES)}


class StyleLibrary(Sequence[Style]):
    """An ordered, immutable set of styles. The order is the style map's last axis and the embedding index."""

    def __init__(self, styles: Sequence[Style]) -> None:
        names = [s.name for s in styles]
        if len(set(names)) != len(names):
            raise ValueError(f"style names must be unique, got {names}")
        if not names or names[0] != "identity":
            raise ValueError("the first style must be 'identity': it is what lies under every mix")
        for i, s in enumerate(styles):
            if s.index != i:
                raise ValueError(f"style {s.name!r} has index {s.index}, expected its position {i}")
        self._styles = tuple(styles)
        self._index = {s.name: i for i, s in enumerate(styles)}
        self._table = np.stack([s.params() for s in styles])
        self._table.setflags(write=False)

    def __len__(self) -> int:
        return len(self._styles)

    def __getitem__(self, key: int | str) -> Style:  # type: ignore[override]
        if isinstance(key, str):
            return self._styles[self.index(key)]
        return self._styles[key]

    def __iter__(self) -> Iterator[Style]:
        return iter(self._styles)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def names(self) -> list[str]:
        """Style names in library order (what WELCOME announces)."""
        return [s.name for s in self._styles]

    def index(self, name: str) -> int:  # type: ignore[override]
        """The position of ``name``; ``KeyError`` naming the known styles if there is none."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown style {name!r}; known styles: {', '.join(self.names)}") from None

    def table(self) -> np.ndarray:
        """The (S, P) float32 blendable parameter table (read-only)."""
        return self._table


GOLD: RGB = (1.0, 0.766, 0.336)  # linear reflectance of gold
CRIMSON: RGB = (0.75, 0.02, 0.03)  # linear

DEFAULT_LIBRARY = StyleLibrary(
    [
        Style("identity", 0, "the engine's materials, neutral grading"),
        Style("photoreal", 1, "slightly richer, filmic grading; the neural renderer's photoreal embedding",
              exposure=1.1, saturation=1.08, contrast=1.06),
        Style("toon", 2, "cel shading: banded light, saturated colours, ink outlines",
              saturation=1.35, contrast=1.05, toon=1.0, levels=3, outline=1.0),
        Style("noir", 3, "black and white, hard contrast, ink edges",
              tint=(0.95, 0.97, 1.0), exposure=0.95, saturation=0.0, contrast=1.55, outline=0.35),
        Style("golden", 4, "polished gold",
              paint=0.9, paint_color=GOLD, metal=1.0, metal_roughness=0.28, exposure=1.1, saturation=1.5),
        Style("thermal", 5, "thermal camera: luminance mapped to a heat palette", heat=1.0, contrast=1.2),
        Style("crimson", 6, "blood red wash: the screen flash of taking damage",
              tint=(1.0, 0.45, 0.4), paint=0.7, paint_color=CRIMSON, exposure=0.9, saturation=1.4, contrast=1.15),
    ]
)
