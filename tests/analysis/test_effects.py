"""Seed-level statistics on values whose answer is known: the leave-one-out rise, the run as
the unit (df from seeds, paired by seed where arms share seeds, else Welch) plus the
(paired) val-set part, placebos, the correction, printed p-values, and what a test could
detect."""

import math
from dataclasses import replace

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


def stat(per_seed, per_sequence=None, sha=None, arm="a", seeds=()):
    return fx.ArmStatistic(arm, "x", np.asarray(per_seed, float),
                           None if per_sequence is None else np.asarray(per_sequence, float), sha,
                           seeds=tuple(seeds))


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


def test_a_rise_from_a_fixed_step_measures_every_seed_from_that_window():
    c = curves(np.random.default_rng(2), rise=0.1, sequences=np.zeros(5))
    rise = fx.rise_from(c, 240)
    means = inflection.window_means(c.loss, c.window)
    start = int(np.flatnonzero(c.steps == 240)[0])
    np.testing.assert_allclose(rise.per_seed, means[:, -1] - means[:, start])
    assert rise.low_windows == ((240, 240 + 4 * (c.window - 1)),) * c.n_seeds
    assert rise.per_sequence.shape == (5,) and rise.seeds == c.seeds
    # no window of these evals starts there: off the grid, or too late for a whole window
    assert fx.rise_from(c, 242) is None
    assert fx.rise_from(c, int(c.steps[-c.window + 1])) is None
    # a window that overlaps the end window: partly the same evals, no change to measure
    assert fx.rise_from(c, int(c.steps[-2 * c.window + 1])) is None
    assert fx.rise_from(c, int(c.steps[-2 * c.window])) is not None


def test_a_fixed_step_compares_arms_of_unequal_noise_without_the_own_places_bias():
    # one true curve, the second arm 3x noisier: from its own leave-one-out places its
    # rise reads smaller (a noisier place strays further from the true low); from one
    # fixed step both read the same
    rng = np.random.default_rng(3)
    own, fixed = [], []
    for _ in range(300):
        quiet = curves(rng, seeds=4, rise=0.1, sd=0.01, phi=0.97)
        noisy = curves(rng, seeds=4, rise=0.1, sd=0.03, phi=0.97, arm="noisy")
        own.append(fx.rise_statistic(quiet).mean - fx.rise_statistic(noisy).mean)
        fixed.append(fx.rise_from(quiet, 264).mean - fx.rise_from(noisy, 264).mean)
    se = np.std(fixed) / math.sqrt(len(fixed))
    assert abs(np.mean(fixed)) < 2.5 * se
    assert np.mean(own) > 3 * np.std(own) / math.sqrt(len(own))


def test_one_sample_is_a_t_over_seeds_and_states_the_val_part_beside_it():
    per_seed, per_sequence = [0.1, 0.12, 0.08], np.linspace(-0.1, 0.3, 20)
    test = fx.one_sample(stat(per_seed, per_sequence))
    v_seed = np.var(per_seed, ddof=1) / 3
    v_val = np.var(per_sequence, ddof=1) / 20
    reference = stats.ttest_1samp(per_seed, 0, alternative="greater")
    assert (test.se, test.df, test.p_value) == pytest.approx((math.sqrt(v_seed), 2,
                                                              reference.pvalue))
    assert test.se_val == pytest.approx(math.sqrt(v_val)) and not test.val_in_test
    half = stats.t.ppf(0.975, 2) * math.sqrt(v_seed + v_val)  # also over new val text
    assert test.ci_text == pytest.approx((0.1 - half, 0.1 + half))
    # a claim about new text too: the val part joins the SE, never the df (Welch-
    # Satterthwaite over both parts would say ~16)
    text = fx.one_sample(stat(per_seed, per_sequence), new_text=True)
    assert text.val_in_test and text.se == pytest.approx(math.sqrt(v_seed + v_val))
    assert text.df == 2 and text.p_value == pytest.approx(stats.t.sf(0.1 / text.se, 2))
    assert (text.ci_low, text.ci_high) == pytest.approx(test.ci_text)


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
    assert paired.paired_sequences and not unpaired.paired_sequences
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


