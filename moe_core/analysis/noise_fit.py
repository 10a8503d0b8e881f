"""The calibration's noise fitted to real runs, and a check that runs simulated with it
look like the real ones.

    python -m moe_core.analysis.noise_fit runs/study    # per arm, pooled, the check
    python -m moe_core.analysis.noise_fit runs/study --out noise.json
    python -m moe_core.analysis.calibration --noise noise.json   # the table under that noise
    python -m moe_core.analysis.noise_fit runs/study --check-arms noise.json  # per arm

`calibration.Noise` held sizes typed in from two pilot studies. Here they are estimated
from a study's runs, arm by arm, over the second half of each arm's evals (where the rise
is measured: near the low point and the end; the first half is the common fast descent,
where seeds differ in speed more than in noise):

  seed level    sd over seeds of each seed's mean deviation from the arm's mean curve
  wander        sd and lag-1 autocorrelation of the rest of that deviation (AR(1); the
                autocorrelation bias-corrected as `inflection.fit_wander` does, then
                carried to the 4-step grid the simulator draws on: phi ** (1/record_every))
  sequence sd   sd over val sequences of their mean loss (the split's difficulty)
  drift, noise  each sequence's deviation from the arm's mean for that sequence and eval,
                less its seed's whole-curve deviation: AR(1) drift plus white noise, from
                its autocovariances at lags 1 and 2 (drift phi = c2 / c1, drift variance
                c1 / phi, the rest of its variance white)

Deviations from a mean over n seeds are scaled by n/(n - 1) in variance. The wander and
seed-level sizes are then scaled by simulation until the same estimators, applied to runs
simulated under the fitted noise, give the real pooled values (their median over 40
simulations, 3 rounds): a slow wander over 50 evals is otherwise partly taken for a
level. rise_spread (how unevenly the rise falls on the sequences) is fitted by simulation
on the checked arm: the value whose simulated per-sequence rise sd is nearest the real one
(`fit_rise_spread`).

Pooled: over the arms of the checked arm's late-LR group (the LR over the last quarter
above or below half its peak: the runs that keep a high LR wander 2-4x as much, measured),
each variance averaged (every arm has the same number of seeds), each autocorrelation
averaged. Whether the arms' noise differs by more than 4 seeds can
show is tested (Levene's test, median-centred) on the per-seed rises of the rising arms
and on the per-seed end losses of all arms.

Per arm (`arm_noises`, the file's "arm_noise"): each pooled arm's run-level sizes from its
own fit, for the calibration's null in which every arm has its own noise. Four seeds give
each arm's variances with 3 degrees of freedom, so these sizes differ between arms by
sampling as well as in truth: that null is a stress as wide as the runs' own spread.
The same-seed correlation across arms (end losses, over the pooled arms) is the
simulator's seed_correlation (`fitted_seed_correlation`).
`--check-arms FILE` checks each arm's own noise against that arm's runs (`arm_checks`: the
pooled check below, arm by arm, on the runs' own eval grid).

The check: the control simulated `draws` times with the pooled noise and a true rise
scaled so that the simulated rise's median is the control's measured one; each statistic
of the real control against the simulated median and 5-95% range. A real value outside
its range is named. Runs of one seed in different arms share their initialisation and
batch order: their correlation is printed beside it (over every arm; the fit's is the
pooled arms').
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from moe_core.analysis import effects as fx
from moe_core.analysis.calibration import CONTROL, Noise, Truth, read_noise, simulate_results
from moe_core.analysis.results import Results, load_runs
from moe_core.analysis.verdicts import arm_configs, arm_curves, late_lr_fraction
from moe_core.errors import UserInputError

DRAWS = 200
CHECKED = ("rise, seed sd", "end loss, seed sd", "seed level sd", "wander sd",
           "wander lag-1 autocorrelation", "rise per sequence, sd")
# the fitted sizes the estimators above measure short of the truth (a slow wander over 50
# evals is partly absorbed by each seed's level): corrected by simulation (`_matched`)
MATCHED = (("wander_sd", "wander sd"), ("seed_level_sd", "seed level sd"))


@dataclass(frozen=True)
class ArmNoise:
    """One arm's fitted noise on its recorded evals (phi per recorded eval)."""

    arm: str
    seeds: int
    seed_level_var: float
    wander_var: float
    wander_phi: float
    sequence_sd: float | None
    drift_var: float | None
    noise_var: float | None
    drift_phi: float | None = None


