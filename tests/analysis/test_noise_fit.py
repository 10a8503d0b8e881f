"""The calibration's noise fitted to runs: on simulated runs of known noise the fit finds it,
and the predictive check tells a matching noise from a wrong one."""

import numpy as np
import pytest

from moe_core.analysis import calibration as cal
from moe_core.analysis import noise_fit
from moe_core.analysis.verdicts import arm_curves

ARMS = ["baseline@reference_lr", "no_lb@reference_lr", "aux_free_balance@reference_lr",
        "baseline", "no_lb", "slower_min_lr"]
TRUE = cal.Noise(seed_level_sd=0.012, wander_sd=0.008, wander_phi=0.9, drift_sd=0.06,
                 drift_phi=0.95, noise_sd=0.015)


@pytest.fixture(scope="module")
def simulated():
    truths = cal.study_like(ARMS)
    return arm_curves(cal.simulate_results(truths, 4, TRUE, np.random.default_rng(5)))


def test_the_pooled_fit_recovers_the_noise_the_runs_were_drawn_with(simulated):
    fits = [noise_fit.fit_arm(c) for c in simulated.values()]
    fitted = noise_fit.pooled(fits, record_every=TRUE.record_every)
    assert fitted.drift_sd == pytest.approx(TRUE.drift_sd, rel=0.2)
    assert fitted.noise_sd == pytest.approx(TRUE.noise_sd, rel=0.2)
    assert fitted.drift_phi == pytest.approx(TRUE.drift_phi, abs=0.03)
    assert fitted.wander_sd == pytest.approx(TRUE.wander_sd, rel=0.35)
    assert fitted.seed_level_sd == pytest.approx(TRUE.seed_level_sd, rel=0.5)
    assert fitted.wander_phi == pytest.approx(TRUE.wander_phi, abs=0.06)
    assert fitted.sequence_sd == pytest.approx(TRUE.sequence_sd, rel=0.2)
    assert fitted.record_every == TRUE.record_every


def test_the_predictive_check_flags_a_noise_five_times_too_small(simulated):
    real = simulated["baseline@reference_lr"]
    right = noise_fit.predictive_check(real, TRUE, draws=40)
    wrong = noise_fit.predictive_check(
        real, cal.Noise(seed_level_sd=0.002, wander_sd=0.0016, drift_sd=0.012, noise_sd=0.003),
        draws=40)
    assert right.inside.sum() >= len(right) - 1
    outside = set(wrong.loc[~wrong.inside, "statistic"])
    assert {"wander sd", "end loss, seed sd"} <= outside


def test_an_arm_with_two_seeds_is_a_clear_error(simulated):
    from dataclasses import replace

    from moe_core.errors import UserInputError

    two = replace(simulated["baseline"], loss=simulated["baseline"].loss[:2])
    with pytest.raises(UserInputError, match="3 or more"):
        noise_fit.fit_arm(two)


def test_a_noise_file_feeds_the_calibration_and_a_bad_one_is_named(tmp_path, simulated):
    import json
    from dataclasses import asdict

    good = tmp_path / "noise.json"
    good.write_text(json.dumps({"fitted_to": "runs/study", "noise": asdict(TRUE)}))
    assert cal.read_noise(good) == (TRUE, "runs/study")
    recorded_every_step = {"noise": {**asdict(TRUE), "record_every": 1}}
    good.write_text(json.dumps(recorded_every_step))
    assert cal.read_noise(good)[0].record_every == cal.Noise().record_every
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"noise": {"wander": 1}}))
    from moe_core.errors import UserInputError

    with pytest.raises(UserInputError, match=r"bad\.json.*noise_fit"):
        cal.read_noise(bad)
    assert cal.main(["--noise", str(tmp_path / "absent.json"), "--studies", "1"]) == 2


def test_a_size_the_other_sizes_already_produce_is_not_identifiable_and_set_to_zero(simulated):
    """Seed level asked to be smaller than what the wander alone gives simulated runs: no
    scaling reaches it, so it is 0 and named, not the value where the loop stopped."""
    real = simulated["baseline@reference_lr"]
    noise, unmatched = noise_fit._matched(real, TRUE, {"wander sd": 0.004,
                                                       "seed level sd": 1e-6}, draws=8)
    assert unmatched == ("seed_level_sd",) and noise.seed_level_sd == 0.0
    reachable, none = noise_fit._matched(real, TRUE, {"wander sd": 0.004,
                                                      "seed level sd": 0.02}, draws=8)
    assert none == () and reachable.seed_level_sd > TRUE.seed_level_sd
