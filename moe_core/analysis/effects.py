"""Seed-level statistics: does an arm's val loss rise, and does an intervention change a
number (the rise, the end loss) compared with its control, beyond noise.

Two kinds of noise, each counted once:
- training noise: a run's curve depends on its seed (initialisation, batch order) and
  wanders. It is measured by the spread of a per-seed value over seeds, which contains
  the wander whatever its correlation in time.
- val-set noise: the val split is a sample of text. Runs on the same val split (the same
  `windows_sha`) share that sample, so their difference is taken sequence by sequence
  (paired), which removes the split's sampling error common to both; runs on different
  splits add their errors.
The two variances add, and Welch-Satterthwaite gives the degrees of freedom. Adding them
counts the seed x sequence interaction twice, which errs towards "no effect".

The rise of one seed is measured at a place chosen by the other seeds (leave one out):
the end window's mean minus the mean of the window where the other seeds' mean curve is
lowest. A place chosen on a seed's own curve would be low partly by its own noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from moe_core.analysis.inflection import window_means, window_size
from moe_core.errors import UserInputError

ALPHA = 0.05  # family-wise, for every family of tests in the report
POWER = 0.8  # for the smallest difference a comparison could have detected
# statsmodels.stats.multitest.multipletests method: Holm's step-down with Sidak's per-step
# levels, valid for independent tests (the rise of different arms) and for two-sided tests
# of jointly normal estimates whatever their correlation (comparisons with one control)
CORRECTION = "holm-sidak"


@dataclass(frozen=True)
class ArmCurves:
    """One arm's val-loss curves on common eval steps.

    loss: (seeds, evals) nats; per_sequence: (seeds, evals, sequences) or None;
    train_loss: (seeds, evals) loss on the train subset, or None.
    """

    arm: str
    steps: np.ndarray
    loss: np.ndarray
    seeds: tuple[int, ...]
    run_ids: tuple[str, ...]
    per_sequence: np.ndarray | None = None
    train_loss: np.ndarray | None = None
    val_sha: str | None = None
    lr: np.ndarray | None = None  # (seeds, evals) LR applied (first parameter group)

    @property
    def n_seeds(self) -> int:
        return int(self.loss.shape[0])

    @property
    def window(self) -> int:
        return window_size(self.loss.shape[1])


@dataclass(frozen=True)
class ArmStatistic:
    """A per-seed value of one arm and, when known, its per-val-sequence values (the mean
    over seeds of each sequence's value), for paired comparisons on the same val split."""

    arm: str
    name: str
    per_seed: np.ndarray
    per_sequence: np.ndarray | None = None
    val_sha: str | None = None
    # where each seed's rise was measured from: (first step, last step) of its low window
    low_windows: tuple[tuple[int, int], ...] = ()

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_seed))


@dataclass(frozen=True)
class Test:
    """An estimate with its standard error, degrees of freedom, p-value and 95% interval.

    For two arms the estimate is first minus second; `paired` says whether the val-set
    part was taken sequence by sequence. p is one-sided (> 0) or two-sided, per
    `alternative`; None where there is no noise estimate (one seed and no per-sequence
    losses, or every source of noise exactly zero).
    """

    name: str
    estimate: float
    se: float | None
    df: float | None
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    alternative: str
    n: tuple[int, ...]
    se_seeds: float | None
    se_val: float | None
    paired: bool = False
    note: str = ""
    p_adjusted: float | None = None
    significant: bool = False
    detectable: float | None = None  # smallest |difference| found 80% of the time
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- per-seed statistics


def _leave_one_out_lows(means: np.ndarray) -> np.ndarray:
    """For each seed, the window index where the other seeds' mean curve is lowest (its own
    lowest window when it is the only seed). means: (seeds, windows)."""
    if means.shape[0] == 1:
        return np.array([int(np.argmin(means[0]))])
    total = means.sum(0)
    return np.array([int(np.argmin(total - row)) for row in means])


def rise_statistic(curves: ArmCurves) -> ArmStatistic:
    """Each seed's end-window mean minus its mean over the window where the other seeds are
    lowest; per sequence likewise (mean over seeds)."""
    window = curves.window
    means = window_means(curves.loss, window)
    lows = _leave_one_out_lows(means)
    per_seed = means[:, -1] - means[np.arange(curves.n_seeds), lows]
    per_sequence = None
    if curves.per_sequence is not None:
        changes = [_window_change(curves.per_sequence[i], low, window)
                   for i, low in enumerate(lows)]
        per_sequence = np.mean(changes, axis=0)
    steps = curves.steps
    return ArmStatistic(curves.arm, "rise", per_seed, per_sequence, curves.val_sha,
                        tuple((int(steps[lo]), int(steps[lo + window - 1])) for lo in lows))


