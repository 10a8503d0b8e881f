"""Matched progress: does an intervention change the rise, or only how fast the model fits?

The control's val loss turns up once it has fitted its train split to a certain point: its
train-subset loss at the onset of the rise (the *onset fit*). An intervention that slows
fitting (more dropout, fresh data, a lower late LR) gets there later, so at the end of an
equally long run it can show no rise only because it has not reached that point yet. Its
curve is then censored, not removed: nothing says it would not turn later.

So an intervention is compared with its control at matched progress, on the
generalisation curve (val loss against train-subset loss):

- the onset fit: the mean over the control's seeds of each seed's train-subset loss
  (window mean) at the window where the *other* seeds' mean val loss is lowest (leave one
  out, as the rise itself is measured in `effects.rise_statistic`). One threshold for every
  run: per-seed onsets scatter by ~0.07 nats of fit on the demo's runs, because the val
  loss is flat around its low point;
- an arm has *reached* the onset when its mean end-window train-subset loss is at or below
  the onset fit (and each of its runs gets there within its evals);
- the *matched fit* of a seed pair is the furthest fit both runs reached (the higher of
  their two end-window train losses); the *rise at matched fit* of a run is its val loss
  where it first reaches the matched fit minus its val loss where it first reaches the
  onset fit (window means). For the control that is how much it had risen by then; an
  intervention that only slows fitting lies on the control's curve and rises as much
  between the same two fits; one that changes generalisation rises less (or more). This
  is the effect *not* carried by the speed of fitting (matching on fit conditions on it):
  the change at equal steps, which includes it, is reported beside it;
- the *span*: how much of the control's fit range after its onset (onset fit to end fit)
  the matched fit covers. Fixed in advance and read from fits only, never from val
  losses: a comparison over less than MIN_SPAN_SHARE of it would compare the first stretch
  after the onset, where the control has risen little;
- the *level at the arm's fit*: the arm's end-window val loss minus the control's val loss
  where the control first fitted as far (per seed pair): near 0 for an arm that only fits
  more slowly (on the control's curve), below 0 for one that generalises better.

Train-subset loss is measured on each arm's own train subset: with fresh data (a train
split 20x larger, seen about once) it stays near the val loss, so such an arm reaches the
control's onset fit only when it starts to fit its own split as tightly, and until then
it stays undetermined. That is the honest reading: a miniature run that never memorises
cannot show whether memorising is what turns the curve.

`steps_needed` extrapolates the arm's fit at its end-of-run fitting rate (a straight line
through the mean train-subset loss over the last quarter of its evals) to the control's end
fit, where the control's rise was measured. Fitting slows as it goes (on the demo's runs
the rate halves from one quarter to the next), so it is a lower bound: "at least". A
longer run under the same schedule shape also applies a different LR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moe_core.analysis.effects import ArmCurves, ArmStatistic, leave_one_out_lows
from moe_core.analysis.inflection import window_means

RATE_FRACTION = 0.25  # the end-of-run fitting rate: a line through the last quarter of evals
# the matched fit must cover at least this share of the control's fit range after its onset
MIN_SPAN_SHARE = 0.5
GATE_RUNS, COMPARED_RUNS = "gate runs", "compared runs"  # where the onset fit was read off


@dataclass(frozen=True)
class MatchedProgress:
    """One arm against one control at matched progress (train-subset fit), in nats."""

    arm: str
    control: str
    onset_fit: float  # the control's train-subset loss at its onset, mean over its seeds
    onset_fit_sd: float  # the spread of its seeds' onset fits
    control_end_fit: float  # end-window train-subset loss, mean over seeds
    arm_end_fit: float
    seeds_reached: int  # the arm's seeds whose end fit is at or past the onset fit
    n_seeds: int
    matched_fit: float  # mean over the arm's seeds of the furthest fit both runs reached
    steps: int  # the arm's last common eval step
    steps_needed: float | None  # at least this run length reaches the control's end fit
    # val loss at the matched fit minus at the onset fit, per seed (None unless reached)
    arm_rise: ArmStatistic | None = None
    control_rise: ArmStatistic | None = None
    # the arm's end val loss minus the control's at the same fit, and the control's
    # statistic of the same name (zero), for a paired test (None when the control never
    # fitted so little, or the arm fitted further than the control)
    level: tuple[ArmStatistic, ArmStatistic] | None = None
    # which runs of the control placed its onset fit: its gate runs, or the compared runs
    # (no gate runs, or gate runs without a train-subset loss)
    onset_from: str = COMPARED_RUNS

    @property
    def reached(self) -> bool:
        return self.arm_end_fit <= self.onset_fit + 1e-12

    @property
    def span_share(self) -> float:
        """The share of the control's fit range after its onset that the matched fit
        covers (can exceed 1 when the arm fitted further than the control)."""
        whole = self.onset_fit - self.control_end_fit
        return (self.onset_fit - self.matched_fit) / whole if whole > 0 else float("nan")

    @property
    def span_covered(self) -> bool:
        return self.span_share >= MIN_SPAN_SHARE

    @property
    def fit_for_span(self) -> float:
        """The fit an arm must reach for its comparison to cover MIN_SPAN_SHARE."""
        return self.onset_fit - MIN_SPAN_SHARE * (self.onset_fit - self.control_end_fit)


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
    """At least this step, for the arm's mean train-subset loss to reach `target`: a
    straight line through its last quarter of evals (fitting slows, so the line reaches it
    early); None when it is not falling there. Already there: the step where it first did."""
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


def reaching_position(fit: np.ndarray, target: float) -> float | None:
    """Where a run's window-mean fit first reaches `target`, as a fractional window index:
    linear between the last window above it and the first at or below it (0 when its first
    window is there already; None: never). The first window at or after the target alone
    would move every matched value by up to a window, more the sparser the evals."""
    first = first_reaching(fit, target)
    if first is None:
        return None
    if first == 0:
        return 0.0
    above, below = float(fit[first - 1]), float(fit[first])
    return first - 1 + (above - target) / (above - below) if above > below else float(first)


def _interpolated(values: np.ndarray, position: float) -> np.ndarray:
    """values (windows along the first axis) linearly interpolated at a fractional index."""
    low = int(np.floor(position))
    high = min(low + 1, len(values) - 1)
    share = position - low
    return values[low] * (1 - share) + values[high] * share


def _rise_between(curves: ArmCurves, fit: np.ndarray, seed_index: int, onset: float,
                  matched: float) -> tuple[float, np.ndarray | None] | None:
    """One run's val loss at the matched fit minus at the onset fit (window means, each
    interpolated to where the run's fit reaches it), and per sequence; None when the run
    never reached the onset fit."""
    start = reaching_position(fit[seed_index], onset)
    if start is None:
        return None
    end = reaching_position(fit[seed_index], max(matched, float(fit[seed_index].min())))
    end = start if end is None or end < start else end
    return _val_change(curves, seed_index, start, end)


def _val_change(curves: ArmCurves, seed_index: int, start: float, end: float
                ) -> tuple[float, np.ndarray | None]:
    """Window-mean val loss at window position `end` minus at `start`, and per sequence."""
    means = window_means(curves.loss[seed_index], curves.window)
    sequences = None
    if curves.per_sequence is not None:
        per_window = window_means(curves.per_sequence[seed_index].T, curves.window).T
        sequences = _interpolated(per_window, end) - _interpolated(per_window, start)
    return float(_interpolated(means, end) - _interpolated(means, start)), sequences


def _statistic(curves: ArmCurves, name: str, values: list, sequences: list) -> ArmStatistic:
    per_sequence = None if any(s is None for s in sequences) else np.mean(sequences, axis=0)
    return ArmStatistic(curves.arm, name, np.asarray(values, dtype=float), per_sequence,
                        curves.val_sha, seeds=curves.seeds)


def _rises(curves: ArmCurves, fit: np.ndarray, onset: float, matched: list[float]
           ) -> ArmStatistic | None:
    found = [_rise_between(curves, fit, i, onset, matched[i]) for i in range(curves.n_seeds)]
    if any(f is None for f in found):
        return None
    return _statistic(curves, "rise at matched fit", [f[0] for f in found],
                      [f[1] for f in found])


def _level(arm: ArmCurves, arm_fit: np.ndarray, control: ArmCurves, control_fit: np.ndarray
           ) -> tuple[ArmStatistic, ArmStatistic] | None:
    """Per seed pair (the control's seed of the same number, else its seeds' mean): the
    arm's end val loss minus the control's val loss where the control first fitted as far
    as the arm's end; paired against zeros on the control's seeds, so the test is a one-
    sample t on these differences when the seeds pair. None when the pairs do not match."""
    if set(arm.seeds) != set(control.seeds):
        return None
    where = {s: i for i, s in enumerate(control.seeds)}
    control_means = window_means(control.loss, control.window)
    arm_means = window_means(arm.loss, arm.window)
    values, sequences = [], []
    for i, seed in enumerate(arm.seeds):
        j = where[seed]
        at = first_reaching(control_fit[j], float(arm_fit[i, -1]))
        if at is None or arm_fit[i, -1] < control_fit[j, -1]:
            return None  # the arm fitted further than the control ever did
        values.append(float(arm_means[i, -1] - control_means[j, at]))
        if arm.per_sequence is not None and control.per_sequence is not None \
                and arm.per_sequence.shape[2] == control.per_sequence.shape[2]:
            w = arm.window
            sequences.append(arm.per_sequence[i, -w:].mean(0)
                             - control.per_sequence[j, at:at + w].mean(0))
        else:
            sequences.append(None)
    difference = _statistic(arm, "val loss at the arm's fit", values, sequences)
    zero = ArmStatistic(control.arm, "val loss at the arm's fit", np.zeros(len(values)),
                        None if difference.per_sequence is None
                        else np.zeros_like(difference.per_sequence),
                        difference.val_sha, seeds=arm.seeds)
    return difference, zero


def matched_progress(arm: ArmCurves, control: ArmCurves, onset_runs: ArmCurves | None = None
                     ) -> MatchedProgress | None:
    """The arm against the control at matched fit; None when either has no train-subset
    loss (progress unknown). `onset_runs`: other runs of the control (its gate seeds, same
    config and split) to read the onset fit from; the control's compared runs are then
    measured from a fit their own val losses did not choose. Read off the compared runs, the
    onset sits where those runs happen to be low (each seed's onset is chosen by the other
    seeds, and the threshold averages them), which inflates the control's rise at matched
    fit by a bias its seeds share."""
    onsets = None if onset_runs is None else onset_fits(onset_runs)
    onset_from = GATE_RUNS
    if onsets is None:  # no gate runs, or none with a train-subset loss: said in the report
        onsets, onset_from = onset_fits(control), COMPARED_RUNS
    arm_fit, control_fit = fit_windows(arm), fit_windows(control)
    if arm_fit is None or control_fit is None or onsets is None:
        return None
    onset = float(onsets.mean())
    control_end = dict(zip(control.seeds, control_fit[:, -1], strict=True))
    mean_control_end = float(control_fit[:, -1].mean())
    arm_end = arm_fit[:, -1]
    arm_matched = [max(float(e), float(control_end.get(s, mean_control_end)))
                   for s, e in zip(arm.seeds, arm_end, strict=True)]
    arm_matched_of = dict(zip(arm.seeds, arm_matched, strict=True))
    mean_arm_end = float(arm_end.mean())
    control_matched = [arm_matched_of.get(s, max(float(control_end[s]), mean_arm_end))
                       for s in control.seeds]
    arm_rise = control_rise = None
    if mean_arm_end <= onset + 1e-12:
        arm_rise = _rises(arm, arm_fit, onset, arm_matched)
        control_rise = _rises(control, control_fit, onset,
                              [min(m, onset) for m in control_matched])
        if arm_rise is None or control_rise is None:
            arm_rise = control_rise = None
    return MatchedProgress(
        arm.arm, control.arm, onset, float(onsets.std(ddof=1)) if onsets.size > 1 else 0.0,
        mean_control_end, mean_arm_end, int(np.sum(arm_end <= onset + 1e-12)), arm.n_seeds,
        float(np.mean(arm_matched)), int(arm.steps[-1]), steps_to_fit(arm, mean_control_end),
        arm_rise, control_rise, _level(arm, arm_fit, control, control_fit), onset_from)
