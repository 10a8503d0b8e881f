"""Diagnostics: where the val loss turns, whether a difference is beyond noise, how the
router spreads tokens, and which explanation of the inflection the evidence supports.

Pure functions on arrays and small tables; no file I/O and no plotting. Every number the
report ranks comes with a noise scale, because the reference study ranked single-seed
differences of 0.001-0.02 nats as if they were real.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from moe_core.errors import UserInputError

# ---------------------------------------------------------------------------------------
# Inflection detection on one val-loss curve
# ---------------------------------------------------------------------------------------

INFLECTION = "inflection"
WITHIN_NOISE = "within noise"
NO_INFLECTION = "no inflection"

# A rise counts as an inflection when the final eval is this many noise units above the
# best one...
INFLECTION_Z = 2.0
# ...and the evals from the best to the end climb with a least-squares slope this many
# standard errors above zero. Both tests start from the lowest eval, which is low partly by
# selection: on pure noise (20-300 evals) z >= 2 alone fires 13-50% of the time (more for
# longer curves), with a 2-SE trend 5-9%, with a 3-SE trend <1%, while a steady rise of
# 3.5 noise units over the last 30 of 100 evals is still found 9 times in 10.
RISE_TREND_Z = 3.0
# Savitzky-Golay window as a share of the curve, so a 5-eval and a 500-eval run are
# smoothed over the same part of training.
SMOOTHING_FRACTION = 0.15
# The smoothed slope counts as "still falling" only when it is this many standard errors
# below zero; otherwise noise on a plateau would move the onset to its last random dip.
ONSET_Z = 2.0


@dataclass(frozen=True)
class Inflection:
    """Where one val-loss curve is best, how much worse it ends, and whether that is noise.

    Losses in nats; `noise` is the standard error of `degradation`, so
    `degradation_z = degradation / noise`.
    """

    best_step: int
    best_loss: float
    final_step: int
    final_loss: float
    degradation: float
    degradation_pct: float
    noise: float
    noise_source: str  # "val_loss_change_se" or "val_loss_se" (given), "curve" (eval_noise)
    degradation_z: float
    rise_trend_z: float | None  # slope of the evals from the best to the end, in SEs
    onset_step: int | None
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_curve(name: str, values: Any, length: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise UserInputError(f"{name} must be one value per eval (1-D), got shape {array.shape}")
    if length is not None and array.size != length:
        raise UserInputError(f"{name} has {array.size} values but steps has {length}")
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise UserInputError(
            f"{name}[{bad}] is {array[bad]}: a diverged or unfinished eval cannot be analysed; "
            "cut the curve before it"
        )
    return array


def _smoothing_window(n: int) -> int:
    """Odd window of ~SMOOTHING_FRACTION of n evals, at least 5, at most n."""
    window = max(5, int(round(SMOOTHING_FRACTION * n))) | 1
    return min(window, n if n % 2 else n - 1)


def _local_polynomial(values: np.ndarray, deriv: int) -> tuple[np.ndarray, np.ndarray]:
    """Savitzky-Golay fit per eval (in eval-index units) and its noise gain.

    Returns (fit, gain): fit[i] is the deriv-th derivative at eval i of a polynomial fitted
    to the window around i; gain[i] is its standard error per unit of per-eval noise. Near
    the ends the window stops at the curve's edge and the fit is evaluated off-centre,
    like savgol_filter(mode="interp"), so the end slope is a fit to the final evals.
    """
    from scipy import signal  # lazy: scipy costs seconds at import
    n = values.size
    window = _smoothing_window(n)
    polyorder = 2 if window >= 5 else 1
    start = np.clip(np.arange(n) - window // 2, 0, n - window)
    position = np.arange(n) - start
    coeffs = np.stack([
        signal.savgol_coeffs(window, polyorder, deriv=deriv, pos=p, use="dot")
        for p in range(window)
    ])[position]
    windows = np.lib.stride_tricks.sliding_window_view(values, window)[start]
    return np.einsum("ij,ij->i", windows, coeffs), np.linalg.norm(coeffs, axis=1)


def smooth_curve(val_loss: Any) -> np.ndarray:
    """Savitzky-Golay smoothing of a curve over ~15% of its length (at least 5 evals)."""
    loss = np.asarray(val_loss, dtype=float)
    if loss.size < 3:
        return loss.copy()
    return _local_polynomial(loss, deriv=0)[0]


def _onset_index(val_loss: Any, sigma: float) -> int | None:
    """First eval after which the smoothed slope is never below zero by more than noise.

    sigma: per-eval noise (nats). None when the smoothed curve still falls, beyond noise,
    at the last eval. With sigma = 0 this is the plain "slope turns non-negative for good".
    """
    loss = np.asarray(val_loss, dtype=float)
    if loss.size < 3:  # two evals: the slope is their difference, with noise sqrt(2) sigma
        slope, gain = np.repeat(np.diff(loss), 2), np.full(2, math.sqrt(2.0))
    else:
        slope, gain = _local_polynomial(loss, deriv=1)
    scale = np.nan_to_num(sigma) * gain + 1e-12 * max(1.0, float(np.max(np.abs(loss))))
    falling = np.flatnonzero(slope < -ONSET_Z * scale)
    if falling.size == 0:
        return 0
    last_falling = int(falling[-1])
    return None if last_falling == loss.size - 1 else last_falling + 1


def _tail_second_differences(loss: np.ndarray) -> np.ndarray:
    """Second differences over the last half of the curve (at least its last 10 evals)."""
    tail = loss[-max(loss.size - loss.size // 2, min(loss.size, 10)):]
    return np.diff(tail, n=2)


def eval_noise(val_loss: Any) -> float:
    """Per-eval noise of a curve (nats), from second differences over its last half.

    Differencing twice removes a linear trend and their standard deviation (not RMS) a
    steady curvature, so the rise or fall itself is not counted as noise; for white noise
    of std s, Var(y[i-1] - 2 y[i] + y[i+1]) = 6 s^2. NaN for fewer than 4 evals.
    """
    second = _tail_second_differences(np.asarray(val_loss, dtype=float))
    if second.size < 2:
        return float("nan")
    return float(np.std(second, ddof=1) / math.sqrt(6.0))


def _threshold(z: float, df: float | None) -> float:
    """A normal threshold, widened to Student's t at the same level when the noise was
    estimated from df degrees of freedom (a 5-eval curve's noise is itself very noisy)."""
    from scipy import stats  # lazy: scipy costs seconds at import
    return z if df is None else float(stats.t.ppf(stats.norm.cdf(z), df))


def _trend_z(steps: np.ndarray, loss: np.ndarray, sigma: float) -> float | None:
    """Least-squares slope of `loss` on `steps` divided by its SE, given per-eval noise."""
    if steps.size < 2:
        return None
    centred = steps - steps.mean()
    sxx = float(np.sum(centred**2))
    slope = float(np.sum(centred * (loss - loss.mean())) / sxx)
    if math.isnan(sigma):
        return float("nan")
    if sigma > 0:
        return slope / (sigma / math.sqrt(sxx))
    return math.copysign(math.inf, slope) if slope != 0 else 0.0


def detect_inflection(
    steps: Sequence[float] | np.ndarray,
    val_loss: Sequence[float] | np.ndarray,
    val_loss_se: Sequence[float] | np.ndarray | None = None,
    val_loss_change_se: Sequence[float] | np.ndarray | None = None,
) -> Inflection:
    """Find the best eval, the degradation after it, its size in noise units, and a verdict.

    steps: (evals,) increasing; val_loss: (evals,) nats; val_loss_se: (evals,) standard
    error of each eval's loss, or None to estimate the noise from the curve itself;
    val_loss_change_se: (evals,) standard error of each eval's loss minus the best earlier
    eval's, paired over the same val sequences (NaN where there was none). When its last
    value is finite it is the noise of the degradation: evals on one val split share its
    sampling error, which val_loss_se counts twice.
    """
    step = _as_curve("steps", steps)
    if step.size < 2:
        raise UserInputError(f"a val-loss curve needs at least 2 evals, got {step.size}")
    if np.any(np.diff(step) <= 0):
        raise UserInputError("steps must be strictly increasing (one eval per step)")
    loss = _as_curve("val_loss", val_loss, step.size)

    best = int(np.argmin(loss))
    best_loss, final_loss = float(loss[best]), float(loss[-1])
    degradation = final_loss - best_loss
    degradation_pct = 100.0 * degradation / best_loss if best_loss != 0 else float("nan")

    paired = None
    if val_loss_change_se is not None and best < step.size - 1:
        changes = np.asarray(val_loss_change_se, dtype=float)
        if changes.shape != step.shape:
            raise UserInputError(f"val_loss_change_se has shape {changes.shape} but steps has "
                                 f"{step.size} values")
        paired = float(changes[-1])
        if not math.isfinite(paired) or paired < 0:
            paired = None
    if paired is not None:
        # the last eval's change from the best earlier one, which is the overall best
        sigma, noise_df, noise = paired / math.sqrt(2.0), None, paired
        noise_source = "val_loss_change_se"
    elif val_loss_se is not None:
        se = _as_curve("val_loss_se", val_loss_se, step.size)
        if np.any(se < 0):
            raise UserInputError("val_loss_se must be >= 0 (a standard error)")
        sigma, noise_df = float(se[-1]), None
        noise = float(math.hypot(se[best], se[-1]))
        noise_source = "val_loss_se"
    else:
        sigma = eval_noise(loss)
        noise_df = max(1.0, _tail_second_differences(loss).size - 1.0)
        noise = sigma * math.sqrt(2.0)
        noise_source = "curve"
    if noise > 0:
        degradation_z = degradation / noise
    elif math.isnan(noise):  # two evals: no way to tell a rise from noise
        degradation_z = float("nan")
    else:
        degradation_z = math.inf if degradation > 0 else 0.0

    # A curve whose last eval is its best has not stopped improving, whatever its slope.
    onset = _onset_index(loss, sigma) if degradation > 0 else None
    rise_trend_z = _trend_z(step[best:], loss[best:], sigma) if best < step.size - 1 else None

    if onset is None:
        verdict = NO_INFLECTION  # the final eval is the best, or the curve still falls
    elif (
        degradation_z >= _threshold(INFLECTION_Z, noise_df)
        and rise_trend_z is not None
        and rise_trend_z >= _threshold(RISE_TREND_Z, noise_df)
    ):
        verdict = INFLECTION
    else:
        verdict = WITHIN_NOISE  # worse than the best, but not by a steady rise beyond noise
    return Inflection(
        best_step=int(step[best]),
        best_loss=best_loss,
        final_step=int(step[-1]),
        final_loss=final_loss,
        degradation=degradation,
        degradation_pct=degradation_pct,
        noise=noise,
        noise_source=noise_source,
        degradation_z=degradation_z,
        rise_trend_z=rise_trend_z,
        onset_step=None if onset is None else int(step[onset]),
        verdict=verdict,
    )


# ---------------------------------------------------------------------------------------
# Seed statistics: how much one experiment varies from run to run
# ---------------------------------------------------------------------------------------


def _finite_values(values: Any) -> np.ndarray:
    """Per-seed values as floats, without missing (None/NaN) seeds."""
    array = np.asarray([np.nan if v is None else v for v in np.ravel(values)], dtype=float)
    return array[np.isfinite(array)]


@dataclass(frozen=True)
class SeedStats:
    """Mean over seeds with its spread and 95% t-interval; None where n is too small."""

    n: int
    mean: float | None
    std: float | None  # ddof = 1
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_stats(values: Sequence[float | None] | np.ndarray) -> SeedStats:
    """n, mean, std and 95% t-interval of one metric over seeds (None/NaN seeds skipped)."""
    from scipy import stats  # lazy: scipy costs seconds at import
    x = _finite_values(values)
    if x.size == 0:
        return SeedStats(0, None, None, None, None)
    mean = float(x.mean())
    if x.size == 1:
        return SeedStats(1, mean, None, None, None)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, x.size - 1)) * std / math.sqrt(x.size)
    return SeedStats(int(x.size), mean, std, mean - half, mean + half)


