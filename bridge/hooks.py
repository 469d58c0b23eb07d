"""Style hooks: a Python file the game team writes so that gameplay events change the look.

    # mygame_styles.py  —  nrb serve --hooks mygame_styles.py
    from bridge.hooks import on, every_frame

    @on("boss_phase")
    def _(event, style, ctx):
        style.transition("noir", strength=0.9, over=2.0)

    @on("weapon_powerup")
    def _(event, style, ctx):
        style.transition("golden", over=0.3, target=event.target)   # only that weapon's pixels

    @every_frame
    def _(style, ctx):
        if ctx.state.get("flash_until", 0) and ctx.time > ctx.state["flash_until"]:
            style.clear(object=7, over=0.5)
            ctx.state["flash_until"] = 0

Hooks receive the protocol ``Event`` (``name``, ``params``, ``target``), a ``StyleProxy`` on the session's
``StyleState`` (``transition``, ``set``, ``clear``, ``weights``) and a ``HookContext`` (``time``/``dt``/``frame`` of the
frame the event arrived with, ``session``, ``state`` — a dict kept per session — and ``random``, seeded by the frame
id so that hooks stay replayable).

**Composition order, per frame, all at that frame's time** (see ``bridge.session.StylePipeline.advance``):

1. the engine's ``set_style`` commands carried by the frame, in the order issued;
2. for each event of the frame in order, each ``@on(event)`` hook in the order the file defines them;
3. each ``@every_frame`` hook in file order.

A later effect on the same layer starts from where the earlier one left it, so hooks can refine or override what
the engine asked for in the same frame. An exception in a hook is logged with the file and line where it was
raised, counted, and skipped: the remaining hooks run, the frame is rendered. Changes the hook made before raising
are kept.

The hooks file is re-read when its modification time (or size) changes; a file that fails to load keeps the previous
hooks running and the error is logged.

**Defining styles and the post controls.** At the top level of the hooks file, ``define_style(name, **params,
lut="x.cube", base="photoreal", description="...")`` adds a style to the server's library (next to the presets and
the ``--styles`` file's; the hooks file wins on a name clash), usable by name in hooks and in the engine's style
commands; parameters and ranges are ``bridge.style.library.PARAM_SPECS``, the ``lut`` path is relative to the hooks
file, and a bad definition makes the file fail to load (the previous hooks keep running). In hooks,
``style.set_intensity(0.5, over=1.0)`` blends the re-rendered image with the engine's own ``hudless_color``, and
``style.exclude(object=[7], feather=3)`` / ``style.include(...)`` keep objects' or materials' engine pixels
(``bridge.style.grading.post_process``). All of these are per session and replayable like the style state.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.protocol import Event, Target
from bridge.style.defined import StyleDef, make_def
from bridge.style.state import DEFAULT_EASING, StyleState

log = logging.getLogger("nrb.hooks")

EventHook = Callable[[Event, "StyleProxy", "HookContext"], Any]
FrameHook = Callable[["StyleProxy", "HookContext"], Any]


class HookLoadError(Exception):
    """The hooks file could not be read or executed; the message says where."""


@dataclass
class HookContext:
    """What a hook knows about the frame it runs on. ``time`` is seconds since the session's first frame (from the
    engine's frame times, not a wall clock)."""

    time: float
    dt: float
    frame: int
    session: int
    state: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    random: random.Random = field(default_factory=random.Random)


