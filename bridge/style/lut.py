"""3D colour look-up tables from industry ``.cube`` files (Adobe/Resolve format; what Unreal, Unity and DaVinci Resolve
export), applied exactly with trilinear interpolation.

Format (Adobe "Cube LUT Specification 1.0", plus the variants exporters write)::

    # comment                        (anywhere; also after the values on a line)
    TITLE "Sunset grade"             optional
    LUT_3D_SIZE 33                   required, 2..256
    DOMAIN_MIN 0.0 0.0 0.0           optional, default 0 0 0
    DOMAIN_MAX 1.0 1.0 1.0           optional, default 1 1 1
    LUT_3D_INPUT_RANGE 0.0 1.0       Resolve's older spelling of the domain (same min/max on every channel)
    0.0 0.0 0.0                      N³ lines "R G B", red changing fastest, then green, then blue
    ...

Other upper-case keywords some exporters add (``LUT_IN_VIDEO_RANGE``, ``LUT_OUT_VIDEO_RANGE``, …) are ignored. A
1D LUT (``LUT_1D_SIZE``), a data line with other than three numbers, a non-finite value, a keyword after the data, a
domain whose minimum is not below its maximum, or a wrong number of data lines is a ``CubeError`` naming the file
and the line, so a broken export is found when the style file loads, never while a game runs.

The LUT maps *display-referred* (sRGB-encoded) colours, which is what grading tools export for; the grading stage
(``bridge.style.grading``) hands it sRGB-encoded values. Inputs outside the domain are clamped to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge.style.errors import StyleError

MAX_SIZE = 256


class CubeError(StyleError):
    """A malformed ``.cube`` file; ``line`` is the 1-based line at fault (0: the file as a whole)."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, eq=False)
class Lut3D:
    """A parsed 3D LUT: ``table[b, g, r]`` is the output RGB for the lattice point (r, g, b) of an N³ grid spanning
    ``domain_min``..``domain_max``."""

    table: np.ndarray  # (N, N, N, 3) float32, indexed [b, g, r]
    title: str = ""
    domain_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    domain_max: tuple[float, float, float] = (1.0, 1.0, 1.0)
    path: str = ""
    _flat: np.ndarray = field(init=False, repr=False)
    _planes: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        t = np.ascontiguousarray(self.table, np.float32)
        n = t.shape[0]
        if t.shape != (n, n, n, 3) or not 2 <= n <= MAX_SIZE:
            raise ValueError(f"a 3D LUT table is (N, N, N, 3) with N in 2..{MAX_SIZE}, got {t.shape}")
        t.setflags(write=False)
        object.__setattr__(self, "table", t)
        object.__setattr__(self, "_flat", t.reshape(-1, 3))
        object.__setattr__(self, "_planes", tuple(np.ascontiguousarray(t.reshape(-1, 3)[:, ch]) for ch in range(3)))

    @property
    def size(self) -> int:
        """N, the lattice points per axis."""
        return int(self.table.shape[0])

    @classmethod
    def identity(cls, size: int = 17) -> Lut3D:
        """The LUT that maps every colour to itself (at the lattice points, hence everywhere under trilinear)."""
        g = np.linspace(0.0, 1.0, size, dtype=np.float32)
        b, gg, r = np.meshgrid(g, g, g, indexing="ij")
        return cls(np.stack([r, gg, b], axis=-1), title="identity")

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """(..., 3) colours → (..., 3) float32 looked up with trilinear interpolation (inputs clamped to the domain)."""
        rgb = np.asarray(rgb, np.float32)
        planes = np.ascontiguousarray(rgb.reshape(-1, 3).T)
        return np.ascontiguousarray(self.apply_planar(planes).T).reshape(rgb.shape)

    def apply_planar(self, c: np.ndarray) -> np.ndarray:
        """(3, M) channel planes → (3, M) float32, trilinear. Vectorised on contiguous planes: the lattice index and
        weights are computed once per pixel, then eight 1-D ``np.take`` per channel (an order of magnitude faster
        than gathering (M, 3) rows)."""
        n = self.size
        lo = np.asarray(self.domain_min, np.float32)[:, None]
        hi = np.asarray(self.domain_max, np.float32)[:, None]
        x = (np.asarray(c, np.float32) - lo) * ((n - 1) / (hi - lo)).astype(np.float32)
        np.clip(x, 0.0, np.float32(n - 1), out=x)
        cell = np.minimum(np.floor(x), np.float32(n - 2))  # the top cell also holds x = n - 1
        f = x - cell  # float32 throughout: a float64 temporary would double the cost of every lerp below
        i0 = cell.astype(np.intp)
        fr, fg, fb = f[0], f[1], f[2]
        base = (i0[2] * n + i0[1]) * n + i0[0]
        sg, sb = n, n * n
        corners = (base, base + 1, base + sg, base + sg + 1, base + sb, base + sb + 1, base + sb + sg,
                   base + sb + sg + 1)
        out = np.empty(x.shape, np.float32)
        for ch in range(3):
            plane = self._planes[ch]
            c000, c100, c010, c110, c001, c101, c011, c111 = (np.take(plane, k) for k in corners)
            c00 = c000 + (c100 - c000) * fr
            c10 = c010 + (c110 - c010) * fr
            c01 = c001 + (c101 - c001) * fr
            c11 = c011 + (c111 - c011) * fr
            c0 = c00 + (c10 - c00) * fg
            c1 = c01 + (c11 - c01) * fg
            out[ch] = c0 + (c1 - c0) * fb
        return out

    def to_cube(self) -> str:
        """This LUT as ``.cube`` text (6 decimals), e.g. to commit a generated grade."""
        lines = [f'TITLE "{self.title}"'] if self.title else []
        lines.append(f"LUT_3D_SIZE {self.size}")
        if self.domain_min != (0.0, 0.0, 0.0) or self.domain_max != (1.0, 1.0, 1.0):
            lines.append("DOMAIN_MIN " + " ".join(f"{v:.6f}" for v in self.domain_min))
            lines.append("DOMAIN_MAX " + " ".join(f"{v:.6f}" for v in self.domain_max))
        lines += [f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in self._flat.tolist()]
        return "\n".join(lines) + "\n"


