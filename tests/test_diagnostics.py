"""Specification of moe_core.diagnostics on constructed inputs whose answers are known."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from moe_core import diagnostics as dx
from moe_core.errors import UserInputError

STEPS = np.arange(10, 1010, 10)  # 100 evals, every 10 steps, like the reference runs


def v_curve(rng, sigma, min_step=700, rise_per_step=1e-4, steps=STEPS):
    """Exponential decay that ends at min_step, then a steady linear rise, plus noise."""
    decay = 3.0 + 2.0 * np.exp(-np.minimum(steps, min_step) / 250)
    rise = rise_per_step * np.clip(steps - min_step, 0, None)
    return decay + rise + sigma * rng.standard_normal(steps.size)


# --- inflection detection ------------------------------------------------------------


def test_clear_rise_after_a_minimum_is_an_inflection_found_at_the_minimum():
    loss = v_curve(np.random.default_rng(0), sigma=0.0005)  # rise 0.03 = ~40 noise units

    found = dx.detect_inflection(STEPS, loss)

    assert found.verdict == dx.INFLECTION
    assert abs(found.best_step - 700) <= 10  # within one eval
    assert found.onset_step is not None and abs(found.onset_step - 700) <= 100
    assert found.degradation == pytest.approx(loss[-1] - loss.min())
    assert found.degradation_pct == pytest.approx(100 * found.degradation / found.best_loss)
    assert found.degradation_z == pytest.approx(found.degradation / found.noise)
    assert found.degradation_z > 10


def test_noise_estimate_recovers_the_added_noise():
    sigma = 0.004
    loss = v_curve(np.random.default_rng(1), sigma=sigma)

    per_eval = dx.eval_noise(loss)

    assert 0.7 * sigma < per_eval < 1.3 * sigma
    assert dx.detect_inflection(STEPS, loss).noise == pytest.approx(per_eval * math.sqrt(2))


def test_modest_steady_rise_of_several_noise_units_is_usually_found():
    rng = np.random.default_rng(2)
    sigma = 0.002  # rise of 0.03 over 300 steps = ~10 noise units of the difference
    verdicts = [dx.detect_inflection(STEPS, v_curve(rng, sigma)).verdict for _ in range(20)]

    assert verdicts.count(dx.INFLECTION) >= 18


def test_monotone_decrease_is_no_inflection_without_onset():
    rng = np.random.default_rng(3)
    loss = 3.0 + 2.0 * np.exp(-STEPS / 400) + 0.002 * rng.standard_normal(STEPS.size)

    found = dx.detect_inflection(STEPS, loss)

    assert found.verdict == dx.NO_INFLECTION
    assert found.onset_step is None


def test_noiseless_curve_whose_last_eval_is_best_has_zero_degradation():
    found = dx.detect_inflection(STEPS, 3.0 + np.exp(-STEPS / 300))

    assert found.degradation == 0
    assert found.best_step == found.final_step == 1000
    assert (found.verdict, found.onset_step) == (dx.NO_INFLECTION, None)


def test_pure_noise_around_a_plateau_is_within_noise():
    loss = 5.0 + 0.01 * np.random.default_rng(4).standard_normal(STEPS.size)

    found = dx.detect_inflection(STEPS, loss)

    assert found.degradation > 0  # the lowest of 100 noisy evals is below the last one...
    assert found.verdict == dx.WITHIN_NOISE  # ...by selection, not by a rise


def test_pure_noise_is_rarely_called_an_inflection():
    rng = np.random.default_rng(5)
    verdicts = [
        dx.detect_inflection(STEPS, 5.0 + 0.01 * rng.standard_normal(STEPS.size)).verdict
        for _ in range(60)
    ]

    assert verdicts.count(dx.INFLECTION) <= 3  # designed for ~1%


def test_given_standard_errors_set_the_noise_scale():
    loss = v_curve(np.random.default_rng(6), sigma=0.0005)
    small, large = np.full(STEPS.size, 0.001), np.full(STEPS.size, 0.05)

    with_small = dx.detect_inflection(STEPS, loss, small)
    with_large = dx.detect_inflection(STEPS, loss, large)

    assert with_small.noise == pytest.approx(math.hypot(0.001, 0.001))
    assert with_small.noise_source == "val_loss_se"
    assert with_small.verdict == dx.INFLECTION
    assert with_large.verdict == dx.WITHIN_NOISE  # the same 0.03 rise is < 1 noise unit


def test_early_stopped_curve_ending_patience_evals_after_its_best():
    rng = np.random.default_rng(7)
    patience = 10
    steps = np.arange(10, 510 + 10 * patience, 10)
    best_step = 500
    loss = 3.0 + 2.0 * np.exp(-np.minimum(steps, best_step) / 150)
    # Early stopping ends the run because no later eval beats the best.
    tail = steps > best_step
    loss[tail] += 0.001 + 0.002 * np.abs(rng.standard_normal(tail.sum()))

    found = dx.detect_inflection(steps, loss)

    assert found.best_step == best_step
    assert found.final_step == best_step + 10 * patience
    assert found.verdict == dx.WITHIN_NOISE  # it stopped improving but did not climb
    assert found.onset_step is not None and abs(found.onset_step - best_step) <= 50


def test_short_five_eval_curve_with_known_noise_is_judged():
    steps, loss = [10, 20, 30, 40, 50], [3.0, 2.8, 2.7, 2.75, 2.8]

    found = dx.detect_inflection(steps, loss, [0.005] * 5)

    assert found.best_step == 30
    assert found.verdict == dx.INFLECTION


def test_short_five_eval_curve_cannot_claim_an_inflection_from_its_own_noise():
    # Three second differences estimate the noise too poorly to call a 2-eval rise real.
    found = dx.detect_inflection([10, 20, 30, 40, 50], [3.0, 2.8, 2.7, 2.75, 2.8])

    assert found.verdict == dx.WITHIN_NOISE
    monotone = dx.detect_inflection([10, 20, 30, 40, 50], [3.0, 2.8, 2.7, 2.65, 2.62])
    assert monotone.verdict == dx.NO_INFLECTION


def test_two_eval_curve_does_not_crash_and_claims_nothing():
    found = dx.detect_inflection([10, 20], [3.0, 3.1])

    assert found.degradation == pytest.approx(0.1)
    assert found.verdict == dx.WITHIN_NOISE


def test_inflection_to_dict_holds_every_field():
    found = dx.detect_inflection(STEPS, v_curve(np.random.default_rng(8), 0.001))

    record = found.to_dict()

    assert record["verdict"] == found.verdict
    assert {"best_step", "onset_step", "degradation_z", "noise"} <= set(record)


@pytest.mark.parametrize(
    "steps, loss, message",
    [
        ([10, 20, 30], [3.0, 2.9], "has 2 values"),
        ([10, 20, 30], [3.0, float("nan"), 2.9], "val_loss[1]"),
        ([10, 30, 20], [3.0, 2.9, 2.8], "increasing"),
        ([10], [3.0], "at least 2"),
    ],
)
def test_unusable_curves_raise_a_user_error_naming_the_problem(steps, loss, message):
    with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dx.detect_inflection(steps, loss)


# --- seed statistics -----------------------------------------------------------------


def test_seed_stats_gives_mean_std_and_t_interval():
    result = dx.seed_stats([1.0, 2.0, 3.0, 4.0])

    assert (result.n, result.mean) == (4, 2.5)
    assert result.std == pytest.approx(math.sqrt(5 / 3))
    half = 3.182446 * math.sqrt(5 / 3) / 2  # t(0.975, df=3) from a printed table
    assert result.ci_low == pytest.approx(2.5 - half, rel=1e-5)
    assert result.ci_high == pytest.approx(2.5 + half, rel=1e-5)


def test_seed_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(9)
    covered = 0
    for _ in range(400):
        s = dx.seed_stats(rng.normal(5.0, 0.02, size=5))
        covered += s.ci_low <= 5.0 <= s.ci_high

    assert 0.91 <= covered / 400 <= 0.99


def test_seed_stats_with_one_seed_has_a_mean_but_no_spread():
    result = dx.seed_stats([5.16, None, float("nan")])

    assert (result.n, result.mean, result.std, result.ci_low) == (1, 5.16, None, None)
    assert dx.seed_stats([]).to_dict()["n"] == 0


def test_seed_summary_has_one_row_per_experiment_and_metric():
    runs = pd.DataFrame({
        "experiment": ["baseline"] * 3 + ["no_lb"],
        "final_loss": [5.16, 5.17, 5.15, 5.14],
        "degradation": [0.02, 0.03, 0.01, 0.015],
    })

    table = dx.seed_summary(runs, metrics=("final_loss", "degradation"))

    assert len(table) == 4
    row = table[(table.experiment == "baseline") & (table.metric == "final_loss")].iloc[0]
    assert (row.n, row["mean"]) == (3, pytest.approx(5.16))
    lone = table[(table.experiment == "no_lb") & (table.metric == "degradation")].iloc[0]
    assert lone.n == 1 and pd.isna(lone["std"])
    with pytest.raises(UserInputError, match="best_loss"):
        dx.seed_summary(runs, metrics=("best_loss",))


# --- effects against the baseline ----------------------------------------------------


def test_large_true_improvement_over_8_seeds_is_better_with_the_right_sign():
    rng = np.random.default_rng(10)
    baseline = rng.normal(5.16, 0.01, size=8)
    experiment = rng.normal(5.11, 0.01, size=8)

    effect = dx.effect_vs_baseline(experiment, baseline, metric="final_loss")

    assert effect.verdict == dx.BETTER
    assert effect.difference == pytest.approx(experiment.mean() - baseline.mean())
    assert effect.ci_low < -0.05 < effect.ci_high < 0
    assert effect.p_value < 0.001
    assert effect.method == dx.EFFECT_METHOD
    worse = dx.effect_vs_baseline(baseline + 0.1, baseline, metric="final_loss")
    assert worse.verdict == dx.WORSE and worse.difference > 0


def test_effect_interval_is_welchs_with_satterthwaite_degrees_of_freedom():
    a, b = np.array([1.0, 1.2, 0.9, 1.4, 1.1]), np.array([0.8, 0.7, 0.95])
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))

    effect = dx.effect_vs_baseline(a, b)

    from scipy.stats import t

    half = t.ppf(0.975, df) * math.sqrt(va + vb)
    assert effect.df == pytest.approx(df)
    assert effect.ci_low == pytest.approx(a.mean() - b.mean() - half)
    assert effect.ci_high == pytest.approx(a.mean() - b.mean() + half)


def test_identical_distributions_are_indistinguishable():
    rng = np.random.default_rng(11)

    effect = dx.effect_vs_baseline(rng.normal(5.16, 0.01, 8), rng.normal(5.16, 0.01, 8))

    assert effect.verdict == dx.INDISTINGUISHABLE
    assert effect.ci_low < 0 < effect.ci_high
    assert effect.p_value > 0.05


def test_higher_is_better_metrics_flip_the_verdict():
    effect = dx.effect_vs_baseline([0.26, 0.27, 0.265], [0.25, 0.251, 0.249],
                                   metric="val_accuracy", lower_is_better=False)

    assert effect.verdict == dx.BETTER


def test_one_seed_is_insufficient_but_reports_the_noise_explained_difference():
    effect = dx.effect_vs_baseline([5.1478], [5.1649], metric="final_loss",
                                   experiment_se=0.004, baseline_se=0.003)

    assert effect.verdict == dx.INSUFFICIENT_SEEDS
    assert effect.difference == pytest.approx(5.1478 - 5.1649)
    assert effect.noise_explained == pytest.approx(1.96 * 0.005, rel=1e-3)
    assert effect.ci_low is None and effect.p_value is None
    assert "beyond" in effect.note  # |-0.0171| > 0.0098


def test_one_seed_without_standard_errors_says_so():
    effect = dx.effect_vs_baseline([5.1478], [5.16, 5.17, 5.15])

    assert effect.verdict == dx.INSUFFICIENT_SEEDS
    assert effect.noise_explained is None
    assert "standard error" in effect.note


def test_effects_table_compares_every_experiment_with_the_baseline():
    rng = np.random.default_rng(12)
    runs = pd.DataFrame({
        "experiment": ["baseline"] * 6 + ["constant_lr"] * 6 + ["no_lb"],
        "final_loss": np.r_[rng.normal(5.16, 0.005, 6), rng.normal(5.20, 0.005, 6), 5.15],
        "final_loss_se": 0.004,
    })

    table = dx.effects_vs_baseline(runs, metrics=("final_loss",),
                                   se_columns={"final_loss": "final_loss_se"})

    verdicts = dict(zip(table.experiment, table.verdict, strict=True))
    assert verdicts == {"constant_lr": dx.WORSE, "no_lb": dx.INSUFFICIENT_SEEDS}
    assert table.set_index("experiment").loc["no_lb", "noise_explained"] > 0
    with pytest.raises(UserInputError, match="baseline"):
        dx.effects_vs_baseline(runs[runs.experiment != "baseline"], metrics=("final_loss",))


# --- hypothesis verdicts -------------------------------------------------------------


def test_overfitting_is_supported_when_fresh_data_removes_the_inflection_and_gap_grows():
    evidence = dx.OverfittingEvidence(gap_growth=0.05, gap_noise=0.005, epochs_at_onset=9.0,
                                      fresh_data=dx.BETTER,
                                      fresh_data_inflection=dx.NO_INFLECTION)

    verdict, reasons = dx.overfitting_verdict(evidence)

    assert verdict == dx.SUPPORTED
    assert any("0.0500" in r for r in reasons)


def test_overfitting_is_not_supported_when_the_inflection_persists_on_fresh_data():
    evidence = dx.OverfittingEvidence(gap_growth=0.05, gap_noise=0.005,
                                      fresh_data=dx.INDISTINGUISHABLE,
                                      fresh_data_inflection=dx.INFLECTION)

    assert dx.overfitting_verdict(evidence)[0] == dx.NOT_SUPPORTED


def test_overfitting_is_not_supported_when_the_gap_does_not_grow_or_onset_precedes_repeats():
    flat_gap = dx.OverfittingEvidence(gap_growth=0.004, gap_noise=0.005, fresh_data=dx.BETTER)
    too_early = dx.OverfittingEvidence(epochs_at_onset=0.6)

    assert dx.overfitting_verdict(flat_gap)[0] == dx.NOT_SUPPORTED
    verdict, reasons = dx.overfitting_verdict(too_early)
    assert verdict == dx.NOT_SUPPORTED and any("0.6 epochs" in r for r in reasons)


def test_overfitting_without_the_fresh_data_control_is_inconclusive():
    evidence = dx.OverfittingEvidence(gap_growth=0.05, gap_noise=0.005,
                                      higher_dropout=dx.BETTER, early_stopping=dx.BETTER)

    assert dx.overfitting_verdict(evidence)[0] == dx.INCONCLUSIVE
    assert dx.overfitting_verdict(dx.OverfittingEvidence())[0] == dx.INCONCLUSIVE


def test_lr_schedule_verdicts_follow_the_schedule_experiments():
    supported = dx.LRScheduleEvidence(lr_at_onset_fraction=0.905, constant_lr=dx.WORSE,
                                      slower_min_lr=dx.WORSE)
    refuted = dx.LRScheduleEvidence(constant_lr=dx.BETTER, linear_decay=dx.INDISTINGUISHABLE)
    unclear = dx.LRScheduleEvidence(constant_lr=dx.INDISTINGUISHABLE,
                                    slower_min_lr=dx.INSUFFICIENT_SEEDS)

    verdict, reasons = dx.lr_schedule_verdict(supported)
    assert verdict == dx.SUPPORTED and any("90%" in r for r in reasons)
    assert dx.lr_schedule_verdict(refuted)[0] == dx.NOT_SUPPORTED
    assert dx.lr_schedule_verdict(unclear)[0] == dx.INCONCLUSIVE
    assert len(dx.lr_schedule_verdict(unclear)[1]) == 2  # one line per measured experiment
    horizon_only = dx.LRScheduleEvidence(reference_lr_horizon=dx.WORSE, constant_lr=dx.WORSE)
    verdict, reasons = dx.lr_schedule_verdict(horizon_only)
    assert verdict == dx.SUPPORTED and any("reference_lr_horizon" in r for r in reasons)


def test_load_balancing_verdicts_follow_the_balancing_experiments():
    supported = dx.LoadBalancingEvidence(aux_loss_fraction=0.012, lower_lb_weight=dx.BETTER,
                                         no_lb=dx.BETTER, aux_free_balance=dx.BETTER)
    refuted = dx.LoadBalancingEvidence(no_lb=dx.WORSE, router_z_loss=dx.INDISTINGUISHABLE)
    mixed = dx.LoadBalancingEvidence(no_lb=dx.WORSE, lower_lb_weight=dx.BETTER)

    verdict, reasons = dx.load_balancing_verdict(supported)
    assert verdict == dx.SUPPORTED and any("1.20%" in r for r in reasons)
    assert dx.load_balancing_verdict(refuted)[0] == dx.NOT_SUPPORTED
    assert dx.load_balancing_verdict(mixed)[0] == dx.INCONCLUSIVE
    assert dx.load_balancing_verdict(dx.LoadBalancingEvidence())[0] == dx.INCONCLUSIVE


def test_conclusion_is_written_from_the_verdicts_it_is_given():
    verdicts = {
        "overfitting": (dx.NOT_SUPPORTED, ["the inflection persists without repeated data"]),
        "LR schedule": (dx.SUPPORTED, ["constant_lr: degradation worse than baseline"]),
        "load balancing": (dx.INCONCLUSIVE, ["no_lb: insufficient seeds"]),
    }

    text = dx.conclusion(verdicts)

    assert "supports LR schedule" in text
    assert "does not support overfitting" in text
    assert "persists without repeated data" in text
    swapped = {**verdicts, "overfitting": (dx.SUPPORTED, ["x"]),
               "LR schedule": (dx.NOT_SUPPORTED, ["y"])}
    assert "supports overfitting" in dx.conclusion(swapped)
    nothing = {name: (dx.INCONCLUSIVE, []) for name in verdicts}
    assert "None of the explanations is supported" in dx.conclusion(nothing)


# --- routing statistics --------------------------------------------------------------


def test_perfectly_balanced_routing_has_zero_violation_and_full_entropy():
    load = np.full(8, 100.0)

    assert dx.max_violation(load) == 0.0
    nats, fraction = dx.routing_entropy(load)
    assert nats == pytest.approx(math.log(8)) and fraction == pytest.approx(1.0)
    assert dx.expert_warnings(load) == []


def test_all_tokens_to_one_expert_is_violation_e_minus_1_with_dead_experts():
    load = torch.tensor([0, 0, 0, 800, 0, 0, 0, 0])

    assert dx.max_violation(load) == pytest.approx(7.0)
    assert dx.routing_entropy(load)[1] == pytest.approx(0.0)
    warnings = dx.expert_warnings(load)
    assert len(warnings) == 7
    assert all("dead" in w for w in warnings)
    assert not any("expert 3" in w for w in warnings)


def test_violation_and_warnings_are_per_layer_for_layered_loads():
    loads = np.array([[25.0, 25, 25, 25], [97, 1, 1, 1]])  # 1% < 1/(4*4) = 6.25%

    assert dx.max_violation(loads) == pytest.approx([0.0, 97 / 25 - 1])
    warnings = dx.expert_warnings(loads)
    assert len(warnings) == 3
    assert all(w.startswith("layer 1 expert") and "collapsed" in w for w in warnings)


def test_coselection_counts_match_a_hand_count():
    chosen = torch.tensor([[0, 1], [0, 2], [1, 2], [0, 1]])  # 4 tokens, top-2 of 3 experts

    matrix = dx.coselection_matrix(chosen, num_experts=3)

    by_hand = np.array([[3, 2, 1],
                        [2, 3, 1],
                        [1, 1, 2]]) / 4
    np.testing.assert_allclose(matrix, by_hand)


def test_coselection_accepts_batch_by_sequence_indices_and_is_consistent():
    rng = np.random.default_rng(13)
    chosen = np.stack([rng.permutation(8)[:2] for _ in range(2 * 16)]).reshape(2, 16, 2)

    matrix = dx.coselection_matrix(chosen, num_experts=8)

    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(matrix.sum(axis=1), 2 * np.diag(matrix))  # k partners each
    assert np.trace(matrix) == pytest.approx(2.0)  # every token picks 2 experts
    with pytest.raises(UserInputError, match="outside"):
        dx.coselection_matrix(chosen, num_experts=4)


def test_no_hypothesis_is_supported_when_the_baseline_never_inflects():
    supported = dx.overfitting_verdict(dx.OverfittingEvidence(
        gap_growth=0.3, gap_noise=0.01, fresh_data=dx.BETTER,
        fresh_data_inflection=dx.NO_INFLECTION))
    assert supported[0] == dx.SUPPORTED
    gated = dx.require_inflection({"overfitting": supported},
                                  [dx.NO_INFLECTION, dx.WITHIN_NOISE])
    assert gated["overfitting"][0] == dx.INCONCLUSIVE
    assert "no baseline run shows an inflection" in dx.conclusion(gated)
    kept = dx.require_inflection({"overfitting": supported}, [dx.INFLECTION, dx.NO_INFLECTION])
    assert kept["overfitting"][0] == dx.SUPPORTED
    # the reference's own schedule not turning either keeps the gate shut, and says so
    shut = dx.require_inflection({"overfitting": supported}, [dx.WITHIN_NOISE],
                                 [dx.NO_INFLECTION, dx.WITHIN_NOISE])
    assert shut["overfitting"][0] == dx.INCONCLUSIVE
    assert "neither does the reference's own schedule" in shut["overfitting"][1][0]


def test_a_rise_only_under_the_reference_schedule_is_still_a_rise_to_explain():
    supported = dx.lr_schedule_verdict(dx.LRScheduleEvidence(
        constant_lr=dx.WORSE, reference_lr_horizon=dx.WORSE))
    assert supported[0] == dx.SUPPORTED
    gated = dx.require_inflection({"the LR schedule": supported},
                                  [dx.WITHIN_NOISE, dx.NO_INFLECTION],
                                  [dx.INFLECTION, dx.INFLECTION])
    verdict, reasons = gated["the LR schedule"]
    assert verdict == dx.SUPPORTED
    assert reasons[0].startswith("the rise appears with the reference's own LR schedule "
                                 "(reference_lr_horizon: 2 of 2 run(s) inflect)")
    assert dx.conclusion(gated).startswith("The evidence supports the LR schedule")


def test_a_rise_measured_on_one_val_split_is_judged_by_its_paired_change_se():
    steps = np.arange(10, 410, 10)
    loss = np.r_[np.linspace(5.0, 4.0, 24), np.linspace(4.0, 4.14, 16)]
    loss = loss + 0.003 * np.sin(np.arange(40))
    population_se = np.full(40, 0.09)  # each loss as an estimate for new text
    unpaired = dx.detect_inflection(steps, loss, population_se)
    assert unpaired.verdict == dx.WITHIN_NOISE and unpaired.noise_source == "val_loss_se"
    change_se = np.r_[np.nan, np.full(39, 0.02)]  # final minus best on the same sequences
    paired = dx.detect_inflection(steps, loss, population_se, change_se)
    assert paired.verdict == dx.INFLECTION
    assert paired.noise_source == "val_loss_change_se" and paired.noise == 0.02
    assert paired.degradation_z == pytest.approx(paired.degradation / 0.02)
    # no paired value at the end (a curve from elsewhere): the given SE decides as before
    missing = dx.detect_inflection(steps, loss, population_se, np.full(40, np.nan))
    assert missing.verdict == dx.WITHIN_NOISE


def test_tightly_agreeing_seeds_do_not_make_a_difference_inside_val_set_noise_an_effect():
    # two seeds each, nearly identical: Welch's interval excludes zero
    experiment, baseline = [0.0014, 0.0015], [0.0052, 0.0053]
    without_se = dx.effect_vs_baseline(experiment, baseline, metric="degradation")
    assert without_se.verdict == dx.BETTER
    with_se = dx.effect_vs_baseline(experiment, baseline, metric="degradation",
                                    experiment_se=0.0035, baseline_se=0.0035)
    assert with_se.ci_high < 0  # the seeds alone would call it better
    assert with_se.verdict == dx.INDISTINGUISHABLE
    assert "val-set noise alone explains up to 0.0097" in with_se.note
    large = dx.effect_vs_baseline([0.20, 0.23], baseline, metric="degradation",
                                  experiment_se=0.0035, baseline_se=0.0035)
    assert large.verdict == dx.WORSE  # beyond val-set noise: the seeds decide
    assert large.note == ""
