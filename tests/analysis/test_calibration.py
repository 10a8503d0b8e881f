"""The calibration's simulated runs record what a real run of the cpu preset records."""

import numpy as np

from moe_core.analysis import calibration as cal
from moe_core.config.run_config import build_config


def test_simulated_runs_record_the_cpu_presets_eval_steps():
    """(The simulator draws every arm on 100 evals over its own length: an arm run longer
    than the preset's 400 steps records fewer evals than its real runs, not more.)"""
    results = cal.simulate_results({"baseline@reference_lr": cal.Truth(rise=0.1),
                                    "small_split": cal.Truth()}, 2, cal.Noise(),
                                   np.random.default_rng(0))
    for arm in ("baseline@reference_lr", "small_split"):
        experiment, condition = arm.partition("@")[::2]
        cfg = build_config(experiment, "cpu", condition=condition or None)
        recorded = results.evals.loc[results.evals.arm == arm].groupby("seed")["step"]
        expected = list(range(cfg.eval_every, cfg.max_steps + 1, cfg.eval_every))
        for _, steps in recorded:
            assert steps.tolist() == expected
    run = results.runs.run_id.iloc[0]
    assert results.val_sequences[run].shape == (len(expected), cal.Noise().n_sequences)


def test_a_sparser_record_keeps_every_kth_eval_of_the_same_curve():
    dense = cal.simulate_results({"baseline": cal.Truth(rise=0.1)}, 1,
                                 cal.Noise(record_every=1), np.random.default_rng(3))
    sparse = cal.simulate_results({"baseline": cal.Truth(rise=0.1)}, 1,
                                  cal.Noise(record_every=4), np.random.default_rng(3))
    merged = sparse.evals.merge(dense.evals, on="step", suffixes=("", "_dense"))
    assert len(merged) == len(sparse.evals) == len(dense.evals) // 4
    assert np.allclose(merged.val_loss, merged.val_loss_dense)


def test_the_null_counts_each_crossed_control_as_its_own_family():
    """Every crossed control is a Holm family of its own, so its false-effect rate is the
    one held to 5%; the union over them is reported apart. In the null the corrected
    schedule's arms rise too, so both cells of each pair could control the other: each
    pair is compared once (2 crossed controls, as in the real design), not both ways."""
    from moe_core.analysis import verdicts as vd

    arms = cal.study_arms()
    analysis = vd.analyse(cal.simulate_results({arm: cal.Truth(rise=0.1) for arm in arms}, 4,
                                               cal.Noise(), np.random.default_rng(2)))
    claims = cal.any_effect(analysis)
    own = {k.removeprefix(cal.CROSSED_EFFECT).strip(): v for k, v in claims.items()
           if k.startswith(cal.CROSSED_EFFECT)}
    assert set(own) == set(analysis.crossed) and len(own) == 2
    pairs = {frozenset((control, *others)) for control, others in analysis.crossed.items()}
    assert len(pairs) == 2
    assert claims["an effect on any crossed control's rise (all their families together)"] \
        == any(own.values())


QUIET = cal.Noise(seed_level_sd=0.0, wander_sd=0.001, drift_sd=0.001, noise_sd=0.001,
                  rise_spread=0.0)


def test_a_truth_can_make_only_its_first_seeds_rise_and_shift_each_runs_onset():
    arm = "no_lb@reference_lr"
    one = cal.simulate_results({arm: cal.Truth(rise=0.1, rising_seeds=1)}, 4, QUIET,
                               np.random.default_rng(0))
    by_seed = one.evals.groupby("seed")["val_loss"]
    rises = (by_seed.last() - by_seed.min()).to_numpy()  # each run's own, unsmoothed
    assert rises[0] > 0.05 and np.all(rises[1:] < 0.01)
    jittered = cal.simulate_results({arm: cal.Truth(rise=0.1, onset_jitter=0.1)}, 4, QUIET,
                                    np.random.default_rng(0))
    first_up = [part.loc[part.val_loss.diff() > 0.002, "step"].min()
                for _, part in jittered.evals.groupby("seed")]
    assert len(set(first_up)) > 1  # each run turns at its own step
    plain = cal.simulate_results({arm: cal.Truth(rise=0.1)}, 4, QUIET,
                                 np.random.default_rng(0))
    assert len({part.loc[part.val_loss.diff() > 0.002, "step"].min()
                for _, part in plain.evals.groupby("seed")}) == 1


