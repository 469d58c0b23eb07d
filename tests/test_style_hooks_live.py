"""Gameplay events change the look of a live session: hooks on a real server, asserted on the style maps the
server built (read back from its capture) and on the pixels it returned; then record → replay determinism."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers.serverkit import SCENE_SPECS, SIZE, scene_arrays, served, still_scene
from PIL import Image

from bridge.capture import CaptureReader
from bridge.commands.inspect import inspect_capture
from bridge.commands.replay import SessionReplay, replay_capture
from bridge.protocol import Event, StyleCommand, Target
from bridge.scene import BOSS_MATERIAL, WEAPON_MATERIAL
from bridge.style import DEFAULT_LIBRARY

NOIR, GOLDEN, TOON, THERMAL = (DEFAULT_LIBRARY.index(n) for n in ("noir", "golden", "toon", "thermal"))

HOOKS = """\
from bridge.hooks import on, every_frame

@on("weapon_powerup")
def weapon_golden(event, style, ctx):
    style.transition("golden", strength=1.0, over=0.0, target=event.target)

@on("boss_phase")
def boss_noir(event, style, ctx):
    style.transition("noir", strength=0.9, over=2.0, easing="linear")

@on("explode")
def broken(event, style, ctx):
    raise ZeroDivisionError("kaboom")  # line 13
