"""Hooks files: composition order, frame time, failing hooks, hot reload (the style pipeline in-process)."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path

import pytest

from bridge.hooks import HookErrorLog, HookLoadError, HookSet, HooksFile
from bridge.protocol import Event, Frame, StyleCommand, Target
from bridge.session import StylePipeline


def hooks_file(tmp_path: Path, body: str, name: str = "hooks.py") -> Path:
    path = tmp_path / name
    path.write_text("from bridge.hooks import on, every_frame\n" + textwrap.dedent(body))
    return path


def frame(n: int, t: float, events: list[Event] = (), styles: list[StyleCommand] = ()) -> Frame:  # type: ignore[assignment]
    return Frame(1, n, int(t * 1e9), 0.5, 100.0, [], list(events), list(styles))


def test_engine_commands_then_event_hooks_in_order_then_every_frame_hooks(tmp_path: Path) -> None:
    hooks = HookSet.from_file(hooks_file(tmp_path, """
        @on("a")
        def first(event, style, ctx):
            ctx.state.setdefault("log", []).append(("a1", dict(style.weights())))
            style.set("toon")

        @on("b")
        def second(event, style, ctx):
            ctx.state.setdefault("log", []).append(("b", event.params["x"]))

        @on("a")
        def third(event, style, ctx):
            ctx.state["log"].append(("a2", dict(style.weights())))

        @every_frame
        def last(style, ctx):
            ctx.state["log"].append(("frame", dict(style.weights())))
            style.set("golden", 0.5)
    """))
    p = StylePipeline(1)
    p.advance(frame(1, 0.0, [Event("b", {"x": 1}), Event("a")], [StyleCommand("noir")]), hooks)
    log = p.user_state["log"]
    assert log == [("b", 1), ("a1", {"noir": 1.0}), ("a2", {"toon": 1.0}), ("frame", {"toon": 1.0})]
    assert p.state.weights() == {"identity": 0.5, "golden": 0.5}  # the last effect on a layer wins


def test_hooks_run_with_the_time_of_the_frame_the_event_arrived_with(tmp_path: Path) -> None:
    hooks = HookSet.from_file(hooks_file(tmp_path, """
        @on("boss_phase")
        def _(event, style, ctx):
            ctx.state["seen"] = (ctx.frame, ctx.time, ctx.dt, event.params)
            style.transition("noir", strength=0.9, over=2.0, easing="linear")
    """))
    p = StylePipeline(1)
    p.advance(frame(1, 100.0), hooks)  # the first frame's time is the session's t = 0
    p.advance(frame(2, 101.0, [Event("boss_phase", {"phase": 2})]), hooks)
    assert p.user_state["seen"] == (2, 1.0, 0.5, {"phase": 2})
    p.advance(frame(3, 102.0), hooks)
    assert p.state.weights()["noir"] == pytest.approx(0.45)
    p.advance(frame(4, 103.0), hooks)
    assert p.state.weights()["noir"] == pytest.approx(0.9)


def test_event_target_reaches_the_hook_so_one_object_can_change(tmp_path: Path) -> None:
    hooks = HookSet.from_file(hooks_file(tmp_path, """
        @on("weapon_powerup")
        def _(event, style, ctx):
            style.transition("golden", target=event.target)
    """))
    p = StylePipeline(1)
    p.advance(frame(1, 0.0, [Event("weapon_powerup", {}, Target("object", (42,)))]), hooks)
    assert p.state.weights(object=42) == {"golden": 1.0} and p.state.weights() == {"identity": 1.0}


def test_hook_that_raises_is_reported_with_file_and_line_and_the_others_still_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = hooks_file(tmp_path, """
        @on("hit")
        def broken(event, style, ctx):
            x = 1
            return x / 0

        @on("hit")
        def fine(event, style, ctx):
            style.set("noir")
    """)
    hooks = HookSet.from_file(path)
    p = StylePipeline(1)
    _, errors = p.advance(frame(1, 0.0, [Event("hit")]), hooks)
    assert p.state.weights() == {"noir": 1.0}
    assert len(errors) == 1 and errors[0].location == "hooks.py:6" and "ZeroDivisionError" in errors[0].error
    assert errors[0].hook == "broken (hooks.py:3)"
    counter = HookErrorLog()
    with caplog.at_level(logging.WARNING, logger="nrb.hooks"):
        counter.report(errors)
        counter.report(p.advance(frame(2, 0.1, [Event("hit")]), hooks)[1])
    assert counter.total == 2
    assert len(caplog.records) == 1 and "hooks.py:6" in caplog.text  # logged once, counted twice


def test_unknown_style_in_a_hook_is_a_hook_error_not_a_crash(tmp_path: Path) -> None:
    hooks = HookSet.from_file(hooks_file(tmp_path, """
        @every_frame
        def _(style, ctx):
            style.set("sepia")
    """))
    _, errors = StylePipeline(1).advance(frame(1, 0.0), hooks)
    assert "unknown style 'sepia'" in errors[0].error


def test_hooks_file_reloads_when_it_changes_and_a_broken_edit_keeps_the_old_hooks(tmp_path: Path) -> None:
    path = hooks_file(tmp_path, """
        @on("e")
        def _(event, style, ctx):
            style.set("noir")
    """)
    live = HooksFile(path)
    first = live.current()
    assert live.current() is first  # unchanged file: no reload
    hooks_file(tmp_path, """
        @on("e")
        def _(event, style, ctx):
            style.set("toon")
    """)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = live.current()
    assert second is not first and live.reloads == 1
    p = StylePipeline(1)
    p.advance(frame(1, 0.0, [Event("e")]), second)
    assert p.state.weights() == {"toon": 1.0}
    path.write_text("def broken(:\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2 * 10**9))
    assert live.current() is second and live.reload_errors == 1


def test_syntax_error_at_startup_is_a_clear_error_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("x = 1\n@on('e'\ndef f(): pass\n")
    with pytest.raises(HookLoadError, match=r"bad.py:\d+"):
        HooksFile(path)
    with pytest.raises(HookLoadError, match="cannot read"):
        HookSet.from_file(tmp_path / "missing.py")


def test_decorators_outside_a_hooks_file_say_how_to_use_them() -> None:
    from bridge.hooks import on

    with pytest.raises(RuntimeError, match="--hooks"):
        on("x")(lambda e, s, c: None)