def test_noise_can_differ_between_arms_and_be_shared_by_the_runs_of_one_seed():
    arms = {"baseline@reference_lr": cal.Truth(), "no_lb@reference_lr": cal.Truth(),
            "aux_free_balance@reference_lr": cal.Truth(noise_scale=3.0)}
    noise = cal.Noise(seed_level_sd=0.05, wander_sd=0.0001, drift_sd=0.0001, noise_sd=0.0)
    ends = {}
    for correlation in (0.0, 0.95):
        results = cal.simulate_results(arms, 40, cal.replace(noise, seed_correlation=correlation),
                                       np.random.default_rng(1))
        last = results.evals.groupby(["arm", "seed"])["val_loss"].last().unstack("arm")
        ends[correlation] = last
    spread = ends[0.0].std()
    assert spread["aux_free_balance@reference_lr"] > 2 * spread["no_lb@reference_lr"]
    pair = ["baseline@reference_lr", "no_lb@reference_lr"]
    assert abs(ends[0.0][pair].corr().iloc[0, 1]) < 0.4
    assert ends[0.95][pair].corr().iloc[0, 1] > 0.85


def test_an_arm_can_draw_its_own_noise_while_sharing_the_split_and_its_seeds_share():
    """arm_noise gives one arm its own run-level sizes (here 4x the seed level, a slower
    wander); the others keep the study's, the split (sequence difficulty) stays shared, and
    a seed's shared part follows each arm's own size."""
    arms = {"baseline@reference_lr": cal.Truth(), "no_lb@reference_lr": cal.Truth()}
    noise = cal.Noise(seed_level_sd=0.02, wander_sd=0.0001, drift_sd=0.0001, noise_sd=0.0,
                      seed_correlation=0.9)
    own = {"no_lb@reference_lr": cal.replace(noise, seed_level_sd=0.08, wander_phi=0.5)}
    results = cal.simulate_results(arms, 60, noise, np.random.default_rng(4), arm_noise=own)
    last = results.evals.groupby(["arm", "seed"])["val_loss"].last().unstack("arm")
    ratio = last["no_lb@reference_lr"].std() / last["baseline@reference_lr"].std()
    assert 3.0 < ratio < 5.3
    assert last.corr().iloc[0, 1] > 0.8  # the seed's shared draw, at each arm's own size
    seqs = results.val_sequences
    first = [r for r in seqs if r.startswith("baseline@")][0]
    other = [r for r in seqs if r.startswith("no_lb@")][0]
    difficulty = [seqs[r].mean(0) - seqs[r].mean() for r in (first, other)]
    assert np.corrcoef(*difficulty)[0, 1] > 0.99
    plain = cal.simulate_results(arms, 60, noise, np.random.default_rng(4))
    same = cal.simulate_results(arms, 60, noise, np.random.default_rng(4),
                                arm_noise={"no_lb@reference_lr": noise})
    assert plain.evals.val_loss.equals(same.evals.val_loss)


def test_the_calibration_simulates_the_demos_gate_seeds():
    """The Makefile's GATE_SEEDS and BASELINE_GATE_SEEDS (what `make demo` runs for each
    condition's control) and the design the calibration draws (calibration.GATE_SEEDS) are
    the same seeds of the same arms."""
    import re
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    demo = makefile[makefile.index("\ndemo:"):].split("\n\n")[0]
    ran = {}
    for arm, variable in ((cal.CONTROL, "GATE_SEEDS"),
                          (cal.CORRECTED_CONTROL, "BASELINE_GATE_SEEDS")):
        seeds = re.search(rf"^{variable} \?= ([0-9,]+)$", makefile, re.M).group(1)
        assert re.search(rf"-e {re.escape(arm)} .*--seeds \$\({variable}\)", demo)
        ran[arm] = tuple(int(s) for s in seeds.split(","))
    assert cal.GATE_SEEDS == ran