def correlated_seeds(rng, n=4, r=0.95, shift=0.0):
    """Per-seed values of two arms whose runs of one seed correlate by r (shared seed)."""
    shared = rng.normal(0, 0.01, n)
    own = rng.normal(0, 0.01 * math.sqrt((1 - r) / r), (2, n))
    return 0.06 + shared + own[0] + shift, 0.06 + shared + own[1]


def test_arms_that_share_their_seeds_are_compared_seed_by_seed_with_n_minus_1_df():
    rng = np.random.default_rng(4)
    a, b = correlated_seeds(rng, shift=0.004)
    paired = fx.two_sample(stat(a, seeds=(0, 1, 2, 3)), stat(b, arm="b", seeds=(0, 1, 2, 3)))
    welch = fx.two_sample(stat(a), stat(b, arm="b"))  # seeds unknown: not paired
    reference = stats.ttest_rel(a, b)
    assert paired.paired_seeds and not welch.paired_seeds
    assert paired.se == pytest.approx(np.std(a - b, ddof=1) / 2)
    assert (paired.df, paired.p_value) == pytest.approx((3, reference.pvalue))
    # the shared seed noise cancels: the paired SE is a fraction of Welch's
    assert paired.se < 0.5 * welch.se
    assert welch.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_pairing_matches_seeds_whatever_their_order_and_needs_the_same_seeds():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.1, 2.05, 3.2, 4.1])
    order = [2, 0, 3, 1]
    shuffled = stat(b[order], arm="b", seeds=order)
    test = fx.two_sample(stat(a, seeds=(0, 1, 2, 3)), shuffled)
    assert test.paired_seeds and test.estimate == pytest.approx(np.mean(a - b))
    assert test.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    for seeds in ((0, 1, 2, 5), (0, 1, 2, 2), (0, 1, 2, -1)):  # other seeds, twice, unknown
        assert fx.seed_pairing(stat(a, seeds=(0, 1, 2, 3)), stat(b, seeds=seeds)) is None
    missing = fx.two_sample(stat(a, seeds=(0, 1, 2, 3)), stat(b[:3], seeds=(0, 1, 2)))
    assert not missing.paired_seeds
    assert missing.p_value == pytest.approx(stats.ttest_ind(a, b[:3], equal_var=False).pvalue)


def test_val_sequences_never_add_degrees_of_freedom():
    """The issue's case: 4 seeds per arm, 112 val sequences each; df came out at 63."""
    rng = np.random.default_rng(5)
    difficulty = rng.normal(0, 0.5, 112)
    a_seeds, b_seeds = correlated_seeds(rng, r=0.5, shift=0.5)
    a = stat(a_seeds, difficulty + 0.5 + rng.normal(0, 0.05, 112), "split", "a", (0, 1, 2, 3))
    b = stat(b_seeds, difficulty + rng.normal(0, 0.05, 112), "split", "b", (0, 1, 2, 3))
    for new_text in (False, True):
        paired = fx.two_sample(a, b, new_text=new_text)
        assert paired.paired_seeds and paired.paired_sequences and paired.df == 3
        assert paired.se == pytest.approx(math.hypot(paired.se_seeds, paired.se_val)
                                          if new_text else paired.se_seeds)
        # an extreme contrast: the p-value is t on 3 df, printed as "< 0.001"
        assert paired.p_value > 2 * stats.t.sf(paired.estimate / paired.se, 63)
        assert fx.format_p(paired.p_value) == "< 0.001"
    other_seeds = stat(b_seeds, b.per_sequence, "split", "b", (4, 5, 6, 7))
    welch_df = stats.ttest_ind(a_seeds, b_seeds, equal_var=False).df
    for b_other in (other_seeds, replace(other_seeds, val_sha="other split")):
        welch = fx.two_sample(a, b_other)
        assert not welch.paired_seeds and welch.df == pytest.approx(welch_df) and welch.df <= 6
        # the seeds' t quantile is never below the one Satterthwaite over both parts gives
        full = fx.satterthwaite([(welch.se_seeds ** 2, welch_df), (welch.se_val ** 2, 111)])
        assert welch.df <= full[1]
    # different val splits: their sampling error is in the test, and said
    assert welch.val_in_test and welch.se == pytest.approx(full[0])
    assert "different val splits" in welch.note


