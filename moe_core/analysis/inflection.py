"""Where one val-loss curve is lowest, how much it rises after, and whether one curve alone
shows that rise beyond its own noise.

The reference measured the rise as final minus best eval. Both ends of that difference are
single noisy evals, and the best one is the lowest of many, so the difference grows with
noise and with the number of evals even on a flat curve. Here a rise is measured between
windows of evals (the mean of the last `W` evals minus the lowest mean of any `W`
consecutive evals, `W` = 10% of the curve), and one curve's rise is judged against curves
of pure correlated noise with the same length and wander (a parametric bootstrap), so the
selection of the lowest window is part of the null distribution.

One curve cannot tell slow wander from a trend: these per-run labels describe runs. Whether
an experiment rises is decided over seeds (`moe_core.analysis.effects`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from moe_core.errors import UserInputError

INFLECTION = "inflection"
WITHIN_NOISE = "within noise"
NO_INFLECTION = "no inflection"

WINDOW_FRACTION = 0.1  # a window is this share of the evals...
MIN_WINDOW = 3  # ...but at least this many
ALPHA = 0.05  # a run "inflects" when its rise has a bootstrap p-value below this
BOOTSTRAP_CURVES = 2000
# A run's rise must also clear the val-set noise of that rise (the per-sequence SE of
# end-window minus lowest-window losses, one-sided 95%), when per-sequence losses exist.
VAL_NOISE_Z = 1.6448536269514722


@dataclass(frozen=True)
class CurveRise:
    """One curve's lowest window, its end window and the rise between them, in nats.

    `best_*` and `final_*` are the reference's single-eval measures (degradation = final -
    best), kept for comparison with its numbers; `rise` is the window measure judged here.
    """

    window: int  # evals per window
    low_start_step: int  # first and last step of the lowest window
    low_end_step: int
    low_loss: float  # mean loss of the lowest window
    end_loss: float  # mean loss of the last window
    rise: float  # end_loss - low_loss, >= 0
    rise_pct: float
    best_step: int
    best_loss: float
    final_loss: float
    degradation: float  # final - best (the reference's measure)
    wander_sd: float  # the curve's own noise: sd of its AR(1) residual wander
    wander_autocorrelation: float  # lag-1 autocorrelation of that wander
    p_value: float | None  # bootstrap: share of noise-only curves rising at least this much
    val_se: float | None  # per-sequence SE of the rise (runs with per-sequence losses)
    onset_step: int | None  # middle of the lowest window, for runs that inflect
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_size(n_evals: int) -> int:
    """Evals per window: WINDOW_FRACTION of the curve, at least MIN_WINDOW, at most half."""
    return max(1, min(max(MIN_WINDOW, round(WINDOW_FRACTION * n_evals)), n_evals // 2))


def window_means(values: np.ndarray, window: int) -> np.ndarray:
    """Means of every `window` consecutive values along the last axis: (..., n - window + 1)."""
    total = np.cumsum(values, axis=-1, dtype=float)
    total = np.concatenate([np.zeros(total.shape[:-1] + (1,)), total], axis=-1)
    return (total[..., window:] - total[..., :-window]) / window


def window_rise(values: np.ndarray, window: int) -> np.ndarray:
    """Last window's mean minus the lowest window's mean along the last axis (>= 0)."""
    means = window_means(values, window)
    return means[..., -1] - means.min(axis=-1)


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
            "cut the curve before it")
    return array


def fit_wander(val_loss: np.ndarray) -> tuple[float, float]:
    """(sd, lag-1 autocorrelation) of a curve's AR(1) wander, from its last half.

    A quadratic fitted to the last half takes out the late trend and its bend; the lag-1
    autocorrelation of the residuals, corrected for its small-sample bias (Kendall: about
    -(1 + 4 phi) / m), estimates how slowly the curve wanders. A fit over a shorter span
    (a smoother) would absorb slow wander and call it signal.
    """
    tail = np.asarray(val_loss, dtype=float)[len(val_loss) // 2:]
    m = tail.size
    if m < 5:
        return float("nan"), float("nan")
    x = np.arange(m)
    residual = tail - np.polyval(np.polyfit(x, tail, 2), x)
    power = float(np.sum(residual**2))
    phi = float(np.sum(residual[1:] * residual[:-1]) / power) if power > 0 else 0.0
    phi = float(np.clip(phi + (1 + 4 * phi) / m, 0.0, 0.99))
    sd = float(np.std(residual, ddof=3))
    return sd, phi


def ar1_curves(n_evals: int, sd: float, phi: float, count: int,
               rng: np.random.Generator) -> np.ndarray:
    """`count` stationary AR(1) series of marginal sd `sd` and lag-1 correlation `phi`."""
    shocks = rng.standard_normal((count, n_evals)) * sd * math.sqrt(1 - phi**2)
    series = np.empty_like(shocks)
    series[:, 0] = rng.standard_normal(count) * sd
    for t in range(1, n_evals):
        series[:, t] = phi * series[:, t - 1] + shocks[:, t]
    return series


def rise_p_value(rise: float, n_evals: int, window: int, sd: float, phi: float,
                 curves: int = BOOTSTRAP_CURVES, seed: int = 0) -> float | None:
    """Share of flat noise-only curves (AR(1) of this sd and phi) whose window rise is at
    least `rise`: a flat curve is the least favourable case of "no rise after the lowest
    point", so the test errs towards "within noise". None when the noise is unknown."""
    if not (math.isfinite(sd) and math.isfinite(phi)):
        return None
    if sd == 0:
        return 0.0 if rise > 0 else 1.0
    null = window_rise(ar1_curves(n_evals, sd, phi, curves, np.random.default_rng(seed)), window)
    return float((1 + np.sum(null >= rise)) / (curves + 1))


