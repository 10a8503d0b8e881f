"""Matched progress: does an intervention change the rise, or only how fast the model fits?

The control's val loss turns up once it has fitted its train split to a certain point: its
train-subset loss at the onset of the rise (the *onset fit*). An intervention that slows
fitting (more dropout, fresh data, a lower late LR) gets there later, so at the end of an
equally long run it can show no rise only because it has not reached that point yet. Its
curve is then censored, not removed: nothing says it would not turn later.

So an intervention is compared with its control at matched progress, on the
generalisation curve (val loss against train-subset loss):

- the onset fit: for each control seed, its train-subset loss (window mean) at the window
  where the *other* seeds' mean val loss is lowest (leave one out, as the rise itself is
  measured in `effects.rise_statistic`, so a seed's own noise does not pick its onset);
- an arm has *reached* the onset when each of its seeds, by its last window, has fitted
  at least that far (train-subset loss at or below the onset fit of the control's seed of
  the same number, or their mean where the control lacks that seed);
- the *matched fit* of a seed pair is the furthest fit both runs reached (the higher of
  their two end-window train losses); the *rise at matched fit* of a run is its val loss
  where it first reaches the matched fit minus its val loss where it first reaches the
  onset fit (window means). For the control that is how much it had risen by then; an
  intervention that only slows fitting lies on the control's curve and rises as much
  between the same two fits; one that changes generalisation rises less (or more).

Train-subset loss is measured on each arm's own train subset: with fresh data (a train
split 20x larger, seen about once) it stays near the val loss, so such an arm reaches the
control's onset fit only when it starts to fit its own split as tightly, and until then
it stays undetermined. That is the honest reading: a miniature run that never memorises
cannot show whether memorising is what turns the curve.

`steps_needed` extrapolates the arm's fit at its end-of-run fitting rate (a straight line
through the mean train-subset loss over the last quarter of its evals) to the control's end
fit, where the control's rise was measured: the run length that would decide. A rough
figure: a longer run under the same schedule shape applies a different LR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moe_core.analysis.effects import ArmCurves, ArmStatistic, leave_one_out_lows
from moe_core.analysis.inflection import window_means

RATE_FRACTION = 0.25  # the end-of-run fitting rate: a line through the last quarter of evals


@dataclass(frozen=True)
class MatchedProgress:
    """One arm against one control at matched progress (train-subset fit), in nats."""

    arm: str
    control: str
    onset_fit: float  # the control's train-subset loss at its onset, mean over its seeds
    control_end_fit: float  # end-window train-subset loss, mean over seeds
    arm_end_fit: float
    seeds_reached: int  # the arm's seeds that fitted at least to the onset fit
    n_seeds: int
    matched_fit: float  # mean over the arm's seeds of the furthest fit both runs reached
    steps: int  # the arm's last common eval step
    steps_needed: float | None  # run length to reach the control's end fit (None: no trend)
    # val loss at the matched fit minus at the onset fit, per seed (None unless reached)
    arm_rise: ArmStatistic | None = None
    control_rise: ArmStatistic | None = None

    @property
    def reached(self) -> bool:
        return self.seeds_reached == self.n_seeds > 0


def fit_windows(curves: ArmCurves) -> np.ndarray | None:
    """Window means of each seed's train-subset loss, (seeds, windows), on the windows
    the val rise is measured on; None without a finite train-subset loss."""
    if curves.train_loss is None or not np.all(np.isfinite(curves.train_loss)):
        return None
    return window_means(curves.train_loss, curves.window)


def onset_fits(control: ArmCurves) -> np.ndarray | None:
    """Each control seed's train-subset fit at its onset: its window-mean train loss at the
    window where the other seeds' mean val loss is lowest."""
    fit = fit_windows(control)
    if fit is None:
        return None
    lows = leave_one_out_lows(window_means(control.loss, control.window))
    return fit[np.arange(control.n_seeds), lows]


def first_reaching(fit: np.ndarray, target: float) -> int | None:
    """The first window whose train-subset loss is at or below `target` (None: never)."""
    hits = np.flatnonzero(fit <= target + 1e-12)
    return int(hits[0]) if hits.size else None