def test_effects_against_a_control_that_does_not_rise_are_a_family_apart():
    """The verdict's family (against the rising controls) and the interaction's (against a
    control that does not rise, here the corrected schedule's) are counted apart."""
    from moe_core.analysis import verdicts as vd

    arms = cal.study_arms()
    analysis = vd.analyse(cal.simulate_results(cal.study_like(arms), 4, cal.Noise(),
                                               np.random.default_rng(4),
                                               gates=cal.GATE_SEEDS))
    assert "baseline" not in analysis.rising_controls
    claims = cal.any_effect(analysis)
    assert claims[f"{vd.LR_SCHEDULE} compared {cal.NOT_RISING}"]
    for name in vd.HYPOTHESES:
        hits = [c for c in analysis.comparisons if c.hypothesis == name
                and c.change.significant and c.control not in analysis.crossed]
        assert claims[f"an effect on {name}"] == any(c.decides for c in hits)
        assert claims[f"an effect on {name} {cal.NOT_RISING}"] == any(
            not c.decides for c in hits)
    # the schedule's effect on the rise shows against the control that does not rise
    assert claims[f"an effect on {vd.LR_SCHEDULE} {cal.NOT_RISING}"]


def test_a_family_against_a_control_that_does_not_rise_is_rated_among_its_own_studies():
    from moe_core.analysis import verdicts as vd

    lr, lb = vd.LR_SCHEDULE, vd.LOAD_BALANCING
    rates = {f"{lr} compared {cal.NOT_RISING}": 0.25, f"an effect on {lr} {cal.NOT_RISING}": 0.02,
             f"{lb} compared {cal.NOT_RISING}": 0.05, f"an effect on {lb} {cal.NOT_RISING}": 0.01}
    rows = cal.not_rising_rows("null", rates, 200)
    # the LR family: 50 studies had it, 4 of them claimed an effect; load balancing's 10
    # studies are too few for a rate
    assert [r[2] for r in rows] == [{f"{lr} compared {cal.NOT_RISING}": 0.25},
                                    {f"an effect on {lr} {cal.NOT_RISING}": 0.08}]
    assert "(50 studies)" in rows[1][0] and rows[1][1] == "<= 0.05 (family-wise)"
    # a null's rows carry them; the per-arm null's pooled twin (not_rising=False) does not
    rates.update({f"an effect on {name}": 0.03 for name in vd.HYPOTHESES}
                 | {"any explanation supported": 0.01})
    assert cal.null_rows("null", rates, 200)[2:] == rows
    twin = cal.null_rows("null", rates, 200, not_rising=False)
    assert [r[2] for r in twin] == [r[2] for r in cal.null_rows("null", rates, 200)[:2]]


def test_a_scenario_s_rates_do_not_depend_on_how_many_processes_share_its_studies():
    arms = ["baseline@reference_lr", "no_lb@reference_lr", "higher_dropout@reference_lr"]
    alone = cal.run_scenario(cal.null_truths(arms), cal.any_effect, 6, 3, seed=5)
    with cal.processes(2):
        shared = cal.run_scenario(cal.null_truths(arms), cal.any_effect, 6, 3, seed=5)
    assert shared == alone
    # each study its own draws: another scenario seed, other rates
    assert cal.run_scenario(cal.null_truths(arms), lambda a: {
        "rise": a.rise_tests[arms[0]].estimate}, 2, 3, seed=6) != cal.run_scenario(
        cal.null_truths(arms), lambda a: {"rise": a.rise_tests[arms[0]].estimate}, 2, 3, seed=5)