def _window_change(sequences: np.ndarray, low: int, window: int) -> np.ndarray:
    """Per sequence: mean over the last window minus mean over the window at `low`."""
    return sequences[-window:].mean(0) - sequences[low:low + window].mean(0)


def end_statistic(curves: ArmCurves) -> ArmStatistic:
    """Each seed's mean val loss over the last window (less noisy than the last eval)."""
    window = curves.window
    per_sequence = None
    if curves.per_sequence is not None:
        per_sequence = curves.per_sequence[:, -window:].mean(axis=(0, 1))
    return ArmStatistic(curves.arm, "end loss", curves.loss[:, -window:].mean(1), per_sequence,
                        curves.val_sha)


def gap_growth_statistic(curves: ArmCurves) -> ArmStatistic | None:
    """Growth of (val - train-subset) loss from each seed's low window (as in
    rise_statistic) to the end window; None without train-subset losses."""
    if curves.train_loss is None or not np.all(np.isfinite(curves.train_loss)):
        return None
    window = curves.window
    gap = window_means(curves.loss - curves.train_loss, window)
    lows = _leave_one_out_lows(window_means(curves.loss, window))
    return ArmStatistic(curves.arm, "gap growth",
                        gap[:, -1] - gap[np.arange(curves.n_seeds), lows], None, curves.val_sha)


# ---------------------------------------------------------------- tests


def _seed_variance(values: np.ndarray) -> tuple[float, float] | None:
    """(variance of the mean, df) over seeds; None for one seed."""
    if values.size < 2:
        return None
    return float(values.var(ddof=1) / values.size), float(values.size - 1)


def _val_variance(per_sequence: np.ndarray | None) -> tuple[float, float] | None:
    if per_sequence is None or per_sequence.size < 2:
        return None
    return float(per_sequence.var(ddof=1) / per_sequence.size), float(per_sequence.size - 1)


def satterthwaite(parts: Sequence[tuple[float, float] | None]) -> tuple[float | None,
                                                                        float | None]:
    """(SE, df) of a sum of independent variance components (variance, df each)."""
    parts = [p for p in parts if p is not None]
    total = sum(v for v, _ in parts)
    if not parts or total <= 0:
        return (None, None) if not parts else (0.0, None)
    denominator = sum(v * v / d for v, d in parts if v > 0)
    return math.sqrt(total), total * total / denominator


def _finish(name: str, estimate: float, se: float | None, df: float | None, alternative: str,
            n: tuple[int, ...], se_seeds: float | None, se_val: float | None,
            paired: bool = False, note: str = "") -> Test:
    from scipy import stats  # lazy: scipy costs seconds at import

    if se is None or se == 0 or df is None:
        why = ("one seed and no per-sequence losses: no noise estimate" if se is None
               else "every noise source is exactly zero: no noise estimate")
        return Test(name, estimate, se, df, None, None, None, alternative, n, se_seeds, se_val,
                    paired, why)
    t = estimate / se
    p = float(stats.t.sf(t, df)) if alternative == "greater" else float(2 * stats.t.sf(abs(t),
                                                                                       df))
    half = float(stats.t.ppf(0.975, df)) * se
    return Test(name, estimate, se, df, p, estimate - half, estimate + half, alternative, n,
                se_seeds, se_val, paired, note)


def one_sample(stat: ArmStatistic, alternative: str = "greater") -> Test:
    """Is the arm's mean value above zero? Seeds and val sequences both count as noise."""
    seeds, val = _seed_variance(stat.per_seed), _val_variance(stat.per_sequence)
    se, df = satterthwaite([seeds, val])
    note = "" if seeds is not None else "one seed: run-to-run variation unknown"
    return _finish(f"{stat.name} of {stat.arm}", stat.mean, se, df, alternative,
                   (int(stat.per_seed.size),), _root(seeds), _root(val), note=note)


def scaled(stat: ArmStatistic, factor: float) -> ArmStatistic:
    """The statistic times a constant, per seed and per sequence (e.g. half a control's rise,
    to test whether another arm keeps more than half of it)."""
    return replace(stat, name=f"{factor:g} x {stat.name}", per_seed=stat.per_seed * factor,
                   per_sequence=None if stat.per_sequence is None
                   else stat.per_sequence * factor)


