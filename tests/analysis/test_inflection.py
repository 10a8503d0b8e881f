"""One curve's rise: window means, the least favourable null of correlated wander, verdicts."""

import numpy as np
import pytest

from moe_core.analysis import inflection as fl
from moe_core.errors import UserInputError

STEPS = np.arange(4, 404, 4)  # 100 evals, like the cpu preset
FRACTION = STEPS / STEPS[-1]


def decay(fraction=FRACTION):
    return 4.0 + 2.0 * np.exp(-fraction / 0.12)


def wander(rng, n=100, sd=0.006, phi=0.8):
    return fl.ar1_curves(n, sd, phi, 1, rng)[0]


def ramp(start=0.65):
    return np.clip((FRACTION - start) / (1 - start), 0, None)


def test_window_rise_is_last_window_minus_lowest_window():
    values = np.array([5.0, 4.0, 3.0, 2.0, 2.0, 2.0, 3.0, 4.0, 4.0])
    assert fl.window_rise(values, 3) == pytest.approx(np.mean([3, 4, 4]) - 2.0)
    assert fl.window_rise(values[:6], 3) == 0  # still falling into its last window


def test_window_is_a_tenth_of_the_curve_at_least_three_at_most_half():
    assert [fl.window_size(n) for n in (2, 5, 30, 100, 500)] == [1, 2, 3, 10, 50]


def test_ar1_curves_have_the_asked_sd_and_lag_one_correlation():
    series = fl.ar1_curves(400, 0.01, 0.9, 200, np.random.default_rng(0))
    assert series.std() == pytest.approx(0.01, rel=0.1)
    lag1 = np.mean([np.corrcoef(s[1:], s[:-1])[0, 1] for s in series])
    assert lag1 == pytest.approx(0.9, abs=0.03)


def test_a_clear_rise_after_a_low_point_is_an_inflection_with_its_onset_there():
    loss = decay() + 0.1 * ramp() + wander(np.random.default_rng(1))
    found = fl.curve_rise(STEPS, loss)
    assert found.verdict == fl.INFLECTION and found.p_value < 0.01
    assert found.rise == pytest.approx(0.1 * (1 - 0.05 / 0.35), abs=0.02)
    assert 0.55 * 400 <= found.onset_step <= 0.75 * 400
    assert found.degradation == pytest.approx(loss[-1] - loss.min())


def test_a_curve_that_keeps_falling_does_not_inflect():
    found = fl.curve_rise(STEPS, decay() + wander(np.random.default_rng(2), sd=0.002))
    assert found.verdict in (fl.NO_INFLECTION, fl.WITHIN_NOISE)
    assert found.onset_step is None


@pytest.mark.slow
def test_flat_curves_with_correlated_wander_rarely_inflect_though_final_minus_best_grows():
    rng = np.random.default_rng(3)
    found = [fl.curve_rise(STEPS, decay() + wander(rng)) for _ in range(150)]
    false_alarms = np.mean([f.verdict == fl.INFLECTION for f in found])
    assert false_alarms <= 0.07
    # the reference's measure is biased: final minus best is positive on flat curves
    assert np.mean([f.degradation for f in found]) > 2 * np.mean([f.rise for f in found]) > 0


def test_the_val_set_noise_of_the_rise_can_veto_an_inflection():
    rng = np.random.default_rng(4)
    loss = decay() + 0.02 * ramp() + wander(rng, sd=0.001, phi=0.3)
    steady = rng.normal(0, 0.01, (100, 40)) + loss[:, None]
    noisy = steady + rng.normal(0, 3.0, (1, 40)) * ramp()[:, None]  # sequences disagree
    assert fl.curve_rise(STEPS, loss, steady).verdict == fl.INFLECTION
    vetoed = fl.curve_rise(STEPS, noisy.mean(1), noisy)
    assert vetoed.val_se > vetoed.rise / fl.VAL_NOISE_Z and vetoed.verdict == fl.WITHIN_NOISE


@pytest.mark.parametrize("steps, loss, message", [
    ([1], [2.0], "at least 2 evals"),
    ([2, 1], [2.0, 1.0], "strictly increasing"),
    ([1, 2, 3], [2.0, float("nan"), 1.0], r"val_loss\[1\] is nan"),
    ([1, 2, 3], [2.0, 1.0], "has 2 values but steps has 3"),
])
def test_unusable_curves_raise_a_user_error_naming_the_problem(steps, loss, message):
    with pytest.raises(UserInputError, match=message):
        fl.curve_rise(steps, loss)
