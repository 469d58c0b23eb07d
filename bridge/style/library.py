"""The style library: named looks, each a set of parameters every renderer can understand.

A style has two faces. The neural renderer (a later issue) knows a style by its ``index`` into a learned embedding
table; the deferred shader knows it by its shader parameters (tint, saturation, contrast, toon levels, outline, …).
Both consume the same per-pixel style map (weights over this library), so one library serves all renderers.

Shader parameters are stored so that they can be *blended linearly*: the deferred shader computes, per pixel,
``params = Σ_s weight_s · table[s]``. Colours that only matter together with an amount (the paint colour, the
outline colour, the metal roughness) are therefore stored premultiplied by that amount, and the toon ``levels`` are
stored as ``toon · levels`` next to ``toon``, so that a 50 % mix of a toon and a non-toon style gives half-strength
toon shading with the toon style's band count rather than half the bands. The fog colour and the fog's largest
opacity are premultiplied by the fog density for the same reason.

Two groups of parameters (``SHADING_PARAMS`` then ``GRADING_PARAMS``, in table order):

* **shading** (tint … heat): what the renderer draws. The deferred shader reads them; the neural renderer learned
  the presets' rows as embeddings.
* **grading** (hue … fog, and a style's optional ``.cube`` LUT): applied *exactly*, per pixel, after any renderer
  by ``bridge.style.grading``. Every shipped preset has them neutral, so the presets render as before and a style
  map whose styles are all grading-neutral skips the stage.

Every parameter has a documented range and neutral value (``PARAM_SPECS``); an unknown name or a value out of range
is a ``StyleParamError`` naming the parameter and its range.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from bridge.style.errors import StyleError, StyleParamError

if TYPE_CHECKING:
    from bridge.style.lut import Lut3D

RGB = tuple[float, float, float]


class ParamSpec(NamedTuple):
    """A style parameter's documented range (inclusive), neutral value, channel count and meaning."""

    low: float
    high: float
    neutral: float | RGB
    channels: int
    doc: str


#: Every parameter a style may set (``Style`` fields; ``Style.define`` keyword arguments). RGB ones take 3 values (or
#: one, used for all three channels).
PARAM_SPECS: dict[str, ParamSpec] = {
    "tint": ParamSpec(0.0, 4.0, (1.0, 1.0, 1.0), 3, "multiplies the base colour (linear RGB)"),
    "paint": ParamSpec(0.0, 1.0, 0.0, 1, "mixes the base colour toward paint_color"),
    "paint_color": ParamSpec(0.0, 1.0, (1.0, 1.0, 1.0), 3, "linear RGB reflectance painted on"),
    "metal": ParamSpec(0.0, 1.0, 0.0, 1, "pushes the material toward polished metal"),
    "metal_roughness": ParamSpec(0.0, 1.0, 0.3, 1, "roughness of that metal"),
    "exposure": ParamSpec(0.0, 16.0, 1.0, 1, "scales the lit colour"),
    "saturation": ParamSpec(0.0, 4.0, 1.0, 1, "display-referred saturation (0: grey)"),
    "contrast": ParamSpec(0.0, 4.0, 1.0, 1, "display-referred contrast about mid grey"),
    "toon": ParamSpec(0.0, 1.0, 0.0, 1, "mixes in cel shading"),
    "levels": ParamSpec(2.0, 16.0, 4.0, 1, "cel-shading light bands (an integer)"),
    "outline": ParamSpec(0.0, 1.0, 0.0, 1, "darkens depth/normal edges toward outline_color"),
    "outline_color": ParamSpec(0.0, 1.0, (0.0, 0.0, 0.0), 3, "ink colour"),
    "heat": ParamSpec(0.0, 1.0, 0.0, 1, "replaces the colour by a thermal palette of its luminance"),
    # grading: applied exactly after the renderer (bridge.style.grading)
    "hue": ParamSpec(-180.0, 180.0, 0.0, 1, "rotates every hue by this many degrees about the grey axis"),
    "temperature": ParamSpec(-1.0, 1.0, 0.0, 1, "white balance: + warmer (red up, blue down), - cooler"),
    "wb_tint": ParamSpec(-1.0, 1.0, 0.0, 1, "white balance: + magenta (green down), - green"),
    "lift": ParamSpec(-0.5, 0.5, (0.0, 0.0, 0.0), 3, "raises (or lowers) the blacks, per channel, display-referred"),
    "gamma": ParamSpec(0.2, 5.0, (1.0, 1.0, 1.0), 3, "midtones: above 1 brightens, per channel, display-referred"),
    "gain": ParamSpec(0.0, 4.0, (1.0, 1.0, 1.0), 3, "scales the whites, per channel, display-referred"),
    "fog": ParamSpec(0.0, 10.0, 0.0, 1, "fog density per unit of linear depth: opacity 1 - exp(-fog * depth)"),
    "fog_color": ParamSpec(0.0, 4.0, (0.75, 0.8, 0.9), 3, "linear RGB of the fog / atmosphere"),
    "fog_max": ParamSpec(0.0, 1.0, 1.0, 1, "largest fog opacity (the sky, at infinite depth, gets this much)"),
}

