"""The exact grading stage and the post controls, on arrays: .cube parsing, LUT lookup, each grading parameter's
documented direction, blending by the style map, and intensity / masks against the engine's image."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge.protocol import Target
from bridge.renderer import RenderInputs, linear_to_srgb, srgb8_to_linear, to_srgb8
from bridge.style import DEFAULT_LIBRARY
from bridge.style.defined import LiveLibrary, StyleDef, make_def
from bridge.style.errors import StyleParamError
from bridge.style.grading import grade, post_process
from bridge.style.library import PARAM_NAMES, PARAM_SPECS, Style
from bridge.style.lut import CubeError, Lut3D, parse_cube
from bridge.style.state import StyleState
from bridge.style.stylemap import build_style_map

H, W = 24, 32
RNG = np.random.default_rng(7)
IMAGE8 = (RNG.random((H, W, 4)) * 255).astype(np.uint8)
IMAGE_LIN = RNG.random((H, W, 3)).astype(np.float32)


def warm_lut(size: int = 5) -> Lut3D:
    g = np.linspace(0.0, 1.0, size, dtype=np.float32)
    b, gg, r = np.meshgrid(g, g, g, indexing="ij")
    return Lut3D(np.stack([np.sqrt(r), gg, b * b], axis=-1), title="warm")


def library_with(*defs: tuple[str, dict[str, object]]) -> LiveLibrary:
    lib = LiveLibrary(DEFAULT_LIBRARY)
    lib.update([make_def(name, params, origin="test") for name, params in defs])
    return lib


def global_map(lib: LiveLibrary, mix: dict[str, float], size: tuple[int, int] = (W, H)) -> np.ndarray:
    state = StyleState(lib)
    state.set(mix)
    return build_style_map(state.snapshot(), size)


def no_depth() -> RenderInputs:
    return RenderInputs({}, size=(W, H))


# ------------------------------------------------------------------------------------------------------ .cube

def test_cube_parses_title_size_domain_and_comments() -> None:
    text = ('# exported by a grading tool\nTITLE "Warm"\nLUT_3D_SIZE 2\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 2 2 2\n\n'
            + "\n".join(f"{r} {g} {b}  # point" for b in (0, 1) for g in (0, 1) for r in (0, 1)) + "\n")
    lut = parse_cube(text, "warm.cube")
    assert lut.title == "Warm" and lut.size == 2 and lut.domain_max == (2.0, 2.0, 2.0)
    assert lut.table[1, 0, 0].tolist() == [0.0, 0.0, 1.0]  # red fastest, blue slowest
    assert lut.table[0, 0, 1].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(lut.apply(np.array([[1.0, 1.0, 1.0]])), [[0.5, 0.5, 0.5]])  # mid-domain


@pytest.mark.parametrize("size", [2, 17, 33])
def test_cube_round_trips_every_size(size: int) -> None:
    lut = Lut3D.identity(size)
    back = parse_cube(lut.to_cube())
    assert back.size == size
    np.testing.assert_allclose(back.table, lut.table, atol=1e-6)


def test_resolve_input_range_keyword_sets_the_domain() -> None:
    body = "\n".join("0 0 0" for _ in range(8))
    lut = parse_cube(f"LUT_3D_SIZE 2\nLUT_3D_INPUT_RANGE -0.5 1.5\n{body}\n")
    assert lut.domain_min == (-0.5,) * 3 and lut.domain_max == (1.5,) * 3


@pytest.mark.parametrize(("text", "line", "words"), [
    ("LUT_3D_SIZE 2\n0 0 0\n0 0\n", 3, "3 numbers"),
    ("LUT_3D_SIZE 2\n0 0 0\n0 zero 0\n", 3, "not a number"),
    ("LUT_3D_SIZE 2\n0 0 nan\n", 2, "non-finite"),
    ("0 0 0\nLUT_3D_SIZE 2\n", 1, "before LUT_3D_SIZE"),
    ("TITLE \"x\"\nLUT_3D_SIZE 1\n", 2, "2..256"),
    ("LUT_1D_SIZE 16\n", 1, "1D LUTs"),
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 7, 8, "needs 8 data lines, the file has 7"),
    ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 9, 10, "more than"),
    ("LUT_3D_SIZE 2\n0 0 0\nDOMAIN_MIN 0 0 0\n", 3, "after the table data"),
    ("LUT_3D_SIZE two\n", 1, "integer"),
])
def test_malformed_cube_is_a_typed_error_naming_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(CubeError) as err:
        parse_cube(text, "bad.cube")
    assert err.value.line == line and f"bad.cube:{line}:" in str(err.value) and words in str(err.value)
    assert isinstance(err.value, ValueError)


def test_identity_lut_is_exact_identity() -> None:
    x = RNG.random((5000, 3)).astype(np.float32)
    for size in (2, 17, 33):
        np.testing.assert_allclose(Lut3D.identity(size).apply(x), x, atol=2e-7, rtol=0)
    lut_lib = LiveLibrary(DEFAULT_LIBRARY)  # a defined style whose only grading is an identity LUT
    lut_lib.update([StyleDef("ident", {}, lut=Lut3D.identity(17))])
    out = grade(IMAGE8, global_map(lut_lib, {"ident": 1.0}), lut_lib, no_depth())
    assert out is not IMAGE8 and np.array_equal(out, IMAGE8)  # 8-bit in, 8-bit out: bit for bit


def reference_trilinear(lut: Lut3D, rgb: np.ndarray) -> np.ndarray:
    """The textbook lookup, one colour at a time."""
    n = lut.size
    out = np.empty_like(rgb, dtype=np.float64)
    lo, hi = np.array(lut.domain_min), np.array(lut.domain_max)
    for k, c in enumerate(rgb.astype(np.float64)):
        x = np.clip((c - lo) / (hi - lo) * (n - 1), 0, n - 1)
        i = np.minimum(np.floor(x).astype(int), n - 2)
        f = x - i
        acc = np.zeros(3)
        for dr in (0, 1):
            for dg in (0, 1):
                for db in (0, 1):
                    wgt = (f[0] if dr else 1 - f[0]) * (f[1] if dg else 1 - f[1]) * (f[2] if db else 1 - f[2])
                    acc += wgt * lut.table[i[2] + db, i[1] + dg, i[0] + dr]
        out[k] = acc
    return out


def test_lut_lookup_matches_a_reference_trilinear_interpolation() -> None:
    lut = warm_lut(5)
    rgb = RNG.random((300, 3)).astype(np.float32) * 1.2 - 0.1  # some outside the domain: clamped
    np.testing.assert_allclose(lut.apply(rgb), reference_trilinear(lut, rgb), atol=1e-5)


def test_the_stage_applies_a_styles_lut_to_the_srgb_encoded_image() -> None:
    lut = warm_lut(9)
    lib = LiveLibrary(DEFAULT_LIBRARY)
    lib.update([StyleDef("warmlut", {}, lut=lut)])
    out = grade(IMAGE_LIN, global_map(lib, {"warmlut": 1.0}), lib, no_depth())
    encoded = linear_to_srgb(IMAGE_LIN).reshape(-1, 3)
    expected = srgb8_to_linear(to_srgb8(reference_trilinear(lut, encoded))).reshape(H, W, 3)
    np.testing.assert_allclose(out, expected, atol=0.01)  # up to the stage's 16-bit sRGB tables


# ------------------------------------------------------------------------------------------------ parameters

def test_every_parameter_has_a_range_and_a_neutral_value_within_it() -> None:
    for name, spec in PARAM_SPECS.items():
        neutral = spec.neutral if isinstance(spec.neutral, tuple) else (spec.neutral,)
        assert all(spec.low <= v <= spec.high for v in neutral), name
    assert len(PARAM_NAMES) == len(DEFAULT_LIBRARY.table()[0])


def test_the_shipped_presets_have_neutral_grading_so_the_stage_is_skipped() -> None:
    assert DEFAULT_LIBRARY.graded == ()
    lib = LiveLibrary(DEFAULT_LIBRARY)
    for name in DEFAULT_LIBRARY.names:
        assert grade(IMAGE8, global_map(lib, {name: 1.0}), lib, no_depth()) is IMAGE8


def test_neutral_parameters_leave_the_image_bit_identical() -> None:
    neutral = {k: v for k, v in ((k, s.neutral) for k, s in PARAM_SPECS.items())}
    lib = library_with(("plain", neutral), ("graded", {"hue": 30.0}))
    assert lib.graded == (8,)  # "plain" is neutral, "graded" is not
    assert grade(IMAGE8, global_map(lib, {"plain": 1.0}), lib, no_depth()) is IMAGE8
    # a map where only some pixels carry the graded style: the others keep their exact bytes
    state = StyleState(lib)
    state.set("graded", object=5)
    ids = np.zeros((H, W, 1), np.uint16)
    ids[:8] = 5
    out = grade(IMAGE8, build_style_map(state.snapshot(), (W, H), None, ids), lib, no_depth())
    assert np.array_equal(out[8:], IMAGE8[8:]) and not np.array_equal(out[:8], IMAGE8[:8])


@pytest.mark.parametrize(("params", "param"), [
    ({"hue": 200}, "hue"), ({"temperature": -1.5}, "temperature"), ({"gamma": [1, 0, 1]}, "gamma"),
    ({"fog": float("nan")}, "fog"), ({"lift": [0, 0]}, "lift"), ({"sparkle": 1}, "sparkle"),
    ({"gain": "bright"}, "gain"), ({"levels": 2.5}, "levels"),
])
def test_unknown_parameter_or_out_of_range_value_is_a_typed_error_naming_it(params: dict[str, object],
                                                                           param: str) -> None:
    with pytest.raises(StyleParamError) as err:
        make_def("bad", params, origin="styles.toml [styles.bad]")
    assert err.value.param == param and param in str(err.value) and "styles.toml" in str(err.value)
    assert isinstance(err.value, ValueError)
    if param in PARAM_SPECS:
        spec = PARAM_SPECS[param]
        assert (err.value.low, err.value.high) == (spec.low, spec.high)
        assert f"{spec.low:g}..{spec.high:g}" in str(err.value)


def grade_colour(params: dict[str, object], rgb: tuple[float, float, float], depth: float | None = None) -> np.ndarray:
    lib = library_with(("s", params))
    img = np.empty((H, W, 3), np.float32)
    img[:] = rgb
    inputs = no_depth() if depth is None else RenderInputs.from_arrays(
        {"linear_depth": ("r32f", np.full((H, W, 1), depth, np.float32))})
    return grade(img, global_map(lib, {"s": 1.0}), lib, inputs)[0, 0]


def test_hue_shift_rotates_hues_about_the_grey_axis() -> None:
    np.testing.assert_allclose(grade_colour({"hue": 120}, (0.5, 0.0, 0.0)), [0.0, 0.5, 0.0], atol=2e-3)
    np.testing.assert_allclose(grade_colour({"hue": -120}, (0.5, 0.0, 0.0)), [0.0, 0.0, 0.5], atol=2e-3)
    np.testing.assert_allclose(grade_colour({"hue": 77}, (0.3, 0.3, 0.3)), [0.3, 0.3, 0.3], atol=1e-3)  # grey


def test_temperature_warms_and_tint_goes_magenta_keeping_grey_brightness() -> None:
    grey = (0.2, 0.2, 0.2)
    warm, cool = grade_colour({"temperature": 0.6}, grey), grade_colour({"temperature": -0.6}, grey)
    assert warm[0] > 0.2 > warm[2] and cool[2] > 0.2 > cool[0]
    magenta = grade_colour({"wb_tint": 0.6}, grey)
    assert magenta[1] < 0.2 < magenta[0]
    luma = np.array([0.2126, 0.7152, 0.0722])
    for c in (warm, cool, magenta):
        assert abs(float(c @ luma) - 0.2) < 2e-3


def test_lift_raises_blacks_gain_scales_whites_and_gamma_above_one_brightens_midtones() -> None:
    assert grade_colour({"lift": 0.1}, (0.0, 0.0, 0.0))[0] > 0.005
    np.testing.assert_allclose(grade_colour({"gain": [0.5, 1, 1]}, (1.0, 1.0, 1.0)), [0.214, 1, 1], atol=3e-3)
    mid = grade_colour({"gamma": 1.5}, (0.2, 0.2, 0.2))
    assert (mid > 0.25).all() and (grade_colour({"gamma": 1.5}, (1.0, 1.0, 1.0)) > 0.999).all()


def test_fog_increases_with_depth_toward_the_fog_colour() -> None:
    params = {"fog": 0.1, "fog_color": [1.0, 0.5, 0.0]}
    near, mid, far = (grade_colour(params, (0.0, 0.0, 0.3), d) for d in (1.0, 10.0, 100.0))
    assert near[0] < mid[0] < far[0] and near[2] > mid[2] > far[2]
    a = 1 - math.exp(-0.1 * 10.0)
    np.testing.assert_allclose(mid, [a, 0.5 * a, 0.3 * (1 - a)], atol=3e-3)
    assert grade_colour({"fog": 0.1, "fog_max": 0.5}, (0.0, 0.0, 0.0), 1e9)[0] == pytest.approx(0.375, abs=3e-3)
    np.testing.assert_allclose(grade_colour(params, (0.0, 0.0, 0.3)), [0.0, 0.0, 0.3], atol=1e-4)  # no depth: no fog


def test_pixels_mixing_two_styles_mix_their_graded_results_by_weight() -> None:
    lut = warm_lut(9)
    lib = LiveLibrary(DEFAULT_LIBRARY)
    lib.update([StyleDef("a", {}, lut=lut), StyleDef("b", {}, lut=Lut3D(1.0 - lut.table[::-1, ::-1, ::-1]))])
    full_a = grade(IMAGE_LIN, global_map(lib, {"a": 1.0}), lib, no_depth())
    full_b = grade(IMAGE_LIN, global_map(lib, {"b": 1.0}), lib, no_depth())
    half = grade(IMAGE_LIN, global_map(lib, {"a": 0.5, "b": 0.5}), lib, no_depth())
    enc = [linear_to_srgb(x) for x in (full_a, full_b, half)]
    np.testing.assert_allclose(enc[2], (enc[0] + enc[1]) / 2, atol=2e-3)  # mixed in the LUTs' (encoded) space
    # parameters blend too: half a +40° hue is a +20° hue
    lib2 = library_with(("h", {"hue": 40.0}), ("h20", {"hue": 20.0}))
    np.testing.assert_allclose(grade(IMAGE_LIN, global_map(lib2, {"h": 0.5, "identity": 0.5}), lib2, no_depth()),
                               grade(IMAGE_LIN, global_map(lib2, {"h20": 1.0}), lib2, no_depth()), atol=1e-5)


def test_a_map_of_object_mixes_grades_group_by_group_exactly_as_pixel_by_pixel() -> None:
    """A per-object style map (a few distinct mixes, as a game's targets make) at half the output size, with a LUT
    style, fog and per-pixel parameters: grading each distinct mix at once gives the per-pixel result (within one
    8-bit step, where a neutral group skips the per-pixel path's near-identity colour matrix), and a map with
    more distinct mixes than the grouping takes is still graded per pixel."""
    lib = LiveLibrary(DEFAULT_LIBRARY)
    lib.update([StyleDef("warm", {"hue": 25.0, "fog": 0.05}, lut=warm_lut(9)),
                make_def("cold", {"temperature": -0.8, "gain": [0.9, 1.0, 1.2]}, origin="test")])
    s = len(lib)
    warm, cold = lib.index("warm"), lib.index("cold")
    objects = np.arange(H * W).reshape(H, W) % 5  # five objects
    mixes = np.zeros((5, s), np.float32)
    mixes[0, 0] = 1.0  # identity: nothing to grade
    mixes[1, warm] = 1.0
    mixes[2, cold] = 1.0
    mixes[3, [warm, cold]] = 0.3, 0.7
    mixes[4, [0, warm]] = 0.5, 0.5
    small = mixes[objects[: H // 2, : W // 2]]  # (H/2, W/2, S): the map at the render size
    depth = (RNG.random((H, W)) * 50).astype(np.float32)
    from bridge.protocol import Buffer

    inputs = RenderInputs({"linear_depth": Buffer.from_array("linear_depth", "r32f", depth)}, size=(W, H))
    from bridge.style.grading import MAX_GROUPS, _groups

    found = _groups(small, (H, W), MAX_GROUPS)  # the map is seen as its five mixes, one per output pixel
    assert found is not None and len(found[0]) == 5
    assert np.array_equal(found[0][found[1]].reshape(H, W, s), np.repeat(np.repeat(small, 2, 0), 2, 1))
    grouped = grade(IMAGE8, small, lib, inputs)
    per_pixel = grade(IMAGE8, small, lib, inputs, max_groups=0)
    assert np.abs(grouped.astype(int) - per_pixel.astype(int)).max() <= 1
    assert not np.array_equal(grouped, IMAGE8)
    identity = np.repeat(np.repeat(objects[: H // 2, : W // 2] == 0, 2, 0), 2, 1)
    assert np.array_equal(grouped[identity], IMAGE8[identity])  # the identity object is left as it was
    smooth = np.zeros((H // 2, W // 2, s), np.float32)  # a gradient: a distinct mix in every pixel
    smooth[..., warm] = np.linspace(0.0, 1.0, H // 2 * W // 2).reshape(H // 2, W // 2)
    smooth[..., 0] = 1.0 - smooth[..., warm]
    assert np.array_equal(grade(IMAGE8, smooth, lib, inputs), grade(IMAGE8, smooth, lib, inputs, max_groups=0))


def test_a_look_over_most_of_the_frame_with_a_few_other_objects_grades_each_pixel_by_its_own_mix() -> None:
    """The usual game frame: one graded look over most of the screen (the world: fog, white balance, a LUT), one
    object with another graded mix and one kept neutral. Each pixel comes out as grading the frame with its own mix
    alone would make it, the neutral object's pixels untouched, the depth used for fog the pixel's own."""
    lib = LiveLibrary(DEFAULT_LIBRARY)
    lib.update([StyleDef("warm", {"temperature": 0.4, "fog": 0.05, "gain": [1.0, 0.95, 0.9]}, lut=warm_lut(9)),
                make_def("cold", {"temperature": -0.8, "hue": 10.0}, origin="test")])
    s = len(lib)
    warm, cold = lib.index("warm"), lib.index("cold")
    objects = np.zeros((H // 2, W // 2), np.int64)  # the map at the render size: the world is object 0
    objects[2:5, 3:9] = 1  # an object with its own graded look
    objects[7:10, 10:14] = 2  # an object kept neutral (identity)
    mixes = np.zeros((3, s), np.float32)
    mixes[0, warm] = 1.0
    mixes[1, [warm, cold]] = 0.25, 0.75
    mixes[2, 0] = 1.0
    depth = (RNG.random((H, W)) * 50).astype(np.float32)
    from bridge.protocol import Buffer

    inputs = RenderInputs({"linear_depth": Buffer.from_array("linear_depth", "r32f", depth)}, size=(W, H))
    out = grade(IMAGE8, mixes[objects], lib, inputs)
    full = np.repeat(np.repeat(objects, 2, 0), 2, 1)
    for k in range(3):
        alone = grade(IMAGE8, np.broadcast_to(mixes[k], (H // 2, W // 2, s)), lib, inputs)
        assert np.array_equal(out[full == k], alone[full == k]), k
    assert np.array_equal(out[full == 2], IMAGE8[full == 2]) and not np.array_equal(out[full == 0], IMAGE8[full == 0])


def test_a_whole_frame_intensity_mixes_8_bit_images_as_the_linear_light_formula() -> None:
    """Intensity 0.3 over the frame: every pixel is the engine's and the re-rendered value mixed in linear light,
    sRGB-encoded and rounded, for all 256 x 256 pairs of 8-bit values (the stage looks the pairs up)."""
    e, n = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    engine = np.stack([e, n, e, np.full_like(e, 255)], axis=-1)
    image = np.stack([n, e, n, np.full_like(n, 7)], axis=-1)
    from bridge.protocol import Buffer

    inputs = RenderInputs({"hudless_color": Buffer.from_array("hudless_color", "rgba8_srgb", engine)}, size=(256, 256))
    state = StyleState(DEFAULT_LIBRARY)
    state.set_intensity(0.3)
    out = post_process(image, inputs, state)
    el, nl = srgb8_to_linear(engine[..., :3]), srgb8_to_linear(image[..., :3])
    expect = to_srgb8(linear_to_srgb(el + (nl - el) * np.float32(0.3)))
    assert np.abs(out[..., :3].astype(int) - expect.astype(int)).max() <= 1  # the stage's 16-bit encoding table
    assert (out[..., :3] != expect).mean() < 0.01 and np.array_equal(out[..., 3], image[..., 3])


# ------------------------------------------------------------------------------------------ library and map

def test_a_defined_style_is_drawn_by_its_base_or_nearest_preset() -> None:
    lib = library_with(("gradeonly", {"hue": 10}), ("inky", {"toon": 0.9, "outline": 1.0, "levels": 3}),
                       ("explicit", {"hue": 10, "base": "photoreal"}))
    assert [lib.base_of(n) for n in ("gradeonly", "inky", "explicit")] == ["identity", "toon", "photoreal"]
    sm = global_map(lib, {"inky": 0.25, "noir": 0.75})
    rmap = lib.renderer_map(sm)
    assert rmap.shape[2] == len(DEFAULT_LIBRARY)
    np.testing.assert_allclose(rmap[0, 0], np.eye(7)[2] * 0.25 + np.eye(7)[3] * 0.75)
    preset_only = global_map(lib, {"noir": 1.0})
    assert np.shares_memory(lib.renderer_map(preset_only), preset_only)  # a view: presets render as before
    state = StyleState(lib)
    state.set("inky", object=5)
    ids = np.zeros((H, W, 1), np.uint16)
    ids[:4] = 5
    per_pixel = lib.renderer_map(build_style_map(state.snapshot(), (W, H), None, ids))
    assert (per_pixel[:4, :, 2] == 1).all() and (per_pixel[4:, :, 0] == 1).all()  # toon under the object only


def test_the_library_grows_under_a_live_session_and_keeps_its_mix() -> None:
    lib = LiveLibrary(DEFAULT_LIBRARY)
    state = StyleState(lib)
    state.transition("noir", over=2.0)
    state.advance_to(1.0)
    lib.update([make_def("sunset", {"temperature": 0.4}, origin="t")])
    state.transition("sunset", strength=0.5, object=3)
    snap = state.snapshot()
    assert snap.global_weights.shape == (8,) and snap.object_contrib.shape == (1, 8)
    state.advance_to(2.0)
    assert state.weights() == {"noir": 1.0}
    assert state.weights(object=3) == {"noir": 0.5, "sunset": 0.5}
    with pytest.raises(ValueError, match="presets"):
        lib.update([make_def("noir", {"hue": 3}, origin="t")])


def test_style_define_accepts_one_number_for_rgb_parameters() -> None:
    assert Style.define("g", gamma=1.2).gamma == (1.2, 1.2, 1.2)


# ------------------------------------------------------------------------------------------- intensity, masks

def engine_inputs(ids: np.ndarray | None = None) -> tuple[RenderInputs, np.ndarray]:
    engine = (RNG.random((H, W, 4)) * 255).astype(np.uint8)
    arrays = {"hudless_color": ("rgba8_srgb", engine)}
    if ids is not None:
        arrays["object_id"] = ("r16u", ids)
    return RenderInputs.from_arrays(arrays), engine


def test_intensity_zero_returns_the_engines_image_and_one_the_re_rendered_one() -> None:
    inputs, engine = engine_inputs()
    state = StyleState()
    assert post_process(IMAGE8, inputs, state) is IMAGE8
    state.set_intensity(0.0)
    out = post_process(IMAGE8, inputs, state)
    assert np.array_equal(out[..., :3], engine[..., :3]) and np.array_equal(out[..., 3], IMAGE8[..., 3])
    state.set_intensity(0.5)
    half = srgb8_to_linear(post_process(IMAGE8, inputs, state)[..., :3])
    expect = (srgb8_to_linear(IMAGE8[..., :3]) + srgb8_to_linear(engine[..., :3])) / 2
    np.testing.assert_allclose(half, expect, atol=0.01)


def test_intensity_tweens_over_frame_time() -> None:
    state = StyleState()
    state.set_intensity(0.0, over=2.0, easing="linear")
    state.advance_to(1.0)
    assert state.intensity() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="0..1"):
        state.set_intensity(1.5)


def test_a_masked_object_keeps_the_engines_pixels_with_a_soft_edge_around_it() -> None:
    ids = np.zeros((H, W, 1), np.uint16)
    ids[8:16, 10:20] = 42
    inputs, engine = engine_inputs(ids)
    state = StyleState()
    state.exclude(target=Target("object", (42,)), feather=3)
    out = post_process(IMAGE8, inputs, state)
    obj = ids[..., 0] == 42
    assert np.array_equal(out[obj][:, :3], engine[obj][:, :3])  # the object: exactly the engine's pixels
    far = np.ones((H, W), bool)
    far[4:20, 6:24] = False
    assert np.array_equal(out[far], IMAGE8[far])  # away from it: untouched
    ring = ~obj & ~far
    changed = (out[ring] != IMAGE8[ring]).any(axis=1)
    assert changed.any()  # the soft edge blends a few pixels around it
    state.include()
    assert post_process(IMAGE8, inputs, state) is IMAGE8
    with pytest.raises(ValueError, match="ids"):
        state.exclude()


def test_without_hudless_color_the_post_controls_leave_the_image() -> None:
    state = StyleState()
    state.set_intensity(0.0)
    assert post_process(IMAGE8, no_depth(), state) is IMAGE8


def test_welcome_optional_gains_the_post_stage_buffers_a_renderer_does_not_list() -> None:
    from bridge.protocol import BufferSpec
    from bridge.style.grading import with_post_buffers

    required = [BufferSpec("albedo", "rgba8_srgb")]
    optional = [BufferSpec("object_id", "r32u")]
    got = with_post_buffers(optional, required)
    assert [b.name for b in got] == ["object_id", "hudless_color", "neural_mask", "material_id"]
    assert got[0].format == "r32u"  # the renderer's own choice stays
    assert [b.name for b in with_post_buffers(got, required)] == [b.name for b in got]  # idempotent


def test_a_neural_mask_blends_per_pixel_and_a_mask_of_zeros_changes_nothing() -> None:
    from bridge.protocol import Buffer

    rendered = np.zeros((H, W, 4), np.uint8)
    engine = np.full((H, W, 4), 255, np.uint8)
    mask = np.zeros((H, W, 1), np.uint8)
    state = StyleState(DEFAULT_LIBRARY)
    state.feather = 0.0

    def run(m: np.ndarray) -> np.ndarray:
        inputs = RenderInputs({"hudless_color": Buffer.from_array("hudless_color", "rgba8_srgb", engine),
                               "neural_mask": Buffer.from_array("neural_mask", "r8", m)}, size=(W, H))
        return post_process(rendered, inputs, state)

    assert run(mask) is rendered
    mask[2:6, 3:9] = 255
    mask[10:12, 10:20] = 128
    out = run(mask)
    assert (out[2:6, 3:9, :3] == 255).all() and (out[:2, :, :3] == 0).all()
    mid = out[10:12, 10:20, :3]
    assert (mid > 100).all() and (mid < 255).all()  # half the engine's white, mixed in linear light
