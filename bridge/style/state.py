"""Per-session style state: a global mix plus overrides per material id and per object id, each tweened over time.

Model. Every *layer* (the global one, one per overridden material id, one per overridden object id) holds a
*contribution* vector ``c`` over the style library: non-negative, summing to the layer's strength ``a ≤ 1``. A layer
is composited over what lies beneath it as ``w = (1 - a) · below + c``. The global layer lies over the identity
style; a material override lies over the global mix; an object override lies over the material result. Hence the
precedence **object override > material override > global**, and a strength below 1 lets what is beneath show
through.

``transition(style, strength, over)`` moves a layer's contribution from its current value to ``strength ·
onehot(style)`` (or ``strength · mix`` for a dict of weights) over ``over`` seconds with an easing curve, starting
*now*. "Now" is only ever set by ``advance_to`` from the frame times the engine sends, never from a clock, so the
state is a pure function of its initial value, the ordered command stream and the frame times (deterministic,
replayable bit for bit). Interrupting a transition starts the new one from wherever the old one had got to.

The library may grow while a session runs (a game defines styles in its style file or hooks,
``bridge.style.defined``): contributions recorded before are read as 0 for the new styles.

The state also holds the session's **post controls** (applied by ``bridge.style.grading.post_process``): an
*intensity* 0..1 (how much of the re-rendered image is shown over the engine's own ``hudless_color``), tweened
like a layer, and the object / material ids *excluded* from re-rendering (their pixels keep the engine's image, with
a soft edge ``feather`` pixels wide).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from bridge.protocol import StyleCommand, Target
from bridge.style.library import DEFAULT_LIBRARY, StyleLibrary


def _smoothstep(x: float) -> float:
    return x * x * (3.0 - 2.0 * x)


def _ease_in_out(x: float) -> float:
    return 4.0 * x * x * x if x < 0.5 else 1.0 - (-2.0 * x + 2.0) ** 3 / 2.0


#: Easing curves mapping progress 0..1 to blend 0..1. ``smoothstep`` is the default for engine commands.
EASINGS: dict[str, Callable[[float], float]] = {
    "linear": lambda x: x,
    "smoothstep": _smoothstep,
    "ease_in": lambda x: x * x * x,
    "ease_out": lambda x: 1.0 - (1.0 - x) ** 3,
    "ease_in_out": _ease_in_out,
}
DEFAULT_EASING = "smoothstep"


@dataclass
class _Layer:
    """A contribution tweening from ``start`` (at ``t0``) to ``end`` (at ``t0 + duration``)."""

    start: np.ndarray
    end: np.ndarray
    t0: float = 0.0
    duration: float = 0.0
    easing: str = DEFAULT_EASING

    def value(self, t: float, n: int | None = None) -> np.ndarray:
        """The contribution at ``t``, padded with zeros to ``n`` styles (the library may have grown since)."""
        if self.duration <= 0.0 or t >= self.t0 + self.duration:
            v = self.end
        elif t <= self.t0:
            v = self.start
        else:
            k = EASINGS[self.easing]((t - self.t0) / self.duration)
            v = self.start + (self.end - self.start) * k
        if n is not None and len(v) < n:
            v = np.concatenate([v, np.zeros(n - len(v), v.dtype)])
        return v

    def settled(self, t: float) -> bool:
        return self.duration <= 0.0 or t >= self.t0 + self.duration


@dataclass(frozen=True)
class StyleSnapshot:
    """The state evaluated at one time: what the style map builder needs, as float32 arrays.

    ``global_weights`` (S,) sums to 1. ``material_ids``/``object_ids`` are sorted (K,) int64 and
    ``material_contrib``/``object_contrib`` the matching (K, S) contributions (rows sum to the layer strength).
    """

    time: float
    global_weights: np.ndarray
    material_ids: np.ndarray
    material_contrib: np.ndarray
    object_ids: np.ndarray
    object_contrib: np.ndarray


class StyleState:
    """A session's style mix over time (see the module docstring for the model and the determinism contract)."""

    def __init__(self, library: StyleLibrary = DEFAULT_LIBRARY, initial: str | Mapping[str, float] = "identity",
                 strength: float = 1.0) -> None:
        self.library = library
        self.now = 0.0
        self._global = _Layer(self._contribution(initial, strength), self._contribution(initial, strength))
        self._materials: dict[int, _Layer] = {}
        self._objects: dict[int, _Layer] = {}
        self._intensity = _Layer(np.ones(1), np.ones(1))
        self.excluded_objects: frozenset[int] = frozenset()
        self.excluded_materials: frozenset[int] = frozenset()
        self.feather = 2.0

    # ---------------------------------------------------------------------------------------------- commands
    def advance_to(self, t: float) -> None:
        """Set "now" (seconds, frame time). Time never goes backwards: an earlier ``t`` is ignored."""
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t}")
        self.now = max(self.now, float(t))
        self._prune()

    def transition(
        self,
        style: str | Mapping[str, float],
        strength: float = 1.0,
        over: float = 0.0,
        *,
        target: Target | None = None,
        material: int | Iterable[int] | None = None,
        object: int | Iterable[int] | None = None,  # noqa: A002 - the natural name in the hooks API
        easing: str = DEFAULT_EASING,
    ) -> None:
        """Move the targeted layer(s) to ``strength`` of ``style`` over ``over`` seconds, starting now.

        ``style`` is a style name or a mix ``{name: weight}`` (normalised). The target is global unless
        ``target`` (a protocol ``Target``), ``material`` or ``object`` ids are given.
        """
        end = self._contribution(style, strength)
        self._retarget(end, over, easing, self._layers_for(target, material, object))

    def set(self, style: str | Mapping[str, float], strength: float = 1.0, *, target: Target | None = None,
            material: int | Iterable[int] | None = None, object: int | Iterable[int] | None = None) -> None:  # noqa: A002
        """``transition`` with no tween."""
        self.transition(style, strength, 0.0, target=target, material=material, object=object)

    def clear(self, over: float = 0.0, *, target: Target | None = None, material: int | Iterable[int] | None = None,
              object: int | Iterable[int] | None = None, easing: str = DEFAULT_EASING) -> None:  # noqa: A002
        """Fade the targeted layer(s) out (an override disappears once faded; the global layer returns to identity)."""
        zero = np.zeros(len(self.library), np.float64)
        self._retarget(zero, over, easing, self._layers_for(target, material, object))

    def apply(self, cmd: StyleCommand, easing: str = DEFAULT_EASING) -> None:
        """Apply an engine ``set_style`` command (protocol FRAME ``styles``)."""
        self.transition(cmd.style, cmd.strength, cmd.over, target=cmd.target, easing=easing)

    # ------------------------------------------------------------------------------------------- post controls
    def set_intensity(self, value: float, over: float = 0.0, easing: str = DEFAULT_EASING) -> None:
        """Tween the intensity (0: the engine's own image, 1: fully re-rendered) to ``value`` over ``over`` seconds.
        It needs the engine's ``hudless_color`` in the frame; without it the re-rendered image is shown as is."""
        if not (0.0 <= value <= 1.0) or math.isnan(value):
            raise ValueError(f"intensity must be within 0..1, got {value}")
        if easing not in EASINGS:
            raise ValueError(f"unknown easing {easing!r}; known: {', '.join(EASINGS)}")
        if not (0.0 <= over < math.inf):
            raise ValueError(f"over must be a finite number of seconds >= 0, got {over}")
        start = self._intensity.value(self.now)
        self._intensity = _Layer(start.copy(), np.array([float(value)]), self.now, float(over), easing)

    def intensity(self, t: float | None = None) -> float:
        """The intensity at ``t`` (default now)."""
        return float(self._intensity.value(self.now if t is None else t)[0])

    def exclude(self, *, target: Target | None = None, material: int | Iterable[int] | None = None,
                object: int | Iterable[int] | None = None, feather: float | None = None) -> None:  # noqa: A002
        """Exclude objects / materials from re-rendering: their pixels keep the engine's image (``hudless_color``).
        ``feather`` (pixels, 0..64) is the width of the soft edge drawn around them."""
        mats, objs = self._ids_for(target, material, object)
        self.excluded_materials |= frozenset(mats)
        self.excluded_objects |= frozenset(objs)
        if feather is not None:
            if not (0.0 <= feather <= 64.0):
                raise ValueError(f"feather must be 0..64 pixels, got {feather}")
            self.feather = float(feather)

    def include(self, *, target: Target | None = None, material: int | Iterable[int] | None = None,
                object: int | Iterable[int] | None = None) -> None:  # noqa: A002
        """Undo ``exclude`` for these ids; with no ids, for every id."""
        if target is None and material is None and object is None:
            self.excluded_materials = self.excluded_objects = frozenset()
            return
        mats, objs = self._ids_for(target, material, object)
        self.excluded_materials -= frozenset(mats)
        self.excluded_objects -= frozenset(objs)

    def _ids_for(self, target: Target | None, material: int | Iterable[int] | None,
                 obj: int | Iterable[int] | None) -> tuple[list[int], list[int]]:
        mats: list[int] = []
        objs: list[int] = []
        for table, key in self._layers_for(target, material, obj):
            if table is self._materials:
                mats.append(key)
            elif table is self._objects:
                objs.append(key)
            else:
                raise ValueError("exclude/include need object or material ids (or a material/object target)")
        return mats, objs

    @property
    def post_active(self) -> bool:
        """Whether intensity or masks can change a frame now (else the post stage is skipped)."""
        return bool(self.excluded_objects or self.excluded_materials) or self.intensity() < 1.0 \
            or not self._intensity.settled(self.now)

    # ------------------------------------------------------------------------------------------------ queries
    def weights(self, *, target: Target | None = None, material: int | None = None, object: int | None = None,  # noqa: A002
                t: float | None = None) -> dict[str, float]:
        """The effective mix ``{style: weight}`` at ``t`` (default now) for the global scope, one material or one
        object (object over material over global, as a pixel with those ids would get)."""
        t = self.now if t is None else t
        w = self._global_weights(t)
        mat, obj = material, object
        if target is not None and target.scope != "global":
            if target.scope == "material":
                mat = target.ids[0]
            else:
                obj = target.ids[0]
        for layers, key in ((self._materials, mat), (self._objects, obj)):
            if key is not None and key in layers:
                c = layers[key].value(t, len(w))
                w = (1.0 - c.sum()) * w + c
        return {name: float(x) for name, x in zip(self.library.names, w) if x > 0.0}

    def snapshot(self, t: float | None = None) -> StyleSnapshot:
        """Evaluate every layer at ``t`` (default now) into arrays for the style map builder."""
        t = self.now if t is None else t
        s = len(self.library)  # once: the library may grow meanwhile (another thread reloading a style file)

        def pack(layers: dict[int, _Layer]) -> tuple[np.ndarray, np.ndarray]:
            keys = sorted(layers)
            ids = np.asarray(keys, dtype=np.int64)
            contrib = (np.stack([layers[k].value(t, s) for k in keys]) if keys else np.zeros((0, s))).astype(np.float32)
            return ids, contrib

        mids, mc = pack(self._materials)
        oids, oc = pack(self._objects)
        return StyleSnapshot(t, self._global_weights(t, s).astype(np.float32), mids, mc, oids, oc)

    def describe(self, t: float | None = None) -> dict[str, object]:
        """A JSON-able summary of the state (for logs and ``nrb inspect``)."""
        t = self.now if t is None else t

        def mix(c: np.ndarray) -> dict[str, float]:
            return {n: round(float(x), 4) for n, x in zip(self.library.names, c) if x > 0}

        return {
            "time": t,
            "global": mix(self._global_weights(t)),
            "materials": {k: mix(v.value(t, len(self.library))) for k, v in sorted(self._materials.items())},
            "objects": {k: mix(v.value(t, len(self.library))) for k, v in sorted(self._objects.items())},
        }

    # ------------------------------------------------------------------------------------------- moving state
    def used_styles(self) -> frozenset[str]:
        """The styles any layer moves from or to (some weight in a layer's start or end), by name."""
        names = self.library.names
        return frozenset(names[i] for layer in (self._global, *self._materials.values(), *self._objects.values())
                         for v in (layer.start, layer.end) for i in np.flatnonzero(v[:len(names)]))

    def reindex(self, old_names: list[str], redirect: Mapping[str, str] | None = None) -> frozenset[str]:
        """Re-index every per-style vector, written against a library ordered as ``old_names`` (another server's),
        onto this state's library by style name: a session's state moved to another worker, whose library holds the
        same styles at other positions (run-time styles are defined in each server's own order). A name in
        ``redirect`` takes its weight to the style it names there; the weight of a name this library lacks is
        dropped (the global layer's share falls to identity). Returns the names whose weight was dropped."""
        n = len(self.library)
        where: dict[int, int] = {}
        for i, name in enumerate(old_names):
            target = (redirect or {}).get(name, name)
            if target in self.library:
                where[i] = self.library.index(target)
        dropped: list[str] = []

        def move(v: np.ndarray) -> np.ndarray:
            out = np.zeros(n, v.dtype)
            for i in np.flatnonzero(v):
                j = where.get(int(i))
                if j is None:
                    dropped.append(old_names[i] if i < len(old_names) else f"#{i}")
                else:
                    out[j] += v[i]
            return out

        def moved(layer: _Layer) -> _Layer:  # a new layer: the old one may still be another state's
            return _Layer(move(layer.start), move(layer.end), layer.t0, layer.duration, layer.easing)

        self._global = moved(self._global)
        self._materials = {k: moved(v) for k, v in self._materials.items()}
        self._objects = {k: moved(v) for k, v in self._objects.items()}
        self._prune()
        return frozenset(dropped)

    # --------------------------------------------------------------------------------------------- internals
    def _contribution(self, style: str | Mapping[str, float], strength: float) -> np.ndarray:
        if not (0.0 <= strength <= 1.0) or math.isnan(strength):
            raise ValueError(f"strength must be within 0..1, got {strength}")
        c = np.zeros(len(self.library), np.float64)
        if isinstance(style, str):
            c[self.library.index(style)] = 1.0
        else:
            for name, weight in style.items():
                if not weight >= 0.0 or not math.isfinite(weight):
                    raise ValueError(f"mix weight for {name!r} must be finite and >= 0, got {weight}")
                c[self.library.index(name)] += weight
            total = c.sum()
            if total <= 0.0:
                raise ValueError("a style mix needs at least one positive weight")
            c /= total
        return c * strength

    def _global_weights(self, t: float, n: int | None = None) -> np.ndarray:
        c = self._global.value(t, len(self.library) if n is None else n)
        w = c.copy()
        w[0] += 1.0 - c.sum()  # identity (index 0) lies under the global layer
        return w

    def _layers_for(self, target: Target | None, material: int | Iterable[int] | None,
                    obj: int | Iterable[int] | None) -> list[tuple[dict[int, _Layer] | None, int]]:
        def ids(x: int | Iterable[int]) -> list[int]:
            out = [int(x)] if isinstance(x, (int, np.integer)) else [int(i) for i in x]
            for i in out:
                if not 0 <= i < 2**32:
                    raise ValueError(f"ids are 0..2^32-1, got {i}")
            return out

        if target is not None and (material is not None or obj is not None):
            raise ValueError("give either target= or material=/object=, not both")
        if target is not None:
            if target.scope == "material":
                material = target.ids
            elif target.scope == "object":
                obj = target.ids
            elif target.scope != "global":
                raise ValueError(f"unknown target scope {target.scope!r}")
        out: list[tuple[dict[int, _Layer] | None, int]] = []
        if material is not None:
            out += [(self._materials, i) for i in ids(material)]
        if obj is not None:
            out += [(self._objects, i) for i in ids(obj)]
        return out or [(None, 0)]

    def _retarget(self, end: np.ndarray, over: float, easing: str,
                  layers: list[tuple[dict[int, _Layer] | None, int]]) -> None:
        if easing not in EASINGS:
            raise ValueError(f"unknown easing {easing!r}; known: {', '.join(EASINGS)}")
        if not (0.0 <= over < math.inf):
            raise ValueError(f"over must be a finite number of seconds >= 0, got {over}")
        for table, key in layers:
            zero = np.zeros_like(end)
            current = self._global if table is None else table.get(key)
            start = zero if current is None else current.value(self.now, len(end))
            layer = _Layer(start.copy(), end.copy(), self.now, float(over), easing)
            if table is None:
                self._global = layer
            else:
                table[key] = layer
        self._prune()

    def _prune(self) -> None:
        """Drop overrides that have faded out completely, so the state stays as small as what is visible."""
        for table in (self._materials, self._objects):
            for key in [k for k, v in table.items() if v.settled(self.now) and not v.end.any()]:
                del table[key]