GRADING_FIELDS = ("hue", "temperature", "wb_tint", "lift", "gamma", "gain", "fog", "fog_color", "fog_max")


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
    hue: float = 0.0
    temperature: float = 0.0
    wb_tint: float = 0.0
    lift: RGB = (0.0, 0.0, 0.0)
    gamma: RGB = (1.0, 1.0, 1.0)
    gain: RGB = (1.0, 1.0, 1.0)
    fog: float = 0.0
    fog_color: RGB = (0.75, 0.8, 0.9)
    fog_max: float = 1.0
    #: a 3D LUT (``.cube``) applied after the parameter grading; pixels mixing styles mix the graded results
    lut: Lut3D | None = field(default=None, compare=False)
    #: for a style a game defines: the preset the renderer draws under its grading (None for the presets)
    base: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            spec = PARAM_SPECS.get(f.name)
            if spec is not None:
                _check(self.name, f.name, getattr(self, f.name), spec)

    @classmethod
    def define(cls, name: str, index: int = 0, *, description: str = "", lut: Lut3D | None = None,
               base: str | None = None, **params: Any) -> Style:
        """A style from keyword parameters, as a style file or ``define_style`` gives them: RGB parameters take three
        numbers or one (for all channels); ``StyleParamError`` for an unknown name or a value out of range."""
        if not isinstance(name, str) or not name or len(name) > 64:
            raise StyleError(f"a style name is a non-empty string of at most 64 characters, got {name!r}")
        kw: dict[str, Any] = {}
        for key, value in params.items():
            spec = PARAM_SPECS.get(key)
            if spec is None:
                raise StyleParamError(f"style {name!r}: unknown parameter {key!r}; known: {', '.join(PARAM_SPECS)}",
                                      key)
            if spec.channels == 3:
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = (float(value),) * 3
                elif isinstance(value, (list, tuple)) and len(value) == 3:
                    value = tuple(_number(name, key, v, spec) for v in value)
                else:
                    raise StyleParamError(f"style {name!r}: {key} takes 3 numbers (R, G, B) or one, each in "
                                          f"{spec.low:g}..{spec.high:g}, got {value!r}",
                                          key, spec.low, spec.high)
            else:
                value = _number(name, key, value, spec)
                if key == "levels":
                    if value != int(value):
                        raise StyleParamError(f"style {name!r}: levels must be an integer in {spec.low:g}..{spec.high:g}, "
                                              f"got {value}", key,
                                              spec.low, spec.high)
                    value = int(value)
            kw[key] = value
        return cls(name, index, description, lut=lut, base=base, **kw)

    @property
    def grading_neutral(self) -> bool:
        """Whether the grading stage leaves this style's pixels unchanged (no LUT, every grading parameter neutral;
        fog colour and fog_max do not count without fog)."""
        if self.lut is not None or self.fog != 0.0:
            return False
        return all(getattr(self, k) == PARAM_SPECS[k].neutral
                   for k in ("hue", "temperature", "wb_tint", "lift", "gamma", "gain"))

    def params(self) -> np.ndarray:
        """This style's row of the blendable parameter table, in ``PARAM_NAMES`` order (float32)."""
        p, o, m, t, fg = self.paint, self.outline, self.metal, self.toon, self.fog
        row = [
            *self.tint,
            p, *(p * c for c in self.paint_color),
            m, m * self.metal_roughness,
            self.exposure, self.saturation, self.contrast,
            t, t * float(self.levels),
            o, *(o * c for c in self.outline_color),
            self.heat,
            self.hue, self.temperature, self.wb_tint,
            *self.lift, *self.gamma, *self.gain,
            fg, *(fg * c for c in self.fog_color), fg * self.fog_max,
        ]
        return np.asarray(row, dtype=np.float32)

    def settings(self) -> dict[str, Any]:
        """The parameters that differ from neutral, e.g. for logs: ``{"hue": 30.0, "gain": (1.1, 1.0, 0.9)}``."""
        return {k: getattr(self, k) for k, spec in PARAM_SPECS.items() if getattr(self, k) != spec.neutral}


def _number(style: str, key: str, value: Any, spec: ParamSpec) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StyleParamError(f"style {style!r}: {key} must be a number in {spec.low:g}..{spec.high:g}, got {value!r}",
                              key, spec.low, spec.high)
    return float(value)


