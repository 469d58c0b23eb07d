"""The Godot example in a real Godot 4 engine, rendered (Forward+), against a real ``nrb serve``: what a user sees.

Needs a Godot 4.3+ editor binary in ``NRB_GODOT_BIN`` (skipped with a message otherwise) and the GDExtension
built into ``engine_plugins/godot/addons/neural_render_bridge/bin/`` (built here first when ``NRB_GODOT_CPP_DIR``
names a godot-cpp checkout; ``NRB_GODOT_API_FILE`` may name the engine's ``--dump-extension-api`` output). Godot
needs a display and a Vulkan driver: with no ``DISPLAY`` the test runs it under ``xvfb-run`` (Debian's xvfb; Mesa's
lavapipe from mesa-vulkan-drivers renders on the CPU). ``--headless`` would not do: its dummy renderer never runs
compositor effects.

For each shipped renderer the example plays its scripted beats for 10 s of game time (example/selftest.gd) while the
test checks that neural frames replaced Godot's image, that the player's toggle turned them off and on again, that
every style command and event reached the server in order (the damage event, fired while the toggle was off,
arrives after it is back on), and that Godot quit cleanly: exit code 0, no script error, crash or leak report.
Screenshots and the report land in ``out/godot-engine/<renderer>/`` for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.commands.serve import spawn_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
GODOT_DIR = ROOT / "engine_plugins" / "godot"
ADDON = GODOT_DIR / "addons" / "neural_render_bridge"
EXAMPLE = GODOT_DIR / "example"
HOOKS = Path(__file__).resolve().parent / "helpers" / "style_and_event_log_hooks.py"
OUT = ROOT / "out" / "godot-engine"
EXTENSION = ADDON / "bin" / "libnrb_godot.linux.template_debug.x86_64.so"
SIZE = (320, 180)
WEAPON_ID = 42
#: What Godot prints when something went wrong that exit code 0 would hide.
BAD_OUTPUT = ("SCRIPT ERROR", "Parse Error", "ERROR:", "leak", "Leak", "Program crashed", "Segmentation fault",
              "handle_crash")

GODOT_BIN = os.environ.get("NRB_GODOT_BIN", "")
pytestmark = pytest.mark.skipif(
    not GODOT_BIN, reason="NRB_GODOT_BIN is not set: no Godot 4 binary to run the example in (tests/test_godot_engine.py"
                          " says how to run it)")


def build_extension() -> None:
    """Builds the GDExtension (Debug: template_debug, what an editor binary loads) unless it is there already."""
    if EXTENSION.is_file() and os.environ.get("NRB_GODOT_REBUILD") != "1":
        return
    godot_cpp = os.environ.get("NRB_GODOT_CPP_DIR", "")
    if not godot_cpp:
        pytest.skip(f"{EXTENSION.name} is not built and NRB_GODOT_CPP_DIR names no godot-cpp checkout to build it with")
    build = ROOT / "build" / "godot-engine-test"
    cmd = ["cmake", "-S", str(ROOT), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Debug",
           "-DNRB_BUILD_GODOT=ON", f"-DNRB_GODOT_CPP_DIR={godot_cpp}"]
    if os.environ.get("NRB_GODOT_API_FILE"):
        cmd.append(f"-DNRB_GODOT_API_FILE={os.environ['NRB_GODOT_API_FILE']}")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "nrb_godot"], check=True, capture_output=True,
                   text=True)
    assert EXTENSION.is_file()


def godot_command(project: Path, *args: str) -> list[str]:
    """Godot with a display: the current one, or a virtual one from xvfb-run."""
    cmd = [GODOT_BIN, "--path", str(project), *args]
    if os.environ.get("DISPLAY"):
        return cmd
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        pytest.skip("no DISPLAY and no xvfb-run (Debian package xvfb): Godot's renderer needs a display")
    return [xvfb, "-a", "-s", f"-screen 0 {SIZE[0] * 2}x{SIZE[1] * 2}x24", *cmd]


def project_copy(tmp: Path, endpoint: str) -> Path:
    """The example project with the addon (and its built bin/) copied in and the endpoint of this test's server (override.cfg, as a
    user points an install at another renderer)."""
    project = tmp / "project"
    shutil.copytree(EXAMPLE, project, symlinks=False, ignore=shutil.ignore_patterns("addons", ".godot"))
    # A copy, as a user installs it: Godot's import writes .import files and a .godot/ cache into the project.
    shutil.copytree(ADDON, project / "addons" / "neural_render_bridge")
    (project / "override.cfg").write_text(f'[rendering]\nneural_rendering/endpoint="{endpoint}"\n')
    return project


def import_project(project: Path, tries: int = 12) -> None:
    """``godot --import``: a fresh project has no imported resources (the addon's .glsl compute shaders are).

    The Godot 4.5-beta editor built for these tests crashes (SIGSEGV, in the engine's own code) on exiting
    ``--import`` with any GDExtension in the project, after the import itself has finished: 3 of 10 runs with this
    addon, 6 of 10 with a godot-cpp extension of one empty class, 0 of 10 with none (docs/plugins.md). The import
    is repeated until the editor exits cleanly (6 tries all crashed once), and the test fails if it never does."""
    outputs = []
    for _ in range(tries):
        shutil.rmtree(project / ".godot", ignore_errors=True)
        imp = subprocess.run([GODOT_BIN, "--headless", "--audio-driver", "Dummy", "--path", str(project), "--import"],
                             env=godot_env(), capture_output=True, text=True, timeout=300)
        if imp.returncode == 0:
            return
        outputs.append(f"exit code {imp.returncode}: {(imp.stdout + imp.stderr)[-1500:]}")
    pytest.fail("godot --import never exited cleanly:\n" + "\n".join(outputs))


def godot_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GALLIVM_PERF", "nopt")  # Mesa's llvmpipe/lavapipe crashes in LLVM's optimiser without it
    return env


@pytest.mark.parametrize("renderer", ["neural", "deferred", "passthrough"])
def test_godot_example_shows_neural_frames_toggles_and_delivers_styles_and_events(tmp_path, monkeypatch, renderer):
    build_extension()
    out = OUT / renderer
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log = tmp_path / "events.log"
    monkeypatch.setenv("NRB_TEST_EVENT_LOG", str(log))  # read by the hooks file in the server process
    monkeypatch.setenv("NRB_TEST_STYLE_OBJECTS", str(WEAPON_ID))
    record = tmp_path / "frames.nrbcap"
    proc, endpoint = spawn_server(["--renderer", renderer, "--hooks", str(HOOKS), "--record", str(record)],
                                  out / "server.log")
    try:
        project = project_copy(tmp_path, endpoint)
        # A fresh project has no imported resources (the addon's .glsl compute shaders are): import first.
        import_project(project)
        run = subprocess.run(
            godot_command(project, "--rendering-driver", "vulkan", "--rendering-method", "forward_plus",
                          "--audio-driver", "Dummy",
                          "--resolution", f"{SIZE[0]}x{SIZE[1]}", "--", f"--nrb-selftest={out}"),
            env=godot_env(), capture_output=True, text=True, timeout=600)
    finally:
        stop_server(proc)
    output = run.stdout + run.stderr
    (out / "godot.log").write_text(output)
    assert run.returncode == 0, output[-4000:]
    bad = [line for line in output.splitlines() if any(b in line for b in BAD_OUTPUT)]
    assert not bad, "Godot reported problems:\n" + "\n".join(bad[:20])

    report = json.loads((out / "report.json").read_text())
    assert report["rendering_method"] == "forward_plus"
    frames = report["frames"]
    before = [f for f in frames if f["t"] < report["off_at"]]
    off = [f for f in frames if not f["enabled"]]
    after = [f for f in frames if f["t"] >= report["on_at"] + 0.2]
    assert off, "the toggle never turned neural rendering off"
    assert any(f["neural"] for f in before), f"no neural frame before the toggle: {report['stats']}"
    assert not any(f["neural"] for f in off), "a neural frame was shown while the toggle was off"
    assert any(f["neural"] for f in after), f"no neural frame after turning it back on: {report['stats']}"
    assert report["stats"]["state"] == "connected"
    # Where a round trip goes (nrb_stats v5 through the autoload's get_stats): the renderer's own time is known
    # and fits inside the round trips the overlay shows.
    stats = report["stats"]
    assert 0 < stats["service_ms"] <= stats["rtt_p99_ms"], stats
    assert stats["link_ms"] >= 0, stats
    for key in ("neural", "raster"):
        assert Path(report["screenshots"][key]).is_file()

    lines = log.read_text().splitlines()
    events = [line.split()[1] for line in lines if line.startswith("EVENT ")]
    assert events == ["weapon_powerup", "player_damaged", "boss_phase", "boss_defeated"], lines
    # A transition between two looks passes through the identity look halfway (the style library's blend), so the
    # dominant style may read "identity" for a few frames in between: the order of the game's looks is what counts.
    global_styles = [line.split()[2] for line in lines if line.startswith("STYLE global ")]
    looks = [s for s in global_styles if s != "identity"]
    looks = [s for i, s in enumerate(looks) if i == 0 or looks[i - 1] != s]
    assert looks == ["photoreal", "noir", "photoreal"], lines
    weapon_styles = [line.split()[2] for line in lines if line.startswith(f"STYLE object:{WEAPON_ID} ")]
    assert "golden" in weapon_styles, lines  # the power-up's look reached the weapon (object 42) only
    assert "golden" not in global_styles, lines
    (out / "events.log").write_text(log.read_text())
    if renderer == "deferred":  # it asks for the light list: the scene's torch and boss spot, not its sun
        from bridge.capture import CaptureReader
        from bridge.lights import LIGHT_POINT, LIGHT_SPOT, X_LIGHTS, check_lights

        with CaptureReader(record) as cap:
            sent = [b for f in cap.frames() for b in f.decode().buffers if b.name == X_LIGHTS]
        assert sent, "no frame carried x_lights"
        assert {(b.width, b.height) for b in sent} == {(4, 2)}
        with_pixels = [b for b in sent if b.data is not None]
        for b in with_pixels:
            check_lights([b])
            assert sorted(b.array()[:, 0, 3].tolist()) == [LIGHT_POINT, LIGHT_SPOT]


def test_godot_example_shows_the_renderers_refusal_and_keeps_its_own_image(tmp_path):
    """A server that refuses the session (here: a render size above its --max-pixels) is surfaced: state "refused",
    the server's reason in the stats and on the overlay, no reconnect loop, and Godot keeps showing its own image."""
    build_extension()
    out = OUT / "refused"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    proc, endpoint = spawn_server(["--renderer", "passthrough", "--max-pixels", "100"], out / "server.log")
    try:
        project = project_copy(tmp_path, endpoint)
        import_project(project)
        run = subprocess.run(
            godot_command(project, "--rendering-driver", "vulkan", "--rendering-method", "forward_plus",
                          "--audio-driver", "Dummy", "--resolution", f"{SIZE[0]}x{SIZE[1]}", "--",
                          f"--nrb-selftest={out}"),
            env=godot_env(), capture_output=True, text=True, timeout=600)
    finally:
        stop_server(proc)
    (out / "godot.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    report = json.loads((out / "report.json").read_text())
    stats = report["stats"]
    assert stats["state"] == "refused", stats
    assert "max-pixels" in stats["refusal_message"] and stats["refusal_code"] == 7, stats  # LIMIT_EXCEEDED
    assert stats["frames_sent"] == 0 and stats["reconnects"] <= 1, stats  # one more HELLO after the toggle at most
    assert not any(f["neural"] for f in report["frames"])
    assert Path(report["screenshots"]["refused"]).is_file()


def test_godot_script_intensity_defined_style_and_exclusion_reach_the_server_and_change_the_picture(tmp_path):
    """Issue 17's controls from GDScript (example/controls_test.gd, the world frozen) through the GDExtension and
    libnrb to a real ``nrb serve`` (deferred): intensity 0 shows Godot's own image, a style defined at run
    time recolours the frame, excluding the weapon (object 42) gives its pixels back to Godot, and only them."""
    import numpy as np
    from PIL import Image

    build_extension()
    out = OUT / "controls"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # plain deferred: WELCOME lists hudless_color for every renderer (intensity and masks read it)
    proc, endpoint = spawn_server(["--renderer", "deferred"], out / "server.log")
    try:
        project = project_copy(tmp_path, endpoint)
        import_project(project)
        run = subprocess.run(
            godot_command(project, "--rendering-driver", "vulkan", "--rendering-method", "forward_plus",
                          "--audio-driver", "Dummy", "--resolution", f"{SIZE[0]}x{SIZE[1]}", "--",
                          f"--nrb-controls-test={out}"),
            env=godot_env(), capture_output=True, text=True, timeout=600)
    finally:
        stop_server(proc)
    output = run.stdout + run.stderr
    (out / "godot.log").write_text(output)
    assert run.returncode == 0, output[-4000:]
    bad = [line for line in output.splitlines() if any(b in line for b in BAD_OUTPUT)]
    assert not bad, "Godot reported problems:\n" + "\n".join(bad[:20])
    report = json.loads((out / "report.json").read_text())
    shots = report["screenshots"]
    assert report["returns"]["define_style"] is True, report
    assert all(shots[k]["neural"] for k in ("render", "intensity0", "defined", "excluded")), shots
    assert not shots["raster"]["neural"]
    img = {k: np.asarray(Image.open(v["path"]).convert("RGB")).astype(float) for k, v in shots.items()}

    # The HUD (the stats overlay's three lines at the top, the settings checkbox) is drawn by Godot after the neural
    # pass, over every shot, and says different things in each: compare the 3D view around it.
    scene = np.ones(img["render"].shape[:2], bool)
    scene[:80] = False  # the overlay's third line ends at row 77 (its text shifts when a count gains a digit)
    scene[95:128, :200] = False

    def diff(a: str, b: str) -> np.ndarray:
        return np.abs(img[a] - img[b]).max(axis=-1) * scene

    assert diff("render", "raster")[scene].mean() > 5, "the deferred render looks like Godot's own image"
    assert diff("intensity0", "raster")[scene].mean() < 0.5, "intensity 0 is not Godot's own image"
    # hue +120 turns the frame's reds green: the look changed everywhere, and the red boss is green
    assert diff("defined", "render")[scene].mean() > 10
    red = scene & (img["render"][..., 0] > img["render"][..., 1] + 40)
    assert red.sum() > 30, "no red boss in the render"
    green = img["defined"][red]
    assert (green[:, 1] > green[:, 0] + 40).mean() > 0.9, "the defined style did not turn the red boss green"
    # the weapon (bottom right) keeps Godot's pixels, the rest stays rendered
    changed = diff("excluded", "render") > 8
    h, w = changed.shape
    assert changed.sum() > 30, "excluding the weapon changed nothing"
    ys, xs = np.nonzero(changed)
    assert ys.mean() > h / 2 and xs.mean() > w / 2, "what changed is not where the weapon is"
    assert diff("excluded", "raster")[changed].mean() < 4, "the excluded pixels are not Godot's own"
    assert not changed[128:, : w // 2].any(), "pixels away from the weapon changed"