class StyleProxy:
    """The ``style`` argument of a hook: the session's ``StyleState`` with keyword-friendly targets.

    Targets: ``target=event.target`` (a protocol ``Target``), ``material=3`` / ``material=[3, 4]``, ``object=42``;
    none means global.
    """

    def __init__(self, state: StyleState) -> None:
        self._state = state

    @property
    def now(self) -> float:
        """The frame time the effects start at."""
        return self._state.now

    @property
    def styles(self) -> list[str]:
        """Names of the styles in the library."""
        return self._state.library.names

    def transition(self, style: str | Mapping[str, float], strength: float = 1.0, over: float = 0.0, *,
                   target: Target | None = None, material: int | Iterable[int] | None = None,
                   object: int | Iterable[int] | None = None, easing: str = DEFAULT_EASING) -> None:  # noqa: A002
        """Tween the target to ``strength`` of ``style`` (or a ``{name: weight}`` mix) over ``over`` seconds."""
        self._state.transition(style, strength, over, target=target, material=material, object=object,
                               easing=easing)

    def set(self, style: str | Mapping[str, float], strength: float = 1.0, *, target: Target | None = None,
            material: int | Iterable[int] | None = None, object: int | Iterable[int] | None = None) -> None:  # noqa: A002
        """Switch the target immediately."""
        self._state.set(style, strength, target=target, material=material, object=object)

    def clear(self, over: float = 0.0, *, target: Target | None = None, material: int | Iterable[int] | None = None,
              object: int | Iterable[int] | None = None, easing: str = DEFAULT_EASING) -> None:  # noqa: A002
        """Fade the target's override out (global: back to identity)."""
        self._state.clear(over, target=target, material=material, object=object, easing=easing)

    def weights(self, *, target: Target | None = None, material: int | None = None,
                object: int | None = None) -> dict[str, float]:  # noqa: A002
        """The effective mix now, e.g. ``{"identity": 0.25, "noir": 0.75}``."""
        return self._state.weights(target=target, material=material, object=object)

    def set_intensity(self, value: float, over: float = 0.0, easing: str = DEFAULT_EASING) -> None:
        """Tween how much of the re-rendered image is shown (0: the engine's ``hudless_color``, 1: all of it)."""
        self._state.set_intensity(value, over, easing)

    @property
    def intensity(self) -> float:
        """The intensity now."""
        return self._state.intensity()

    def exclude(self, *, target: Target | None = None, material: int | Iterable[int] | None = None,
                object: int | Iterable[int] | None = None, feather: float | None = None) -> None:  # noqa: A002
        """Keep the engine's pixels for these objects / materials (soft edge ``feather`` pixels wide)."""
        self._state.exclude(target=target, material=material, object=object, feather=feather)

    def include(self, *, target: Target | None = None, material: int | Iterable[int] | None = None,
                object: int | Iterable[int] | None = None) -> None:  # noqa: A002
        """Re-render these ids again (no ids: every excluded id)."""
        self._state.include(target=target, material=material, object=object)


@dataclass
class HookError:
    """One failed hook call: which hook, where it raised, and why."""

    hook: str
    location: str
    frame: int
    session: int
    error: str


# ------------------------------------------------------------------------------------------------ registration

@dataclass
class _Registry:
    events: dict[str, list[tuple[EventHook, str]]] = field(default_factory=dict)
    frames: list[tuple[FrameHook, str]] = field(default_factory=list)
    styles: dict[str, StyleDef] = field(default_factory=dict)
    path: str = "<hooks>"


_loading: list[_Registry] = []