def _floats(path: str, lineno: int, tokens: list[str], count: int, what: str) -> list[float]:
    if len(tokens) != count:
        raise CubeError(path, lineno, f"{what} needs {count} numbers, got {len(tokens)}: {' '.join(tokens)!r}")
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise CubeError(path, lineno, f"{what}: not a number in {' '.join(tokens)!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise CubeError(path, lineno, f"{what}: non-finite value in {' '.join(tokens)!r}")
    return values


def parse_cube(text: str, path: str = "<cube>") -> Lut3D:
    """Parse ``.cube`` text (see the module docstring); ``CubeError`` names the line at fault."""
    title = ""
    size: int | None = None
    dmin = [0.0, 0.0, 0.0]
    dmax = [1.0, 1.0, 1.0]
    data: list[list[float]] = []
    last_line = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        last_line = lineno
        head, _, rest = line.partition(" ")
        key = head.upper() if head[:1].isalpha() else ""
        if key and data and key != "TITLE":
            raise CubeError(path, lineno, f"keyword {head} after the table data")
        if key == "TITLE":
            title = rest.strip().strip('"')
        elif key == "LUT_3D_SIZE":
            if size is not None:
                raise CubeError(path, lineno, "LUT_3D_SIZE given twice")
            try:
                size = int(rest.strip())
            except ValueError:
                raise CubeError(path, lineno, f"LUT_3D_SIZE must be an integer, got {rest.strip()!r}") from None
            if not 2 <= size <= MAX_SIZE:
                raise CubeError(path, lineno, f"LUT_3D_SIZE must be 2..{MAX_SIZE}, got {size}")
        elif key == "LUT_1D_SIZE":
            raise CubeError(path, lineno, "1D LUTs (LUT_1D_SIZE) are not supported: export a 3D LUT")
        elif key == "DOMAIN_MIN":
            dmin = _floats(path, lineno, rest.split(), 3, "DOMAIN_MIN")
        elif key == "DOMAIN_MAX":
            dmax = _floats(path, lineno, rest.split(), 3, "DOMAIN_MAX")
        elif key == "LUT_3D_INPUT_RANGE":
            lo, hi = _floats(path, lineno, rest.split(), 2, "LUT_3D_INPUT_RANGE")
            dmin, dmax = [lo] * 3, [hi] * 3
        elif key:
            continue  # another exporter's keyword (LUT_IN_VIDEO_RANGE, ...): it does not change the table
        else:
            if size is None:
                raise CubeError(path, lineno, "table data before LUT_3D_SIZE")
            if len(data) == size**3:
                raise CubeError(path, lineno, f"more than LUT_3D_SIZE^3 = {size**3} data lines")
            data.append(_floats(path, lineno, line.split(), 3, "a data line"))
    if size is None:
        raise CubeError(path, 0, "no LUT_3D_SIZE: not a 3D .cube LUT")
    if len(data) != size**3:
        raise CubeError(path, last_line, f"LUT_3D_SIZE {size} needs {size**3} data lines, the file has {len(data)}")
    for c in range(3):
        if not dmin[c] < dmax[c]:
            raise CubeError(path, 0, f"DOMAIN_MIN {dmin} must be below DOMAIN_MAX {dmax} on every channel")
    table = np.asarray(data, np.float32).reshape(size, size, size, 3)
    return Lut3D(table, title, (dmin[0], dmin[1], dmin[2]), (dmax[0], dmax[1], dmax[2]), path)


def load_cube(path: str | Path) -> Lut3D:
    """Read and parse a ``.cube`` file (``CubeError`` if it cannot be read or is malformed)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CubeError(str(path), 0, f"cannot read: {exc}") from exc
    return parse_cube(text, str(path))
