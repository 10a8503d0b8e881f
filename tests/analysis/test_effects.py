"""Seed-level statistics on values whose answer is known: the leave-one-out rise, Welch over
seeds plus the (paired) val-set part, the correction, and what a test could detect."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from moe_core.analysis import effects as fx
from moe_core.analysis import inflection
from moe_core.analysis.inflection import ar1_curves

N_EVALS = 100
FRACTION = np.arange(1, N_EVALS + 1) / N_EVALS


def curves(rng, seeds=3, rise=0.0, sequences=None, sd=0.006, phi=0.9, arm="arm"):
    base = 4.0 + 2.0 * np.exp(-FRACTION / 0.12) + rise * np.clip((FRACTION - 0.65) / 0.35, 0, 1)
    loss = base + ar1_curves(N_EVALS, sd, phi, seeds, rng)
    per_sequence = None
    if sequences is not None:
        per_sequence = loss[:, :, None] + sequences[None, None, :] \
            + rng.normal(0, 0.02, (seeds, N_EVALS, sequences.size))
        loss = per_sequence.mean(2)
    return fx.ArmCurves(arm, np.arange(1, N_EVALS + 1) * 4, loss, tuple(range(seeds)),
                        tuple(f"{arm}/{i}" for i in range(seeds)), per_sequence,
                        val_sha="split" if sequences is not None else None)


def stat(per_seed, per_sequence=None, sha=None, arm="a"):
    return fx.ArmStatistic(arm, "x", np.asarray(per_seed, float),
                           None if per_sequence is None else np.asarray(per_sequence, float), sha)


def test_leave_one_out_rise_is_unbiased_on_flat_curves_where_the_own_lowest_window_is_not():
    rng = np.random.default_rng(0)
    loo, own = [], []
    for _ in range(200):
        c = curves(rng)
        loo += list(fx.rise_statistic(c).per_seed)
        means = inflection.window_means(c.loss, c.window)
        own += list(means[:, -1] - means.min(1))
    assert abs(np.mean(loo)) < 0.002 < np.mean(own)


def test_leave_one_out_rise_measures_each_seed_where_the_others_are_lowest():
    c = curves(np.random.default_rng(1), rise=0.1)
    rise = fx.rise_statistic(c)
    means = inflection.window_means(c.loss, c.window)
    for i, (first, _) in enumerate(rise.low_windows):
        others = np.delete(means, i, axis=0).mean(0)
        assert c.steps[int(np.argmin(others))] == first
    assert rise.mean == pytest.approx(0.1 * (1 - 0.05 / 0.35), abs=0.02)


def test_one_sample_adds_seed_and_val_variances_with_satterthwaite_df():
    per_seed, per_sequence = [0.1, 0.12, 0.08], np.linspace(-0.1, 0.3, 20)
    test = fx.one_sample(stat(per_seed, per_sequence))
    v_seed = np.var(per_seed, ddof=1) / 3
    v_val = np.var(per_sequence, ddof=1) / 20
    assert test.se == pytest.approx(math.sqrt(v_seed + v_val))
    assert test.df == pytest.approx((v_seed + v_val) ** 2 / (v_seed**2 / 2 + v_val**2 / 19))
    assert test.p_value == pytest.approx(stats.t.sf(0.1 / test.se, test.df))


def test_two_sample_without_sequences_is_welchs_t_test():
    a, b = [1.0, 1.2, 1.1, 1.4], [0.8, 0.9, 0.7]
    test = fx.two_sample(stat(a), stat(b))
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert test.p_value == pytest.approx(welch.pvalue)
    assert test.df == pytest.approx(welch.df)
    assert (test.ci_low, test.ci_high) == pytest.approx(tuple(welch.confidence_interval()))


def test_pairing_on_one_val_split_removes_the_shared_sequence_difficulty():
    rng = np.random.default_rng(2)
    difficulty = rng.normal(0, 0.5, 40)
    a = stat([4.0, 4.01], difficulty + 0.05 + rng.normal(0, 0.01, 40), "split", "a")
    b = stat([3.95, 3.96], difficulty + rng.normal(0, 0.01, 40), "split", "b")
    paired = fx.two_sample(a, b)
    unpaired = fx.two_sample(a, stat(b.per_seed, b.per_sequence, "other split", "b"))
    assert paired.paired and not unpaired.paired
    assert paired.se_val < 0.01 < unpaired.se_val
    assert "different val splits" in unpaired.note


def test_one_seed_without_sequences_or_zero_noise_has_no_p_value_and_says_why():
    lone = fx.one_sample(stat([0.1]))
    assert lone.p_value is None and "no noise estimate" in lone.note
    frozen = fx.one_sample(stat([0.0, 0.0, 0.0], np.zeros(10)))
    assert frozen.p_value is None and "zero" in frozen.note
    corrected = fx.correct([frozen, fx.one_sample(stat([0.1, 0.2, 0.15]))])
    assert not corrected[0].significant and corrected[0].p_adjusted is None


def test_correction_is_statsmodels_holm_sidak_over_the_family():
    tests = [fx.one_sample(stat(v)) for v in ([0.1, 0.2, 0.15], [0.0, 0.01, -0.01],
                                              [0.3, 0.31, 0.29])]
    corrected = fx.correct(tests, alpha=0.05)
    reject, adjusted, _, _ = multipletests([t.p_value for t in tests], 0.05, "holm-sidak")
    assert [t.p_adjusted for t in corrected] == pytest.approx(list(adjusted))
    assert [t.significant for t in corrected] == list(reject)


def test_detectable_difference_is_found_with_the_stated_power():
    rng = np.random.default_rng(3)
    se, df, alpha = 0.01, 4.0, 0.05
    mdd = fx.detectable_difference(se, df, alpha)
    # a true difference of mdd, estimated with SE se on df degrees of freedom
    estimates = mdd + se * rng.standard_t(df, 20000)
    found = np.mean(np.abs(estimates / se) > stats.t.ppf(1 - alpha / 2, df))
    assert found == pytest.approx(fx.POWER, abs=0.04)