def test_noise_fitted_per_arm_adds_a_null_drawn_with_it(monkeypatch):
    """Given each arm's own noise, the realism rows gain a null whose studies draw it (named
    with its arms); without it there is none. The noisier arms' null runs twice the others'
    studies (its not-rising families are rated among a fifth of them); a doubled null says
    it was extended after a first look (its rows then judged at half the error rate)."""
    from collections import defaultdict

    drawn = []  # (studies, the per-arm noise) of each scenario run

    def scenario(truths, measure, studies, seeds, noise, seed=0, gates=None, arm_noise=None):
        drawn.append((studies, arm_noise))
        return defaultdict(float)

    monkeypatch.setattr(cal, "run_scenario", scenario)
    arms = cal.study_arms()
    own = {"no_lb@reference_lr": cal.replace(cal.Noise(), wander_sd=0.02), "elsewhere": cal.Noise()}
    scenarios = {s for s, _, _ in cal.realism_rows(arms, 10, 3, cal.Noise(), own)}
    fitted = [s for s in scenarios if "own fitted noise" in s]
    assert fitted and all("(no_lb@reference_lr)" in s and "elsewhere" not in s
                          and f"({2 * cal.NULL_STUDIES * 10} studies, {cal.EXTENDED})" in s
                          for s in fitted)
    count = 2 * cal.NULL_STUDIES * 10
    assert [studies for studies, noise in drawn if noise is own] == [count]
    twin = [s for s in scenarios if s.endswith("drawn with the pooled noise")]
    assert len(twin) == 1 and drawn[drawn.index((count, own)) + 1] == (count, None)
    assert any("heteroscedastic" in s and f"({2 * cal.NULL_STUDIES * 10} studies, " in s
               for s in scenarios)
    drawn.clear()
    plain = cal.realism_rows(arms, 10, 3, cal.Noise())
    assert not any("own fitted noise" in s for s, _, _ in plain)
    assert all(noise is None for _, noise in drawn)


def test_the_printed_table_gives_each_bounded_rows_upper_limit():
    """The README's table: a bounded row's one-sided upper limit, marked where over its
    tolerance; nothing for a row without a bound."""
    import pandas as pd

    table = pd.DataFrame([
        {"scenario": "null (1000 studies)", "indicator": "a", "rate": 0.058,
         "what it should be": "<= 0.05"},
        {"scenario": "null", "indicator": "b", "rate": 0.06, "what it should be": "<= 0.05"},
        {"scenario": "power", "indicator": "c", "rate": 0.6, "what it should be": "power"}])
    lines = cal.markdown_table(table, studies=200).splitlines()
    assert lines[0].endswith("| upper limit |")
    assert lines[2].endswith("| 0.072 |") and lines[3].endswith("| 0.095 (over 0.075) |")
    assert lines[4].endswith("| power |  |")


def test_each_realism_null_rates_its_not_rising_families_its_pooled_twin_does_not(monkeypatch):
    """The rows a null emits (shared with the fresh-stream confirmation): its families and
    some explanation supported, and where 30 or more studies compared a family against a
    control that does not rise, that family's rate among them; the per-arm null's pooled
    twin only the first two (it is the plain null on another stream)."""
    from collections import defaultdict

    def scenario(truths, measure, studies, seeds, noise, seed=0, gates=None, arm_noise=None):
        rates = defaultdict(float)
        for name in cal.vd.HYPOTHESES:
            rates[f"{name} compared {cal.NOT_RISING}"] = 0.1
            rates[f"an effect on {name} {cal.NOT_RISING}"] = 0.005
        return rates

    monkeypatch.setattr(cal, "run_scenario", scenario)
    arms = cal.study_arms()
    own = {"no_lb@reference_lr": cal.Noise()}
    rows = cal.realism_rows(arms, 40, 3, cal.Noise(), own)
    nulls = cal.realism_nulls(arms, cal.Noise(), own)
    for null in nulls:
        mine = [(s, e, r) for s, e, r in rows
                if s.startswith(null.name) and cal.POOLED_TWIN not in s]
        among = [r for s, e, r in mine if "among the studies" in s]
        # a tenth of 200 studies: 20, under 30 (none); of the doubled nulls' 400: 40
        assert len(among) == (len(cal.vd.HYPOTHESES) if null.times == 2 else 0)
        assert all(abs(v - 0.05) < 1e-12 for r in among for v in r.values())
        assert mine[0][2].keys() == {f"an effect on {n}" for n in cal.vd.HYPOTHESES}
        assert mine[1][2].keys() == {"any explanation supported"}
    twin = [(s, e, r) for s, e, r in rows if cal.POOLED_TWIN in s]
    assert [set(r) for _, _, r in twin] == [{f"an effect on {n}" for n in cal.vd.HYPOTHESES},
                                            {"any explanation supported"}]
