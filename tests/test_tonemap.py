"""Taking the engine's image back to linear light (bridge.tonemap): each stated tone curve and pre-exposure
round-trips, and the curves are the ones the training data's engine images use."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.tonemap import TONE_MAPPINGS, engine_linear, inverse_tone_map, tone_map

RNG = np.random.default_rng(15)
# Linear light over about 8 stops, as a lit scene has it.
LINEAR = (2.0 ** RNG.uniform(-6.0, 2.0, (32, 48, 3))).astype(np.float32)


def engine_image(linear: np.ndarray, exposure: float, curve: str) -> np.ndarray:
    """What an engine sends as hudless_color: the exposed image through its curve, in a float32 buffer."""
    return tone_map(linear * exposure, curve).astype(np.float32)


@pytest.mark.parametrize("curve", ["none", "reinhard", "aces", "agx"])
@pytest.mark.parametrize("exposure", [0.25, 1.0, 3.0])
def test_an_invertible_curve_and_exposure_give_back_the_linear_light(curve: str, exposure: float) -> None:
    shown = engine_image(LINEAR, exposure, curve)
    back = engine_linear(shown, exposure, curve)
    assert back.dtype == np.float32 and back.shape == LINEAR.shape
    # Where the curve did not saturate (or dip below 0 near black), the light comes back to float32 precision.
    usable = ((shown > 2e-3) & (shown < 0.995)).all(-1) if curve != "none" else np.ones(shown.shape[:2], bool)
    assert usable.mean() > 0.1
    rel = np.abs(back - LINEAR) / LINEAR
    assert float(rel[usable].max()) < 2e-3


def test_clamp_gives_back_light_below_white_and_white_above_it() -> None:
    shown = engine_image(LINEAR, 2.0, "clamp")
    back = engine_linear(shown, 2.0, "clamp")
    below = (LINEAR * 2.0 < 1.0).all(-1)
    np.testing.assert_allclose(back[below], LINEAR[below], rtol=1e-6)
    np.testing.assert_allclose(back[~below].max(-1), 0.5, rtol=1e-6)  # saturated: 1 / exposure


def test_an_unnamed_or_unstated_curve_is_taken_as_display_values() -> None:
    shown = RNG.random((8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(engine_linear(shown, None, "other"), shown)
    np.testing.assert_array_equal(engine_linear(shown, None, None), shown)
    np.testing.assert_allclose(engine_linear(shown, 2.0, None), shown / 2.0, rtol=1e-7)


def test_reinhard_white_is_a_finite_light() -> None:
    back = engine_linear(np.ones((1, 1, 3), np.float32), 1.0, "reinhard")
    assert np.isfinite(back).all() and float(back.min()) > 100.0


def test_black_stays_black_through_every_curve() -> None:
    # ACES's fit shows all light below about 0.003 as 0, so its black comes back as that much light at most.
    black = np.zeros((2, 2, 3), np.float32)
    for curve in TONE_MAPPINGS:
        assert float(np.abs(inverse_tone_map(black, curve)).max()) < 4e-3, curve


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_a_non_positive_or_non_finite_exposure_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="exposure"):
        engine_linear(np.zeros((1, 1, 3), np.float32), bad, "none")


def test_an_unknown_curve_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="filmic"):
        engine_linear(np.zeros((1, 1, 3), np.float32), 1.0, "filmic")
