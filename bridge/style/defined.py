"""Styles a game defines, without retraining: a TOML style file (``nrb serve --styles FILE.toml``, hot-reloaded) and
``define_style(...)`` in the hooks file, added to the server's library after the renderer's presets.

    # mygame.styles.toml
    [styles.sunset]
    description = "warm low sun over the harbour"
    lut = "luts/nrb_sunset.cube"          # a .cube 3D LUT, relative to this file
    fog = 0.02
    fog_color = [1.0, 0.62, 0.35]

    [styles.poison]
    base = "photoreal"                     # the preset the renderer draws under the grading (default: nearest)
    hue = 35
    gain = [0.85, 1.1, 0.75]

Keys: ``description``, ``lut``, ``base`` and any parameter of ``bridge.style.library.PARAM_SPECS``; an unknown key or
a value out of range is a ``StyleParamError`` naming the file, the style and the parameter's range.

**What a defined style means for the renderer.** Renderers know the presets they were built for (the neural
renderer learned one embedding per preset; the deferred shader takes the preset table). Until the model is
conditioned on the parameter vector (issue 17, with the retrain), a defined style is drawn by the renderer as its
``base`` preset — given explicitly, or else the preset nearest to its shading parameters (tint … heat, each scaled by
its range; a style that only grades is nearest to ``identity``) — and its **grading** (hue, white balance,
lift/gamma/gain, fog, LUT) is applied exactly by ``bridge.style.grading`` after the renderer. So the grading of a
new style is exact on every renderer; its shading parameters are approximated by a preset.

**Styles defined at run time** (a FRAME's stylecmd ``params``, docs/protocol.md 5.3): ``runtime_def`` validates a
parameter set from the wire and ``LiveLibrary.define_runtime`` adds it to the same server-wide library (at most
``MAX_RUNTIME_STYLES``; a name of a preset, of the style file or of the hooks cannot be taken).

Reloads: a file that fails to load or validate keeps the previous definitions (logged, counted). Styles only ever
get added while the server runs (a session may be mid-tween into one): a style removed from the file keeps its last
definition until the server restarts; a changed one takes its new parameters at the next frame.
"""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bridge.style.errors import StyleError, StyleParamError
from bridge.style.library import GRADING_START, PARAM_SPECS, Style, StyleLibrary, _library_data
from bridge.style.lut import Lut3D, load_cube

log = logging.getLogger("nrb.style")


@dataclass(frozen=True)
class StyleDef:
    """A style as a game defines it (before it gets its index in the library). ``origin`` says where (file, or
    hooks file and line) for error messages."""

    name: str
    params: Mapping[str, Any]
    description: str = ""
    lut: Lut3D | None = None
    lut_path: str | None = None
    base: str | None = None
    origin: str = ""

    def build(self, index: int) -> Style:
        try:
            return Style.define(self.name, index, description=self.description, lut=self.lut, base=self.base,
                                **dict(self.params))
        except StyleParamError as exc:
            raise StyleParamError(f"{self.origin}: {exc}" if self.origin else str(exc), exc.param, exc.low,
                                  exc.high) from None

    def wire_params(self) -> dict[str, Any]:
        """The stylecmd ``params`` that define this run-time style again (``runtime_def``), on another server: its
        parameters, ``base``, and ``lut`` as the name of the style it took its LUT from. Plain data, so a session
        moved to another worker carries its definition by value, not a LUT table (bridge.cluster.worker)."""
        out = dict(self.params)
        if self.base is not None:
            out["base"] = self.base
        if self.lut_path is not None and self.lut_path.startswith("style:"):
            out["lut"] = self.lut_path[len("style:"):]
        return out