def _bias_corrected_phi(residual: np.ndarray) -> float:
    """Pooled lag-1 autocorrelation of rows of residuals, corrected for the short series'
    downward bias (-(1 + 4 phi) / m) as `inflection.fit_wander` corrects it."""
    power = float(np.sum(residual ** 2))
    if power <= 0:
        return 0.0
    phi = float(np.sum(residual[:, 1:] * residual[:, :-1]) / power)
    return float(np.clip(phi + (1 + 4 * phi) / residual.shape[1], 0.0, 0.99))


def fit_arm(curves: fx.ArmCurves) -> ArmNoise:
    """An arm's noise over the second half of its evals (see the module docstring)."""
    n = curves.n_seeds
    if n < 3:
        raise UserInputError(f"arm {curves.arm!r} has {n} seed(s): fitting its noise needs 3 "
                             "or more (run more seeds)")
    half = slice(curves.loss.shape[1] // 2, None)
    scale = n / (n - 1)
    deviation = (curves.loss - curves.loss.mean(0))[:, half]
    level = deviation.mean(1)
    wander = deviation - level[:, None]
    sequence_sd = drift_var = noise_var = drift_phi = None
    phi = _bias_corrected_phi(wander)
    if curves.per_sequence is not None:
        sequences = curves.per_sequence[:, half]
        sequence_sd = float(sequences.mean(axis=(0, 1)).std(ddof=1))
        own = (sequences - sequences.mean(0)) - deviation[:, :, None]
        total = float(np.mean(own ** 2)) * scale
        lag1, lag2 = (float(np.mean(own[:, k:] * own[:, :-k])) * scale for k in (1, 2))
        # AR(1) drift plus white noise: lag k covariance drift_var * drift_phi ** k (k >= 1)
        drift_phi = float(np.clip(lag2 / lag1, 0.0, 0.99)) if lag1 > 0 and lag2 > 0 else 0.0
        drift_var = float(np.clip(lag1 / drift_phi, 0.0, total)) if drift_phi > 0 else 0.0
        noise_var = total - drift_var
    return ArmNoise(curves.arm, n, float(level.var(ddof=1)),
                    float(np.mean(wander ** 2)) * scale, phi, sequence_sd, drift_var, noise_var,
                    drift_phi)


def pooled(fits: Sequence[ArmNoise], record_every: int, base: Noise | None = None) -> Noise:
    """One Noise from the arms' fits: variances averaged, autocorrelations averaged, then
    carried from the recorded grid to the simulator's (phi ** (1 / record_every))."""
    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return float(np.mean(known)) if known else None

    phi = mean([f.wander_phi for f in fits]) ** (1 / record_every)
    drift, noise = mean([f.drift_var for f in fits]), mean([f.noise_var for f in fits])
    drift_phi = mean([f.drift_phi for f in fits])
    sequence = mean([f.sequence_sd for f in fits])
    return replace(
        base or Noise(), record_every=record_every,
        seed_level_sd=float(np.sqrt(mean([f.seed_level_var for f in fits]))),
        wander_sd=float(np.sqrt(mean([f.wander_var for f in fits]))), wander_phi=float(phi),
        **({} if sequence is None else {"sequence_sd": sequence}),
        **({} if drift is None else {"drift_sd": float(np.sqrt(drift)),
                                     "noise_sd": float(np.sqrt(noise)),
                                     "drift_phi": float(drift_phi ** (1 / record_every))}))


def arm_noises(fits: Sequence[ArmNoise], noise: Noise) -> dict[str, Noise]:
    """Each arm's own Noise for the simulator: its run-level sizes (seed level, wander and
    its autocorrelation, drift and its autocorrelation, white) from its fit alone, with
    the split's sizes (sequence difficulty, rise spread, grid) of `noise`, the pooled
    noise of `fit_study`. The seed level and wander are scaled by the same factors
    `_matched` found for the pooled sizes (the estimators' bias removed by simulation is
    taken to be proportional), so the arms' fitted sizes average to the pooled ones."""
    raw = pooled(fits, noise.record_every)
    ratio = {size: (getattr(noise, size) / getattr(raw, size)) if getattr(raw, size) else 1.0
             for size, _ in MATCHED}
    split = {k: getattr(noise, k) for k in ("sequence_sd", "rise_spread", "n_sequences",
                                            "n_evals", "record_every", "seed_correlation")}
    out = {}
    for fit in fits:
        own = pooled([fit], noise.record_every, base=noise)
        out[fit.arm] = replace(own, **split, **{size: getattr(own, size) * r
                                                  for size, r in ratio.items()})
    return out


def statistics(curves: fx.ArmCurves) -> dict[str, float]:
    """What the check compares, the same way for real and simulated runs."""
    fit = fit_arm(curves)
    rise = fx.rise_statistic(curves)
    out = {"rise, mean": rise.mean, "rise, seed sd": float(rise.per_seed.std(ddof=1)),
           "end loss, seed sd": float(fx.end_statistic(curves).per_seed.std(ddof=1)),
           "seed level sd": float(np.sqrt(fit.seed_level_var)),
           "wander sd": float(np.sqrt(fit.wander_var)),
           "wander lag-1 autocorrelation": fit.wander_phi}
    if rise.per_sequence is not None:
        out["rise per sequence, sd"] = float(rise.per_sequence.std(ddof=1))
    return out


def heterogeneity(curves: Mapping[str, fx.ArmCurves], rising: Sequence[str]) -> dict[str, float]:
    """Levene's test (median-centred) p-values: do the arms' seed spreads differ? On the
    per-seed rises of the rising arms and the per-seed end losses of all arms."""
    from scipy import stats

    rises = [fx.rise_statistic(curves[a]).per_seed for a in rising]
    ends = [fx.end_statistic(c).per_seed for c in curves.values()]
    return {"rise (rising arms)": float(stats.levene(*rises).pvalue) if len(rises) > 1
            else float("nan"),
            "end loss (all arms)": float(stats.levene(*ends).pvalue)}


def same_seed_correlation(curves: Mapping[str, fx.ArmCurves]) -> float:
    """Mean over pairs of arms of the correlation, over the seeds both ran, of each seed's
    end loss minus its arm's mean: how much runs of one seed share across arms."""
    ends = {}
    for a, c in curves.items():
        end = fx.end_statistic(c)
        ends[a] = dict(zip(c.seeds, end.per_seed - end.mean, strict=True))
    arms = list(ends)
    values = []
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            shared = sorted(set(ends[a]) & set(ends[b]))
            if len(shared) >= 3:
                values.append(np.corrcoef([ends[a][s] for s in shared],
                                          [ends[b][s] for s in shared])[0, 1])
    return float(np.nanmean(values)) if values else float("nan")


def fitted_seed_correlation(curves: Mapping[str, fx.ArmCurves]) -> float:
    """The simulator's `seed_correlation` (the share of a run's seed level and wander its
    seed shares in every arm) from `same_seed_correlation` over these arms' end losses:
    kept within [0, 0.95] (a share; a negative mean correlation is read as none), 0 where
    no two arms share 3 seeds."""
    correlation = same_seed_correlation(curves)
    return 0.0 if not np.isfinite(correlation) else float(np.clip(correlation, 0.0, 0.95))


def _simulated(real: fx.ArmCurves, noise: Noise, rise: float, count: int,
               rng: np.random.Generator) -> list[dict[str, float]]:
    """The statistics of `count` simulations of the real arm (its seeds) under `noise`."""
    out = []
    for _ in range(count):
        results = simulate_results({real.arm: Truth(rise=rise)}, real.n_seeds, noise, rng)
        out.append(statistics(arm_curves(results)[real.arm]))
    return out


def true_rise(real: fx.ArmCurves, noise: Noise, seed: int = 0, pilot: int = 40) -> float:
    """The true rise whose simulated window rise has about the real arm's median."""
    target = max(statistics(real)["rise, mean"], 0.0)
    guess = 2 * target  # a window rise measures about half the true one (calibration)
    if target == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    median = np.median([s["rise, mean"] for s in _simulated(real, noise, guess, pilot, rng)])
    return guess * target / median if median > 0 else guess


def fit_rise_spread(real: fx.ArmCurves, noise: Noise, grid: Sequence[float] = (
        0.0, 0.5, 1.0, 1.5, 2.0, 2.5), draws: int = 40, seed: int = 0) -> float:
    """rise_spread (how unevenly the rise falls on the val sequences) by simulation: the
    grid value whose simulated per-sequence rise sd has its median nearest the real one."""
    observed = statistics(real).get("rise per sequence, sd")
    if observed is None:
        return noise.rise_spread
    rng = np.random.default_rng(seed)
    best, distance = noise.rise_spread, np.inf
    for spread in grid:
        trial = replace(noise, rise_spread=spread)
        rise = true_rise(real, trial, seed)
        median = np.median([s["rise per sequence, sd"]
                            for s in _simulated(real, trial, rise, draws, rng)])
        if abs(median - observed) < distance:
            best, distance = spread, abs(median - observed)
    return float(best)


def predictive_check(real: fx.ArmCurves, noise: Noise, draws: int = DRAWS,
                     seed: int = 0) -> pd.DataFrame:
    """The real arm's statistics against `draws` simulations of it under `noise` (its true
    rise scaled so that the simulated rise's median is its measured one)."""
    rng = np.random.default_rng(seed + 1)
    simulated = pd.DataFrame(_simulated(real, noise, true_rise(real, noise, seed), draws, rng))
    observed = statistics(real)
    rows = []
    for name in ("rise, mean", *CHECKED):
        if name not in observed or name not in simulated:
            continue
        low, mid, high = np.quantile(simulated[name], [0.05, 0.5, 0.95])
        rows.append({"statistic": name, "real": observed[name], "simulated median": mid,
                     "5%": low, "95%": high,
                     "inside": bool(low <= observed[name] <= high)})
    return pd.DataFrame(rows)


def arm_checks(curves: Mapping[str, fx.ArmCurves], arm_noise: Mapping[str, Noise],
               draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """`predictive_check` of every arm with its own noise (`arm_noises`), on the arm's own
    eval grid: one row per (arm, statistic). Arms in only one of the two are skipped."""
    tables = []
    for arm in sorted(set(curves) & set(arm_noise)):
        own = replace(arm_noise[arm], record_every=_record_every(curves[arm]))
        check = predictive_check(curves[arm], own, draws, seed)
        tables.append(check.assign(arm=arm)[["arm", *check.columns]])
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


LATE_LR_SPLIT = 0.5  # arms whose LR over their last quarter is above / below this share of peak


def fit_study(results: Results, arm: str = CONTROL
              ) -> tuple[list[ArmNoise], Noise, tuple[str, ...]]:
    """Every arm's fit (arms with 3 or more seeds) and the Noise pooled over the arms of
    `arm`'s late-LR group (a late LR above or below LATE_LR_SPLIT of the peak: a high late
    LR makes a run wander more, measured on the built-in data), its rise_spread fitted on
    `arm` (the control), on the simulator's grid for `arm`'s eval spacing. Returns the
    fits of the pooled arms, the noise and the sizes it could not identify (`_matched`)."""
    curves = {a: c for a, c in arm_curves(results).items() if c.n_seeds >= 3}
    if arm not in curves:
        raise UserInputError(f"no arm {arm!r} with 3 or more finished seeds: its noise is "
                             "what the calibration's control is drawn with (run the study)")
    configs = arm_configs(results)
    high = {a: late_lr_fraction(c, configs[a].get("lr")) > LATE_LR_SPLIT
            for a, c in curves.items()}
    group = {a: c for a, c in curves.items() if high[a] == high[arm] or a == arm}
    fits = [fit_arm(c) for c in group.values()]
    noise = pooled(fits, _record_every(curves[arm]))
    noise = replace(noise, rise_spread=fit_rise_spread(curves[arm], noise),
                    seed_correlation=fitted_seed_correlation(group))
    return (fits, *_matched(curves[arm], noise, {
        "wander sd": float(np.sqrt(np.mean([f.wander_var for f in fits]))),
        "seed level sd": float(np.sqrt(np.mean([f.seed_level_var for f in fits])))}))


def _matched(real: fx.ArmCurves, noise: Noise, targets: Mapping[str, float],
             rounds: int = 5, draws: int = 40, seed: int = 0, tolerance: float = 0.05
             ) -> tuple[Noise, tuple[str, ...]]:
    """Each size in MATCHED scaled until the pooled estimate it gives on runs simulated
    under `noise` (the real arm's seeds and evals) has its median within `tolerance` of the
    real pooled estimate (`targets`): the estimators' own bias removed by simulation. A
    size whose statistic stays above its target even at 0 (the other sizes alone produce
    it) is not identifiable: it is set to 0 and returned by name beside the noise."""
    rng = np.random.default_rng(seed)
    done: set[str] = set()
    for _ in range(rounds):
        simulated = pd.DataFrame(_simulated(real, noise, true_rise(real, noise, seed),
                                            draws, rng))
        for size, statistic in MATCHED:
            median = float(np.median(simulated[statistic]))
            if abs(median / targets[statistic] - 1) <= tolerance or size in done:
                done.add(size)
            elif median > 0:
                noise = replace(noise, **{size: getattr(noise, size) * targets[statistic]
                                          / median})
        if len(done) == len(MATCHED):
            return noise, ()
    unmatched = []
    for size, statistic in MATCHED:
        if size in done:
            continue
        at_zero = replace(noise, **{size: 0.0})
        medians = pd.DataFrame(_simulated(real, at_zero, true_rise(real, at_zero, seed),
                                          draws, rng))[statistic]
        if float(np.median(medians)) >= targets[statistic]:
            noise = at_zero
            unmatched.append(size)
    return noise, tuple(unmatched)


def _table(fits: Sequence[ArmNoise]) -> str:
    lines = ["| arm | seeds | seed level sd | wander sd | wander phi | drift sd | drift phi | "
             "white sd |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in fits:
        drift = "" if f.drift_var is None else f"{np.sqrt(f.drift_var):.4f}"
        white = "" if f.noise_var is None else f"{np.sqrt(f.noise_var):.4f}"
        drift_phi = "" if f.drift_phi is None else f"{f.drift_phi:.2f}"
        lines.append(f"| {f.arm} | {f.seeds} | {np.sqrt(f.seed_level_var):.4f} | "
                     f"{np.sqrt(f.wander_var):.4f} | {f.wander_phi:.2f} | {drift} | {drift_phi} "
                     f"| {white} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moe_core.analysis.noise_fit",
        description="The calibration's noise fitted to a study's runs, and a predictive check.")
    parser.add_argument("runs", help="a folder of runs (a study's --out)")
    parser.add_argument("--arm", default=CONTROL, help=f"the arm checked (default {CONTROL})")
    parser.add_argument("--draws", type=int, default=DRAWS)
    parser.add_argument("--out", type=Path, help="write the pooled noise (and the check) here "
                        "as JSON, for `python -m moe_core.analysis.calibration --noise FILE`")
    parser.add_argument("--check-arms", type=Path, metavar="FILE",
                        help="fit nothing: check each arm's own noise in FILE (a noise file's "
                        "arm_noise) against that arm's runs in RUNS")
    args = parser.parse_args(argv)
    if args.check_arms:
        return _check_arms(args.runs, args.check_arms, args.draws)
    try:
        results = load_runs(args.runs)
        curves = arm_curves(results)
        if args.arm not in curves:
            raise UserInputError(f"{args.runs}: no finished runs of arm {args.arm!r} (--arm)")
        every = _record_every(curves[args.arm])
        fits, noise, unmatched = fit_study(results, args.arm)
    except UserInputError as error:
        print(f"noise_fit: {error}", file=sys.stderr)
        return 2
    print(_table(fits))
    print(f"\npooled, on the simulator's 4-step grid (recorded every {every}): {noise}")
    for size in unmatched:
        print(f"  {size}: not identifiable (the other sizes alone give simulated runs more of "
              "it than the real ones show): set to 0")
    print()
    print("arms' seed spreads differ? Levene p:",
          {k: round(v, 3) for k, v in heterogeneity(
              {f.arm: curves[f.arm] for f in fits},
              [f.arm for f in fits if fx.rise_statistic(curves[f.arm]).mean > 0]).items()})
    print(f"same-seed correlation across arms (end loss): {same_seed_correlation(curves):+.2f} "
          f"over every arm; simulated: {noise.seed_correlation:.2f} (the pooled arms')\n")
    check = predictive_check(curves[args.arm], noise, args.draws)
    print(f"{args.arm}: real against {args.draws} simulations under the pooled noise")
    print(check.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        args.out.write_text(json.dumps({
            "fitted_to": str(args.runs), "checked_arm": args.arm, "noise": asdict(noise),
            "not_identifiable": list(unmatched),
            "arms": [asdict(f) for f in fits],
            "arm_noise": {arm: asdict(n) for arm, n in arm_noises(fits, noise).items()},
            "check": check.to_dict("records")}, indent=1))
        print(f"written to {args.out}")
    return 0


def _check_arms(runs: str, path: Path, draws: int) -> int:
    """`--check-arms`: every arm of the noise file against its runs, and what lies outside
    its simulated 5-95% range."""
    try:
        _, fitted_to, own = read_noise(path)
        if not own:
            raise UserInputError(f"--check-arms {path}: no per-arm noise (\"arm_noise\") in "
                                 "it; write one with `python -m moe_core.analysis.noise_fit "
                                 "RUNS --out FILE`")
        curves = {a: c for a, c in arm_curves(load_runs(runs)).items() if c.n_seeds >= 3}
        if not set(own) & set(curves):
            raise UserInputError(f"{runs}: none of the arms of {path} ({', '.join(sorted(own))}) "
                                 "has 3 or more finished seeds there")
    except UserInputError as error:
        print(f"noise_fit: {error}", file=sys.stderr)
        return 2
    check = arm_checks(curves, own, draws)
    print(f"each arm's own noise ({path}, fitted to {fitted_to}) against {runs}, {draws} "
          "simulations per arm")
    print(check.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    outside = check.loc[~check.inside]
    print(f"\n{int(check.inside.sum())} of {len(check)} statistics inside their simulated "
          f"5-95% range (about {0.9 * len(check):.0f} expected by chance alone)"
          + "".join(f"\n  outside: {r.arm}, {r.statistic}: real {r.real:.4f}, simulated "
                    f"{r['5%']:.4f} to {r['95%']:.4f}" for _, r in outside.iterrows()))
    return 0


def _record_every(curves: fx.ArmCurves) -> int:
    """How many of the simulator's 4-step grid points one recorded eval spans."""
    return max(1, int(round(curves.eval_spacing / 4)))


if __name__ == "__main__":
    sys.exit(main())