def _check(style: str, key: str, value: Any, spec: ParamSpec) -> None:
    values = value if isinstance(value, tuple) else (value,)
    if len(values) != spec.channels:
        raise StyleParamError(f"style {style!r}: {key} takes {spec.channels} values in {spec.low:g}..{spec.high:g}, "
                              f"got {value!r}", key, spec.low, spec.high)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not spec.low <= v <= spec.high:
            raise StyleParamError(f"style {style!r}: {key}={value!r} is outside its range {spec.low:g}..{spec.high:g} "
                                  f"(neutral {spec.neutral})", key, spec.low, spec.high)


#: Columns of ``StyleLibrary.table()``; the premultiplied ones are explained in the module docstring.
PARAM_NAMES: tuple[str, ...] = (
    "tint_r", "tint_g", "tint_b",
    "paint", "paint_r", "paint_g", "paint_b",
    "metal", "metal_roughness",
    "exposure", "saturation", "contrast",
    "toon", "toon_levels",
    "outline", "outline_r", "outline_g", "outline_b",
    "heat",
    # grading (bridge.style.grading), from here on
    "hue", "temperature", "wb_tint",
    "lift_r", "lift_g", "lift_b", "gamma_r", "gamma_g", "gamma_b", "gain_r", "gain_g", "gain_b",
    "fog", "fog_r", "fog_g", "fog_b", "fog_max",
)
P = {name: i for i, name in enumerate(PARAM_NAMES)}
#: The first grading column: ``table()[:, :GRADING_START]`` are the shading parameters a renderer draws.
GRADING_START = P["hue"]
SHADING_PARAMS = PARAM_NAMES[:GRADING_START]
GRADING_PARAMS = PARAM_NAMES[GRADING_START:]


class _LibraryData(NamedTuple):
    styles: tuple[Style, ...]
    positions: dict[str, int]
    table: np.ndarray
    graded: tuple[int, ...]  # styles whose grading is not neutral


def _library_data(styles: Sequence[Style]) -> _LibraryData:
    names = [s.name for s in styles]
    if len(set(names)) != len(names):
        raise ValueError(f"style names must be unique, got {names}")
    if not names or names[0] != "identity":
        raise ValueError("the first style must be 'identity': it is what lies under every mix")
    for i, s in enumerate(styles):
        if s.index != i:
            raise ValueError(f"style {s.name!r} has index {s.index}, expected its position {i}")
    table = np.stack([s.params() for s in styles])
    table.setflags(write=False)
    return _LibraryData(tuple(styles), {s.name: i for i, s in enumerate(styles)}, table,
                        tuple(i for i, s in enumerate(styles) if not s.grading_neutral))


class StyleLibrary(Sequence[Style]):
    """An ordered set of styles. The order is the style map's last axis and the embedding index.

    A renderer's library is immutable. A server session's library is a ``bridge.style.defined.LiveLibrary``: the
    renderer's presets followed by the styles the game defines, which only grows while the server runs (every read
    takes one consistent snapshot, ``_data``)."""

    def __init__(self, styles: Sequence[Style]) -> None:
        self._data = _library_data(styles)

    def __len__(self) -> int:
        return len(self._data.styles)

    def __getitem__(self, key: int | str) -> Style:  # type: ignore[override]
        if isinstance(key, str):
            return self._data.styles[self.index(key)]
        return self._data.styles[key]

    def __iter__(self) -> Iterator[Style]:
        return iter(self._data.styles)

    def __contains__(self, name: object) -> bool:
        return name in self._data.positions

    @property
    def names(self) -> list[str]:
        """Style names in library order (what WELCOME announces)."""
        return [s.name for s in self._data.styles]

    def index(self, name: str) -> int:  # type: ignore[override]
        """The position of ``name``; ``KeyError`` naming the known styles if there is none."""
        d = self._data
        try:
            return d.positions[name]
        except KeyError:
            raise KeyError(f"unknown style {name!r}; known styles: {', '.join(s.name for s in d.styles)}") from None

    def table(self) -> np.ndarray:
        """The (S, P) float32 blendable parameter table, every column of ``PARAM_NAMES`` (read-only)."""
        return self._data.table

    def shading_table(self) -> np.ndarray:
        """The (S, GRADING_START) columns a renderer draws (``SHADING_PARAMS``; read-only view)."""
        return self._data.table[:, :GRADING_START]

    @property
    def graded(self) -> tuple[int, ...]:
        """Indices of the styles whose grading is not neutral (empty for the shipped presets)."""
        return self._data.graded


def mix_params(library: StyleLibrary, weights: Mapping[str, float]) -> np.ndarray:
    """Σ weight × row for a ``{style: weight}`` mix (weights as given, not normalised): the parameter vector a pixel
    with that mix gets."""
    out = np.zeros(len(PARAM_NAMES), np.float32)
    for name, w in weights.items():
        out += np.float32(w) * library[name].params()
    return out


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
