"""A check of the val-text term on real runs: the same models scored on other samples of
val text.

Every test in the report states, beside its seeds' interval, the part of the uncertainty
that comes from the val split being one sample of text (`se_val`: the variance over val
sequences of each sequence's value, averaged over seeds, over the number of sequences),
and an interval that also covers new val text. Whether that term is right can be seen
directly: a run with `val_sample = k` trains the same model as the run of its seed with
the split's own val documents (the same train documents, tokenizer and batches; its train
losses are checked equal) and scores it on another block of documents. Each sample's arm
mean (of the rise, of the end loss) is then one draw of what other val text gives; the
spread of the K + 1 samples' means, against the val term's prediction, is a check with K
degrees of freedom (samples, not seeds: every seed is scored on the same text).

The rise is measured from the same window per seed on every sample (where that seed's other
seeds are lowest on the split's own val text), so samples differ by their text alone.

    moe-suite run -e baseline@reference_lr --preset cpu --seeds 4 --set val_sample=1 \
        --out runs/val_sample1 --no-report          # and 2, 3: make valsample
    python -m moe_core.analysis.val_sample runs/study runs/val_sample1 runs/val_sample2 ...
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from moe_core.analysis import effects as fx
from moe_core.analysis import verdicts as vd
from moe_core.analysis.inflection import window_means
from moe_core.analysis.results import COSMETIC_KEYS, Results, load_runs
from moe_core.errors import UserInputError

KEY = "val_sample"


@dataclass(frozen=True)
class SampleCheck:
    """Per val sample: each statistic's mean over seeds and its val-text SE; whether every
    seed trained the same model on every sample; the spread check per statistic."""

    arm: str
    seeds: tuple[int, ...]
    table: pd.DataFrame  # statistic, val sample, sequences, mean over seeds, val-text SE
    identical_training: int  # seeds whose train losses agree at every eval on every sample
    spread: pd.DataFrame  # statistic, samples, observed sd, predicted sd, ratio, 95% range


def sample_runs(results: Results, arm: str) -> pd.DataFrame:
    """The finished runs of `arm` with their seed and val sample; every config the same but
    for the val sample (else a user error naming the keys)."""
    runs = vd.counted_runs(results)
    mine = runs[runs["arm"] == arm].copy()
    if mine.empty:
        arms = ", ".join(sorted(set(runs["arm"]))) or "none"
        raise UserInputError(f"no finished runs of {arm!r} here (arms found: {arms})")
    configs = {r: results.configs.get(r, {}) for r in mine["run_id"]}
    mine[KEY] = [int(configs[r].get(KEY, 0)) for r in mine["run_id"]]
    keys = {k for c in configs.values() for k in c if k not in (*COSMETIC_KEYS, KEY)}
    differ = sorted(k for k in keys if len({repr(c.get(k)) for c in configs.values()}) > 1)
    if differ:
        raise UserInputError(
            f"the runs of {arm!r} differ in {', '.join(differ)} as well as in val_sample: "
            "only the val sample may differ (the same models scored on other text)")
    return mine


def check(results: Results, arm: str = "baseline@reference_lr") -> SampleCheck:
    """The check over the seeds that ran on every sample."""
    runs = sample_runs(results, arm)
    samples = sorted(set(runs[KEY]))
    if len(samples) < 2:
        raise UserInputError(
            f"the runs of {arm!r} were scored on val sample {samples[0]} only: run the same "
            "seeds with --set val_sample=1 (and 2, ...) into their own folders too")
    per_seed = runs.groupby("seed")[KEY].nunique()
    seeds = tuple(int(s) for s in per_seed.index[per_seed == len(samples)])
    if len(seeds) < 2:
        raise UserInputError(f"fewer than 2 seeds of {arm!r} ran on every val sample "
                             f"({', '.join(map(str, samples))}): run the same seeds on each")
    curves = {}
    for k in samples:
        chosen = runs[(runs[KEY] == k) & runs["seed"].isin(seeds)].sort_values("seed")
        evals = results.evals[results.evals["run_id"].isin(chosen["run_id"])]
        curves[k] = fx.arm_curves_of(
            arm, {r: part for r, part in evals.groupby("run_id", sort=False)},
            results.val_sequences)
        curves[k] = _in_seed_order(curves[k], seeds)
    own = curves[samples[0]]
    lows = fx.leave_one_out_lows(window_means(own.loss, own.window))
    identical = sum(all(_same_training(results, runs, seed, samples)) for seed in seeds)
    rows = []
    for k in samples:
        for stat in (fx.rise_at(curves[k], lows, "rise"), fx.end_statistic(curves[k])):
            test = fx.one_sample(stat)
            rows.append({"statistic": stat.name, KEY: k,
                         "sequences": None if stat.per_sequence is None
                         else int(stat.per_sequence.size),
                         "mean over seeds": stat.mean, "val-text SE": test.se_val})
    table = pd.DataFrame(rows)
    return SampleCheck(arm, seeds, table, identical, spread_check(table))


def spread_check(table: pd.DataFrame) -> pd.DataFrame:
    """Per statistic: the sd of its mean over the samples against the val term's prediction
    (the root mean square of their val-text SEs); their variance ratio, chi-square on
    samples - 1 df under the val term, with the range it falls in 95% of the time."""
    from scipy import stats

    rows = []
    for name, part in table.groupby("statistic", sort=False):
        k = len(part) - 1
        observed = float(part["mean over seeds"].std(ddof=1))
        predicted = float(np.sqrt(np.mean(np.square(part["val-text SE"].astype(float)))))
        ratio = observed ** 2 / predicted ** 2 if predicted > 0 else math.nan
        tail = min(stats.chi2.cdf(ratio * k, k), stats.chi2.sf(ratio * k, k))
        rows.append({"statistic": name, "samples": k + 1, "observed sd": observed,
                     "predicted sd (val term)": predicted, "variance ratio": ratio,
                     "95% range if the term is right": (float(stats.chi2.ppf(0.025, k) / k),
                                                        float(stats.chi2.ppf(0.975, k) / k)),
                     "p (two-sided)": float(min(1.0, 2 * tail))})
    return pd.DataFrame(rows)


def _in_seed_order(curves: fx.ArmCurves, seeds: Sequence[int]) -> fx.ArmCurves:
    order = [curves.seeds.index(s) for s in seeds]
    rows = {name: getattr(curves, name)[order] for name in
            ("loss", "per_sequence", "train_loss", "lr") if getattr(curves, name) is not None}
    return replace(curves, seeds=tuple(seeds),
                   run_ids=tuple(curves.run_ids[i] for i in order), **rows)


def _same_training(results: Results, runs: pd.DataFrame, seed: int,
                   samples: Sequence[int]) -> list[bool]:
    """Per sample: are its run's train losses those of the seed's first sample, eval by
    eval (the same model)?"""
    def train_losses(k: int) -> np.ndarray:
        run = runs.loc[(runs["seed"] == seed) & (runs[KEY] == k), "run_id"].iloc[0]
        evals = results.evals[results.evals["run_id"] == run].sort_values("step")
        return evals[["step", "train_loss"]].to_numpy(float)

    first = train_losses(samples[0])
    return [np.array_equal(first, train_losses(k), equal_nan=True) for k in samples[1:]]


def markdown(result: SampleCheck) -> str:
    """The table and the check as the README prints them."""
    lines = [f"{result.arm}, seeds {', '.join(map(str, result.seeds))}: training identical "
             f"on every val sample in {result.identical_training} of {len(result.seeds)} seeds "
             "(train losses equal at every eval).", "",
             "| statistic | val sample | sequences | mean over seeds | val-text SE |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['statistic']} | {r[KEY]} | {r['sequences']} | {r['mean over seeds']:.4f} "
              f"| {r['val-text SE']:.4f} |" for r in result.table.to_dict("records")]
    lines += ["", "| statistic | samples | sd of the samples' means | predicted by the val term "
              "| variance ratio | 95% range if the term is right | p (two-sided) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['statistic']} | {r['samples']} | {r['observed sd']:.4f} | "
              f"{r['predicted sd (val term)']:.4f} | {r['variance ratio']:.2f} | "
              f"{r['95% range if the term is right'][0]:.2f} to "
              f"{r['95% range if the term is right'][1]:.2f} | {fx.format_p(r['p (two-sided)'])} |"
              for r in result.spread.to_dict("records")]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moe_core.analysis.val_sample",
        description="The val-text term checked on real runs: the same models scored on other "
                    "samples of val text (runs of --set val_sample=k).")
    parser.add_argument("runs", nargs="+", help="folders holding the arm's runs, each val "
                        "sample in its own folder (the split's own: the study's runs)")
    parser.add_argument("--arm", default="baseline@reference_lr")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        result = check(load_runs(*args.runs), args.arm)
    except UserInputError as e:
        print(f"val_sample: {e}", file=sys.stderr)
        return 2
    print(f"{time.perf_counter() - started:.0f} s\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