def _label(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return repr(fn)
    return f"{fn.__name__} ({Path(code.co_filename).name}:{code.co_firstlineno})"


def _current_registry() -> _Registry:
    if not _loading:
        raise RuntimeError("@on / @every_frame only work inside a hooks file loaded by nrb (nrb serve --hooks FILE)")
    return _loading[-1]


def on(event_name: str) -> Callable[[EventHook], EventHook]:
    """Register ``fn(event, style, ctx)`` to run when a frame carries an event called ``event_name``."""
    if not isinstance(event_name, str) or not event_name:
        raise TypeError("@on needs an event name, e.g. @on('boss_phase')")

    def deco(fn: EventHook) -> EventHook:
        _current_registry().events.setdefault(event_name, []).append((fn, _label(fn)))
        return fn

    return deco


def every_frame(fn: FrameHook) -> FrameHook:
    """Register ``fn(style, ctx)`` to run on every frame, after the event hooks."""
    _current_registry().frames.append((fn, _label(fn)))
    return fn


def define_style(name: str, *, lut: str | None = None, base: str | None = None, description: str = "",
                 **params: Any) -> None:
    """Define (or redefine) a style from the hooks file's top level: parameters of ``PARAM_SPECS``, an optional
    ``.cube`` ``lut`` (relative to the hooks file) and the ``base`` preset the renderer draws. A ``StyleError``
    (unknown parameter, value out of range, bad LUT) makes the hooks file fail to load."""
    reg = _current_registry()
    frame = traceback.extract_stack(limit=2)[0]
    extra: dict[str, Any] = {"description": description}
    if lut is not None:
        extra["lut"] = lut
    if base is not None:
        extra["base"] = base
    reg.styles[name] = make_def(name, {**extra, **params}, origin=f"{Path(frame.filename).name}:{frame.lineno}",
                                relative_to=Path(reg.path).parent)


# ---------------------------------------------------------------------------------------------------- hook sets

class HookSet:
    """The hooks defined by one version of a hooks file. Immutable once loaded; ``version`` is a content hash."""

    def __init__(self, source: str, path: str = "<hooks>") -> None:
        self.source = source
        self.path = path
        self.version = hashlib.sha256(source.encode()).hexdigest()[:16]
        registry = _Registry(path=path)
        namespace: dict[str, Any] = {"__name__": f"nrb_hooks_{Path(path).stem}", "__file__": path,
                                     "on": on, "every_frame": every_frame, "Target": Target,
                                     "define_style": define_style}
        try:
            code = compile(source, path, "exec")
        except SyntaxError as exc:
            raise HookLoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
        import linecache

        linecache.cache[path] = (len(source), None, source.splitlines(True), path)  # tracebacks show the lines
        _loading.append(registry)
        try:
            exec(code, namespace)
        except Exception as exc:
            raise HookLoadError(f"{path}: loading raised {_where(exc, path)}: {type(exc).__name__}: {exc}") from exc
        finally:
            _loading.pop()
        self.events = registry.events
        self.frames = registry.frames
        #: styles the file defined with ``define_style`` (picked up by ``bridge.style.defined.StyleSource``)
        self.styles: list[StyleDef] = list(registry.styles.values())

    @classmethod
    def from_file(cls, path: str | Path) -> HookSet:
        """Load a hooks file; ``HookLoadError`` says what is wrong with it."""
        try:
            source = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise HookLoadError(f"cannot read hooks file {path}: {exc}") from exc
        return cls(source, str(path))

    def __len__(self) -> int:
        return sum(len(v) for v in self.events.values()) + len(self.frames)

    def run(self, state: StyleState, events: list[Event], ctx: HookContext) -> list[HookError]:
        """Run the event hooks for ``events`` in order, then the every-frame hooks (composition steps 2 and 3)."""
        proxy = StyleProxy(state)
        errors: list[HookError] = []
        for ev in events:
            for fn, label in self.events.get(ev.name, ()):
                self._call(label, ctx, errors, fn, ev, proxy, ctx)
        for ffn, label in self.frames:
            self._call(label, ctx, errors, ffn, proxy, ctx)
        return errors

    def _call(self, label: str, ctx: HookContext, errors: list[HookError], fn: Callable[..., Any],
              *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a game team's bug must not stop rendering
            errors.append(HookError(label, _where(exc, self.path), ctx.frame, ctx.session,
                                    f"{type(exc).__name__}: {exc}"))


def _where(exc: BaseException, path: str) -> str:
    """file:line of the innermost traceback frame inside the hooks file (else the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{Path(path).name}:{exc.lineno}"
    inside = [f for f in frames if f.filename == path] or list(frames)
    if not inside:
        return "?"
    return f"{Path(inside[-1].filename).name}:{inside[-1].lineno}"


class HooksFile:
    """A hooks file on disk with hot reload: ``current()`` re-reads it when its mtime or size changed.

    A reload that fails keeps the previous ``HookSet`` (logged; counted in ``reload_errors``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.reloads = 0
        self.reload_errors = 0
        self._lock = threading.Lock()  # render workers and the style source's refresh call current()
        self._stamp = self._stat()
        self._hooks = HookSet.from_file(self.path)  # the first load must succeed: fail fast at startup

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def current(self) -> HookSet:
        """The hooks to run for the next frame (reloaded first if the file changed)."""
        with self._lock:
            return self._current()

    def _current(self) -> HookSet:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            try:
                new = HookSet.from_file(self.path)
            except HookLoadError as exc:
                self.reload_errors += 1
                log.error("hooks reload failed, keeping the previous hooks: %s", exc)
            else:
                if new.version != self._hooks.version:
                    self.reloads += 1
                    log.info("hooks reloaded from %s (%d hooks, version %s)", self.path, len(new), new.version)
                    self._hooks = new
        return self._hooks


class HookErrorLog:
    """Counts hook errors and logs them without flooding: the first of each (hook, location) with details, then
    every 100th."""

    def __init__(self) -> None:
        self.total = 0
        self.counts: dict[tuple[str, str], int] = {}

    def report(self, errors: list[HookError]) -> None:
        for e in errors:
            self.total += 1
            key = (e.hook, e.location)
            n = self.counts[key] = self.counts.get(key, 0) + 1
            if n == 1 or n % 100 == 0:
                log.warning("hook %s raised at %s on frame %d (session %d): %s%s", e.hook, e.location, e.frame,
                            e.session, e.error, f" [{n} times so far]" if n > 1 else "")