def curve_rise(steps: Any, val_loss: Any, per_sequence: np.ndarray | None = None,
               alpha: float = ALPHA) -> CurveRise:
    """The window rise of one curve, its noise and a verdict.

    steps: (evals,) increasing; val_loss: (evals,) nats; per_sequence: (evals, sequences)
    val losses of each sequence at each eval, or None.
    """
    step = _as_curve("steps", steps)
    if step.size < 2:
        raise UserInputError(f"a val-loss curve needs at least 2 evals, got {step.size}")
    if np.any(np.diff(step) <= 0):
        raise UserInputError("steps must be strictly increasing (one eval per step)")
    loss = _as_curve("val_loss", val_loss, step.size)
    n, window = step.size, window_size(step.size)
    means = window_means(loss, window)
    low = int(np.argmin(means))
    rise = float(means[-1] - means[low])
    best = int(np.argmin(loss))

    sd, phi = fit_wander(loss)
    p_value = rise_p_value(rise, n, window, sd, phi) if rise > 0 else 1.0
    val_se = None
    if per_sequence is not None:
        sequences = np.asarray(per_sequence, dtype=float)
        if sequences.shape[0] != n or sequences.ndim != 2:
            raise UserInputError(f"per_sequence has shape {sequences.shape}; expected ({n}, "
                                 "sequences)")
        if sequences.shape[1] > 1:
            change = (sequences[n - window:].mean(0) - sequences[low:low + window].mean(0))
            val_se = float(change.std(ddof=1) / math.sqrt(change.size))

    if rise <= 0:
        verdict = NO_INFLECTION  # the last window is the lowest: still falling or flat
    elif p_value is not None and p_value < alpha and (
            val_se is None or rise > VAL_NOISE_Z * val_se):
        verdict = INFLECTION
    else:
        verdict = WITHIN_NOISE
    return CurveRise(
        window=window, low_start_step=int(step[low]), low_end_step=int(step[low + window - 1]),
        low_loss=float(means[low]), end_loss=float(means[-1]), rise=rise,
        rise_pct=100.0 * rise / float(means[low]) if means[low] else float("nan"),
        best_step=int(step[best]), best_loss=float(loss[best]), final_loss=float(loss[-1]),
        degradation=float(loss[-1] - loss[best]), wander_sd=sd, wander_autocorrelation=phi,
        p_value=p_value, val_se=val_se,
        onset_step=int(step[low + window // 2]) if verdict == INFLECTION else None,
        verdict=verdict)
