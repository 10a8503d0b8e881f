"""A real-data null: replicate runs of the rising control on different seeds, split into a
"control" and a "placebo intervention", go through the report's own pipeline
(`verdicts.analyse`). The placebo differs from the control only in a config key its
preset never reads (so it names a family, but trains nothing differently), so every
change the pipeline reports between them is noise: training randomness from real runs,
not from a model of it.

Each split draws `size` runs for the control and `size` others for the placebo (different
seeds: compared unpaired, Welch over seeds). Over many splits, the share of placebo
changes called significant is the pipeline's false-effect rate on real noise (nominal 5%),
and change / SE follows a t distribution with the comparison's df. Splits share runs, so
they are not independent draws: the rate is an estimate whose error shrinks with the
number of replicate runs, not of splits (stated with each table).

    moe-suite run -e baseline@reference_lr --seeds 12 --out runs/placebo --jobs 2
    python -m moe_core.analysis.placebo runs/placebo            # the README's placebo table
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from moe_core.analysis import verdicts as vd
from moe_core.analysis.results import Results, load_runs
from moe_core.config.run_config import arm_name, split_arm
from moe_core.errors import UserInputError


@dataclass(frozen=True)
class Placebo:
    """A config change that does not touch training under the control's config."""

    family: str
    key: str
    value: object
    why: str


# under the control's auxiliary balancing loss this key is never read. One placebo is
# enough: its prediction is none (no balancing weight changes), so in any family its change
# test is the same comparison; the family only names where it would be corrected
PLACEBO = Placebo(vd.LOAD_BALANCING, "aux_free_bias_rate", 0.01,
                  "the bias rate of aux-free balancing, unread under the auxiliary loss")
PLACEBO_EXPERIMENT = "placebo"


def replicate_runs(results: Results, control: str) -> list[str]:
    """The finished runs of the control arm (one config), in seed order."""
    runs = vd.counted_runs(results)
    mine = runs[runs["group"] == control].sort_values("seed")
    if mine.empty:
        arms = ", ".join(sorted(set(runs["group"]))) or "none"
        raise UserInputError(f"no finished runs of {control!r} here (arms found: {arms}); "
                             "run its replicates first, e.g. moe-suite run -e "
                             f"{control} --seeds 12 --out runs/placebo")
    return list(mine["run_id"])


def split_results(results: Results, control_runs: Sequence[str], placebo_runs: Sequence[str],
                  control: str, placebo: Placebo) -> Results:
    """The control's runs as they are, the placebo's relabelled as an intervention whose
    config differs by the placebo key."""
    condition = split_arm(control)[1]
    arm = arm_name(PLACEBO_EXPERIMENT, condition)
    keep = set(control_runs) | set(placebo_runs)
    moved = set(placebo_runs)

    def relabel(df: pd.DataFrame) -> pd.DataFrame:
        df = df[df["run_id"].isin(keep)].copy()
        mask = df["run_id"].isin(moved)
        df.loc[mask, "arm"] = arm
        df.loc[mask, "experiment"] = PLACEBO_EXPERIMENT
        if "group" in df:
            df.loc[mask, "group"] = arm
        return df.reset_index(drop=True)

    configs = {r: ({**results.configs[r], placebo.key: placebo.value,
                    "name": PLACEBO_EXPERIMENT} if r in moved else results.configs[r])
               for r in keep}
    return Results(relabel(results.runs), relabel(results.evals),
                   val_sequences={r: results.val_sequences[r] for r in keep
                                  if r in results.val_sequences},
                   configs=configs)


def placebo_table(results: Results, control: str = "baseline@reference_lr", size: int = 4,
                  splits: int = 200, seed: int = 0) -> pd.DataFrame:
    """One row per (split, placebo): the pipeline's comparison of the placebo with the
    control (its basis, change, SE, df, p and whether it was called significant)."""
    runs = replicate_runs(results, control)
    if len(runs) < 2 * size:
        raise UserInputError(f"{control}: {len(runs)} finished runs, a split needs "
                             f"{2 * size} (two disjoint sets of {size}); run more seeds")
    rng = np.random.default_rng(seed)
    rows = []
    for split in range(splits):
        drawn = rng.permutation(runs)[:2 * size]
        for placebo in (PLACEBO,):
            analysis = vd.analyse(split_results(results, drawn[:size], drawn[size:],
                                                control, placebo))
            found = [c for c in analysis.comparisons if c.control == control
                     and split_arm(c.arm)[0] == PLACEBO_EXPERIMENT]
            c = found[0] if found else None
            t = c.change if c is not None else None
            rows.append({
                "split": split, "family": placebo.family, "key": placebo.key,
                "control rises": control in analysis.rising_controls,
                "basis": c.basis if c is not None else "",
                "outcome": c.outcome if c is not None else "not compared",
                "change": t.estimate if t is not None else np.nan,
                "se": t.se if t is not None else np.nan,
                "df": t.df if t is not None else np.nan,
                "p": t.p_value if t is not None else np.nan,
                "significant": bool(t is not None and t.significant),
                "verdict": analysis.verdicts[placebo.family].verdict})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, replicates: int) -> pd.DataFrame:
    """Per placebo: how often the pipeline called the placebo's change significant, and
    whether change / SE looks like the t it is read against."""
    out = []
    for (family, key), part in table.groupby(["family", "key"], sort=False):
        tested = part[part["basis"] != ""]
        z = (tested["change"] / tested["se"]).to_numpy()
        out.append({
            "placebo": f"{key} (family: {family})", "splits": len(part),
            "replicate runs": replicates,
            "control rises": part["control rises"].mean(),
            "compared": len(tested) / len(part),
            "basis": ", ".join(sorted(set(tested["basis"]))),
            "called significant (nominal 0.05)": tested["significant"].mean()
            if len(tested) else np.nan,
            "mean change / SE": float(np.mean(z)) if len(z) else np.nan,
            "sd change / SE": float(np.std(z, ddof=1)) if len(z) > 1 else np.nan,
            "sd of t(df) (expected)": float(np.mean(np.sqrt(tested["df"] / (tested["df"] - 2))))
            if len(z) and (tested["df"] > 2).all() else np.nan,
            "a verdict other than inconclusive": (part["verdict"] != vd.INCONCLUSIVE).mean()})
    return pd.DataFrame(out)


def markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for _, row in frame.iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moe_core.analysis.placebo",
        description="The report's false-effect rate on real runs: replicates of the control "
                    "split into a control and a placebo intervention.")
    parser.add_argument("runs", nargs="+", help="folders holding the control's replicate runs")
    parser.add_argument("--control", default="baseline@reference_lr")
    parser.add_argument("--size", type=int, default=4, help="runs per side (the demo's seeds)")
    parser.add_argument("--splits", type=int, default=200)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        results = load_runs(*args.runs)
        table = placebo_table(results, args.control, args.size, args.splits)
    except UserInputError as e:
        print(f"placebo: {e}", file=sys.stderr)
        return 2
    replicates = len(replicate_runs(results, args.control))
    print(f"{args.splits} splits of {replicates} replicate runs of {args.control} into "
          f"{args.size} + {args.size}; {time.perf_counter() - started:.0f} s\n")
    print(markdown(summary(table, replicates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