def make_def(name: str, params: Mapping[str, Any], *, origin: str, relative_to: Path | None = None) -> StyleDef:
    """Validate one definition: ``description``, ``base``, ``lut`` (a ``.cube`` path, relative to ``relative_to``)
    and parameters. Raises ``StyleError`` / ``StyleParamError`` / ``CubeError``."""
    params = dict(params)
    description = params.pop("description", "")
    base = params.pop("base", None)
    lut_path = params.pop("lut", None)
    if not isinstance(description, str):
        raise StyleError(f"{origin}: style {name!r}: description must be a string")
    if base is not None and not isinstance(base, str):
        raise StyleError(f"{origin}: style {name!r}: base must be a preset's name")
    lut = None
    if lut_path is not None:
        if not isinstance(lut_path, str):
            raise StyleError(f"{origin}: style {name!r}: lut must be a path to a .cube file")
        p = Path(lut_path)
        if not p.is_absolute() and relative_to is not None:
            p = relative_to / p
        lut = load_cube(p)
        lut_path = str(p)
    d = StyleDef(name, params, description, lut, lut_path, base, origin)
    d.build(0)  # validate now, where the error can name the file
    return d


#: Styles a renderer holds that game logic defined through the protocol (docs/protocol.md 5.3, 11).
MAX_RUNTIME_STYLES = 64


def runtime_def(name: str, params: Mapping[str, Any], library: StyleLibrary, origin: str) -> StyleDef:
    """A style defined by a stylecmd's ``params`` (docs/protocol.md 5.3): ``lut`` names a style of ``library`` whose
    LUT it applies, ``base`` a preset, every other key a parameter of ``PARAM_SPECS``. Raises ``StyleParamError``
    naming the parameter and its range, or ``StyleError`` (a ``lut``/``base`` naming nothing usable)."""
    params = dict(params)
    lut_name = params.pop("lut", None)
    base = params.pop("base", None)
    lut = lut_path = None
    if lut_name is not None:
        if not isinstance(lut_name, str) or lut_name not in library or library[lut_name].lut is None:
            with_lut = [s.name for s in library if s.lut is not None]
            raise StyleParamError(f"{origin}: style {name!r}: lut {lut_name!r} is not a style with a LUT (styles with "
                                  f"one: {', '.join(with_lut) or 'none'})", "lut")
        lut = library[lut_name].lut
        lut_path = f"style:{lut_name}"
    if base is not None:
        presets = library.base if isinstance(library, LiveLibrary) else library
        if not isinstance(base, str) or base not in presets.names:
            raise StyleParamError(f"{origin}: style {name!r}: base {base!r} is not one of the renderer's presets "
                                  f"({', '.join(presets.names)})", "base")
    d = StyleDef(name, params, "defined at run time", lut, lut_path, base, origin)
    d.build(0)  # validates every parameter and its range
    return d


