"""Matched progress on curves built by hand: where each run reaches the control's onset fit,
what it rises between two fits, and the run length a censored arm would need."""

from dataclasses import replace

import numpy as np
import pytest

from moe_core.analysis import progress as mp
from moe_core.analysis.effects import ArmCurves

STEPS = np.arange(4, 404, 4)  # 100 evals, as the cpu preset
T = STEPS / STEPS[-1]


def curves(arm, speed=1.0, rise=0.1, seeds=(0, 1, 2, 3), shift=0.0, onset=0.65):
    """Val and train-subset loss of a run whose progress is speed x t: train falls from 4.0
    by 2 nats at progress 1; val falls by 0.2 nats per unit of progress until `onset`, then
    rises linearly by `rise` per 0.35 of progress. Seeds differ by a small level shift."""
    p = speed * T
    train = 4.0 - 2.0 * p
    val = 4.0 + 0.2 * np.clip(onset - p, 0, None) + rise * np.clip((p - onset) / 0.35, 0, None)
    offsets = np.array([0.001 * k for k in range(len(seeds))]) + shift
    return ArmCurves(arm, STEPS, val[None, :] + offsets[:, None], tuple(seeds),
                     tuple(f"{arm}/{s}" for s in seeds),
                     train_loss=train[None, :] + offsets[:, None] * 0)


def test_the_onset_fit_is_the_controls_fit_where_the_others_are_lowest():
    control = curves("control")
    onset = mp.onset_fits(control)
    # every seed has the same shape, lowest around progress 0.65: the onset fit is the
    # train loss of the window whose val mean is lowest, about 4 - 2 x 0.65 = 2.7
    means = np.convolve(control.loss[0], np.ones(control.window) / control.window, "valid")
    low = int(np.argmin(means))
    expected = np.mean(control.train_loss[0, low:low + control.window])
    assert onset == pytest.approx(np.full(4, expected))
    assert expected == pytest.approx(2.7, abs=0.05)


def test_an_arm_that_only_slows_fitting_is_censored_with_the_run_length_it_needs():
    control = curves("control")
    slow = curves("slow", speed=0.5)  # at its end, as far as the control at half its run
    found = mp.matched_progress(slow, control)
    assert not found.reached and found.seeds_reached == 0 and found.arm_rise is None
    assert found.arm_end_fit == pytest.approx(4.0 - 2.0 * 0.5 * np.mean(T[-10:]), abs=1e-9)
    # a straight line at its own rate (1 nat per 400 steps) reaches the control's end fit
    # (about 2.04) after about 800 steps
    assert found.steps_needed == pytest.approx(
        STEPS[-1] + (found.arm_end_fit - found.control_end_fit) / (1.0 / 400), rel=1e-6)
    assert 760 < found.steps_needed < 820


def test_a_slower_arm_that_reached_the_onset_lies_on_the_controls_curve():
    """Progress 0.8 at its end: past the onset (0.65), and between the onset fit and the fit
    it reached it rises exactly as the control did between the same fits."""
    control = curves("control", onset=0.3)
    slow = curves("slow", speed=0.8, onset=0.3)
    found = mp.matched_progress(slow, control)
    assert found.reached
    assert found.matched_fit == pytest.approx(found.arm_end_fit)
    np.testing.assert_allclose(found.arm_rise.per_seed, found.control_rise.per_seed,
                               atol=0.004)  # one window (4 steps) of grid mismatch at most
    assert found.arm_rise.mean > 0.05  # a real rise between the two fits


def test_an_arm_that_does_not_rise_at_matched_fit_differs_from_the_control():
    control = curves("control", onset=0.3)
    flat = curves("flat", rise=0.0, onset=0.3)
    found = mp.matched_progress(flat, control)
    assert found.reached
    # it only falls the last bit before its onset (its windows straddle it)
    assert found.arm_rise.per_seed == pytest.approx(np.zeros(4), abs=0.005)
    assert found.control_rise.mean > 0.15


def test_without_a_train_subset_loss_progress_is_unknown():
    control = curves("control")
    blind = ArmCurves("blind", STEPS, control.loss, control.seeds, control.run_ids)
    assert mp.matched_progress(blind, control) is None
    assert mp.matched_progress(control, blind) is None


