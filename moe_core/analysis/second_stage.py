"""Stage 2 of docs/calibration_plan_next.md: every bounded row of the calibration table not
shown within tolerance at stage 1 (its one-sided 97.5% Clopper-Pearson limit above
`calibration.HOLD_TOLERANCE` x its bound), and every row the fresh-stream confirmation made
from the same table did not show within it, redrawn on STREAMS streams no table or
confirmation has used (seeds from FIRST_STREAM), each stream with enough studies that about
COUNTED of them count for the row; at 97.5% again.

What counts as met (the plan, with its amendments): every bounded row within at stage 1 or,
if not, at stage 2; every row the confirmation did not show within, within at stage 2 (a
judged row not drawn is not within); and no rate of either stage above its bound beyond
noise (one-sided exact binomial against the bound, Holm over all of them). A row truly at
the tolerance is called within with probability at most 2.5% per stage; `pass_rate` gives
the chance that a row at a true rate passes stage 2, the figures the plan fixed before this
was drawn. Each scenario draws its own block of streams; any `--counted` but the plan's is
a trial, drawn on streams from TRIAL_FIRST_STREAM, which the report never quotes.

Stage 2 redraws a row through its scenario: the plain null, a realism null
(`calibration.realism_nulls`; the per-arm null's pooled twin is the plain null on another
stream), or the margin of persists. A row of any other scenario is refused by name: its
scenario is built inline in `calibration.calibration_table` and has no redraw here yet.

    python -m moe_core.analysis.second_stage --table moe_core/analysis/calibration_table.json \\
        --confirmation moe_core/analysis/calibration_confirmation.json \\
        --noise moe_core/analysis/noise_fitted.json --jobs 2 --out FILE
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from moe_core.analysis.calibration import (
    HOLD_TOLERANCE,
    MARGIN_OF_PERSISTS,
    NOT_RISING,
    PLAIN_NULL,
    POOLED_TWIN,
    NullScenario,
    above_p,
    holding,
    null_truths,
    processes,
    read_noise,
    realism_nulls,
    study_arms,
    upper_limit,
)
from moe_core.analysis.confirmation import (
    Confirmed,
    confirm,
    confirm_margin,
    markdown,
    read_table,
    table_digest,
)
from moe_core.errors import UserInputError

# each scenario redrawn on its own block of streams: the first from FIRST_STREAM, the next
# from FIRST_STREAM + STREAM_BLOCK, ...; 1-36 (tables), 1001-1008 (confirmation), 2001-2008
# (post hoc) are used, 3001-3008 burnt (the plan's amendment, item 5)
FIRST_STREAM = 4001
STREAM_BLOCK = 100
STREAMS = 8
COUNTED = 250  # studies per stream that count for a row (the plan, as amended before drawing)
CONFIDENCE = 0.975  # each stage spends half of the 5%
# any other --counted is a trial of the code, never the plan's draw: its own streams
TRIAL_FIRST_STREAM = 9001
# the burnt streams' draws (3001-3008, the first 100 studies of the noisier null's, 2 of the
# margin row's), seen before the plan was fixed: not part of the outcome, pooled into a
# sensitivity reading only (the plan's amendment, item 5): indicator -> (hits, studies)
BURNT = {f"an effect on overfitting {NOT_RISING}": (4, 163),
         f"an effect on the LR schedule {NOT_RISING}": (11, 163),
         f"an effect on load balancing {NOT_RISING}": (12, 163),
         "called persisting": (1, 16)}


def pass_rate(rate: float, streams: int = STREAMS, per_stream: int = COUNTED,
              share: float = 1.0, confidence: float = CONFIDENCE,
              tolerance: float = HOLD_TOLERANCE * 0.05, draws: int = 20_000,
              seed: int = 0) -> float:
    """How often a row at a true `rate` is within at stage 2: `streams` streams of
    `per_stream` studies, each study counting for the row with probability `share` (a
    not-rising family; 1: every study), within when the larger of the pooled count's
    one-sided Clopper-Pearson limit and the streams' mean + t is at most `tolerance`
    (binomial simulation, `draws` stage 2s)."""
    from scipy.stats import beta, t

    rng = np.random.default_rng(seed)
    counted = (rng.binomial(per_stream, share, size=(draws, streams)) if share < 1
               else np.full((draws, streams), per_stream))
    hits = rng.binomial(counted, rate)
    pooled_hits, pooled = hits.sum(axis=1), counted.sum(axis=1)
    pooled_upper = np.where(pooled_hits < pooled,
                            beta.ppf(confidence, pooled_hits + 1,
                                     np.maximum(pooled - pooled_hits, 1)), 1.0)
    rates = hits / np.maximum(counted, 1)
    streams_upper = rates.mean(axis=1) + (t.ppf(confidence, streams - 1)
                                          * rates.std(axis=1, ddof=1) / np.sqrt(streams))
    return float(np.mean(np.maximum(pooled_upper, streams_upper) <= tolerance))


@dataclass(frozen=True)
class Redraw:
    """One scenario to redraw at stage 2: `null` (None: the margin of persists), the rows of
    it that stage 2 judges (indicator -> why: "stage 1" or "confirmation"), and how many
    studies each stream draws."""

    scenario: str
    null: NullScenario | None
    per_stream: int
    plain: bool = False
    judged: dict[str, str] = field(default_factory=dict)


def _scenario_of(name: str, nulls: Sequence[NullScenario], plain: NullScenario
                 ) -> NullScenario | None:
    """The scenario a table row or a confirmed row was drawn from, by its name: the plain
    null (the per-arm null's pooled twin too), a realism null, or None for the margin of
    persists; any other scenario is refused by name."""
    if name.startswith(MARGIN_OF_PERSISTS):
        return None
    if name.startswith(PLAIN_NULL) or POOLED_TWIN in name:
        return plain
    for null in nulls:
        if name.startswith(null.name):
            return null
    raise UserInputError(
        f"stage 2 cannot redraw the scenario \"{name}\": only the nulls and the margin of "
        "persists have a redraw (moe_core.analysis.second_stage); give that scenario one "
        "before running stage 2 on this table")


def stage_one(table: pd.DataFrame, studies: int | None) -> list[dict]:
    """The table's bounded rows not within tolerance at stage 1 (their one-sided
    CONFIDENCE Clopper-Pearson limit above HOLD_TOLERANCE x the bound)."""
    short = []
    for _, row in table.iterrows():
        held = holding(row, studies)
        if held is None:
            continue
        upper = upper_limit(held.hits, held.studies, CONFIDENCE)
        if upper > held.tolerance:
            short.append({"scenario": row["scenario"], "indicator": row["indicator"],
                          "hits": held.hits, "studies": held.studies, "upper": upper,
                          "tolerance": held.tolerance})
    return short


def _share(table: pd.DataFrame, null: NullScenario | None, indicator: str) -> float:
    """The share of the table's studies of `null` in which a not-rising family's row was
    compared against a control that does not rise (1 for any other row, and for the margin
    of persists, `null` None)."""
    if null is None or NOT_RISING not in indicator:
        return 1.0
    name = indicator.removeprefix("an effect on ").removesuffix(f" {NOT_RISING}")
    shares = table[(table["indicator"] == f"{name} compared {NOT_RISING}")
                   & table["scenario"].str.startswith(null.name)
                   & ~table["scenario"].str.contains(POOLED_TWIN, regex=False)]["rate"]
    if shares.empty or not shares.iloc[0] > 0:
        raise UserInputError(f"the table has no share of studies in which {name} was "
                             f"compared {NOT_RISING} under \"{null.name}\": stage 2 cannot "
                             "size its streams")
    return float(shares.iloc[0])


def redraws(table: pd.DataFrame, studies: int | None, confirmed: Sequence[Mapping],
            nulls: Sequence[NullScenario], plain: NullScenario,
            counted: int = COUNTED) -> list[Redraw]:
    """Each scenario stage 2 redraws, with the rows it judges: the table's rows not within
    at stage 1 and `confirmed`'s rows (the confirmation made from this table) not within.
    A stream draws enough studies that about `counted` count for each judged row (for a
    not-rising family, `counted` / its share in the table, rounded up to hundreds)."""
    wanted = [(r["scenario"], r["indicator"], "stage 1") for r in stage_one(table, studies)]
    wanted += [(r["scenario"], r["indicator"], "confirmation") for r in confirmed
               if not r["within"]]
    chosen: dict[str, Redraw] = {}
    for scenario, indicator, why in wanted:
        null = _scenario_of(scenario, nulls, plain)
        name = MARGIN_OF_PERSISTS if null is None else null.name
        share = _share(table, null, indicator)
        per_stream = counted if share == 1.0 else 100 * math.ceil(counted / share / 100)
        old = chosen.get(name)
        redraw = Redraw(name, null, max(per_stream, old.per_stream if old else 0),
                        plain=null is plain, judged=dict(old.judged) if old else {})
        redraw.judged.setdefault(indicator, why)
        chosen[name] = redraw
    return list(chosen.values())


def draw(redraw: Redraw, noise, seeds: int, streams: Sequence[int], log=print
         ) -> list[Confirmed]:
    """Every bounded row of the redrawn scenario over `streams`, at CONFIDENCE."""
    log(f"{redraw.scenario}: {len(streams)} streams x {redraw.per_stream} studies")
    if redraw.null is None:
        return [confirm_margin(noise, streams, redraw.per_stream, seeds, log=log,
                               confidence=CONFIDENCE)]
    return confirm(redraw.null, streams, redraw.per_stream, seeds, redraw.plain, log=log,
                   confidence=CONFIDENCE)


@dataclass(frozen=True)
class Outcome:
    """The plan's outcome: how many rows stage 2 judges, how many of them it drew and found
    within (a judged row it did not draw is not within), and the smallest Holm-adjusted p of
    every rate of both stages against its bound."""

    judged: int
    within: int
    missing: tuple[str, ...]
    tested: int
    smallest_holm_p: float

    @property
    def met(self) -> bool:
        return self.within == self.judged and self.smallest_holm_p >= 0.05


def outcome(table: pd.DataFrame, studies: int | None, rows: Sequence[Mapping],
            judged: Sequence[Mapping]) -> Outcome:
    """From the table, stage 2's rows (their records) and the rows it judges (scenario,
    indicator): every judged row drawn and within at stage 2, and no rate above its bound
    beyond noise (one-sided exact binomial against the bound, Holm over the table's bounded
    rows and every stage 2 row)."""
    from statsmodels.stats.multitest import multipletests

    p = [held.above_p for held in (holding(row, studies) for _, row in table.iterrows())
         if held is not None]
    p += [above_p(sum(row["hits"]), sum(row["studies"]), row["bound"]) for row in rows]
    smallest = float(min(multipletests(p, method="holm")[1])) if p else 1.0
    drawn = {(r["scenario"], r["indicator"]): r for r in rows}
    found = [drawn.get((j["scenario"], j["indicator"])) for j in judged]
    missing = tuple(j["indicator"] for j, r in zip(judged, found, strict=True) if r is None)
    return Outcome(len(judged), sum(bool(r and r["within"]) for r in found), missing, len(p),
                   smallest)


def with_burnt(row: Mapping) -> dict | None:
    """The sensitivity reading the plan fixed (its amendment, item 5): a judged row's count
    with the burnt streams' draws of it pooled in, and that pooled count's one-sided
    CONFIDENCE Clopper-Pearson limit; None for a row with no burnt draws."""
    if row["indicator"] not in BURNT:
        return None
    hits, studies = BURNT[row["indicator"]]
    hits, studies = hits + sum(row["hits"]), studies + sum(row["studies"])
    upper = upper_limit(hits, studies, CONFIDENCE)
    return {"hits": hits, "studies": studies, "upper": upper,
            "within": upper <= HOLD_TOLERANCE * row["bound"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moe_core.analysis.second_stage",
        description="Stage 2 of docs/calibration_plan_next.md: the rows not within tolerance "
                    "redrawn on fresh streams.")
    parser.add_argument("--table", type=Path, required=True, help="the calibration table "
                        "(JSON), stage 1")
    parser.add_argument("--confirmation", type=Path, required=True,
                        help="the fresh-stream confirmation made from that table (JSON): its "
                             "rows not within are redrawn too")
    parser.add_argument("--noise", type=Path, required=True,
                        help="the noise file the table was drawn with")
    parser.add_argument("--counted", type=int, default=COUNTED,
                        help=f"studies per stream that count for a row (the plan's "
                             f"{COUNTED}; any other number is a trial of the code, drawn on "
                             f"streams from {TRIAL_FIRST_STREAM}, never the plan's)")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write stage 2 here as JSON")
    args = parser.parse_args(argv)
    try:
        noise, fitted_to, arm_noise = read_noise(args.noise)
        stored = read_table(args.table, noise, args.noise)
        if stored.get("seeds") not in (None, args.seeds):
            raise UserInputError(f"--seeds {args.seeds}: the table --table {args.table} was "
                                 f"drawn with {stored['seeds']} seeds per arm; give those")
        try:
            made = json.loads(args.confirmation.read_text())
            confirmed = made["rows"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserInputError(f"--confirmation {args.confirmation}: not a confirmation "
                                 f"({error}); write one with `python -m "
                                 "moe_core.analysis.confirmation --out FILE`") from error
        if made.get("table") != table_digest(stored):
            raise UserInputError(f"--confirmation {args.confirmation} was made from another "
                                 f"table than --table {args.table}")
        table = pd.DataFrame(stored["rows"])
        arms = study_arms()
        plain = NullScenario(PLAIN_NULL, null_truths(arms), noise)
        chosen = redraws(table, stored.get("studies"), confirmed,
                         realism_nulls(arms, noise, arm_noise), plain, args.counted)
    except UserInputError as error:
        print(f"second_stage: {error}", file=sys.stderr)
        return 2
    trial = args.counted != COUNTED
    first = TRIAL_FIRST_STREAM if trial else FIRST_STREAM
    # each scenario its own block of streams
    blocks = [range(first + i * STREAM_BLOCK, first + i * STREAM_BLOCK + STREAMS)
              for i in range(len(chosen))]
    judged = []
    for redraw, block in zip(chosen, blocks, strict=True):
        for indicator, why in redraw.judged.items():
            share = _share(table, redraw.null, indicator)
            judged.append({"scenario": redraw.scenario, "indicator": indicator, "why": why,
                           "streams": [block[0], block[-1]],
                           "pass rate at 0.05": pass_rate(0.05, per_stream=redraw.per_stream,
                                                          share=share),
                           "pass rate at the tolerance": pass_rate(
                               HOLD_TOLERANCE * 0.05, per_stream=redraw.per_stream,
                               share=share)})
    started = time.perf_counter()
    records = []
    with processes(args.jobs):
        for redraw, block in zip(chosen, blocks, strict=True):
            for row in draw(redraw, noise, args.seeds, block):
                record = {**row.record(), "streams": [block[0], block[-1]],
                          "per stream": redraw.per_stream,
                          "judged": redraw.judged.get(row.indicator)}
                if record["judged"] and not trial:
                    record["with the burnt draws"] = with_burnt(record)
                records.append(record)
    result = outcome(table, stored.get("studies"), records, judged)
    print("\n" + markdown([Confirmed(r["scenario"], r["indicator"], r["bound"],
                                     tuple(r["hits"]), tuple(r["studies"]), CONFIDENCE)
                           for r in records]))
    print(f"\n{result.within} of {result.judged} judged rows within at stage 2"
          + (f" ({', '.join(result.missing)} not drawn)" if result.missing else "")
          + f"; smallest Holm p over {result.tested} rates {result.smallest_holm_p:.3g}; "
          f"{'met' if result.met else 'not met'}"
          + (f" (a trial on streams from {TRIAL_FIRST_STREAM}, not the plan's)" if trial
             else ""))
    if args.out:
        args.out.write_text(json.dumps({
            "plan": "docs/calibration_plan_next.md",
            **({"trial": f"--counted {args.counted}: a trial of the code on streams from "
                         f"{TRIAL_FIRST_STREAM}, not the plan's stage 2"} if trial else {}),
            "command": f"python -m moe_core.analysis.second_stage --table {args.table}"
                       + (f" --confirmation {args.confirmation}" if args.confirmation else "")
                       + f" --noise {args.noise} --counted {args.counted} --seeds "
                         f"{args.seeds}",
            "table": table_digest(stored), "noise_fitted_to": fitted_to,
            "confidence": CONFIDENCE, "counted": args.counted,
            "minutes": (time.perf_counter() - started) / 60,
            "stage 1": stage_one(table, stored.get("studies")), "judged": judged,
            "burnt": {"streams": [3001, 3008], "rows": {k: list(v) for k, v in BURNT.items()}},
            "rows": records, "outcome": {**asdict(result), "met": result.met}}, indent=1))
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