def load_style_file(path: str | Path) -> list[StyleDef]:
    """Parse a style file (module docstring). Raises ``StyleError`` (with subclasses) naming the file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StyleError(f"cannot read style file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise StyleError(f"{path}: not valid TOML: {exc}") from exc
    extra = set(doc) - {"styles"}
    if extra:
        raise StyleError(f"{path}: unknown top-level keys {sorted(extra)}; styles go in [styles.NAME] tables")
    styles = doc.get("styles", {})
    if not isinstance(styles, dict):
        raise StyleError(f"{path}: 'styles' must be a table of [styles.NAME] tables")
    out = []
    for name, params in styles.items():
        if not isinstance(params, dict):
            raise StyleError(f"{path}: styles.{name} must be a table of parameters")
        out.append(make_def(name, params, origin=f"{path.name} [styles.{name}]", relative_to=path.parent))
    return out


class LiveLibrary(StyleLibrary):
    """A server's style library: the renderer's presets (``base``, never changed) followed by the defined styles.
    It only grows; ``update`` swaps in a new consistent snapshot atomically. ``refresh`` (if given) is called before
    name lookups at most every ``refresh_interval`` seconds, so a style command naming a style just added to the
    file is accepted."""

    def __init__(self, base: StyleLibrary, refresh: Callable[[], None] | None = None,
                 refresh_interval: float = 0.05) -> None:
        super().__init__(list(base))
        self.base = base
        self._refresh = refresh
        self._interval = refresh_interval
        self._next_refresh = 0.0
        self._lock = threading.RLock()  # update, and define_runtime's check-then-add (I/O, render, Ray threads)
        self._base_of = np.arange(len(base), dtype=np.int64)
        #: names defined through the protocol (``define_runtime``), server-wide, and their current definitions (what
        #: a session moved to another worker needs to bring along, with its ``StyleState``)
        self.runtime_names: set[str] = set()
        self.runtime_defs: dict[str, StyleDef] = {}

    def _maybe_refresh(self) -> None:
        if self._refresh is None:
            return
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + self._interval
            self._refresh()

    def __contains__(self, name: object) -> bool:
        self._maybe_refresh()
        return super().__contains__(name)

    def index(self, name: str) -> int:  # type: ignore[override]
        if name not in super().names:
            self._maybe_refresh()
        return super().index(name)

    def update(self, defs: Sequence[StyleDef]) -> list[str]:
        """Add or redefine styles (previously defined ones missing from ``defs`` are kept). A name of a preset is a
        ``StyleError``. Returns the names that were added or changed."""
        with self._lock:
            current = list(self._data.styles)
            where = {s.name: i for i, s in enumerate(current)}
            changed = []
            for d in defs:
                i = where.get(d.name, len(current))
                if i < len(self.base):
                    raise StyleError(f"{d.origin}: {d.name!r} is one of the renderer's presets; pick another name")
                style = d.build(i)
                if i == len(current):
                    current.append(style)
                    where[d.name] = i
                elif current[i] == style and current[i].lut is style.lut:
                    continue
                else:
                    current[i] = style
                changed.append(d.name)
            if not changed:
                return []
            for s in current[len(self.base):]:
                if s.base is not None and s.base not in self.base:
                    raise StyleError(f"style {s.name!r}: base {s.base!r} is not one of the renderer's presets "
                                     f"({', '.join(self.base.names)})")
            data = _library_data(current)
            base_of = np.concatenate([np.arange(len(self.base), dtype=np.int64),
                                      [self._nearest_preset(s) for s in current[len(self.base):]]]).astype(np.int64)
            self._data, self._base_of = data, base_of
            return changed

    def runtime_definable(self, name: str) -> bool:
        """Whether game logic may (re)define ``name`` at run time: a new name, or one it defined before (never a
        preset, nor a style of the style file or hooks)."""
        return name in self.runtime_names or name not in super().names

    def define_runtime(self, defs: Sequence[StyleDef]) -> list[str]:
        """Add or redefine styles from stylecmd ``params`` (validated by ``runtime_def``). Raises ``StyleError`` for a
        name that is not ``runtime_definable``, ``RuntimeStyleLimit`` beyond ``MAX_RUNTIME_STYLES``."""
        with self._lock:
            for d in defs:
                if not self.runtime_definable(d.name):
                    raise StyleError(f"{d.origin}: {d.name!r} is one of the renderer's presets or a style of its "
                                     "style file or hooks; a style defined at run time needs a name of its own")
            new = {d.name for d in defs} - self.runtime_names
            if len(self.runtime_names) + len(new) > MAX_RUNTIME_STYLES:
                raise RuntimeStyleLimit(f"more than {MAX_RUNTIME_STYLES} styles defined at run time on this renderer "
                                        f"(it holds {len(self.runtime_names)}); redefine one instead")
            changed = self.update(defs)
            self.runtime_names |= new
            self.runtime_defs.update((d.name, d) for d in defs)
            return changed

    def _nearest_preset(self, style: Style) -> int:
        if style.base is not None:
            return self.base.index(style.base)
        row = style.params()[:GRADING_START]
        scale = np.asarray([_range(n) for n in _SHADING_COLUMN_SPECS], np.float32)
        d = np.abs((self.base.shading_table() - row) / scale).sum(axis=1)
        return int(np.argmin(d))

    def preset_for(self, d: StyleDef) -> str:
        """The preset the renderer would draw for ``d`` (its ``base``, else the nearest), without defining it: where
        a moved session's run-time style finds no room, its weight goes there (bridge.cluster.worker)."""
        return d.base if d.base is not None else self.base.names[self._nearest_preset(d.build(0))]

    def base_of(self, name: str) -> str:
        """The preset the renderer draws for ``name``."""
        return self.base.names[int(self._base_of[self.index(name)])]

    def renderer_map(self, style_map: np.ndarray) -> np.ndarray:
        """The (H, W, len(base)) style map the renderer understands: each defined style's weight goes to its base
        preset. Returned as is when the map only has presets; a view when no defined style has weight (so the
        presets render bit for bit as before)."""
        nb = len(self.base)
        s = style_map.shape[2]
        if s == nb:
            return style_map
        base_of = self._base_of
        if style_map.strides[0] == 0 and style_map.strides[1] == 0:  # one mix for every pixel: stay a broadcast
            g = np.asarray(style_map[0, 0], np.float32)
            if not g[nb:].any():
                return style_map[..., :nb]
            v = g[:nb].copy()
            for j in range(nb, s):
                v[base_of[j]] += g[j]
            return np.broadcast_to(v, style_map.shape[:2] + (nb,))
        extra = style_map[..., nb:]
        if not extra.any():
            return style_map[..., :nb]
        out = np.array(style_map[..., :nb], np.float32)
        for j in range(nb, s):
            w = style_map[..., j]
            if w.any():
                out[..., base_of[j]] += w
        return out


