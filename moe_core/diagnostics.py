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
from scipy import signal, stats

from moe_core.errors import UserInputError

# ---------------------------------------------------------------------------------------
# Inflection detection on one val-loss curve
# ---------------------------------------------------------------------------------------

INFLECTION = "inflection"
WITHIN_NOISE = "within noise"
NO_INFLECTION = "no inflection"

# A rise counts as an inflection when it is this many noise units above the best eval...
INFLECTION_Z = 2.0
# ...and the evals after the best climb with a least-squares slope this many standard
# errors above zero. The second test guards against the lowest of many noisy evals on a
# plateau, which sits about 2 noise units below the rest by selection alone.
RISE_TREND_Z = 2.0
# Savitzky-Golay window as a share of the curve, so a 5-eval and a 500-eval run are
# smoothed over the same part of training.
SMOOTHING_FRACTION = 0.15


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
    noise_source: str  # "val_loss_se" (given) or "curve residuals" (estimated)
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


def smooth_curve(val_loss: Any) -> np.ndarray:
    """Savitzky-Golay smoothing of a curve over ~15% of its length (at least 5 evals)."""
    loss = np.asarray(val_loss, dtype=float)
    window = _smoothing_window(loss.size)
    if window < 3:
        return loss.copy()
    polyorder = 2 if window >= 5 else 1
    # mode="interp" fits the last window with one polynomial, so the end slope is a fit
    # to the final evals rather than an artefact of padding.
    return signal.savgol_filter(loss, window, polyorder, mode="interp")


def _onset_index(slope: np.ndarray) -> int | None:
    """First index from which the slope stays >= 0 to the end; None if it ends negative."""
    tolerance = 1e-12 * max(1.0, float(np.max(np.abs(slope))))
    negative = np.flatnonzero(slope < -tolerance)
    if negative.size == 0:
        return 0
    last_negative = int(negative[-1])
    return None if last_negative == slope.size - 1 else last_negative + 1


def eval_noise(val_loss: Any) -> float:
    """Per-eval noise of a curve (nats), from second differences over its last half.

    Differencing twice removes a locally linear trend, so a steady rise or fall is not
    mistaken for noise; for white noise of std s, Var(y[i-1] - 2 y[i] + y[i+1]) = 6 s^2.
    """
    loss = np.asarray(val_loss, dtype=float)
    tail = loss[loss.size // 2:]
    if tail.size < 5:  # fewer than 3 second differences: use the whole curve
        tail = loss
    if tail.size < 3:
        return float("nan")
    second = np.diff(tail, n=2)
    return float(np.sqrt(np.mean(second**2) / 6.0))


def _trend_z(steps: np.ndarray, loss: np.ndarray, sigma: float) -> float | None:
    """Least-squares slope of `loss` on `steps` divided by its SE, given per-eval noise."""
    if steps.size < 2:
        return None
    centred = steps - steps.mean()
    sxx = float(np.sum(centred**2))
    slope = float(np.sum(centred * (loss - loss.mean())) / sxx)
    if sigma > 0:
        return slope / (sigma / math.sqrt(sxx))
    return math.copysign(math.inf, slope) if slope != 0 else 0.0


def detect_inflection(
    steps: Sequence[float] | np.ndarray,
    val_loss: Sequence[float] | np.ndarray,
    val_loss_se: Sequence[float] | np.ndarray | None = None,
) -> Inflection:
    """Find the best eval, the degradation after it, its size in noise units, and a verdict.

    steps: (evals,) increasing; val_loss: (evals,) nats; val_loss_se: (evals,) standard
    error of each eval's loss, or None to estimate the noise from the curve itself.
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

    if val_loss_se is not None:
        se = _as_curve("val_loss_se", val_loss_se, step.size)
        if np.any(se < 0):
            raise UserInputError("val_loss_se must be >= 0 (a standard error)")
        noise = float(math.hypot(se[best], se[-1]))
        sigma = float(se[-1])
        noise_source = "val_loss_se"
    else:
        sigma = eval_noise(loss)
        noise = sigma * math.sqrt(2.0)
        noise_source = "curve residuals"
    if noise > 0:
        degradation_z = degradation / noise
    elif math.isnan(noise):  # two evals: no way to tell a rise from noise
        degradation_z = float("nan")
    else:
        degradation_z = math.inf if degradation > 0 else 0.0

    slope = np.gradient(smooth_curve(loss), step)
    onset = _onset_index(slope)
    onset_step = None if onset is None else int(step[onset])
    rise_trend_z = _trend_z(step[best:], loss[best:], sigma) if best < step.size - 1 else None
    last = -_smoothing_window(step.size)
    end_trend_z = _trend_z(step[last:], loss[last:], sigma)

    if degradation <= 0 or (onset is None and end_trend_z is not None
                            and end_trend_z <= -RISE_TREND_Z):
        verdict = NO_INFLECTION  # the final eval is the best, or the curve still falls
    elif (
        onset is not None
        and degradation_z >= INFLECTION_Z
        and rise_trend_z is not None
        and rise_trend_z >= RISE_TREND_Z
    ):
        verdict = INFLECTION
    else:
        # Worse than the best, but not by a steady rise beyond noise (or not turned yet).
        verdict = WITHIN_NOISE
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
        onset_step=onset_step,
        verdict=verdict,
    )
