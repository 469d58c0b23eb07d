"""Games define styles on a real ``nrb serve``: a style file (loaded, hot-reloaded, bad edits refused while the
server keeps serving), ``define_style`` in the hooks file, and the intensity / mask controls from hooks — asserted
on the pixels the server returns."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.serverkit import SCENE_SPECS, SIZE, served, still_scene

from bridge.client import Client, RemoteError
from bridge.hooks import HookLoadError, HookSet
from bridge.protocol import Buffer, BufferSpec, Event, StyleCommand
from bridge.scene import WEAPON_OBJECT
from bridge.style.defined import load_style_file

ROOT = Path(__file__).resolve().parents[1]
LOOKS = ROOT / "bridge" / "style" / "looks"

STYLES_V1 = """\
[styles.dusk]
description = "a cool blue evening"
temperature = -0.6
gain = [0.9, 0.95, 1.1]
"""

STYLES_V2 = STYLES_V1 + """
[styles.sunset]
lut = "nrb_sunset.cube"
fog = 0.05
fog_color = [1.0, 0.5, 0.3]
"""

STYLES_BAD = STYLES_V1.replace("-0.6", "-3.0") + '\n[styles.extra]\nhue = 10\n'


class Engine:
    """A synthetic engine session: the still scene plus the engine's own image (``hudless_color``)."""

    def __init__(self, client: Client) -> None:
        self.c = client
        self.bufs, self.cam = still_scene()
        w, h = SIZE
        rng = np.random.default_rng(3)
        self.engine_image = (rng.random((h, w, 4)) * 255).astype(np.uint8)
        self.bufs = [*self.bufs, Buffer.from_array("hudless_color", "rgba8_srgb", self.engine_image)]
        self.c.hello(SIZE, [*SCENE_SPECS, BufferSpec("hudless_color", "rgba8_srgb")])
        self.t = 0

    def frame(self, style: str | None = None, events: list[Event] | None = None) -> np.ndarray:
        self.t += 1
        styles = [StyleCommand(style, 1.0, 0.0)] if style else []
        r = self.c.render(self.bufs, camera=self.cam, styles=styles, events=events or [], dt=0.1,
                          time_ns=int(self.t * 1e8))
        assert r.status == "ok" and r.output is not None
        return r.output.array()[..., :3].astype(np.int16)


def rewrite(path: Path, text: str) -> None:
    """Write ``text`` so that the server's (mtime, size) check sees a change even within one mtime tick."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_the_demo_style_file_loads_with_its_lut_and_parameter_style() -> None:
    defs = {d.name: d for d in load_style_file(LOOKS / "demo.toml")}
    assert defs["sunset"].lut is not None and defs["sunset"].lut.size == 17
    assert defs["poison"].lut is None and defs["poison"].params["hue"] == 12


def test_style_file_styles_render_and_hot_reload_through_a_real_server(tmp_path: Path) -> None:
    shutil.copy(LOOKS / "nrb_sunset.cube", tmp_path / "nrb_sunset.cube")
    styles = tmp_path / "game.toml"
    styles.write_text(STYLES_V1)
    with served(tmp_path, "--renderer", "deferred", "--styles", str(styles)) as srv, srv.client() as c:
        eng = Engine(c)
        assert c.welcome is not None and "dusk" in c.welcome.styles  # announced next to the presets
        plain = eng.frame()
        dusk = eng.frame("dusk")
        assert (dusk[..., 2] - plain[..., 2]).mean() > 5 and (dusk[..., 0] - plain[..., 0]).mean() < -5  # cooler
        with pytest.raises(RemoteError, match="sunset"):  # not defined yet: refused like any unknown style
            eng.frame("sunset")
        rewrite(styles, STYLES_V2)
        time.sleep(0.1)  # the file is looked at again at most every 50 ms, when a frame needs a style's name
        sunset = eng.frame("sunset")  # the frame naming it makes the server reload the file first
        wait_until(lambda: "styles defined or changed: sunset" in srv.log_text())
        assert (sunset[..., 0] - sunset[..., 2]).mean() > (plain[..., 0] - plain[..., 2]).mean() + 10  # warmer
        # an edit with an out-of-range value is refused with its parameter and range; the server keeps serving
        rewrite(styles, STYLES_BAD)
        time.sleep(0.1)
        assert np.array_equal(eng.frame("dusk"), dusk)  # the previous definition still renders
        wait_until(lambda: "style file reload failed" in srv.log_text())
        assert "temperature" in srv.log_text() and "-1..1" in srv.log_text()
        with pytest.raises(RemoteError, match="extra"):
            eng.frame("extra")
        assert np.array_equal(eng.frame("identity"), plain)
        c.bye()


def test_a_style_file_with_an_unknown_parameter_stops_the_server_at_startup(tmp_path: Path) -> None:
    styles = tmp_path / "bad.toml"
    styles.write_text("[styles.x]\nsparkle = 1\n")
    with pytest.raises(RuntimeError, match="exited"):
        with served(tmp_path, "--renderer", "deferred", "--styles", str(styles)):
            pass
    assert "unknown parameter 'sparkle'" in (tmp_path / "server.log").read_text()


HOOKS = """\
from bridge.hooks import define_style, on

