"""Styles as data through the protocol (docs/protocol.md 5.3, 6.1): a game defines a look at run time with a
parameter set, sets the intensity, excludes objects and sends a per-pixel mask, all from game logic over the wire,
asserted on the pixels a real ``nrb serve`` (deferred renderer) returns."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.serverkit import SCENE_SPECS, SIZE, RunningServer, served, still_scene

from bridge.client import Client, RemoteError
from bridge.protocol import Buffer, BufferSpec, Control, ErrorCode, StyleCommand, Target
from bridge.scene import WEAPON_OBJECT
from bridge.style.defined import MAX_RUNTIME_STYLES

ROOT = Path(__file__).resolve().parents[1]
LOOKS = ROOT / "bridge" / "style" / "looks"

#: the same look, once in the server's style file and once written by game logic at run time
POISON = {"hue": 35.0, "saturation": 0.6, "gain": (0.85, 1.1, 0.75), "fog": 0.05, "fog_color": (0.4, 0.9, 0.3)}
STYLE_FILE = """\
[styles.filed_poison]
hue = 35
saturation = 0.6
gain = [0.85, 1.1, 0.75]
fog = 0.05
fog_color = [0.4, 0.9, 0.3]

[styles.sunset]
lut = "nrb_sunset.cube"
"""
GLOBAL = Target()


class Engine:
    """A synthetic engine session: the still scene plus the engine's own image (``hudless_color``)."""

    def __init__(self, client: Client, mask: np.ndarray | None = None) -> None:
        self.c = client
        self.bufs, self.cam = still_scene()
        w, h = SIZE
        rng = np.random.default_rng(17)
        self.engine_image = (rng.random((h, w, 4)) * 255).astype(np.uint8)
        self.bufs = [*self.bufs, Buffer.from_array("hudless_color", "rgba8_srgb", self.engine_image)]
        specs = [*SCENE_SPECS, BufferSpec("hudless_color", "rgba8_srgb")]
        if mask is not None:
            self.bufs.append(Buffer.from_array("neural_mask", "r8", mask[..., None]))
            specs.append(BufferSpec("neural_mask", "r8"))
        self.c.hello(SIZE, specs)
        self.t = 0

    @property
    def engine(self) -> np.ndarray:
        return self.engine_image[..., :3].astype(np.int16)

    def frame(self, styles: list[StyleCommand] | None = None, controls: list[Control] | None = None) -> np.ndarray:
        self.t += 1
        r = self.c.render(self.bufs, camera=self.cam, styles=styles or [], controls=controls or [], dt=0.1,
                          time_ns=int(self.t * 1e8))
        assert r.status == "ok" and r.output is not None
        return r.output.array()[..., :3].astype(np.int16)


def use(style: str) -> list[StyleCommand]:
    return [StyleCommand(style, 1.0, 0.0)]


def define(style: str, params: dict[str, object], strength: float = 1.0, over: float = 0.0,
           target: Target = GLOBAL) -> list[StyleCommand]:
    return [StyleCommand(style, strength, over, target, dict(params))]  # type: ignore[arg-type]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    shutil.copy(LOOKS / "nrb_sunset.cube", tmp_path / "nrb_sunset.cube")
    (tmp_path / "game.toml").write_text(STYLE_FILE)
    with served(tmp_path, "--renderer", "deferred", "--styles", str(tmp_path / "game.toml")) as srv:
        yield srv


def test_a_style_defined_at_run_time_renders_exactly_like_the_same_style_from_the_style_file(
        server: RunningServer) -> None:
    with server.client() as c:
        eng = Engine(c)
        plain = eng.frame()
        filed = eng.frame(use("filed_poison"))
        runtime = eng.frame(define("poison", POISON))
        assert np.array_equal(runtime, filed)
        assert (runtime[..., 1] - runtime[..., 0]).mean() > (plain[..., 1] - plain[..., 0]).mean() + 10  # greener
        assert np.array_equal(eng.frame(use("identity")), plain)
        assert np.array_equal(eng.frame(use("poison")), filed)  # named again without params
        c.bye()


def test_a_run_time_style_draws_its_shading_parameters_and_takes_a_lut_from_the_style_file(
        server: RunningServer) -> None:
    with server.client() as c:
        eng = Engine(c)
        thermal = eng.frame(use("thermal"))
        assert np.array_equal(eng.frame(define("hot", {"heat": 1.0})), thermal)  # drawn as the thermal preset
        sunset = eng.frame(use("sunset"))
        assert np.array_equal(eng.frame(define("my_sunset", {"lut": "sunset"})), sunset)
        # a redefinition takes effect from the frame that sends it
        assert np.array_equal(eng.frame(define("hot", {"lut": "sunset"})), sunset)
        c.bye()