def test_an_arm_whose_fit_stopped_improving_gives_no_run_length():
    control = curves("control")
    stuck = ArmCurves("stuck", STEPS, control.loss, control.seeds, control.run_ids,
                      train_loss=np.full_like(control.loss, 3.5))
    found = mp.matched_progress(stuck, control)
    assert not found.reached and found.steps_needed is None


def test_an_arm_on_the_controls_curve_has_no_level_difference_one_off_it_does():
    control = curves("control")
    slow = curves("slow", speed=0.5)  # the control's curve, travelled more slowly
    better = curves("better", speed=0.5, shift=-0.1)  # the same fit, val 0.1 lower
    on, off = mp.matched_progress(slow, control), mp.matched_progress(better, control)
    difference, zero = on.level
    assert difference.per_seed == pytest.approx(np.zeros(4), abs=0.003)
    assert not np.any(zero.per_seed) and zero.seeds == difference.seeds
    assert off.level[0].per_seed == pytest.approx(np.full(4, -0.1), abs=0.003)


def test_the_span_is_the_share_of_the_controls_fit_range_after_its_onset():
    control = curves("control", onset=0.3)
    for speed, covered in ((0.5, False), (0.8, True)):
        found = mp.matched_progress(curves("arm", speed=speed, onset=0.3), control)
        expected = (found.onset_fit - found.arm_end_fit) / (found.onset_fit
                                                           - found.control_end_fit)
        assert found.span_share == pytest.approx(expected)
        assert found.span_covered is covered
        assert found.fit_for_span == pytest.approx(
            found.onset_fit - mp.MIN_SPAN_SHARE * (found.onset_fit - found.control_end_fit))


def test_a_rise_between_two_fits_is_read_between_windows_not_at_the_next_one():
    """25 evals, 16 steps apart: an arm on the control's curve that reaches the fits at other
    steps than the control rises as much between them. Reading each fit at the first window
    at or after it would be off by up to a window (~0.011 nats of this rise per window)."""
    steps = np.arange(16, 416, 16)
    t = steps / steps[-1]

    def sparse(arm, speed):
        p = speed * t
        val = 4.0 + 0.2 * np.clip(0.5 - p, 0, None) + 0.1 * np.clip((p - 0.5) / 0.35, 0, None)
        return ArmCurves(arm, steps, np.tile(val, (4, 1)), (0, 1, 2, 3),
                         tuple(f"{arm}/{s}" for s in range(4)),
                         train_loss=np.tile(4.0 - 2.0 * p, (4, 1)))

    control, arm = sparse("control", 1.0), sparse("arm", 0.93)
    progress = mp.matched_progress(arm, control)
    assert progress.reached and progress.arm_rise is not None
    assert progress.control_rise.mean > 0.1
    assert progress.arm_rise.mean == pytest.approx(progress.control_rise.mean, abs=0.002)
    assert mp.reaching_position(np.array([3.0, 2.0, 1.0]), 2.5) == pytest.approx(0.5)
    assert mp.reaching_position(np.array([3.0, 2.0, 1.0]), 3.5) == 0.0
    assert mp.reaching_position(np.array([3.0, 2.0, 1.0]), 0.5) is None


def test_the_onset_fit_is_read_off_the_controls_other_runs_when_it_has_them():
    """The control's gate runs (same config, other seeds) place its onset; the compared
    control runs are then measured from a fit their own val losses did not choose: moving
    their val losses moves their rise, never the onset fit."""
    control = curves("control", onset=0.3)
    gate = curves("control", onset=0.4, seeds=(100, 101, 102, 103))
    arm = curves("arm", speed=0.9, onset=0.3)
    own, gated = mp.matched_progress(arm, control), mp.matched_progress(arm, control, gate)
    assert gated.onset_fit == pytest.approx(mp.onset_fits(gate).mean())
    assert own.onset_fit == pytest.approx(mp.onset_fits(control).mean())
    assert gated.onset_fit < own.onset_fit - 0.1  # a later onset: a lower train-subset loss
    # the compared runs' val losses lowest somewhere else entirely: the onset stays
    bent = replace(control, loss=control.loss - 2.0 * (T > 0.8) * (T - 0.8))
    assert mp.matched_progress(arm, bent, gate).onset_fit == gated.onset_fit
    assert mp.matched_progress(arm, bent).onset_fit != own.onset_fit