class RuntimeStyleLimit(StyleError):
    """More styles defined at run time than ``MAX_RUNTIME_STYLES`` (protocol ``LIMIT_EXCEEDED``)."""


#: spec of each shading column (premultiplied columns use their amount's range)
_SHADING_COLUMN_SPECS = ("tint", "tint", "tint", "paint", "paint", "paint", "paint", "metal", "metal", "exposure",
                         "saturation", "contrast", "toon", "levels", "outline", "outline", "outline", "outline", "heat")


def _range(name: str) -> float:
    spec = PARAM_SPECS[name]
    return spec.high - spec.low


class StyleSource:
    """Where a server's defined styles come from: an optional style file (hot-reloaded on mtime/size change) and the
    hooks file's ``define_style`` calls (``bridge.hooks``, reloaded with the hooks). Owns the ``LiveLibrary``.

    ``hooks`` is anything with ``current()`` returning an object with a ``styles`` list of ``StyleDef`` (a
    ``bridge.hooks.HooksFile``). Startup errors raise; reload errors are logged, counted and keep what was there.
    """

    def __init__(self, base: StyleLibrary, path: str | Path | None = None, hooks: Any = None) -> None:
        self.path = Path(path) if path else None
        self.hooks = hooks
        self.reloads = 0
        self.reload_errors = 0
        self._lock = threading.RLock()
        self._stamp: tuple[int, int] | None = None
        self._file_defs: list[StyleDef] = []
        self._hooks_version: str | None = None
        self._hook_defs: list[StyleDef] = []
        self.library = LiveLibrary(base, self.refresh)
        if self.path is not None:
            self._stamp = self._stat()
            self._file_defs = load_style_file(self.path)  # fail fast at startup
        if hooks is not None:
            hs = hooks.current()
            self._hooks_version, self._hook_defs = hs.version, list(hs.styles)
        self.library.update(self._merged())
        if self.path is not None or self._hook_defs:
            log.info("styles: %s", ", ".join(self.library.names))

    def _stat(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _merged(self) -> list[StyleDef]:
        by_name = {d.name: d for d in self._file_defs}
        for d in self._hook_defs:  # the hooks file wins over the style file
            by_name[d.name] = d
        return list(by_name.values())

    def refresh(self) -> None:
        """Reload the style file and pick up the hooks' definitions if either changed (cheap when neither did)."""
        with self._lock:
            dirty = False
            if self.path is not None:
                stamp = self._stat()
                if stamp is not None and stamp != self._stamp:
                    self._stamp = stamp
                    try:
                        self._file_defs = load_style_file(self.path)
                        dirty = True
                    except StyleError as exc:
                        self.reload_errors += 1
                        log.error("style file reload failed, keeping the previous styles: %s", exc)
            if self.hooks is not None:
                hs = self.hooks.current()
                if hs.version != self._hooks_version:
                    self._hooks_version, self._hook_defs = hs.version, list(hs.styles)
                    dirty = True
            if dirty:
                try:
                    changed = self.library.update(self._merged())
                except StyleError as exc:
                    self.reload_errors += 1
                    log.error("styles not updated, keeping the previous ones: %s", exc)
                    return
                if changed:
                    self.reloads += 1
                    log.info("styles defined or changed: %s", ", ".join(changed))