"""

#: frame id → (events, engine style commands); frames are 0.5 s apart (frame 1 at t = 0)
SCRIPT: dict[int, tuple[list[Event], list[StyleCommand]]] = {
    2: ([Event("weapon_powerup", {}, Target("material", (WEAPON_MATERIAL,)))], []),
    3: ([Event("boss_phase", {"phase": 2})], []),
    7: ([Event("explode")], [StyleCommand("toon", 1.0, 0.0, Target("material", (BOSS_MATERIAL,)))]),
}
FRAMES = 8


@dataclass
class LiveRun:
    images: dict[int, np.ndarray]
    capture: Path
    log: str
    tmp: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> LiveRun:
    tmp = tmp_path_factory.mktemp("live")
    hooks = tmp / "hooks.py"
    hooks.write_text(HOOKS)
    capture = tmp / "session.nrbcap"
    images: dict[int, np.ndarray] = {}
    with served(tmp, "--renderer", "deferred", "--hooks", str(hooks), "--record", str(capture)) as srv:
        with srv.client() as c:
            c.hello(SIZE, SCENE_SPECS)
            bufs, cam = still_scene()
            for f in range(1, FRAMES + 1):
                events, styles = SCRIPT.get(f, ([], []))
                r = c.render(bufs, camera=cam, events=events, styles=styles, dt=0.5,
                             time_ns=int((f - 1) * 0.5e9))
                assert r.status == "ok" and r.output is not None
                images[f] = r.output.array().copy()
            c.bye()
    return LiveRun(images, capture, (tmp / "server.log").read_text(), tmp)


def style_maps(capture: Path) -> dict[int, np.ndarray]:
    with CaptureReader(capture) as reader:
        out = {}
        for rf in SessionReplay(reader):
            assert rf.digest_matches is True  # these are exactly the maps the live server built
            assert rf.style_map is not None
            out[rf.frame.frame] = rf.style_map
        return out


def test_weapon_powerup_moves_only_the_weapon_material_pixels_toward_gold(live: LiveRun) -> None:
    before, after = live.images[1][..., :3].astype(int), live.images[2][..., :3].astype(int)
    weapon = scene_arrays()["material_id"][..., 0] == WEAPON_MATERIAL
    assert weapon.sum() > 20
    assert np.array_equal(before[~weapon], after[~weapon])  # no other pixel changes
    gold = np.array([255, 195, 90])
    assert np.abs(after[weapon] - gold).mean() < np.abs(before[weapon] - gold).mean() - 20
    warmth_before = (before[weapon][:, 0] - before[weapon][:, 2]).mean()
    warmth_after = (after[weapon][:, 0] - after[weapon][:, 2]).mean()
    assert warmth_after > warmth_before + 40  # grey metal turned yellow-gold


def test_weapon_powerup_sets_a_material_override_in_the_style_map(live: LiveRun) -> None:
    maps = style_maps(live.capture)
    weapon = scene_arrays()["material_id"][..., 0] == WEAPON_MATERIAL
    assert (maps[1][..., GOLDEN] == 0).all()
    assert (maps[2][weapon][:, GOLDEN] == 1).all() and (maps[2][~weapon][:, GOLDEN] == 0).all()


def test_boss_phase_hook_tweens_the_rest_of_the_scene_to_noir_over_two_seconds(live: LiveRun) -> None:
    maps = style_maps(live.capture)
    mat = scene_arrays()["material_id"][..., 0]
    overridden = (mat == WEAPON_MATERIAL) | (mat == BOSS_MATERIAL)  # golden from frame 2, toon from frame 7
    expected = {3: 0.0, 4: 0.225, 5: 0.45, 6: 0.675, 7: 0.9, 8: 0.9}  # linear, from t = 1 s to t = 3 s
    for f, w in expected.items():
        noir = maps[f][..., NOIR]
        np.testing.assert_allclose(noir[~overridden], w, atol=1e-6, err_msg=f"frame {f}")
        assert (noir[mat == WEAPON_MATERIAL] == 0).all()  # full-strength material override covers the global look
    assert not np.array_equal(live.images[4], live.images[6])  # and the pixels follow


def test_engine_set_style_and_hooks_compose_on_the_same_frame(live: LiveRun) -> None:
    maps = style_maps(live.capture)
    boss = scene_arrays()["material_id"][..., 0] == BOSS_MATERIAL
    assert (maps[7][boss][:, TOON] == 1).all() and (maps[6][boss][:, TOON] == 0).all()


def test_a_hook_that_raises_is_logged_with_its_line_and_rendering_continues(live: LiveRun) -> None:
    assert 7 in live.images and 8 in live.images  # frame 7 (the failing hook's frame) was rendered
    assert "hooks.py:13" in live.log and "ZeroDivisionError: kaboom" in live.log


def test_replay_reproduces_the_style_maps_bit_for_bit_and_the_deferred_images_exactly(live: LiveRun) -> None:
    out = live.tmp / "replay"
    proc = subprocess.run([sys.executable, "-m", "bridge.cli", "-q", "replay", str(live.capture), "--out", str(out),
                           "--fps", "2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"style maps: {FRAMES}/{FRAMES} identical" in proc.stdout
    assert f"images: {FRAMES}/{FRAMES} identical" in proc.stdout
    pngs = sorted((out / "frames").glob("*.png"))
    assert len(pngs) == FRAMES and (out / "replay.mp4").stat().st_size > 1000
    assert np.array_equal(np.asarray(Image.open(pngs[1])), live.images[2][..., :3])
    # a second replay, through another renderer, still rebuilds the same style maps
    again = replay_capture(live.capture, renderer="passthrough")
    first = replay_capture(live.capture)
    assert again.style_digests == first.style_digests and again.ok and first.images_checked == FRAMES


def test_inspect_shows_buffer_channels_and_the_style_map_side_by_side(live: LiveRun) -> None:
    path, rf = inspect_capture(live.capture, live.tmp / "inspect.png", frame=5)
    sheet = Image.open(path)
    # 7 buffers → 4+4+1+1+1+1+1 tiles, plus style tiles and the output: at least 4 rows of 4
    assert rf.frame.frame == 5 and sheet.width >= 4 * SIZE[0] and sheet.height >= 4 * SIZE[1]


def test_hooks_edited_while_serving_take_effect_and_replay_uses_the_recorded_versions(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.py"
    hooks.write_text('from bridge.hooks import on\n@on("e")\ndef _(event, style, ctx):\n'
                     '    style.set("golden", target=event.target)\n')
    capture = tmp_path / "reload.nrbcap"
    ev = [Event("e", {}, Target("material", (WEAPON_MATERIAL,)))]
    with served(tmp_path, "--hooks", str(hooks), "--record", str(capture)) as srv, srv.client() as c:
        c.hello(SIZE, SCENE_SPECS)
        bufs, cam = still_scene()
        c.render(bufs, camera=cam, events=ev)
        hooks.write_text(textwrap.dedent('''\
            from bridge.hooks import on
            @on("e")
            def _(event, style, ctx):
                style.set("thermal", target=event.target)
            '''))
        st = hooks.stat()
        os.utime(hooks, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        c.render(bufs, camera=cam, events=ev)
        c.bye()
    maps = style_maps(capture)  # asserts every digest matches the live server's
    weapon = scene_arrays()["material_id"][..., 0] == WEAPON_MATERIAL
    assert (maps[1][weapon][:, GOLDEN] == 1).all() and (maps[2][weapon][:, THERMAL] == 1).all()
