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
