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


def test_each_arms_own_noise_is_found_and_averages_to_the_pooled():
    """Two arms drawn with wander 3x apart: each arm's own Noise keeps that ratio (within
    what 6 seeds show), the split's sizes are the pooled noise's, and the seed level and
    wander average (in variance) to the pooled sizes they were scaled with."""
    quiet, loud = "baseline@reference_lr", "no_lb@reference_lr"
    base = cal.replace(TRUE, wander_sd=0.006)
    results = cal.simulate_results({quiet: cal.Truth(rise=0.1), loud: cal.Truth(rise=0.1)}, 6,
                                   base, np.random.default_rng(8),
                                   arm_noise={loud: cal.replace(base, wander_sd=0.018)})
    fits = [noise_fit.fit_arm(c) for c in arm_curves(results).values()]
    every = TRUE.record_every
    pooled = cal.replace(noise_fit.pooled(fits, every), seed_level_sd=0.003, wander_sd=0.01,
                         rise_spread=1.1)
    own = noise_fit.arm_noises(fits, pooled)
    assert 2.0 < own[loud].wander_sd / own[quiet].wander_sd < 4.5
    for size in ("wander_sd", "seed_level_sd"):
        mean = np.sqrt(np.mean([getattr(n, size) ** 2 for n in own.values()]))
        assert mean == pytest.approx(getattr(pooled, size))
    assert {n.rise_spread for n in own.values()} == {1.1}
    assert {n.sequence_sd for n in own.values()} == {pooled.sequence_sd}
    assert own[loud].drift_sd != own[quiet].drift_sd  # the run-level sizes are the arm's


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
    assert cal.read_noise(good) == (TRUE, "runs/study", {})
    noisy = cal.replace(TRUE, wander_sd=0.02)
    good.write_text(json.dumps({"noise": asdict(TRUE), "arm_noise": {
        "no_lb": {**asdict(noisy), "record_every": 1}}}))
    assert cal.read_noise(good)[2] == {"no_lb": noisy}
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


def test_each_arms_own_noise_is_checked_against_that_arms_runs(simulated, tmp_path, capsys):
    """arm_checks simulates each arm with its own noise: an arm drawn with the noise it is
    checked with lies inside its ranges; one checked with a fifth of its wander does not.
    A noise file without per-arm noise is a clear error naming the file."""
    import json
    from dataclasses import asdict

    arms = {"baseline@reference_lr": TRUE,
            "no_lb@reference_lr": cal.replace(TRUE, wander_sd=TRUE.wander_sd / 5)}
    check = noise_fit.arm_checks({**simulated, "elsewhere": simulated["baseline"]}, arms,
                                 draws=40)
    assert set(check.arm) == set(arms)
    right, wrong = (check.loc[check.arm == arm] for arm in arms)
    assert right.inside.sum() >= len(right) - 1
    assert not wrong.set_index("statistic").loc["wander sd", "inside"]
    plain = tmp_path / "pooled_only.json"
    plain.write_text(json.dumps({"noise": asdict(TRUE)}))
    assert noise_fit.main(["runs", "--check-arms", str(plain)]) == 2
    assert "pooled_only.json: no per-arm noise" in capsys.readouterr().err


@pytest.mark.slow
def test_the_fit_carries_the_runs_same_seed_correlation_into_the_simulator():
    """Runs of one seed drawn sharing 0.6 of their level and wander across arms: the fit's
    seed_correlation finds most of it, and about none where they share nothing (4 seeds:
    loose bounds); a negative mean correlation is read as none."""
    arms = ["baseline@reference_lr", "no_lb@reference_lr", "aux_free_balance@reference_lr",
            "higher_dropout@reference_lr"]
    found = {}
    for share in (0.0, 0.6):
        results = cal.simulate_results(cal.study_like(arms), 6,
                                       cal.replace(TRUE, seed_correlation=share),
                                       np.random.default_rng(11))
        found[share] = noise_fit.fit_study(results)[1].seed_correlation
    assert found[0.6] > 0.35 and found[0.0] < 0.25 and found[0.6] > found[0.0] + 0.2
    curves = arm_curves(cal.simulate_results(cal.study_like(arms[:1]), 4, TRUE,
                                             np.random.default_rng(0)))
    from dataclasses import replace

    a = replace(curves[arms[0]], per_sequence=None)
    mirrored = replace(a, arm="mirrored", loss=2 * a.loss.mean(0) - a.loss)  # deviations negated
    opposed = {a.arm: a, "mirrored": mirrored}
    assert noise_fit.same_seed_correlation(opposed) == pytest.approx(-1.0)
    assert noise_fit.fitted_seed_correlation(opposed) == 0.0