define_style("poison", hue=12, wb_tint=-0.7, gain=(0.85, 1.05, 0.75), description="sickly green")

@on("dim")
def dim(event, style, ctx):
    style.set_intensity(0.0)

@on("full")
def full(event, style, ctx):
    style.set_intensity(1.0)
    style.include()

@on("keep_weapon")
def keep_weapon(event, style, ctx):
    style.exclude(object=%d, feather=0)
""" % WEAPON_OBJECT


def test_define_style_intensity_and_masks_from_hooks_on_a_real_server(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.py"
    hooks.write_text(HOOKS)
    with served(tmp_path, "--renderer", "deferred", "--hooks", str(hooks)) as srv, srv.client() as c:
        eng = Engine(c)
        assert c.welcome is not None and "poison" in c.welcome.styles
        plain = eng.frame()
        poison = eng.frame("poison")
        assert (poison[..., 1] - poison[..., 0]).mean() > (plain[..., 1] - plain[..., 0]).mean() + 10  # greener
        engine = eng.engine_image[..., :3].astype(np.int16)
        assert np.array_equal(eng.frame("identity", [Event("dim")]), engine)  # intensity 0: the engine's image
        assert np.array_equal(eng.frame(None, [Event("full")]), plain)
        kept = eng.frame(None, [Event("keep_weapon")])
        weapon = still_scene()[0][6].array()[..., 0] == WEAPON_OBJECT
        assert weapon.sum() > 20
        assert np.array_equal(kept[weapon], engine[weapon]) and np.array_equal(kept[~weapon], plain[~weapon])
        c.bye()


def test_define_style_takes_a_lut_relative_to_the_hooks_file(tmp_path: Path) -> None:
    (tmp_path / "looks").mkdir()
    shutil.copy(LOOKS / "nrb_sunset.cube", tmp_path / "looks" / "grade.cube")
    hooks = tmp_path / "hooks.py"
    hooks.write_text('from bridge.hooks import define_style\ndefine_style("graded", lut="looks/grade.cube", fog=0.1)\n')
    (d,) = HookSet.from_file(hooks).styles
    assert d.name == "graded" and d.lut is not None and d.lut.size == 17 and d.params == {"fog": 0.1}


def test_define_style_with_a_bad_parameter_fails_the_hooks_file_at_its_line(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.py"
    hooks.write_text('from bridge.hooks import define_style\n\ndefine_style("x", gamma=9)\n')
    with pytest.raises(HookLoadError) as err:
        HookSet.from_file(hooks)
    assert "hooks.py:3" in str(err.value) and "gamma" in str(err.value) and "0.2..5" in str(err.value)
    hooks.write_text('from bridge.hooks import define_style\ndefine_style("y", lut="missing.cube")\n')
    with pytest.raises(HookLoadError, match="missing.cube"):
        HookSet.from_file(hooks)
