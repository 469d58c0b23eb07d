"""The engine's light list (``x_lights``, docs/protocol.md 6.1) as the deferred baseline shades it, and as the server
checks it: a torch in front of a wall lights the wall brightest next to it and less with distance, a spotlight lights
only inside its cone, colours come through, and bad light values get a typed error naming the light while the
session keeps rendering."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from helpers.serverkit import SCENE_SPECS, SIZE, RunningServer, served, still_scene

from bridge.client import Client, RemoteError
from bridge.lights import MAX_LIGHTS, X_LIGHTS, Light, encode_lights
from bridge.protocol import Buffer, BufferSpec, Camera
from bridge.renderer import RenderInputs
from bridge.renderers.deferred import DeferredRenderer
from bridge.style.library import DEFAULT_LIBRARY

W, H = 64, 48
NEAR, FAR, FOV = 0.1, 50.0, math.radians(60)
WALL_Z = -5.0  # a wall facing the camera, which sits at the origin looking down -Z


def _projection() -> np.ndarray:
    f = 1.0 / math.tan(FOV / 2)
    return np.array([[f / (W / H), 0, 0, 0], [0, f, 0, 0],
                     [0, 0, FAR / (NEAR - FAR), NEAR * FAR / (NEAR - FAR)], [0, 0, -1, 0]])


def _wall_inputs(lights: list[Light] | None, albedo: int = 160) -> RenderInputs:
    """A grey wall at z = -5 filling the view, no sun and no sky: only ``lights`` light it."""
    proj = _projection()
    clip = proj @ np.array([0, 0, WALL_Z, 1.0])
    depth = np.full((H, W, 1), clip[2] / clip[3], np.float32)
    normals = np.zeros((H, W, 4), np.float16)
    normals[..., 2] = 1.0
    zero = np.zeros((1, 1, 4), np.float32)
    arrays: dict[str, tuple[str, np.ndarray]] = {
        "albedo": ("rgba8_srgb", np.full((H, W, 4), albedo, np.uint8)),
        "normals": ("rgba16f", normals),
        "depth": ("r32f", depth),
        "roughness": ("r8", np.full((H, W, 1), 230, np.uint8)),
        "x_sun_irradiance": ("rgba32f", zero),
        "x_sky_radiance": ("rgba32f", zero),
    }
    if lights:
        arrays[X_LIGHTS] = ("rgba32f", encode_lights(lights))
    cam = Camera(view_to_clip=tuple(proj.reshape(-1)), clip_to_view=tuple(np.linalg.inv(proj).reshape(-1)),
                 world_to_view=tuple(np.eye(4).reshape(-1)), position=(0.0, 0.0, 0.0), forward=(0.0, 0.0, -1.0),
                 up=(0.0, 1.0, 0.0), right=(1.0, 0.0, 0.0), near=NEAR, far=FAR, fov_y=FOV, aspect=W / H)
    return RenderInputs.from_arrays(arrays, camera=cam, size=(W, H))


def _render(lights: list[Light] | None) -> np.ndarray:
    r = DeferredRenderer()
    style = np.zeros((H, W, len(DEFAULT_LIBRARY.names)), np.float32)
    style[..., 0] = 1.0
    return r.render(_wall_inputs(lights), style)[..., :3].astype(int)


def test_world_positions_are_reconstructed_from_depth_and_the_camera() -> None:
    pos = DeferredRenderer.world_positions(_wall_inputs(None))
    assert pos is not None
    np.testing.assert_allclose(pos[..., 2], WALL_Z, atol=2e-3)
    half_h = -WALL_Z * math.tan(FOV / 2)  # the wall's visible half height at z = -5
    np.testing.assert_allclose(pos[0, W // 2, 1], half_h * (1 - 1 / H), rtol=1e-3)  # top row centre
    np.testing.assert_allclose(pos[H // 2, -1, 0], half_h * W / H * (1 - 1 / W), rtol=1e-3)  # right column
    posed = _wall_inputs(None)  # an engine that sends its pose and lens instead of the matrices
    assert posed.camera is not None
    posed.camera.clip_to_view = posed.camera.world_to_view = None
    from_pose = DeferredRenderer.world_positions(posed)
    assert from_pose is not None
    np.testing.assert_allclose(from_pose, pos, atol=2e-3)


def test_a_point_light_lights_the_wall_brightest_next_to_it_and_falls_off_with_distance() -> None:
    dark = _render(None)
    torch = Light("point", (3.0, 3.0, 3.0), position=(0.0, 0.0, WALL_Z + 1.0))
    lit = _render([torch])
    assert dark.max() == 0  # nothing but the torch lights it
    row = lit[H // 2, :, 0]
    centre = W // 2
    assert row[centre - 1: centre + 1].min() == row.max() > 100  # brightest in front of the torch
    right = row[centre:]
    assert (np.diff(right) <= 0).all() and right[-1] < right[0] / 3  # and dimmer further away
    ranged = _render([Light("point", (3.0, 3.0, 3.0), position=(0.0, 0.0, WALL_Z + 1.0), range=2.0)])
    assert ranged[H // 2, centre, 0] > 0 and ranged[H // 2, -1, 0] == 0  # nothing beyond its range


def test_a_spot_light_lights_only_inside_its_cone_and_its_colour_comes_through() -> None:
    cone = math.radians(12)
    blue = Light("spot", (0.2, 0.4, 8.0), position=(0.0, 0.0, WALL_Z + 4.0), direction=(0.0, 0.0, -1.0),
                 inner=math.radians(8), outer=cone)
    lit = _render([blue])
    pos = DeferredRenderer.world_positions(_wall_inputs(None))
    assert pos is not None
    radius = np.hypot(pos[..., 0], pos[..., 1])  # distance from the spot's axis on the wall
    inside = radius < 4.0 * math.tan(math.radians(8)) * 0.9
    outside = radius > 4.0 * math.tan(cone) * 1.1
    assert inside.any() and outside.any()
    assert lit[outside].max() == 0 and lit[inside][:, 2].min() > 60
    assert (lit[inside][:, 2] > lit[inside][:, 0]).all()  # a blue light gives a blue patch


def test_a_directional_light_in_the_list_adds_to_the_image_like_the_sun() -> None:
    lit = _render([Light("directional", (2.0, 2.0, 2.0), direction=(0.0, 0.0, -1.0))])
    assert lit.min() > 60 and np.ptp(lit[..., 0]) <= 2  # uniform: a directional light has no falloff


def test_without_the_camera_matrices_point_lights_are_skipped_not_guessed() -> None:
    inputs = _wall_inputs([Light("point", (3.0, 3.0, 3.0), position=(0.0, 0.0, WALL_Z + 1.0))])
    inputs.camera = Camera(forward=(0.0, 0.0, -1.0), near=NEAR, far=FAR)
    style = np.zeros((H, W, len(DEFAULT_LIBRARY.names)), np.float32)
    style[..., 0] = 1.0
    assert DeferredRenderer().render(inputs, style)[..., :3].max() == 0


# ------------------------------------------------------------------------------------------ through a real server
@pytest.fixture(scope="module")
def deferred(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("deferred-lights"), "--renderer", "deferred") as srv:
        yield srv


def _lights_buffer(rows: np.ndarray) -> Buffer:
    return Buffer.from_array(X_LIGHTS, "rgba32f", np.ascontiguousarray(rows, np.float32))


def test_the_server_renders_the_light_list_and_answers_bad_lights_with_a_typed_error(
        deferred: RunningServer) -> None:
    bufs, cam = still_scene()
    lamp = encode_lights([Light("point", (20.0, 12.0, 4.0), position=(0.0, 1.0, 0.0))])
    with Client(deferred.endpoint, timeout=10) as c:
        welcome = c.hello(SIZE, [*SCENE_SPECS, BufferSpec(X_LIGHTS, "rgba32f")])
        assert X_LIGHTS in {b.name for b in welcome.optional}  # the deferred baseline asks for it
        plain = c.render(bufs, camera=cam).output.array().astype(int)  # type: ignore[union-attr]
        lit = c.render([*bufs, _lights_buffer(lamp)], camera=cam).output.array().astype(int)  # type: ignore[union-attr]
        assert (lit[..., :3] >= plain[..., :3]).all() and (lit - plain)[..., :3].mean() > 1

        bad = lamp.copy()
        bad[0, 2, 1] = -0.5  # a negative colour
        with pytest.raises(RemoteError) as err:
            c.render([*bufs, _lights_buffer(bad)], camera=cam)
        assert err.value.error.name == "BAD_VALUE" and "x_lights[0].color" in err.value.error.message
        spot = encode_lights([Light("point", (1.0, 1.0, 1.0)), Light("spot", (1.0, 1.0, 1.0), outer=0.5, inner=0.2)])
        spot[1, 3, 0:2] = (0.5, 0.2)  # outer below inner
        with pytest.raises(RemoteError) as err:
            c.render([*bufs, _lights_buffer(spot)], camera=cam)
        assert err.value.error.name == "BAD_VALUE" and "x_lights[1].inner" in err.value.error.message
        tilted = encode_lights([Light("spot", (1.0, 1.0, 1.0), outer=0.5)])
        tilted[0, 1, :3] = (0.0, -2.0, 0.0)  # not a unit vector
        with pytest.raises(RemoteError) as err:
            c.render([*bufs, _lights_buffer(tilted)], camera=cam)
        assert err.value.error.name == "BAD_VALUE" and "x_lights[0].direction" in err.value.error.message
        many = np.tile(lamp, (MAX_LIGHTS + 1, 1, 1))
        with pytest.raises(RemoteError) as err:
            c.render([*bufs, _lights_buffer(many)], camera=cam)
        assert err.value.error.name == "LIMIT_EXCEEDED" and X_LIGHTS in err.value.error.message
        with pytest.raises(RemoteError) as err:  # one row per light, 4 texels wide
            c.render([*bufs, _lights_buffer(lamp[:, :1])], camera=cam)
        assert err.value.error.name == "BAD_VALUE" and X_LIGHTS in err.value.error.message
        again = c.render([*bufs, _lights_buffer(lamp)], camera=cam).output.array().astype(int)  # type: ignore[union-attr]
        assert np.array_equal(again, lit)  # the session went on rendering
        c.bye()


def test_the_shared_vector_frame_carries_a_point_and_a_spot_light_that_pass_the_checks() -> None:
    from pathlib import Path

    from bridge.lights import LIGHT_POINT, LIGHT_SPOT, decode_lights
    from bridge.protocol import Frame, decode

    raw = (Path(__file__).parent / "vectors" / "frame_light_list.bin").read_bytes()
    frames, at = [], 0
    while at < len(raw):
        n = int.from_bytes(raw[at:at + 4], "little")
        frames.append(raw[at + 4:at + 4 + n])
        at += 4 + n
    msg = decode(frames)
    assert isinstance(msg, Frame)
    lights = decode_lights(next(b for b in msg.buffers if b.name == X_LIGHTS))
    assert lights.kind.tolist() == [LIGHT_POINT, LIGHT_SPOT] and lights.range.tolist() == [6.0, 0.0]
    np.testing.assert_allclose(lights.cos_outer[1], math.cos(0.3), rtol=1e-6)


@pytest.mark.parametrize("transport", ["inline", "shm"])
def test_an_engine_sends_its_lights_through_libnrb_and_the_deferred_image_shows_them(
        deferred: RunningServer, transport: str) -> None:
    """The engine contract: a plugin hands libnrb its lights (``set_lights``, nrb.h ``nrb_frame_set_lights``) and
    never packs bytes; libnrb refuses a bad light at the call, naming it, and sends good ones to the renderer."""
    import dataclasses
    import time

    from helpers.serverkit import game_client

    bufs, cam = still_scene()
    camera = {k: v for k, v in dataclasses.asdict(cam).items() if v is not None}
    offered = [(b.name, b.format) for b in bufs] + [(X_LIGHTS, "rgba32f")]
    lamp = {"type": "point", "color": (20.0, 12.0, 4.0), "position": (0.0, 1.0, 0.0)}
    with game_client(deferred.endpoint, render_size=SIZE, transport=transport, buffers=offered,
                     deadline_ms=5000) as c:
        end = time.monotonic() + 10
        while c.stats()["state"] != "connected" and time.monotonic() < end:
            time.sleep(0.01)

        def frame(lights: list[dict[str, object]]) -> np.ndarray:
            fid = c.begin()
            for b in bufs:
                c.tag_buffer(b.name, b.format, b.array())
            c.set_lights(lights)
            c.set_camera(camera)
            c.submit()
            until = time.monotonic() + 10
            while time.monotonic() < until:
                got = c.acquire_result(with_info=True)
                if got is not None and got[1]["frame_id"] == fid:
                    return np.asarray(got[0])[..., :3].astype(int)
                time.sleep(0.005)
            raise AssertionError(f"no result for frame {fid}")

        plain = frame([])
        lit = frame([lamp])
        assert (lit >= plain).all() and (lit - plain).mean() > 1
        c.begin()
        with pytest.raises(ValueError, match=r"lights\[1\]\.color"):
            c.set_lights([lamp, {**lamp, "color": (1.0, -1.0, 0.0)}])
        with pytest.raises(ValueError, match=r"lights\[0\]\.inner_cone"):
            c.set_lights([{"type": "spot", "color": (1, 1, 1), "direction": (0, -1, 0), "inner": 0.5, "outer": 0.2}])
        assert np.array_equal(frame([lamp]), lit)
        assert c.stats()["errors_received"] == 0


def test_a_dataset_scenes_lights_become_the_light_list_the_deferred_baseline_is_given() -> None:
    """nrb bench looks lights the deferred baseline with the held-out scene's own lights (issue 15's fair
    comparison): a point and a spot light as they are, an area light as four spot samples facing its normal."""
    from types import SimpleNamespace

    from bridge.lights import LIGHT_POINT, LIGHT_SPOT
    from neural_renderer.data.scene import Light as SceneLight
    from nrb_bench.looks import scene_light_rows

    spec = SimpleNamespace(lights=[
        SceneLight("point", (0.0, 2.0, 0.0), (1.0, 0.5, 0.25), 8.0),
        SceneLight("spot", (1.0, 3.0, 0.0), (0.2, 0.4, 1.0), 20.0, direction=(0.0, -2.0, 0.0), cone_deg=30.0,
                   beam_deg=20.0),
        SceneLight("area", (0.0, 2.5, -1.0), (1.0, 1.0, 1.0), 3.0, direction=(0.0, 0.0, 1.0), size=(0.5, 0.25)),
    ])
    assert scene_light_rows(SimpleNamespace(lights=[])) is None
    rows = scene_light_rows(spec)
    assert rows is not None and rows.shape == (6, 4, 4)
    assert rows[:, 0, 3].tolist() == [LIGHT_POINT, LIGHT_SPOT] + [LIGHT_SPOT] * 4
    np.testing.assert_allclose(rows[0, 2, :3], [8.0, 4.0, 2.0])
    np.testing.assert_allclose(rows[1, 1, :3], [0.0, -1.0, 0.0])
    np.testing.assert_allclose(rows[1, 3, :2], [math.radians(20), math.radians(30)], rtol=1e-6)
    np.testing.assert_allclose(rows[2:, 1, :3], np.tile([0.0, 0.0, 1.0], (4, 1)), atol=1e-6)  # facing the normal
    np.testing.assert_allclose(rows[2:, 2, 0].sum(), 3.0 * 4 * 0.5 * 0.25, rtol=1e-6)  # radiance x area in all
    np.testing.assert_allclose(rows[2:, 0, 2], -1.0, atol=1e-6)  # on the panel's plane
