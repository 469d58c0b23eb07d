"""StyleState and style maps: tweens driven by frame time only, precedence, strengths, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.protocol import StyleCommand, Target
from bridge.style import DEFAULT_LIBRARY, StyleState, build_style_map, style_map_digest

NAMES = DEFAULT_LIBRARY.names
NOIR, GOLDEN, TOON, IDENTITY = (NAMES.index(n) for n in ("noir", "golden", "toon", "identity"))


def ids_image() -> tuple[np.ndarray, np.ndarray]:
    """A 2x3 frame: materials [[1, 1, 2], [2, 3, 0]], objects [[10, 11, 12], [13, 14, 0]]."""
    return (np.array([[1, 1, 2], [2, 3, 0]], np.uint16), np.array([[10, 11, 12], [13, 14, 0]], np.uint16))


def smap(state: StyleState) -> np.ndarray:
    mat, obj = ids_image()
    return build_style_map(state.snapshot(), (3, 2), mat, obj)


def test_transition_follows_its_easing_curve_and_only_frame_time_moves_it() -> None:
    s = StyleState()
    s.advance_to(10.0)
    s.transition("noir", strength=0.8, over=2.0, easing="linear")
    assert s.weights() == {"identity": 1.0}  # starts now: nothing yet
    s.advance_to(11.0)
    assert s.weights()["noir"] == pytest.approx(0.4)
    s.advance_to(12.5)
    assert s.weights() == pytest.approx({"identity": 0.2, "noir": 0.8})
    s.advance_to(5.0)  # time never runs backwards
    assert s.now == 12.5


def test_smoothstep_is_the_default_and_is_slow_at_both_ends() -> None:
    s = StyleState()
    s.transition("toon", over=1.0)
    s.advance_to(0.1)
    early = s.weights()["toon"]
    s.advance_to(0.5)
    assert early < 0.1 and s.weights()["toon"] == pytest.approx(0.5)


def test_object_override_beats_material_override_beats_global() -> None:
    s = StyleState()
    s.set("noir")
    s.set("toon", material=1)
    s.set("golden", object=11)
    m = smap(s)
    assert m[0, 0, TOON] == 1.0  # material 1, object 10: material override
    assert m[0, 1, GOLDEN] == 1.0  # material 1, object 11: object override wins
    assert m[0, 2, NOIR] == 1.0 and m[1, 2, NOIR] == 1.0  # no override: global


def test_partial_override_lets_what_lies_beneath_show_through() -> None:
    s = StyleState()
    s.set("noir", strength=0.5)
    s.set("golden", strength=0.5, target=Target("object", (12,)))
    m = smap(s)
    assert m[0, 2, GOLDEN] == pytest.approx(0.5)
    assert m[0, 2, NOIR] == pytest.approx(0.25) and m[0, 2, IDENTITY] == pytest.approx(0.25)


def test_style_map_rows_sum_to_one_for_any_mix_of_layers() -> None:
    rng = np.random.default_rng(7)
    s = StyleState()
    for i in range(40):
        s.advance_to(i * 0.1)
        scope = ["global", "material", "object"][i % 3]
        ids = () if scope == "global" else (int(rng.integers(0, 15)),)
        s.transition(NAMES[int(rng.integers(0, len(NAMES)))], float(rng.random()), float(rng.random()),
                     target=Target(scope, ids))
        m = smap(s)
        assert m.dtype == np.float32 and m.shape == (2, 3, len(NAMES))
        np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-6)
        assert (m >= 0).all()


def test_interrupted_transition_starts_from_where_the_old_one_got_to() -> None:
    s = StyleState()
    s.transition("noir", over=2.0, easing="linear")
    s.advance_to(1.0)
    s.transition("toon", over=1.0, easing="linear")
    assert s.weights() == pytest.approx({"identity": 0.5, "noir": 0.5})
    s.advance_to(1.5)
    assert s.weights() == pytest.approx({"identity": 0.25, "noir": 0.25, "toon": 0.5})


def test_cleared_override_fades_out_and_disappears() -> None:
    s = StyleState()
    s.set("golden", object=14)
    s.clear(over=1.0, object=14)
    s.advance_to(0.5)
    assert 0 < smap(s)[1, 1, GOLDEN] < 1
    s.advance_to(1.0)
    assert smap(s)[1, 1, GOLDEN] == 0 and s.describe()["objects"] == {}


def test_engine_set_style_command_applies_like_a_transition() -> None:
    s = StyleState()
    s.apply(StyleCommand("golden", 1.0, 0.0, Target("material", (2,))))
    m = smap(s)
    assert m[0, 2, GOLDEN] == 1.0 and m[1, 0, GOLDEN] == 1.0 and m[0, 0, GOLDEN] == 0.0


def test_unknown_style_is_a_clear_error_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known styles: identity, photoreal"):
        StyleState().set("sepia")
    with pytest.raises(ValueError, match="strength"):
        StyleState().set("noir", strength=1.5)
    with pytest.raises(ValueError, match="easing"):
        StyleState().transition("noir", over=1, easing="bouncy")


def test_same_command_stream_gives_bit_identical_style_maps() -> None:
    def run() -> list[bytes]:
        s = StyleState()
        out = []
        for i in range(30):
            s.advance_to(i / 30)
            if i == 3:
                s.transition("noir", 0.9, 0.5, easing="ease_in_out")
            if i == 7:
                s.transition({"toon": 2, "golden": 1}, 0.7, 0.3, object=[10, 13])
            out.append(style_map_digest(smap(s)))
        return out

    assert run() == run()


def test_a_state_moved_onto_a_library_in_another_order_keeps_every_mix_by_name() -> None:
    """What a session moved to another worker sees (bridge.cluster.worker): the same styles at other positions, one
    style missing there and sent to a preset instead. Mid-tween, the global mix and a material override read the
    same by name as before the move, the missing style's weight on its stand-in."""
    from bridge.style.library import Style, StyleLibrary

    old = StyleLibrary([*DEFAULT_LIBRARY, Style("dusk", len(DEFAULT_LIBRARY), hue=20.0)])
    s = StyleState(old)
    s.advance_to(1.0)
    s.transition({"noir": 1.0, "dusk": 1.0}, 0.8, over=2.0, easing="linear")
    s.set("golden", 0.5, material=2)
    s.advance_to(2.0)
    before = (s.weights(), s.weights(material=2), s.weights(t=3.0))
    presets = list(DEFAULT_LIBRARY)
    shuffled = StyleLibrary([Style(st.name, i, **st.settings()) for i, st in
                             enumerate([presets[0], *reversed(presets[1:])])])
    moved = StyleState(shuffled)
    vars(moved).update({k: v for k, v in vars(s).items() if k != "library"})
    assert moved.reindex(old.names, {"dusk": "toon"}) == frozenset()
    after = (moved.weights(), moved.weights(material=2), moved.weights(t=3.0))
    for b, a in zip(before, after):
        want = {("toon" if n == "dusk" else n): w for n, w in b.items()}
        assert a.keys() == want.keys() and all(abs(a[n] - w) < 1e-9 for n, w in want.items())
    lost = StyleState(shuffled)
    vars(lost).update({k: v for k, v in vars(s).items() if k != "library"})
    assert lost.reindex(old.names) == frozenset({"dusk"})  # no stand-in: its share falls to identity
    assert abs(lost.weights()["identity"] - before[0]["identity"] - before[0]["dusk"]) < 1e-9
    assert abs(lost.weights()["noir"] - before[0]["noir"]) < 1e-9