def seed_summary(
    runs: pd.DataFrame,
    metrics: Sequence[str] = ("final_loss", "best_loss", "degradation"),
    by: str = "experiment",
) -> pd.DataFrame:
    """Seed statistics per experiment: one row per (experiment, metric).

    runs: one row per run, with a `by` column and one column per metric.
    """
    missing = [c for c in (by, *metrics) if c not in runs.columns]
    if missing:
        raise UserInputError(
            f"the runs table has no column(s) {missing}; it has {list(runs.columns)}"
        )
    rows = [
        {by: group, "metric": metric, **seed_stats(part[metric].to_numpy()).to_dict()}
        for group, part in runs.groupby(by, sort=False)
        for metric in metrics
    ]
    return pd.DataFrame(rows, columns=[by, "metric", "n", "mean", "std", "ci_low", "ci_high"])


# ---------------------------------------------------------------------------------------
# Effects against the baseline
# ---------------------------------------------------------------------------------------

EFFECT_METHOD = "Welch's t-test on per-seed values, 95% interval"
BETTER = "better"
WORSE = "worse"
INDISTINGUISHABLE = "indistinguishable"
INSUFFICIENT_SEEDS = "insufficient seeds"
# Two-sided 95% normal quantile: the size of difference two independent noisy values
# reach by chance one time in twenty.
Z_95 = 1.959963984540054  # the normal distribution's 97.5% quantile