def test_a_redefined_style_tweens_with_strength_and_over_like_any_style(server: RunningServer) -> None:
    with server.client() as c:
        eng = Engine(c)
        plain = eng.frame()
        full = eng.frame(define("dark", {"gain": 0.5}))
        eng.frame(use("identity"))
        mid = eng.frame(define("dark", {"gain": 0.5}, over=0.2))  # the tween starts at this frame
        assert np.array_equal(mid, plain)
        halfway = eng.frame()
        assert full.mean() < halfway.mean() < plain.mean()
        assert np.array_equal(eng.frame(), full)
        assert np.array_equal(eng.frame(define("dark", {"gain": 0.5}, strength=0.0)), plain)
        c.bye()


@pytest.mark.parametrize(("params", "named"), [
    ({"gain": (9.0, 1.0, 1.0)}, r"gain.*0\.\.4"),
    ({"sparkle": 1.0}, "sparkle"),
    ({"hue": (1.0, 2.0, 3.0)}, r"hue.*-180\.\.180"),
    ({"levels": 2.5}, "levels"),
    ({"lut": "noir"}, "lut 'noir' is not a style with a LUT"),
    ({"base": "poison"}, "base 'poison' is not one of the renderer's presets"),
])
def test_a_bad_parameter_is_bad_value_naming_it_and_the_next_frame_renders(
        server: RunningServer, params: dict[str, object], named: str) -> None:
    with server.client() as c:
        eng = Engine(c)
        plain = eng.frame()
        with pytest.raises(RemoteError, match=named) as err:
            # the whole frame is rejected: the good definition before the bad one is not made either
            eng.frame(define("fine", {"hue": 10.0}) + define("broken", params))
        assert err.value.error.code == ErrorCode.BAD_VALUE
        assert np.array_equal(eng.frame(), plain)  # the server keeps serving this session
        with pytest.raises(RemoteError, match="'fine' is not one of the renderer's styles"):
            eng.frame(use("fine"))
        c.bye()


def test_presets_and_style_file_styles_cannot_be_redefined_by_a_game(server: RunningServer) -> None:
    with server.client() as c:
        eng = Engine(c)
        for name in ("noir", "filed_poison"):
            with pytest.raises(RemoteError, match="needs a name of its own") as err:
                eng.frame(define(name, {"hue": 10.0}))
            assert err.value.error.code == ErrorCode.BAD_VALUE
        c.bye()


def test_a_defined_style_is_nameable_at_once_and_by_later_sessions(server: RunningServer) -> None:
    with server.client() as c:
        eng = Engine(c)
        # the second frame names the style before the first one (which defines it) has been answered
        first = c.send_frame(eng.bufs, camera=eng.cam, styles=define("shared", POISON), time_ns=1)
        second = c.send_frame(eng.bufs, camera=eng.cam, styles=use("shared"), time_ns=2)
        assert c.result(first).status in ("ok", "skipped") and c.result(second).status == "ok"
        c.bye()
    with server.client() as c:
        eng = Engine(c)
        assert c.welcome is not None and "shared" in c.welcome.styles
        assert np.array_equal(eng.frame(use("shared")), eng.frame(use("filed_poison")))
        c.bye()


def test_more_run_time_styles_than_the_renderer_holds_is_limit_exceeded(server: RunningServer) -> None:
    with server.client() as c:
        eng = Engine(c)
        for i in range(MAX_RUNTIME_STYLES):
            c.send_frame(eng.bufs, camera=eng.cam, styles=define(f"s{i}", {"hue": float(i)}), time_ns=i + 1)
        for f in range(1, MAX_RUNTIME_STYLES + 1):
            assert c.result(f).status in ("ok", "skipped")
        with pytest.raises(RemoteError) as err:
            eng.t = 10_000
            eng.frame(define("one_too_many", {"hue": 1.0}))
        assert err.value.error.code == ErrorCode.LIMIT_EXCEEDED
        eng.frame(define("s3", {"hue": 90.0}))  # redefining one does not count
        c.bye()


def test_intensity_zero_returns_the_engines_image_exactly_and_one_the_rendered_image(
        server: RunningServer) -> None:
    with server.client() as c:
        eng = Engine(c)
        plain = eng.frame()
        assert np.array_equal(eng.frame(controls=[Control("intensity", 0.0)]), eng.engine)
        assert np.array_equal(eng.frame(), eng.engine)  # it stays (per session) until changed
        eng.frame(controls=[Control("intensity", 1.0, 0.2)])  # tween back over 0.2 s
        halfway = eng.frame()
        assert not np.array_equal(halfway, plain) and not np.array_equal(halfway, eng.engine)
        assert np.array_equal(eng.frame(), plain)
        c.bye()