def test_a_placebo_on_the_controls_seeds_changes_nothing_with_a_degenerate_interval():
    rng = np.random.default_rng(6)
    control = stat(rng.normal(0.06, 0.01, 4), rng.normal(0.06, 0.3, 112), "split", "control",
                   (0, 1, 2, 3))
    placebo = fx.ArmStatistic("placebo", "x", control.per_seed[::-1].copy(),
                              control.per_sequence.copy(), "split", seeds=(3, 2, 1, 0))
    for alternative in ("two-sided", "greater"):
        test = fx.two_sample(placebo, control, alternative=alternative)
        assert test.identical and test.estimate == 0 and (test.ci_low, test.ci_high) == (0, 0)
        assert test.p_value is None and "identical" in test.note
    [corrected] = fx.correct([test])
    assert not corrected.significant and corrected.p_adjusted is None
    # on other seeds the same values are two samples of noise, not a placebo
    other = fx.two_sample(replace(placebo, seeds=(4, 5, 6, 7)), control)
    assert not other.identical and other.ci_low < 0 < other.ci_high


def test_one_seed_on_a_side_has_no_test():
    test = fx.two_sample(stat([0.1], np.ones(10), "s"), stat([0.0, 0.01, 0.02], np.ones(10),
                                                              "s"))
    assert test.p_value is None and test.ci_low is None and "one seed" in test.note


def test_p_values_are_printed_to_two_digits_and_never_below_one_in_a_thousand():
    assert [fx.format_p(p) for p in (1.69e-21, 5.43e-05, 0.000999, 0.001, 0.02857, 0.05,
                                     0.1234, 0.9, 1.0, None)] == [
        "< 0.001", "< 0.001", "< 0.001", "0.001", "0.029", "0.05", "0.12", "0.9", "1", "n/a"]


def test_a_p_value_that_two_digits_would_round_across_alpha_keeps_a_third():
    # "0.05" is then always not significant (p >= alpha), as 0.0504 is
    assert fx.format_p(0.0496) == "0.0496" and fx.format_p(0.0504) == "0.05"
    assert fx.format_p(0.0549) == "0.055" and fx.format_p(0.0449) == "0.045"


def test_values_read_off_a_grid_keep_its_rounding_error_when_every_seed_shifts_alike():
    """Onsets read at evals 16 steps apart: a shift of exactly -80 in every seed is a shift
    known to within the grid, not a noiseless one; a spread larger than the grid's rounding
    error is used as it is."""
    arm, control = (fx.ArmStatistic(name, "onset", np.asarray(v, float), seeds=(0, 1, 2, 3))
                    for name, v in (("arm", [176] * 4), ("control", [256] * 4)))
    test = fx.two_sample(arm, control, resolution=16)
    assert test.estimate == -80 and not test.identical
    # every seed the same reading: possibly one shared rounding error, not 4 independent
    assert test.se == pytest.approx(math.sqrt(16 ** 2 / 6)) and test.df == 3
    assert test.p_value == pytest.approx(2 * stats.t.sf(80 / test.se, 3))
    assert fx.two_sample(arm, control).p_value is None  # without the grid: no noise estimate
    spread = replace(arm, per_seed=np.array([150.0, 176, 190, 210]))
    assert fx.two_sample(spread, control, resolution=16).se == pytest.approx(
        fx.two_sample(spread, control).se)
    # one seed a cell later: readings that differ are independent, and their own spread
    # (sd 8) is used, above the floor
    close = replace(arm, per_seed=np.array([176.0, 176, 176, 192]))
    assert fx.two_sample(close, control, resolution=16).se == pytest.approx(8 / 2)
    unpaired = replace(arm, seeds=())
    assert fx.two_sample(unpaired, control, resolution=16).se == pytest.approx(
        math.sqrt(2 * 16 ** 2 / 12 / 4))


def test_one_mean_read_off_a_grid_has_an_interval_as_wide_as_its_rounding_error():
    onsets = fx.ArmStatistic("arm", "onset", np.array([176.0] * 4))
    test = fx.one_sample(onsets, "two-sided", resolution=16)
    half = stats.t.ppf(0.975, 3) * math.sqrt(16 ** 2 / 12)  # one reading: the grid's error
    assert (test.ci_low, test.ci_high) == pytest.approx((176 - half, 176 + half))
    assert fx.one_sample(onsets, "two-sided").ci_low is None  # no noise estimate without it