@dataclass(frozen=True)
class Effect:
    """Experiment minus baseline for one metric, with its 95% interval and a verdict.

    `noise_explained` is the difference that val-set noise alone reaches one time in
    twenty (from the val-loss standard errors), or None when they are unknown.
    """

    metric: str
    n_experiment: int
    n_baseline: int
    difference: float | None  # mean(experiment) - mean(baseline)
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    df: float | None  # Welch-Satterthwaite degrees of freedom
    noise_explained: float | None
    verdict: str
    note: str = ""
    method: str = EFFECT_METHOD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def effect_vs_baseline(
    experiment: Sequence[float | None] | np.ndarray,
    baseline: Sequence[float | None] | np.ndarray,
    *,
    metric: str = "",
    experiment_se: float | None = None,
    baseline_se: float | None = None,
    lower_is_better: bool = True,
) -> Effect:
    """Compare an experiment's per-seed values of one metric with the baseline's.

    experiment_se, baseline_se: val-set standard error of one run's value of the metric
    (nats), used for the size of difference noise alone explains.
    """
    from scipy import stats  # lazy: scipy costs seconds at import
    a, b = _finite_values(experiment), _finite_values(baseline)
    if a.size == 0 or b.size == 0:
        side = "experiment" if a.size == 0 else "baseline"
        note = f"no finite {metric or 'metric'} values for the {side}"
        return Effect(metric, int(a.size), int(b.size), None, None, None, None, None, None,
                      INSUFFICIENT_SEEDS, note=note)
    difference = float(a.mean() - b.mean())
    noise_explained = (
        Z_95 * math.hypot(experiment_se, baseline_se)
        if experiment_se is not None and baseline_se is not None
        else None
    )

    if a.size < 2 or b.size < 2:
        if noise_explained is None:
            note = ("one seed and no val-loss standard error recorded (reference-format "
                    "results): the difference cannot be told from noise; run more seeds")
        else:
            within = "within" if abs(difference) <= noise_explained else "beyond"
            note = (f"one seed: the difference is {within} what val-set noise alone explains "
                    f"({noise_explained:.4f}); seed-to-seed variation is unknown")
        return Effect(metric, int(a.size), int(b.size), difference, None, None, None, None,
                      noise_explained, INSUFFICIENT_SEEDS, note=note)

    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:  # every seed gave the same value: the difference has no spread
        ci_low = ci_high = difference
        p_value, df = (0.0 if difference else 1.0), None
    else:
        result = stats.ttest_ind(a, b, equal_var=False)
        interval = result.confidence_interval(0.95)
        ci_low, ci_high = float(interval.low), float(interval.high)
        p_value, df = float(result.pvalue), float(result.df)

    note = ""
    if ci_low > 0 or ci_high < 0:
        lower = ci_high < 0
        verdict = BETTER if lower == lower_is_better else WORSE
        # A few seeds can agree closely by chance: a difference the val-set noise of single
        # runs explains is not called an effect, however tight the seeds.
        if noise_explained is not None and abs(difference) <= noise_explained:
            verdict = INDISTINGUISHABLE
            note = (f"the seeds agree on a difference of {difference:+.4f}, but val-set noise "
                    f"alone explains up to {noise_explained:.4f}")
    else:
        verdict = INDISTINGUISHABLE
    return Effect(metric, int(a.size), int(b.size), difference, ci_low, ci_high, p_value, df,
                  noise_explained, verdict, note=note)


