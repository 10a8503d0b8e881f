"""Seed-level statistics: does an arm's val loss rise, and does an intervention change a
number (the rise, the end loss) compared with its control, beyond noise.

The unit of inference is the training run. The question every test answers is about
training randomness: would other seeds (another initialisation, another batch order)
show the same? So the degrees of freedom come from the seeds, never from the val
sequences: four seeds per arm cannot support p = 1e-21, however many sequences each run
is scored on.

- One arm (does it rise): the per-seed values' mean, SE = sd / sqrt(n), df = n - 1.
- Two arms that share their seeds (the same set of seeds, each once: runs with one seed
  share initialisation and, on the same data, batch order) are **paired by seed**: the
  difference seed by seed, SE = sd(difference) / sqrt(n), df = n - 1 (a paired t). Runs of
  one seed are correlated (r = 0.95 between the rises of no_lb@reference_lr and its
  control in the demo); Welch would count that shared noise twice, and a placebo arm,
  bit-identical to its control, would get an interval of +-0.026 around an exact 0.
  Pairing is decided by the design (which seeds ran), never by which test gives the
  smaller p; it is valid whatever the correlation (it only costs degrees of freedom when
  there is none). `seed_pairing` is the one place that decides it.
- Two arms that do not share their seeds (different seeds, or a seed missing on one side)
  are compared with Welch's t over seeds: SE^2 = s_a^2 / n_a + s_b^2 / n_b, with the
  Welch-Satterthwaite df of those two seed variances only (when both are exactly zero,
  min(n_a, n_b) - 1, the lower end of its range).
- One seed (on a side): the run-to-run variation is unknown, so there is no test.

Val-sequence noise is a second, stated component. The val split is a sample of text:
another sample would give other numbers, and the claims the report decides on are about
training on this split ("would another seed show the same?"), so the tests' SE is the
seeds' alone. Every test also states the val-set part (`se_val`: the variance over
sequences of the per-sequence value, averaged over seeds, / number of sequences; taken
sequence by sequence when both arms were scored on the same val split, `val_pairing`) and
the 95% interval that also covers new val text (`ci_text`: seed and val variances added,
which counts the seed x sequence interaction twice; but it takes every val sequence as an
independent draw of text, and windows cut from one document are not: on four val samples
of the same models the end loss's val term was about half too narrow in sd, the rise's
not found wrong (3 df), `moe_core.analysis.val_sample`). Two exceptions put
the val part into the test itself: arms scored on different val splits (their difference
holds the two splits' sampling error, which no seed spread contains), and a caller that
asks for a claim about new text (`new_text=True`). Either way the df stay those of the
seeds (n - 1, or Welch's). Why not Welch-Satterthwaite over both parts, as before: the
val term, estimated from ~100 sequences, then supplies the df (63 from 4 seeds per arm in
the demo), and the p-value of a claim about runs claims a precision four runs do not
have. Why not the val term in every test with the seeds' df: it is estimated from ~100
sequences, so reading it on 2-3 df inflates its t quantile 2-4 fold. In a simulated study
with the built-in data's noise (the val part about 4x the seed part) that hid a removed
rise (-0.075 nats: Holm p 0.09 with 3 seeds) and the LR schedule's effect with 4 (p 0.09),
both found at p < 0.01 on the seeds' SE.

Zero variance. A paired difference that is exactly 0 in every seed (and every sequence) -
a placebo, a change that does not touch training, run on the control's seeds - is
reported as a change of 0 with a degenerate interval [0, 0] (`Test.identical`), never as
significant. Any other case where every noise source is exactly zero has no noise
estimate and no test.

p-values are t-based: with 4 seeds they rest on the per-seed values being roughly normal
(a distribution-free test could not go below 2 / C(8, 4) = 0.029 for 4 vs 4, or
2 / 2^4 = 0.125 for 4 paired seeds). They are printed with `format_p`, never finer than
"< 0.001".

The rise of one seed is measured at a place chosen by the other seeds (leave one out):
the end window's mean minus the mean of the window where the other seeds' mean curve is
lowest. A place chosen on a seed's own curve would be low partly by its own noise. Two
costs remain, both measured: the per-seed values share the runs their places were read
off (a paired t over them rejected 6.7% of 1,500 simulated nulls at a nominal 5%), and a
place read off noisier seeds strays further from the true low, so between arms of unequal
noise the noisier arm's rise reads smaller. Where a place can be fixed by runs compared
with nothing (a rising control's gate runs), `rise_from` measures every seed of both arms
from it: independent values, the same expected change where the arms' true curves agree
(5.2% of the same 1,500 nulls, 2.5x the fitted noise).
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

    @property
    def eval_spacing(self) -> float:
        """Steps between the arm's evals (their median): the grid its onsets are read off;
        0 with one eval."""
        return float(np.median(np.diff(self.steps))) if len(self.steps) > 1 else 0.0


@dataclass(frozen=True)
class ArmStatistic:
    """A per-seed value of one arm and, when known, its per-val-sequence values (the mean
    over seeds of each sequence's value), for paired comparisons on the same val split.
    `seeds` names the seed of each per-seed value (empty or negative: unknown), for
    pairing by seed."""

    arm: str
    name: str
    per_seed: np.ndarray
    per_sequence: np.ndarray | None = None
    val_sha: str | None = None
    # where each seed's rise was measured from: (first step, last step) of its low window
    low_windows: tuple[tuple[int, int], ...] = ()
    seeds: tuple[int, ...] = ()

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_seed))


@dataclass(frozen=True)
class Test:
    """An estimate with its standard error, degrees of freedom, p-value and 95% interval.

    For two arms the estimate is first minus second. `paired_seeds`: the difference was
    taken seed by seed (paired t, df n - 1), else Welch over seeds; `paired_sequences`:
    the val-set part was taken sequence by sequence (one val split); `val_in_test`: that
    part is in `se` (else only in `se_val` and `ci_text`). df always come from the seeds.
    p is one-sided (> 0) or two-sided, per `alternative`; None where there is no noise
    estimate (one seed, or every source of noise exactly zero) and for `identical`
    arms (a difference of exactly 0 in every seed: interval [0, 0], degenerate).
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
    paired_seeds: bool = False
    paired_sequences: bool = False
    note: str = ""
    identical: bool = False
    val_in_test: bool = False  # the val-set variance is part of se (else stated beside it)
    # 95% interval that also covers new val text: seed and val-set variances, seeds' df
    ci_text: tuple[float, float] | None = None
    p_adjusted: float | None = None
    significant: bool = False
    detectable: float | None = None  # smallest |difference| found 80% of the time
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_p(p: float | None) -> str:
    """A p-value as the report prints it: "< 0.001" below 0.001 (t-based p-values from a
    handful of seeds mean nothing finer), else two significant digits; "n/a" without one."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    text = f"{p:.2g}"
    if (float(text) < ALPHA) != (p < ALPHA):  # 0.0504 would read "0.05", on the wrong side
        text = f"{p:.3g}"
    return text


# ---------------------------------------------------------------- per-seed statistics


def leave_one_out_lows(means: np.ndarray) -> np.ndarray:
    """For each seed, the window index where the other seeds' mean curve is lowest (its own
    lowest window when it is the only seed). means: (seeds, windows)."""
    if means.shape[0] == 1:
        return np.array([int(np.argmin(means[0]))])
    total = means.sum(0)
    return np.array([int(np.argmin(total - row)) for row in means])


def rise_statistic(curves: ArmCurves) -> ArmStatistic:
    """Each seed's end-window mean minus its mean over the window where the other seeds are
    lowest; per sequence likewise (mean over seeds)."""
    return rise_at(curves, leave_one_out_lows(window_means(curves.loss, curves.window)),
                   "rise")


def rise_at(curves: ArmCurves, lows: np.ndarray, name: str) -> ArmStatistic:
    """Each seed's end-window mean minus its mean over the window starting at `lows[seed]`
    (a window index per seed); per sequence likewise (mean over seeds)."""
    window = curves.window
    means = window_means(curves.loss, window)
    per_seed = means[:, -1] - means[np.arange(curves.n_seeds), lows]
    per_sequence = None
    if curves.per_sequence is not None:
        per_sequence = np.mean([_window_change(curves.per_sequence[i], low, window)
                                for i, low in enumerate(lows)], axis=0)
    steps = curves.steps
    return ArmStatistic(curves.arm, name, per_seed, per_sequence, curves.val_sha,
                        tuple((int(steps[lo]), int(steps[lo + window - 1])) for lo in lows),
                        curves.seeds)


def rise_from(curves: ArmCurves, low_step: int) -> ArmStatistic | None:
    """Each seed's end-window mean minus its mean over the window that starts at
    `low_step` (a place chosen before these runs were seen, e.g. from other runs), per
    sequence likewise; None when no window of these evals starts there or that window
    overlaps the end window (the change would be partly the same evals). With one place for
    every seed, the per-seed values are independent and none is measured from a place its
    own noise or its arm's helped choose. It is the change of val loss from that window to
    the end: negative for an arm still falling after it; an arm that turned before it is
    measured from it all the same."""
    start = np.flatnonzero(curves.steps == low_step)
    if start.size != 1 or start[0] + curves.window > curves.loss.shape[1] - curves.window:
        return None
    return rise_at(curves, np.full(curves.n_seeds, int(start[0])),
                   f"rise from step {int(low_step)}")


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
                        curves.val_sha, seeds=curves.seeds)


def gap_growth_statistic(curves: ArmCurves) -> ArmStatistic | None:
    """Growth of (val - train-subset) loss from each seed's low window (as in
    rise_statistic) to the end window; None without train-subset losses."""
    if curves.train_loss is None or not np.all(np.isfinite(curves.train_loss)):
        return None
    window = curves.window
    gap = window_means(curves.loss - curves.train_loss, window)
    lows = leave_one_out_lows(window_means(curves.loss, window))
    return ArmStatistic(curves.arm, "gap growth",
                        gap[:, -1] - gap[np.arange(curves.n_seeds), lows], None, curves.val_sha,
                        seeds=curves.seeds)


# ---------------------------------------------------------------- pairing


def seed_pairing(a: ArmStatistic, b: ArmStatistic) -> np.ndarray | None:
    """The one definition of pairing by seed: a and b are paired when each names the seed
    of every value, every seed once, and both ran the same set of seeds (which seeds ran is
    the design; the data never decide). Returns, for each of a's values, the index of b's
    value of the same seed; None when unpaired (then Welch over seeds)."""
    if len(a.seeds) != a.per_seed.size or len(b.seeds) != b.per_seed.size:
        return None
    if min((*a.seeds, *b.seeds), default=-1) < 0 or len(set(a.seeds)) != len(a.seeds):
        return None  # an unknown seed, or one seed twice
    if set(a.seeds) != set(b.seeds) or len(b.seeds) != len(a.seeds):
        return None
    where = {seed: i for i, seed in enumerate(b.seeds)}
    return np.array([where[seed] for seed in a.seeds])


def val_pairing(a: ArmStatistic, b: ArmStatistic) -> bool:
    """Paired by val sequence: both scored on the same val split (the same `val_sha`), with
    per-sequence values of one shape."""
    return bool(a.per_sequence is not None and b.per_sequence is not None and a.val_sha
                and a.val_sha == b.val_sha and a.per_sequence.shape == b.per_sequence.shape)


# ---------------------------------------------------------------- tests


def _seed_variance(values: np.ndarray, floor: float = 0.0) -> tuple[float, float] | None:
    """(variance of the mean, df) over seeds, the seeds' variance at least `floor`; None for
    one seed."""
    if values.size < 2:
        return None
    return float(max(values.var(ddof=1), floor) / values.size), float(values.size - 1)


def _grid_variance(values: np.ndarray, rounding: float) -> tuple[float, float] | None:
    """(variance of the mean, df) of values read off a grid whose rounding error has
    variance `rounding` per value: the seeds' variance, at least `rounding`; and when every
    value is the same reading, `rounding` itself as the variance of the mean (the seeds may
    share one rounding error, which averaging over them does not shrink)."""
    part = _seed_variance(values, floor=rounding)
    if part is None or not rounding or np.ptp(values) > 0:
        return part
    return rounding, part[1]


def _val_variance(per_sequence: np.ndarray | None) -> tuple[float, float] | None:
    """(variance of the mean over sequences, df); None without per-sequence values."""
    if per_sequence is None or per_sequence.size < 2:
        return None
    return float(per_sequence.var(ddof=1) / per_sequence.size), float(per_sequence.size - 1)


def satterthwaite(parts: Sequence[tuple[float, float] | None]) -> tuple[float | None,
                                                                        float | None]:
    """(SE, df) of a sum of independent variance components (variance, df each); Welch's
    df for the two seed variances of two arms. df None when every component is zero."""
    parts = [p for p in parts if p is not None]
    total = sum(v for v, _ in parts)
    if not parts or total <= 0:
        return (None, None) if not parts else (0.0, None)
    denominator = sum(v * v / d for v, d in parts if v > 0)
    return math.sqrt(total), total * total / denominator


def _finish(name: str, estimate: float, seeds: tuple[float, float] | None,
            val: tuple[float, float] | None, alternative: str, n: tuple[int, ...],
            paired_seeds: bool = False, paired_sequences: bool = False,
            note: str = "", identical: bool = False, val_in_test: bool = False) -> Test:
    """The test of `estimate` with the seeds' variance and df (seeds: (variance of the
    estimate, df), None for one seed: no test), the val-set variance added to it when
    `val_in_test`; the interval that also covers new val text always adds it."""
    from scipy import stats  # lazy: scipy costs seconds at import

    se_seeds, se_val = _root(seeds), _root(val)
    df = None if seeds is None else seeds[1]
    quantile = None if df is None else float(stats.t.ppf(0.975, df))  # of the 95% intervals
    if identical:
        return Test(name, 0.0, 0.0, df, None, 0.0, 0.0, alternative, n, 0.0, se_val,
                    paired_seeds, paired_sequences,
                    "exactly 0 in every seed (identical runs): a degenerate interval, no test",
                    identical=True, val_in_test=val_in_test, ci_text=(0.0, 0.0))
    variance = sum(part[0] for part in (seeds, val if val_in_test else None)
                   if part is not None)
    text = None
    if seeds is not None and val is not None and seeds[0] + val[0] > 0:
        half = quantile * math.sqrt(seeds[0] + val[0])
        text = (estimate - half, estimate + half)
    if seeds is None or variance <= 0:
        why = ("one seed: run-to-run variation unknown: no noise estimate" if seeds is None
               else "every noise source is exactly zero: no noise estimate")
        se = None if seeds is None else math.sqrt(variance)
        return Test(name, estimate, se, None, None, None, None, alternative, n, se_seeds,
                    se_val, paired_seeds, paired_sequences,
                    "; ".join(filter(None, (why, note))), val_in_test=val_in_test,
                    ci_text=text)
    se = math.sqrt(variance)
    t = estimate / se
    p = float(stats.t.sf(t, df)) if alternative == "greater" else float(2 * stats.t.sf(abs(t),
                                                                                       df))
    half = quantile * se
    return Test(name, estimate, se, df, p, estimate - half, estimate + half, alternative, n,
                se_seeds, se_val, paired_seeds, paired_sequences, note,
                val_in_test=val_in_test, ci_text=text)


def one_sample(stat: ArmStatistic, alternative: str = "greater",
               new_text: bool = False, resolution: float = 0.0) -> Test:
    """Is the arm's mean value above zero? t over seeds (df n - 1) on this val split; with
    `new_text`, the val-sequence sampling variance is added to the test's SE (never to its
    df). The interval over new val text (`ci_text`) is computed either way. `resolution`:
    values read off a grid keep its rounding error (as in `two_sample`)."""
    return _finish(f"{stat.name} of {stat.arm}", stat.mean,
                   _grid_variance(stat.per_seed, resolution ** 2 / 12),
                   _val_variance(stat.per_sequence), alternative, (int(stat.per_seed.size),),
                   val_in_test=new_text)


def scaled(stat: ArmStatistic, factor: float) -> ArmStatistic:
    """The statistic times a constant, per seed and per sequence (e.g. half a control's rise,
    to test whether another arm keeps more than half of it); seeds kept, for pairing."""
    return replace(stat, name=f"{factor:g} x {stat.name}", per_seed=stat.per_seed * factor,
                   per_sequence=None if stat.per_sequence is None
                   else stat.per_sequence * factor)


def two_sample(a: ArmStatistic, b: ArmStatistic, alternative: str = "two-sided",
               new_text: bool = False, resolution: float = 0.0) -> Test:
    """a minus b over seeds: paired t when the arms share their seeds (`seed_pairing`),
    else Welch; df from the seeds only. The val-set variance (sequence by sequence when both
    arms were scored on the same val split, `val_pairing`) enters the test's SE with
    `new_text`, and always when the arms were scored on different val splits (their
    difference then holds the splits' sampling error, which no seed spread contains).
    alternative "greater": one-sided, a - b > 0. `resolution`: the values were read off a
    grid of this spacing (an onset at an eval's step), so each carries a rounding error of
    variance at least resolution**2 / 12 that seeds falling in the same grid cell do not
    show: the seed variance used is never below it, and an identical difference in every
    seed is read as one reading, known to within the grid (`_grid_variance`)."""
    n = (int(a.per_seed.size), int(b.per_seed.size))
    rounding = resolution ** 2 / 12
    name = f"{a.name}: {a.arm} - {b.arm}"
    order = seed_pairing(a, b)
    by_sequence = val_pairing(a, b)
    if by_sequence:
        val = _val_variance(a.per_sequence - b.per_sequence)
    else:
        val = _sum_of([_val_variance(a.per_sequence), _val_variance(b.per_sequence)])
    same_split = by_sequence or (a.val_sha is not None and a.val_sha == b.val_sha)
    notes = []
    if not same_split and val is not None:
        notes.append("different val splits: their sampling errors add")
    elif not same_split and a.val_sha and b.val_sha:
        notes.append("different val splits and no per-sequence losses: the splits' sampling "
                     "error is not counted")
    val_in_test = new_text or (not same_split and val is not None)
    if order is not None:
        difference = a.per_seed - b.per_seed[order]
        if (difference.size >= 2 and not np.any(difference) and not (val and val[0] > 0)
                and not rounding):
            return _finish(name, 0.0, _seed_variance(difference), val, alternative, n,
                           True, by_sequence, identical=True, val_in_test=val_in_test)
        return _finish(name, float(difference.mean()),
                       _grid_variance(difference, 2 * rounding), val, alternative, n,
                       True, by_sequence, "; ".join(notes), val_in_test=val_in_test)
    return _finish(name, a.mean - b.mean, welch(a.per_seed, b.per_seed, floor=rounding), val,
                   alternative, n, False, by_sequence, "; ".join(notes),
                   val_in_test=val_in_test)


def welch(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> tuple[float, float] | None:
    """(variance of mean(a) - mean(b), Welch-Satterthwaite df) from the two seed variances
    (each at least `floor`); None when a side has one seed (its variation unknown). Both
    exactly zero: df min(n_a, n_b) - 1, the lower end of the range Welch's df can take."""
    parts = [_seed_variance(a, floor), _seed_variance(b, floor)]
    if None in parts:
        return None
    se, df = satterthwaite(parts)
    return (se or 0.0) ** 2, df if df is not None else float(min(a.size, b.size) - 1)


def _sum_of(parts: Sequence[tuple[float, float] | None]) -> tuple[float, float] | None:
    """The sum of the known variance components (their df are not used)."""
    known = [p for p in parts if p is not None]
    return (sum(v for v, _ in known), sum(d for _, d in known)) if known else None


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


def correct(tests: Sequence[Test], alpha: float = ALPHA, held: Sequence[float] = ()
            ) -> list[Test]:
    """The tests of one family with Holm-adjusted p-values, significance at family-wise
    `alpha` and the difference each could have detected (at alpha / family size, the
    first Holm step). Tests without a p-value are never significant. `held`: the p-values
    of the family's other places (comparisons that claim nothing: censored ones), counted in
    the correction and the family's size, not returned."""
    from statsmodels.stats.multitest import multipletests

    tests = list(tests)
    usable = [i for i, t in enumerate(tests) if t.p_value is not None]
    p_values = [tests[i].p_value for i in usable] + list(held)
    adjusted: dict[int, tuple[bool, float]] = {}
    if p_values:
        with np.errstate(divide="ignore"):  # Sidak's levels take log(1 - p): p 1 is -inf
            reject, p_adj, _, _ = multipletests(p_values, alpha=alpha, method=CORRECTION)
        adjusted = {i: (bool(r), float(p)) for i, r, p in zip(
            usable, reject[:len(usable)], p_adj[:len(usable)], strict=True)}
    size = max(1, len(tests) + len(held))
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