def two_sample(a: ArmStatistic, b: ArmStatistic, alternative: str = "two-sided") -> Test:
    """a minus b: Welch over seeds, plus the val-set part, paired by sequence when both
    arms were scored on the same val split. alternative "greater": one-sided, a - b > 0."""
    seeds = [_seed_variance(a.per_seed), _seed_variance(b.per_seed)]
    paired = (a.per_sequence is not None and b.per_sequence is not None and a.val_sha
              and a.val_sha == b.val_sha and a.per_sequence.shape == b.per_sequence.shape)
    if paired:
        val = [_val_variance(a.per_sequence - b.per_sequence)]
    else:
        val = [_val_variance(a.per_sequence), _val_variance(b.per_sequence)]
    se, df = satterthwaite([*seeds, *val])
    seed_part = satterthwaite(seeds)[0] if any(seeds) else None
    val_part = satterthwaite(val)[0] if any(val) else None
    notes = []
    if None in seeds:
        notes.append("one seed on a side: run-to-run variation unknown there")
    if not paired and a.per_sequence is not None and b.per_sequence is not None:
        notes.append("different val splits: their sampling errors add")
    return _finish(f"{a.name}: {a.arm} - {b.arm}", a.mean - b.mean, se, df, alternative,
                   (int(a.per_seed.size), int(b.per_seed.size)), seed_part, val_part,
                   bool(paired), "; ".join(notes))


def _root(part: tuple[float, float] | None) -> float | None:
    return None if part is None else math.sqrt(part[0])


def detectable_difference(se: float | None, df: float | None, alpha: float,
                          power: float = POWER, two_sided: bool = True) -> float | None:
    """The smallest true difference a test with this SE finds with probability `power`."""
    from scipy import stats

    if se is None or df is None or se == 0:
        return None
    level = alpha / 2 if two_sided else alpha
    return float((stats.t.ppf(1 - level, df) + stats.t.ppf(power, df)) * se)


def correct(tests: Sequence[Test], alpha: float = ALPHA) -> list[Test]:
    """The tests of one family with Holm-adjusted p-values, significance at family-wise
    `alpha` and the difference each could have detected (at alpha / family size, the
    first Holm step). Tests without a p-value are never significant."""
    from statsmodels.stats.multitest import multipletests

    tests = list(tests)
    usable = [i for i, t in enumerate(tests) if t.p_value is not None]
    adjusted: dict[int, tuple[bool, float]] = {}
    if usable:
        reject, p_adj, _, _ = multipletests([tests[i].p_value for i in usable], alpha=alpha,
                                            method=CORRECTION)
        adjusted = {i: (bool(r), float(p)) for i, r, p in zip(usable, reject, p_adj,
                                                              strict=True)}
    size = max(1, len(tests))
    out = []
    for i, test in enumerate(tests):
        significant, p_adj = adjusted.get(i, (False, None))
        out.append(replace(test, p_adjusted=p_adj, significant=significant,
                           detectable=detectable_difference(
                               test.se, test.df, alpha / size,
                               two_sided=test.alternative != "greater")))
    return out


def arm_curves_of(arm: str, runs: Mapping[str, Any], per_sequence: Mapping[str, np.ndarray],
                  val_sha: str | None = None) -> ArmCurves:
    """An arm's curves from its runs' eval tables (run_id -> rows with seed, step, val_loss,
    train_subset_loss) and per-sequence arrays; runs are cut to the steps they all reached,
    so an early-stopped seed shortens the comparison rather than breaking it."""
    if not runs:
        raise UserInputError(f"arm {arm!r} has no evals to analyse")
    by_run = {r: part.sort_values("step") for r, part in runs.items()}
    common = sorted(set.intersection(*(set(part["step"]) for part in by_run.values())))
    if len(common) < 2:
        raise UserInputError(f"the runs of {arm!r} share fewer than 2 eval steps")
    steps = np.asarray(common)
    index = {r: np.searchsorted(part["step"].to_numpy(), steps) for r, part in by_run.items()}

    def column(name: str) -> np.ndarray:
        return np.stack([part[name].to_numpy(float)[index[r]] for r, part in by_run.items()])

    def optional(name: str) -> np.ndarray | None:
        return column(name) if all(name in part for part in by_run.values()) else None

    sequences = None
    if all(r in per_sequence for r in by_run):
        picked = [np.asarray(per_sequence[r])[index[r]] for r in by_run]
        if len({p.shape for p in picked}) == 1:
            sequences = np.stack(picked)
    seeds = tuple(int(s) if s == s else -1 for s in (part["seed"].iloc[0]
                                                     for part in by_run.values()))
    return ArmCurves(arm, steps, column("val_loss"), seeds, tuple(by_run), sequences,
                     optional("train_subset_loss"), val_sha, optional("lr"))