def test_an_excluded_object_keeps_the_engines_pixels_until_included_again(server: RunningServer) -> None:
    with server.client() as c:
        eng = Engine(c)
        plain = eng.frame()
        weapon = still_scene()[0][6].array()[..., 0] == WEAPON_OBJECT
        assert weapon.sum() > 20
        kept = eng.frame(controls=[Control("exclude", 1.0, 0.0, Target("object", (WEAPON_OBJECT,)))])
        assert np.array_equal(kept[weapon], eng.engine[weapon])
        # a soft edge of a few pixels around it; pixels further away are untouched
        near = np.zeros_like(weapon)
        ys, xs = np.nonzero(weapon)
        near[max(ys.min() - 4, 0):ys.max() + 5, max(xs.min() - 4, 0):xs.max() + 5] = True
        assert np.array_equal(kept[~near], plain[~near])
        assert not np.array_equal(kept[near & ~weapon], plain[near & ~weapon])
        assert np.array_equal(eng.frame(controls=[Control("exclude", 0.0, 0.0, GLOBAL)]), plain)
        c.bye()


def test_a_mask_buffer_keeps_the_engines_pixels_where_it_is_255_and_mixes_where_it_is_between(
        server: RunningServer) -> None:
    w, h = SIZE
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 10:40] = 255
    mask[40:60, 50:90] = 128
    with server.client() as c:
        plain = Engine(c).frame()
        c.bye()
    with server.client() as c:
        eng = Engine(c, mask)
        out = eng.frame()
        inner = np.zeros((h, w), bool)
        inner[14:26, 14:36] = True  # away from the soft edge
        assert np.array_equal(out[inner], eng.engine[inner])
        far = np.ones((h, w), bool)
        far[5:35, 5:45] = far[35:64, 45:96] = False
        assert np.array_equal(out[far], plain[far])
        half = (slice(44, 56), slice(54, 86))
        between = np.abs(out[half] - plain[half]).mean(), np.abs(out[half] - eng.engine[half]).mean()
        assert between[0] > 5 and between[1] > 5  # neither image: a mix
        c.bye()


def test_a_mask_buffer_in_another_format_is_bad_value(server: RunningServer) -> None:
    w, h = SIZE
    with server.client() as c:
        bufs, cam = still_scene()
        c.hello(SIZE, [*SCENE_SPECS, BufferSpec("neural_mask", "r16f")])
        mask = Buffer.from_array("neural_mask", "r16f", np.zeros((h, w, 1), np.float16))
        with pytest.raises(RemoteError, match="neural_mask.*r8") as err:
            c.render([*bufs, mask], camera=cam)
        assert err.value.error.code == ErrorCode.BAD_VALUE
        assert c.render(bufs, camera=cam).status == "ok"
        c.bye()


def test_a_session_that_writes_styles_and_controls_replays_its_style_maps_and_images_exactly(tmp_path: Path) -> None:
    from bridge.commands.replay import replay_capture

    capture = tmp_path / "session.nrbcap"
    with served(tmp_path, "--renderer", "deferred", "--record", str(capture)) as srv, srv.client() as c:
        eng = Engine(c)
        eng.frame()
        eng.frame(define("poison", POISON, over=0.3))
        eng.frame(controls=[Control("exclude", 1.0, 0.0, Target("object", (WEAPON_OBJECT,)))])
        eng.frame(controls=[Control("intensity", 0.4, 0.2)])
        eng.frame(define("poison", {"hue": -60.0, "fog": 0.2}))
        eng.frame(use("identity") + define("dark", {"gain": 0.6}, strength=0.5))
        c.bye()
    report = replay_capture(capture, video=False)
    assert report.frames == 6 and report.rendered == 6
    assert report.style_maps_checked == 6 and report.style_map_mismatches == []
    assert report.images_checked == 6 and report.image_mismatches == []


def test_the_protocol_lists_every_style_parameter_with_its_range() -> None:
    """docs/protocol.md 5.3's parameter table is bridge.style.library.PARAM_SPECS (names, channels, ranges)."""
    import re

    from bridge.style.library import PARAM_SPECS

    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text[text.index("**Styles defined at run time**"):text.index("**control** (map")]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d|str) \|([^|]*)\|", section, re.M)
    doc = {name: (ch, rng.strip()) for name, ch, rng in rows}
    assert set(doc) == set(PARAM_SPECS) | {"lut", "base"}
    for name, spec in PARAM_SPECS.items():
        ch, rng = doc[name]
        assert int(ch) == spec.channels, name
        m = re.match(r"(−?[\d.]+)\.\.(−?[\d.]+)", rng)
        assert m, (name, rng)
        low, high = (float(x.replace("−", "-")) for x in m.groups())
        assert (low, high) == (spec.low, spec.high), name