def effects_vs_baseline(
    runs: pd.DataFrame,
    metrics: Sequence[str] = ("final_loss", "best_loss", "degradation"),
    baseline: str = "baseline",
    by: str = "experiment",
    se_columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Effect of every experiment against the baseline, one row per (experiment, metric).

    runs: one row per run; se_columns maps a metric to the column holding each run's
    val-set standard error of it (mean over seeds is used per side).
    """
    se_columns = dict(se_columns or {})
    missing = [c for c in (by, *metrics, *se_columns.values()) if c not in runs.columns]
    if missing:
        raise UserInputError(
            f"the runs table has no column(s) {missing}; it has {list(runs.columns)}"
        )
    if baseline not in set(runs[by]):
        raise UserInputError(
            f"no runs of the baseline {baseline!r} in column {by!r}; experiments present: "
            f"{sorted(set(runs[by]))}"
        )
    base = runs[runs[by] == baseline]

    def side_se(part: pd.DataFrame, metric: str) -> float | None:
        if metric not in se_columns:
            return None
        values = _finite_values(part[se_columns[metric]].to_numpy())
        return float(values.mean()) if values.size else None

    rows = []
    for group, part in runs.groupby(by, sort=False):
        if group == baseline:
            continue
        for metric in metrics:
            effect = effect_vs_baseline(
                part[metric].to_numpy(), base[metric].to_numpy(), metric=metric,
                experiment_se=side_se(part, metric), baseline_se=side_se(base, metric),
            )
            rows.append({by: group, **effect.to_dict()})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Hypothesis verdicts: which explanation of the inflection the evidence supports
# ---------------------------------------------------------------------------------------

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class OverfittingEvidence:
    """Evidence on "the model memorises the repeated train split". None = not measured."""

    gap_growth: float | None = None  # (val - train_subset) loss gap: end minus minimum, nats
    gap_noise: float | None = None  # standard error of gap_growth, nats
    epochs_at_onset: float | None = None  # passes over the train split when the rise begins
    excess_over_floor: float | None = None  # final val loss minus the Bayes floor, nats
    higher_dropout: str | None = None  # effect verdicts on degradation vs the baseline
    early_stopping: str | None = None
    fresh_data: str | None = None
    fresh_data_inflection: str | None = None  # detect_inflection verdict of fresh_data


@dataclass(frozen=True)
class LRScheduleEvidence:
    """Evidence on "the LR is still too high when the loss turns". None = not measured."""

    lr_at_onset_fraction: float | None = None  # LR in force at the onset / peak LR
    constant_lr: str | None = None  # effect verdicts on degradation vs the baseline
    linear_decay: str | None = None
    slower_min_lr: str | None = None
    reference_lr_horizon: str | None = None  # the reference's LR that stays near its peak


@dataclass(frozen=True)
class LoadBalancingEvidence:
    """Evidence on "the balancing pressure on the router causes the rise". None = not
    measured."""

    aux_loss_fraction: float | None = None  # load-balancing loss / CE loss at the end
    max_violation: float | None = None  # routing imbalance at the end (0 = balanced)
    lower_lb_weight: str | None = None  # effect verdicts on degradation vs the baseline
    no_lb: str | None = None
    aux_free_balance: str | None = None
    router_z_loss: str | None = None


def _effect_reasons(
    effects: Mapping[str, str | None], predicted: str, why: str
) -> tuple[int, int, list[str]]:
    """Count experiments whose degradation moved as the hypothesis predicts, or against."""
    agree, disagree, reasons = 0, 0, []
    for name, verdict in effects.items():
        if verdict is None:
            continue
        if verdict in (BETTER, WORSE):
            matches = verdict == predicted
            agree, disagree = agree + matches, disagree + (not matches)
            reasons.append(
                f"{name}: degradation {verdict} than baseline "
                f"({'as' if matches else 'against what'} {why} predicts)"
            )
        elif verdict == INDISTINGUISHABLE:
            reasons.append(f"{name}: degradation indistinguishable from baseline "
                           "(no detected effect)")
        else:
            reasons.append(f"{name}: {verdict}, no verdict on degradation")
    return agree, disagree, reasons


def _compared(verdict: str) -> str:
    """An effect verdict before "baseline": "better than", "indistinguishable from"."""
    return f"{verdict} from" if verdict == INDISTINGUISHABLE else f"{verdict} than"


def _count_verdict(agree: int, disagree: int) -> str:
    """Two agreeing experiments and none against support; only disagreement refutes."""
    if agree >= 2 and disagree == 0:
        return SUPPORTED
    if disagree >= 1 and agree == 0:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def overfitting_verdict(evidence: OverfittingEvidence) -> tuple[str, list[str]]:
    """Verdict on overfitting; fresh_data (the same steps on data that never repeats) decides."""
    e, reasons = evidence, []
    refuted = False  # any one of: no gap growth, onset before repeats, rise on fresh data

    gap_grows = None
    if e.gap_growth is not None:
        margin = 2 * e.gap_noise if e.gap_noise is not None else 0.0
        gap_grows = e.gap_growth > margin
        noise_text = (f" (noise {e.gap_noise:.4f})" if e.gap_noise is not None
                      else " (noise unknown)")
        reasons.append(
            f"val - train gap grows by {e.gap_growth:.4f} nats from its minimum{noise_text}: "
            + ("the model fits the train split better than new text" if gap_grows
               else "no growth beyond noise")
        )
        refuted |= not gap_grows
    if e.epochs_at_onset is not None:
        repeated = e.epochs_at_onset >= 1.0
        reasons.append(
            f"the rise begins after {e.epochs_at_onset:.1f} epochs: "
            + ("train sequences had been repeated" if repeated
               else "before any train sequence repeated")
        )
        refuted |= not repeated
    if e.excess_over_floor is not None:
        reasons.append(f"final val loss is {e.excess_over_floor:.4f} nats above the Bayes floor")

    vanished = e.fresh_data == BETTER or e.fresh_data_inflection == NO_INFLECTION
    persists = e.fresh_data == WORSE or e.fresh_data_inflection == INFLECTION
    if e.fresh_data is not None:
        reasons.append(f"fresh_data (no repeated sequences): degradation "
                       f"{_compared(e.fresh_data)} baseline")
    if e.fresh_data_inflection is not None:
        reasons.append(f"fresh_data curve: {e.fresh_data_inflection}")
    if persists and not vanished:
        refuted = True
        reasons.append("the inflection persists without repeated data")
    for name, verdict, meaning in (
        ("higher_dropout", e.higher_dropout, "more regularisation"),
        ("early_stopping", e.early_stopping, "stopping at the best eval, whatever the cause"),
    ):
        if verdict is not None:
            reasons.append(f"{name}: degradation {_compared(verdict)} baseline ({meaning})")

    if refuted:
        return NOT_SUPPORTED, reasons
    if vanished and not persists and gap_grows:
        reasons.append("the inflection vanishes with fresh data while the gap grows")
        return SUPPORTED, reasons
    if not reasons:
        reasons.append("no overfitting evidence was measured")
    return INCONCLUSIVE, reasons


def lr_schedule_verdict(evidence: LRScheduleEvidence) -> tuple[str, list[str]]:
    """Verdict on the LR schedule: a higher late LR (constant, linear, higher floor, the
    reference's horizon) should degrade more if a too-high LR causes the rise."""
    reasons = []
    if evidence.lr_at_onset_fraction is not None:
        fraction = evidence.lr_at_onset_fraction
        state = ("still near its peak" if fraction >= 0.5
                 else "already near its floor" if fraction <= 0.25 else "part-way down")
        reasons.append(f"the LR at the onset is {100 * fraction:.0f}% of its peak ({state})")
    agree, disagree, effect_reasons = _effect_reasons(
        {"constant_lr": evidence.constant_lr, "linear_decay": evidence.linear_decay,
         "slower_min_lr": evidence.slower_min_lr,
         "reference_lr_horizon": evidence.reference_lr_horizon},
        predicted=WORSE, why="a too-high late LR",
    )
    reasons += effect_reasons or ["no LR-schedule experiment was measured"]
    return _count_verdict(agree, disagree), reasons


def load_balancing_verdict(evidence: LoadBalancingEvidence) -> tuple[str, list[str]]:
    """Verdict on load balancing: weaker or gradient-free balancing, or a steadier router,
    should degrade less if the balancing pressure causes the rise."""
    reasons = []
    if evidence.aux_loss_fraction is not None:
        reasons.append(f"the load-balancing loss is {100 * evidence.aux_loss_fraction:.2f}% "
                       "of the CE loss")
    if evidence.max_violation is not None:
        reasons.append(f"the busiest expert gets {100 * evidence.max_violation:.0f}% more "
                       "tokens than the mean")
    agree, disagree, effect_reasons = _effect_reasons(
        {"lower_lb_weight": evidence.lower_lb_weight, "no_lb": evidence.no_lb,
         "aux_free_balance": evidence.aux_free_balance, "router_z_loss": evidence.router_z_loss},
        predicted=BETTER, why="balancing pressure as the cause",
    )
    reasons += effect_reasons or ["no load-balancing experiment was measured"]
    return _count_verdict(agree, disagree), reasons


def require_inflection(verdicts: Mapping[str, tuple[str, Sequence[str]]],
                       baseline_inflections: Sequence[str],
                       reference_schedule_inflections: Sequence[str] = ()
                       ) -> dict[str, tuple[str, list[str]]]:
    """Every hypothesis is inconclusive when neither a baseline run nor a run of the
    reference's own schedule (reference_lr_horizon: the configuration whose rise the study
    set out to explain) shows an inflection: a cause cannot be supported for an effect that
    did not occur. When only the reference's schedule turns, each hypothesis says so first."""
    in_baseline = any(v == INFLECTION for v in baseline_inflections)
    in_reference = any(v == INFLECTION for v in reference_schedule_inflections)
    if in_baseline:
        return {name: (verdict, list(reasons)) for name, (verdict, reasons) in verdicts.items()}
    seen = ", ".join(sorted(set(baseline_inflections))) or "no baseline run"
    if in_reference:
        turned = sum(v == INFLECTION for v in reference_schedule_inflections)
        why = (f"the rise appears with the reference's own LR schedule (reference_lr_horizon: "
               f"{turned} of {len(reference_schedule_inflections)} run(s) inflect) but not in "
               f"the corrected baseline ({len(baseline_inflections)} run(s): {seen})")
        return {name: (verdict, [why, *reasons]) for name, (verdict, reasons) in verdicts.items()}
    why = (f"no baseline run shows an inflection ({len(baseline_inflections)} run(s): {seen}), "
           "so there is no rise for this explanation to account for")
    if reference_schedule_inflections:
        why += (" and neither does the reference's own schedule (reference_lr_horizon, "
                f"{len(reference_schedule_inflections)} run(s))")
    return {name: (INCONCLUSIVE, [why, *reasons]) for name, (_, reasons) in verdicts.items()}


def conclusion(verdicts: Mapping[str, tuple[str, Sequence[str]]]) -> str:
    """A paragraph summarising hypothesis verdicts: {name: (verdict, reasons)}."""
    if not verdicts:
        return "No hypothesis was evaluated."
    named = {v: [n for n, (verdict, _) in verdicts.items() if verdict == v]
             for v in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)}

    def listing(names: list[str]) -> str:
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    gated = [reasons[0] for _, reasons in verdicts.values()
             if reasons and reasons[0].startswith("no baseline run shows an inflection")]
    if len(gated) == len(verdicts):
        return (f"There is no inflection to explain: {gated[0]}. The three explanations stay "
                "untested here; the per-hypothesis evidence below describes the runs only.")
    if len(named[SUPPORTED]) == 1:
        opening = f"The evidence supports {named[SUPPORTED][0]} as the cause of the inflection."
    elif named[SUPPORTED]:
        opening = (f"The evidence supports {listing(named[SUPPORTED])}; they may act together, "
                   "and experiments that separate them deserve more seeds.")
    else:
        opening = "None of the explanations is supported by the evidence at hand."
    sentences = [opening]
    if named[NOT_SUPPORTED]:
        sentences.append(f"It does not support {listing(named[NOT_SUPPORTED])}.")
    if named[INCONCLUSIVE]:
        sentences.append(f"For {listing(named[INCONCLUSIVE])} it is inconclusive: more seeds "
                         "or the missing experiments would decide.")
    for name, (verdict, reasons) in verdicts.items():
        detail = "; ".join(reasons) if reasons else "no evidence"
        sentences.append(f"{name[0].upper() + name[1:]} ({verdict}): {detail}.")
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------
# Routing statistics
# ---------------------------------------------------------------------------------------


def _to_numpy(values: Any) -> np.ndarray:
    """numpy float64 view of a numpy array or a torch tensor (any device)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def max_violation(tokens_per_expert: Any) -> float | np.ndarray:
    """Load of the busiest expert over the mean load, minus 1 (0 = perfect balance).

    tokens_per_expert: (..., E) counts or shares; returns a float for (E,), else (...,).
    NaN where no token was routed.
    """
    load = _to_numpy(tokens_per_expert)
    mean = load.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        violation = np.where(mean > 0, load.max(axis=-1) / mean - 1.0, np.nan)
    return float(violation) if violation.ndim == 0 else violation


def routing_entropy(expert_load: Any) -> tuple[Any, Any]:
    """Entropy of the load distribution over experts: (nats, fraction of log E).

    expert_load: (..., E) counts, shares or mean router probabilities; 1.0 as a fraction
    means every expert gets the same share, 0.0 that one expert gets everything.
    """
    load = _to_numpy(expert_load)
    total = load.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = load / total
        terms = np.where(share > 0, -share * np.log(share), 0.0)
    nats = np.where(total[..., 0] > 0, terms.sum(axis=-1), np.nan)
    num_experts = load.shape[-1]
    fraction = nats / math.log(num_experts) if num_experts > 1 else np.full_like(nats, np.nan)
    if nats.ndim == 0:
        return float(nats), float(fraction)
    return nats, fraction


def coselection_matrix(topk_indices: Any, num_experts: int) -> np.ndarray:
    """How often experts i and j serve the same token, per token: (E, E), symmetric.

    topk_indices: (..., k) ints, the experts chosen for each token. The diagonal is the
    share of tokens routed to expert i; entry (i, j) the share routed to both i and j.
    """
    indices = _to_numpy(topk_indices).astype(np.int64)
    if indices.ndim < 1:
        raise UserInputError("topk_indices must have a last dimension of size k")
    indices = indices.reshape(-1, indices.shape[-1]) if indices.ndim > 1 else indices[:, None]
    if indices.size and (indices.min() < 0 or indices.max() >= num_experts):
        raise UserInputError(
            f"topk_indices hold expert {int(indices.min())}..{int(indices.max())}, "
            f"outside 0..{num_experts - 1}"
        )
    chosen = np.zeros((indices.shape[0], num_experts))
    np.put_along_axis(chosen, indices, 1.0, axis=1)
    return chosen.T @ chosen / max(indices.shape[0], 1)


def expert_warnings(tokens_per_expert: Any) -> list[str]:
    """Warnings for dead experts (no tokens) and collapsed ones (share below 1/(4E)).

    tokens_per_expert: (E,) for one layer or (layers, E).
    """
    load = _to_numpy(tokens_per_expert)
    if load.ndim not in (1, 2):
        raise UserInputError(f"tokens_per_expert must be (E,) or (layers, E), got {load.shape}")
    per_layer = load[None] if load.ndim == 1 else load
    num_experts = per_layer.shape[-1]
    floor = 1.0 / (4 * num_experts)
    warnings = []
    for layer, counts in enumerate(per_layer):
        total = counts.sum()
        where = f"layer {layer} " if load.ndim == 2 else ""
        if total <= 0:
            warnings.append(f"{where}no tokens routed to any expert")
            continue
        for expert, count in enumerate(counts):
            share = count / total
            if count == 0:
                warnings.append(f"{where}expert {expert}: dead (no tokens routed to it)")
            elif share < floor:
                warnings.append(
                    f"{where}expert {expert}: collapsed ({100 * share:.2f}% of tokens, "
                    f"below 1/(4E) = {100 * floor:.2f}%)"
                )
    return warnings