def steps_to_fit(curves: ArmCurves, target: float) -> float | None:
    """The step at which the arm's mean train-subset loss would reach `target`, on a
    straight line through its last quarter of evals; None when it is not falling there.
    Already there: the step where it first did."""
    fit = fit_windows(curves)
    if fit is None:
        return None
    mean = fit.mean(0)
    ends = curves.steps[curves.window - 1:].astype(float)  # the last step of each window
    reached = first_reaching(mean, target)
    if reached is not None:
        return float(ends[reached])
    tail = max(2, int(math.ceil(RATE_FRACTION * mean.size)))
    slope = float(np.polyfit(ends[-tail:], mean[-tail:], 1)[0])
    if not slope < -1e-9:  # flat (up to rounding) or rising: no run length follows
        return None
    return float(ends[-1] + (mean[-1] - target) / -slope)


def _rise_between(curves: ArmCurves, fit: np.ndarray, seed_index: int, onset: float,
                  matched: float) -> tuple[float, np.ndarray | None] | None:
    """One run's val loss at the matched fit minus at the onset fit (window means), and
    per sequence; None when the run never reached the onset fit."""
    start = first_reaching(fit[seed_index], onset)
    if start is None:
        return None
    end = first_reaching(fit[seed_index], max(matched, float(fit[seed_index].min())))
    end = start if end is None or end < start else end
    means = window_means(curves.loss[seed_index], curves.window)
    sequences = None
    if curves.per_sequence is not None:
        w = curves.window
        per = curves.per_sequence[seed_index]
        sequences = per[end:end + w].mean(0) - per[start:start + w].mean(0)
    return float(means[end] - means[start]), sequences


def _statistic(curves: ArmCurves, fit: np.ndarray, onsets: list[float], matched: list[float]
               ) -> ArmStatistic | None:
    values, sequences = [], []
    for i in range(curves.n_seeds):
        found = _rise_between(curves, fit, i, onsets[i], matched[i])
        if found is None:
            return None
        values.append(found[0])
        sequences.append(found[1])
    per_sequence = None if any(s is None for s in sequences) else np.mean(sequences, axis=0)
    return ArmStatistic(curves.arm, "rise at matched fit", np.asarray(values), per_sequence,
                        curves.val_sha, seeds=curves.seeds)


def matched_progress(arm: ArmCurves, control: ArmCurves) -> MatchedProgress | None:
    """The arm against the control at matched fit; None when either has no train-subset
    loss (progress unknown)."""
    arm_fit, control_fit, onset = fit_windows(arm), fit_windows(control), onset_fits(control)
    if arm_fit is None or control_fit is None or onset is None:
        return None
    onset_of = dict(zip(control.seeds, onset, strict=True))
    control_end = dict(zip(control.seeds, control_fit[:, -1], strict=True))
    mean_onset, mean_control_end = float(onset.mean()), float(control_fit[:, -1].mean())
    arm_end = arm_fit[:, -1]
    arm_onsets = [float(onset_of.get(s, mean_onset)) for s in arm.seeds]
    arm_matched = [max(float(e), float(control_end.get(s, mean_control_end)))
                   for s, e in zip(arm.seeds, arm_end, strict=True)]
    reached = sum(m <= o + 1e-12 for m, o in zip(arm_matched, arm_onsets, strict=True))
    # the control's seeds: the same pair's matched fit where the arm ran that seed
    arm_matched_of = dict(zip(arm.seeds, arm_matched, strict=True))
    mean_arm_end = float(arm_end.mean())
    control_matched = [arm_matched_of.get(s, max(float(control_end[s]), mean_arm_end))
                       for s in control.seeds]
    arm_rise = control_rise = None
    if reached == arm.n_seeds:
        arm_rise = _statistic(arm, arm_fit, arm_onsets, arm_matched)
        control_rise = _statistic(control, control_fit, [float(o) for o in onset],
                                  [min(m, float(o))
                                   for m, o in zip(control_matched, onset, strict=True)])
    needed = steps_to_fit(arm, mean_control_end)
    return MatchedProgress(
        arm.arm, control.arm, mean_onset, mean_control_end, float(arm_end.mean()), reached,
        arm.n_seeds, float(np.mean(arm_matched)), int(arm.steps[-1]), needed,
        arm_rise, control_rise)
