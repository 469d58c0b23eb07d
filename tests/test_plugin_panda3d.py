"""Panda3D plugin: camera conventions, targets, the demo hooks, the timing report, the headless G-buffer pass
(EGL on llvmpipe, six render targets read back) checked against the camera constants it sends, the GPU pack pass
checked against the numpy conversion, and the demo's timed loop."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "engine_plugins" / "panda3d"

from nrb_panda3d.camera import (  # noqa: E402
    CameraPose,
    CameraTracker,
    linear_to_hardware_depth,
    perspective,
)
from nrb_panda3d.client import ClientStats, normalize_target  # noqa: E402

# --------------------------------------------------------------------------------------------- camera math


def test_perspective_maps_near_far_to_0_1_and_matches_hardware_depth():
    p = perspective(math.radians(60), 16 / 9, 0.1, 50.0)
    for z in (0.1, 0.5, 3.0, 50.0):
        clip = p @ np.array([0.0, 0.0, -z, 1.0])
        assert clip[3] == pytest.approx(z)
        assert clip[2] / clip[3] == pytest.approx(float(linear_to_hardware_depth(z, 0.1, 50.0)), abs=1e-9)
    assert (p @ np.array([0, 0, -0.1, 1]))[2] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        perspective(0.0, 1.0, 0.1, 10)
    with pytest.raises(ValueError):
        perspective(1.0, 1.0, 1.0, 0.5)


def test_panda_identity_camera_looks_down_minus_z_with_y_up():
    # Panda3D: camera looks along +Y with +Z up. Protocol world: +Y up, so forward is (0, 0, -1).
    pose = CameraPose.from_panda_matrix(np.eye(4))
    np.testing.assert_allclose(pose.forward, [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(pose.up, [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(pose.right, [1, 0, 0], atol=1e-12)
    m = np.eye(4)
    m[3, :3] = [1.0, 2.0, 3.0]  # Panda position (x, y, z) -> protocol (x, z, -y)
    pose = CameraPose.from_panda_matrix(m)
    np.testing.assert_allclose(pose.position, [1.0, 3.0, -2.0])
    view = pose.world_to_view()
    np.testing.assert_allclose(view @ np.append(pose.position, 1.0), [0, 0, 0, 1], atol=1e-12)
    # a point 5 units in front of the camera is at view z = -5
    np.testing.assert_allclose(view @ np.append(pose.position + 5 * pose.forward, 1.0), [0, 0, -5, 1], atol=1e-12)


def test_camera_tracker_reprojection_is_identity_first_then_tracks_motion():
    tr = CameraTracker()
    a = tr.update(np.eye(4), math.radians(60), 4 / 3, 0.1, 100.0, (64, 48))
    assert a.reset
    np.testing.assert_allclose(a.clip_to_prev_clip, np.eye(4), atol=1e-12)
    m = np.eye(4)
    m[3, 0] = 0.5  # camera moved right by 0.5
    b = tr.update(m, math.radians(60), 4 / 3, 0.1, 100.0, (64, 48))
    assert not b.reset
    np.testing.assert_allclose(b.clip_to_prev_clip @ b.prev_clip_to_clip, np.eye(4), atol=1e-9)
    # the camera moved right, so a point straight ahead of it now was right of centre in the previous frame
    world = b.position + 10 * b.forward
    clip_now = b.view_to_clip @ b.world_to_view @ np.append(world, 1)
    prev = b.clip_to_prev_clip @ clip_now
    assert prev[0] / prev[3] > 0.01
    d = b.as_dict()
    assert len(d["view_to_clip"]) == 16 and d["render_size"] == [64, 48] and d["camera_motion_included"] is True


def attach_sun(root: Any) -> Any:
    """A DirectionalLight "sun" under ``root`` (not yet turned on), shining down and towards -x (Panda: Z up), so the
    sun is up at +x; returns its NodePath."""
    from panda3d.core import DirectionalLight, Vec3, Vec4

    sun = DirectionalLight("sun")
    sun.setColor(Vec4(0.75, 0.72, 0.675, 1))
    sun_np = root.attachNewNode(sun)
    sun_np.lookAt(Vec3(-1, 0, -1))
    return sun_np


def test_scene_lights_become_the_protocols_lighting_constants():
    """The sun the scene is lit by goes out as a unit vector towards it in protocol world space (+Y up) with
    irradiance pi x colour (Panda3D's Lambert term has no 1/pi); ambient lights add up to the sky radiance; lights
    that are not turned on do not count."""
    from panda3d.core import AmbientLight, DirectionalLight, NodePath, Vec3, Vec4

    from nrb_panda3d.lights import scene_lighting

    root = NodePath("scene")
    assert scene_lighting(root) == {}
    weak = DirectionalLight("moon")
    weak.setColor(Vec4(0.1, 0.1, 0.1, 1))
    weak_np = root.attachNewNode(weak)
    weak_np.lookAt(Vec3(0, 0, 1))
    sun_np = attach_sun(root)
    off = root.attachNewNode(DirectionalLight("not-on"))
    off.node().setColor(Vec4(9, 9, 9, 1))
    for i, c in enumerate((0.1, 0.2)):
        amb = AmbientLight(f"amb{i}")
        amb.setColor(Vec4(c, c, c + 0.1, 1))
        root.setLight(root.attachNewNode(amb))
    root.setLight(weak_np)
    root.setLight(sun_np)
    got = {k: v for k, (fmt, v) in scene_lighting(root).items() if fmt == "rgba32f" and v.shape == (1, 1, 4)}
    assert sorted(got) == ["x_sky_radiance", "x_sun_direction", "x_sun_irradiance"]
    np.testing.assert_allclose(got["x_sun_direction"][0, 0, :3], [math.sqrt(0.5), math.sqrt(0.5), 0], atol=1e-6)
    np.testing.assert_allclose(got["x_sun_irradiance"][0, 0, :3], np.pi * np.array([0.75, 0.72, 0.675]), rtol=1e-6)
    np.testing.assert_allclose(got["x_sky_radiance"][0, 0, :3], [0.3, 0.3, 0.5], rtol=1e-6)


def test_point_spot_and_extra_directional_lights_become_the_light_list_in_protocol_conventions():
    """Every PointLight, Spotlight and DirectionalLight some node turns on goes into x_lights but the sun (already in
    the lighting constants): protocol world positions and the way each shines, Panda3D's attenuation matched at the
    reference distance (a purely quadratic one exactly), the spot's cut-off as the outer cone; the list passes the
    renderer's checks. A light nobody turns on is left out."""
    from panda3d.core import DirectionalLight, NodePath, PerspectiveLens, PointLight, Spotlight, Vec3, Vec4

    from bridge.lights import Light, encode_lights
    from nrb_panda3d.lights import REFERENCE_DISTANCE, scene_light_list

    root = NodePath("scene")
    assert scene_light_list(root) == []
    sun_np = attach_sun(root)
    moon = DirectionalLight("moon")
    moon.setColor(Vec4(0.1, 0.1, 0.2, 1))
    moon_np = root.attachNewNode(moon)
    moon_np.lookAt(Vec3(0, 0, -1))  # shines straight down: protocol -Y
    room = root.attachNewNode("room")
    torch = PointLight("torch")
    torch.setColor(Vec4(1.8, 1.0, 0.4, 1))
    torch.setAttenuation(Vec3(0, 0, 0.5))  # inverse square: matches everywhere
    torch_np = room.attachNewNode(torch)
    torch_np.setPos(1, 2, 3)  # Panda (x, y, z) is protocol (x, z, -y)
    lamp = PointLight("lamp")
    lamp.setColor(Vec4(1, 1, 1, 1))
    lamp.setAttenuation(Vec3(1, 0, 0.6))
    lamp.setMaxDistance(6.0)
    lamp_np = room.attachNewNode(lamp)
    spot = Spotlight("spot")
    lens = PerspectiveLens()
    lens.setFov(34)
    spot.setLens(lens)
    spot.setExponent(8.0)
    spot.setColor(Vec4(0.77, 1.54, 3.52, 1))
    spot.setAttenuation(Vec3(0, 0, 1))
    spot_np = room.attachNewNode(spot)
    spot_np.setPos(0, 0, 3)
    spot_np.lookAt(Vec3(0, 0, 0))  # straight down
    room.attachNewNode(PointLight("not-on")).node().setColor(Vec4(9, 9, 9, 1))
    root.setLight(sun_np)
    root.setLight(moon_np)
    for np_ in (torch_np, lamp_np, spot_np):
        room.setLight(np_)
    got = {str(e["type"]) + str(i): e for i, e in enumerate(scene_light_list(root))}
    assert sorted(e["type"] for e in got.values()) == ["directional", "point", "point", "spot"]
    by_type = {e["type"]: e for e in got.values() if e["type"] != "point"}
    points = sorted((e for e in got.values() if e["type"] == "point"), key=lambda e: -float(np.max(e["color"])))
    np.testing.assert_allclose(by_type["directional"]["direction"], [0, -1, 0], atol=1e-6)
    np.testing.assert_allclose(by_type["directional"]["color"], np.pi * np.array([0.1, 0.1, 0.2]), rtol=1e-6)
    t = points[0]
    np.testing.assert_allclose(t["position"], [1, 3, -2], atol=1e-6)
    np.testing.assert_allclose(t["color"], np.pi * np.array([1.8, 1.0, 0.4]) / 0.5, rtol=1e-6)
    d = REFERENCE_DISTANCE
    np.testing.assert_allclose(points[1]["color"], np.pi * d * d / (1 + 0.6 * d * d) * np.ones(3), rtol=1e-6)
    assert points[1]["range"] == 6.0 and "range" not in t
    s = by_type["spot"]
    np.testing.assert_allclose(s["direction"], [0, -1, 0], atol=1e-6)
    np.testing.assert_allclose(s["position"], [0, 3, 0], atol=1e-6)
    assert s["outer"] == pytest.approx(math.radians(17)) and 0 < s["inner"] < s["outer"]
    encode_lights([Light(str(e["type"]), tuple(np.asarray(e["color"], float)),  # type: ignore[arg-type]
                         tuple(np.asarray(e.get("position", (0, 0, 0)), float)),  # type: ignore[arg-type]
                         tuple(np.asarray(e.get("direction", (0, -1, 0)), float)),  # type: ignore[arg-type]
                         float(e.get("range", 0.0)), float(e.get("inner", 0.0)), float(e.get("outer", 0.0)))
                   for e in got.values()])  # the renderer would accept them


def test_inside_a_room_lit_by_its_own_lights_the_camera_sends_that_rooms_lights_and_no_sun():
    """Light linking has no per-pixel form in the protocol, so the plugin sends the lights of the zone the camera is
    in: inside a room that turns the world's lights off and its own on (the demo's crypt), its torch and faint
    ambient and an explicit zero sun; outside, the world's sun and every light."""
    from panda3d.core import (
        AmbientLight,
        BoundingBox,
        NodePath,
        Point3,
        PointLight,
        Vec3,
        Vec4,
    )

    from nrb_panda3d.lights import lighting_zone, scene_light_list, scene_lighting

    root = NodePath("scene")
    sun_np = attach_sun(root)
    amb = AmbientLight("amb")
    amb.setColor(Vec4(0.3, 0.3, 0.3, 1))
    root.setLight(sun_np)
    root.setLight(root.attachNewNode(amb))
    room = root.attachNewNode("room")
    room.node().setBounds(BoundingBox(Point3(8, -3, 0), Point3(12, 3, 3)))
    room.setLightOff(1)
    torch = PointLight("torch")
    torch.setColor(Vec4(1.8, 1.0, 0.4, 1))
    torch.setAttenuation(Vec3(0, 0, 1))
    torch_np = room.attachNewNode(torch)
    torch_np.setPos(11, 0, 2)
    dim = AmbientLight("dim")
    dim.setColor(Vec4(0.02, 0.02, 0.03, 1))
    room.setLight(torch_np, 2)
    room.setLight(room.attachNewNode(dim), 2)
    camera = root.attachNewNode("camera")

    camera.setPos(0, 0, 1.7)  # outside
    assert lighting_zone(root, camera) == root
    outside = scene_lighting(root, lighting_zone(root, camera))
    np.testing.assert_allclose(outside["x_sun_irradiance"][1][0, 0, :3], np.pi * np.array([0.75, 0.72, 0.675]), rtol=1e-6)
    assert [e["type"] for e in scene_light_list(root, lighting_zone(root, camera))] == ["point"]

    camera.setPos(10, 0, 1.7)  # inside the room
    zone = lighting_zone(root, camera)
    assert zone == room
    inside = scene_lighting(root, zone)
    np.testing.assert_allclose(inside["x_sun_irradiance"][1][0, 0, :3], 0.0)  # no sun in here, said explicitly
    np.testing.assert_allclose(inside["x_sun_direction"][1][0, 0, :3], [0, 1, 0])
    np.testing.assert_allclose(inside["x_sky_radiance"][1][0, 0, :3], [0.02, 0.02, 0.03], rtol=1e-6)
    lights = scene_light_list(root, zone)
    assert len(lights) == 1 and lights[0]["type"] == "point"
    np.testing.assert_allclose(lights[0]["position"], [11, 2, 0], atol=1e-6)


def test_targets_are_normalized_and_validated():
    assert normalize_target(None) == ("global", ())
    assert normalize_target("global") == ("global", ())
    assert normalize_target(("object", [42])) == ("object", (42,))
    assert normalize_target({"scope": "material", "ids": [3, 4]}) == ("material", (3, 4))
    from bridge.protocol import Target

    assert normalize_target(Target("object", (7,))) == ("object", (7,))
    for bad in (("object", []), ("global", [1]), ("thing", [1]), ("object", [2**32]), 12):
        with pytest.raises(ValueError):
            normalize_target(bad)


def test_client_stats_from_mapping_understands_numeric_state():
    s = ClientStats.from_mapping({"frames_sent": 3, "state": 2, "custom": 1})
    assert s.frames_sent == 3 and s.state == "connected" and s.extra == {"custom": 1}
    s = ClientStats.from_mapping({"state": 3, "refusal_code": 6, "refusal_message": "buffers: needs albedo"})
    assert s.state == "refused" and s.refusal_code == 6 and s.refusal_message == "buffers: needs albedo"
    assert s.extra == {}


@pytest.mark.parametrize("build", ["not-built", "without-client"])
def test_without_libnrb_s_binding_the_plugin_s_client_says_how_to_build_it(monkeypatch, build):
    """libnrb (``bridge._native.Client``) is the plugin's only engine client: a checkout where it was never built
    (the import fails) or where an old build lacks ``Client`` gets a typed error that says to run ``make setup``,
    not a second client and not an AttributeError later."""
    import types

    import bridge
    from nrb_panda3d.client import ClientConfig, NativeClientMissing, make_client

    monkeypatch.delattr(bridge, "_native", raising=False)
    # None in sys.modules is how Python spells "this module cannot be imported"; a bare module is an old build
    monkeypatch.setitem(sys.modules, "bridge._native",
                        None if build == "not-built" else types.ModuleType("bridge._native"))
    with pytest.raises(NativeClientMissing, match="make setup") as exc:
        make_client(ClientConfig(endpoint="tcp://127.0.0.1:1"))
    assert isinstance(exc.value, ImportError)
    assert ("not built" if build == "not-built" else "has no Client") in str(exc.value)


# ------------------------------------------------------------------------------------------------- hooks


def _run_hooks(hooks, state, ctx, events, t, frame):
    state.advance_to(t)
    ctx.time, ctx.frame, ctx.events = t, frame, events
    return hooks.run(state, events, ctx)


def test_sample_game_hooks_red_pulse_fades_back_to_the_games_look():
    from bridge.hooks import HookContext, HookSet
    from bridge.protocol import Event, Target
    from bridge.style.state import StyleState
    from nrb_panda3d.demo import HOOKS_FILE

    hooks = HookSet.from_file(HOOKS_FILE)
    state = StyleState()
    state.set("photoreal", 1.0)
    ctx = HookContext(time=0.0, dt=0.0, frame=0, session=1, state={})
    assert _run_hooks(hooks, state, ctx, [], 0.0, 0) == []
    errors = _run_hooks(hooks, state, ctx, [Event("player_damaged", {"amount": 0.6})], 1.0, 1)
    assert errors == []
    _run_hooks(hooks, state, ctx, [], 1.1, 2)
    w = state.weights()
    assert w["crimson"] == pytest.approx(0.6, abs=1e-6) and w["photoreal"] == pytest.approx(0.4, abs=1e-6)
    for i, t in enumerate(np.arange(1.15, 2.0, 0.05)):
        _run_hooks(hooks, state, ctx, [], float(t), 3 + i)
    w = state.weights()
    assert w["photoreal"] == pytest.approx(1.0, abs=1e-6), w
    # the power-up event targets the weapon only
    _run_hooks(hooks, state, ctx, [Event("weapon_powerup", {"over": 0.0}, Target("object", (42,)))], 2.5, 40)
    assert state.weights(object=42)["golden"] == pytest.approx(1.0)
    assert state.weights()["photoreal"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------- issue 17 controls


def test_run_time_style_params_are_checked_where_the_game_writes_them():
    from nrb_panda3d.plugin import _style_params

    assert _style_params({"hue": 35, "gain": (0.85, 1.1, 0.75), "lut": "sunset"}) == {
        "hue": 35.0, "gain": [0.85, 1.1, 0.75], "lut": "sunset"}
    for bad in ({"gain": [1, 2]}, {"hue": "warm"}, {"lut": 3}, {"": 1.0}, {f"p{i}": 1.0 for i in range(33)}):
        with pytest.raises(ValueError):
            _style_params(bad)


def test_plugin_settings_refuse_an_intensity_exposure_or_curve_they_cannot_send():
    from nrb_panda3d.plugin import NeuralSettings

    s = NeuralSettings()
    assert (s.intensity, s.exposure, s.tone_mapping) == (1.0, 1.0, "clamp")  # Panda3D's default pipeline
    for bad in ({"intensity": 1.5}, {"exposure": 0.0}, {"tone_mapping": "filmic"}):
        with pytest.raises(ValueError):
            NeuralSettings(**bad)
    with pytest.raises(ValueError):
        NeuralSettings.from_config(intensity=-0.1)




def test_sample_game_beats_define_a_style_exclude_the_boss_and_lower_the_intensity(tmp_path):
    """The issue-17 beats, played headless without a server: which plugin verbs each beat calls, and the timing
    report's gameplay entries that name them."""
    proc = subprocess.run([sys.executable, "-c", """
import json, sys
from nrb_panda3d.headless import configure
configure(64, 48)
from direct.showbase.ShowBase import ShowBase
from nrb_panda3d.game import GameSettings, SampleGame, Timeline
from nrb_panda3d.demo import gameplay_beats
base = ShowBase(windowType="offscreen")
class Rec:
    def __init__(self): self.calls = []
    def __getattr__(self, name): return lambda *a, **k: self.calls.append([name, list(map(repr, a)), sorted(k)])
rec = Rec()
g = SampleGame(base, rec, dt=0.1, timeline=Timeline.scaled(3.0), settings=GameSettings(0.7, keep_faces=True))
for _ in range(31):
    g.step()
print(json.dumps({"calls": rec.calls, "beats": gameplay_beats(g.log, g.calls)}))
"""], cwd=PLUGIN_DIR, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    beats = {b["event"]: b for b in out["beats"]}
    assert list(beats) == ["start", "powerup", "damage", "boss_phase", "boss_defeated", "enter_crypt", "torchlight"]
    frames = [b["frame"] for b in out["beats"]]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert any(c.startswith("set_intensity(0.7") for c in beats["start"]["calls"])
    assert any(c.startswith("exclude(('material', [7, 12])") for c in beats["start"]["calls"])  # keep faces
    assert "exclude(('object', [30]))" in beats["boss_phase"]["calls"]
    assert any(c.startswith("set_style('sunset'") for c in beats["boss_defeated"]["calls"])
    assert any(c.startswith("define_style('crypt'") for c in beats["enter_crypt"]["calls"])
    assert any(c.startswith("set_intensity(0.5") for c in beats["torchlight"]["calls"])
    names = [c[0] for c in out["calls"]]
    assert names.count("define_style") == 1 and "include" in names


def test_sample_game_settings_are_checked():
    from nrb_panda3d.game import GameSettings, Timeline

    with pytest.raises(ValueError):
        GameSettings(intensity=2.0)
    t = Timeline.scaled(3.0)
    beats = [t.powerup, t.damage, t.boss, t.defeat, t.crypt, t.torchlight, t.end]
    assert beats == sorted(beats) and t.end == 3.0


# ------------------------------------------------------------------------------------------------ report


def test_timing_report_counts_fallbacks_and_stage_statistics():
    from nrb_panda3d.demo import parse_size, timing_report
    from nrb_panda3d.plugin import FrameRecord

    recs = []
    for i in range(10):
        r = FrameRecord(i + 1, "neural" if i >= 3 else "raster", pre_ms=1.0, render_ms=2.0, readback_ms=3.0,
                        convert_ms=1.0, submit_ms=0.5, round_trip_ms=10.0 + i if i >= 3 else None)
        r.extra["client_frame"] = i + 1
        recs.append(r)
    rep = timing_report(recs, 2.0, {"renderer": "x"})
    assert rep["frames"] == 10 and rep["fps"] == 5.0 and rep["fallbacks"] == 3 and rep["neural_frames"] == 7
    assert rep["stages_ms"]["readback"]["mean"] == pytest.approx(3.0)
    assert rep["engine_ms_per_frame"]["p50"] == pytest.approx(7.5)
    assert rep["round_trip_ms"]["count"] == 7 and rep["renderer"] == "x"
    assert parse_size("320x180") == (320, 180)


# ------------------------------------------------------------------------------ headless G-buffer pass (EGL)


@pytest.fixture(scope="module")
def gbuf(tmp_path_factory):
    out = tmp_path_factory.mktemp("gbuf") / "g.npz"
    proc = subprocess.run([sys.executable, "-m", "nrb_panda3d.selfcheck", str(out), "--size", "160x120",
                           "--frames", "30"], cwd=PLUGIN_DIR, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GL:" in proc.stdout
    data = np.load(out)
    return {k: data[k] for k in data.files}


def test_gbuffer_targets_have_wire_formats_and_shapes(gbuf):
    from bridge.protocol import FORMATS
    from nrb_panda3d.gbuffer import GBUFFER_FORMATS

    for name, fmt in GBUFFER_FORMATS.items():
        a = gbuf[f"buf_{name}"]
        assert str(gbuf[f"fmt_{name}"]) == fmt
        info = FORMATS[fmt]
        assert a.shape == (120, 160, info.channels), name
        assert a.dtype == info.dtype, name
    assert gbuf["raster"].shape[:2] == (120, 160)


def test_gbuffer_ids_cover_the_scene_objects(gbuf):
    from nrb_panda3d import game

    oid = gbuf["buf_object_id"][..., 0]
    mid = gbuf["buf_material_id"][..., 0]
    ids = set(np.unique(oid).tolist())
    assert {game.FLOOR_ID, game.WEAPON_ID, game.BOSS_ID} <= ids, ids
    # ids are exact integers and material ids follow objects
    assert set(np.unique(mid[oid == game.WEAPON_ID]).tolist()) == {game.MAT_WEAPON}
    assert set(np.unique(mid[oid == game.FLOOR_ID]).tolist()) == {game.MAT_FLOOR}
    # the first-person weapon sits in the bottom-right quadrant
    ys, xs = np.nonzero(oid == game.WEAPON_ID)
    assert ys.mean() > 60 and xs.mean() > 80
    # background (sky) has id 0 and depth 1
    bg = gbuf["buf_depth"][..., 0] >= 1.0
    assert np.all(oid[bg] == 0)


def test_gbuffer_normals_depth_and_surface(gbuf):
    from nrb_panda3d import game

    oid = gbuf["buf_object_id"][..., 0]
    n = gbuf["buf_normals"].astype(np.float32)[..., :3]
    fg = oid > 0
    np.testing.assert_allclose(np.linalg.norm(n[fg], axis=-1), 1.0, atol=2e-3)
    floor = oid == game.FLOOR_ID
    assert floor.sum() > 100
    np.testing.assert_allclose(n[floor].mean(axis=0), [0, 1, 0], atol=1e-3)  # +Y up in protocol world
    d = gbuf["buf_depth"][..., 0].astype(np.float64)
    z = gbuf["buf_linear_depth"][..., 0].astype(np.float64)
    near, far = float(gbuf["near"]), float(gbuf["far"])
    expect = (far / (far - near)) * (1.0 - near / z[fg])
    np.testing.assert_allclose(d[fg], expect, atol=2e-6)
    assert 0.0 < d[fg].min() and d[fg].max() < 1.0
    rough = gbuf["buf_roughness"][..., 0]
    metal = gbuf["buf_metallic"][..., 0]
    assert abs(int(rough[floor].mean()) - round(0.85 * 255)) <= 1
    assert metal[oid == game.ORB_ID].min() == 255 if (oid == game.ORB_ID).any() else True
    em = gbuf["buf_emissive"].astype(np.float32)
    assert em[..., :3].max() == pytest.approx(4.0) if (oid == game.LAMP_ID).any() else em.max() == 0.0


def test_gbuffer_motion_vectors_match_camera_reprojection_on_static_geometry(gbuf):
    from nrb_panda3d import game

    oid = gbuf["buf_object_id"][..., 0]
    h, w = oid.shape
    static = np.isin(oid, [game.FLOOR_ID, *game.WALL_IDS, *game.CRATE_IDS, game.PILLAR_ID])
    ys, xs = np.nonzero(static)
    d = gbuf["buf_depth"][..., 0].astype(np.float64)[ys, xs]
    ndc = np.stack([(xs + 0.5) / w * 2 - 1, 1 - (ys + 0.5) / h * 2, d, np.ones_like(d)])
    prev = gbuf["clip_to_prev_clip"] @ ndc
    expect = np.stack([(prev[0] / prev[3] - ndc[0]) * 0.5 * w, -(prev[1] / prev[3] - ndc[1]) * 0.5 * h], -1)
    mv = gbuf["buf_motion_vectors"].astype(np.float32)[ys, xs]
    assert np.abs(expect).mean() > 0.05  # the camera does move
    np.testing.assert_allclose(mv, expect, atol=0.02)
    # the boss moves on its own: its motion is not just the camera's
    boss = oid == game.BOSS_ID
    if boss.any():
        by, bx = np.nonzero(boss)
        bd = gbuf["buf_depth"][..., 0].astype(np.float64)[by, bx]
        bndc = np.stack([(bx + 0.5) / w * 2 - 1, 1 - (by + 0.5) / h * 2, bd, np.ones_like(bd)])
        bprev = gbuf["clip_to_prev_clip"] @ bndc
        cam_only = (bprev[0] / bprev[3] - bndc[0]) * 0.5 * w
        assert np.abs(gbuf["buf_motion_vectors"].astype(np.float32)[by, bx, 0] - cam_only).mean() > 0.05


def test_gbuffer_projection_agrees_with_panda(gbuf):
    # the world-space position of a pixel, reconstructed with the camera constants we send, lies at the linear depth
    # along the forward axis
    oid = gbuf["buf_object_id"][..., 0]
    h, w = oid.shape
    y, x = np.argwhere(oid > 0)[len(np.argwhere(oid > 0)) // 2]
    d = float(gbuf["buf_depth"][y, x, 0])
    ndc = np.array([(x + 0.5) / w * 2 - 1, 1 - (y + 0.5) / h * 2, d, 1.0])
    inv = np.linalg.inv(gbuf["view_to_clip"] @ gbuf["world_to_view"])
    p = inv @ ndc
    p = p[:3] / p[3]
    dist = float(np.dot(p - gbuf["position"], gbuf["forward"]))
    assert dist == pytest.approx(float(gbuf["buf_linear_depth"][y, x, 0]), rel=1e-3)


# ----------------------------------------------------------------------------------- GPU pack pass (EGL)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "p.npz"
    proc = subprocess.run([sys.executable, "-m", "nrb_panda3d.selfcheck", str(out), "--size", "160x120",
                           "--frames", "12", "--packed"], cwd=PLUGIN_DIR, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = np.load(out)
    return {k: data[k] for k in data.files}


def test_gpu_packed_buffers_are_the_bytes_the_numpy_conversion_made(packed):
    from nrb_panda3d.gbuffer import GBUFFER_FORMATS

    sky = packed["buf_depth"][..., 0] >= 1.0
    assert sky.any() and (~sky).any()  # the frame has both, so both motion paths are compared
    for name in GBUFFER_FORMATS:
        pk, ref = np.ascontiguousarray(packed[f"pk_{name}"]), np.ascontiguousarray(packed[f"buf_{name}"])
        assert pk.dtype == ref.dtype and pk.shape == ref.shape, name
        if name == "motion_vectors":
            # geometry: bit for bit; sky pixels' motion is computed from the camera in float32 on the GPU and in
            # float64 by numpy: equal to a thousandth of a pixel
            assert np.array_equal(pk[~sky].view(np.uint16), ref[~sky].view(np.uint16))
            np.testing.assert_allclose(pk[sky].astype(np.float32), ref[sky].astype(np.float32), atol=1e-3)
            assert np.isfinite(pk.astype(np.float32)).all()
        else:
            assert np.array_equal(pk.view(np.uint8), ref.view(np.uint8)), name
    assert np.array_equal(packed["pk_hudless_color"], packed["raster_color"])


def test_demo_writes_no_file_inside_its_timed_loop_and_reports_where_the_time_goes(tmp_path):
    import json

    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "nrb_panda3d.demo", "--out", str(out), "--frames", "6",
                           "--renderer", "deferred", "--size", "160x120", "--output-size", "320x240",
                           "--no-video"], cwd=PLUGIN_DIR, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "timing.json").read_text())
    start, end = report["timed_loop_unix"]
    pngs = sorted(out.rglob("*.png"))
    assert len(list((out / "raster").glob("frame_*.png"))) == 6 and (out / "neural").glob("frame_*.png")
    assert all(p.stat().st_mtime >= end for p in pngs), [p for p in pngs if p.stat().st_mtime < end]
    assert report["gpu_pack"] is True and report["output_size"] == [320, 240]
    bd = report["breakdown_ms"]
    for stage in ("prepare", "render", "readback", "copy", "submit", "wait", "display", "capture", "server",
                  "frame"):
        assert stage in bd and bd[stage] >= 0.0, stage
    assert bd["frame"] == pytest.approx(report["wall_s"] * 1e3 / report["frames"], rel=0.01)
    # pipelined by default, as a game runs: Panda3D renders frame N+1 while the server renders N, libnrb's default
    # frames in flight (adaptive: 1 against this renderer-bound server)
    assert report["pipeline"] is True and report["client_stats"]["in_flight_limit"] == 1
    # where the time goes, engine / transfer / server model / server other / waiting, and the CPU time per frame of
    # both processes against what 15 fps leaves on this machine's cores
    where = report["where_ms"]
    for part in ("engine", "transfer", "server_model", "server_other", "waiting", "frame"):
        assert part in where and where[part] >= 0.0, part
    assert where["engine"] == pytest.approx(sum(bd[k] for k in ("prepare", "render", "readback", "copy", "submit",
                                                                 "display")), abs=0.05)
    # read from the server's own metrics around the timed loop: no more frames than the loop sent (a pipelined loop
    # may end with one still in flight, and 4 of 6 were counted once on a loaded machine), the model's time in them
    split = report["server_split_ms"]
    assert 0 < split["frames"] <= report["frames"] and split["model"] > 0.0
    assert split["total"] == pytest.approx(split["model"] + split["post"] + split["other"], abs=0.05)
    cpu = where["cpu_ms"]
    assert cpu["engine"] > 0.0 and cpu["server"] > 0.0 and cpu["total"] == pytest.approx(cpu["engine"] + cpu["server"],
                                                                                        abs=0.05)
    assert cpu["budget_at_15fps"] == pytest.approx(cpu["cores"] * 1000.0 / 15.0, abs=0.1)
