"""The calibration table's null rows confirmed on fresh streams, as docs/calibration_plan.md
fixed before the table was drawn.

A calibration row's upper limit (Clopper-Pearson, `calibration.holding`) assumes its
studies are independent draws of one rate. The table at c3813d3 read the plain null on six
streams of studies (each stream a scenario seed, each study its own generator seeded
(stream, study)) and found them further apart than binomial noise allows, so this module
redraws the nulls on streams no table has used, in equal parts, and gives each bounded row
two upper limits: the pooled count's Clopper-Pearson limit, and the streams' mean plus a
one-sided t over the streams' rates (honest if the streams do differ). A row is confirmed
within tolerance when the larger is at most `calibration.HOLD_TOLERANCE` x its bound. The
plain null's streams are also tested for homogeneity (chi-square, each family and some
explanation supported, Holm over them).

Which nulls: the plain null always (8 streams); each realism null (`calibration.
realism_nulls`) with a bounded row above its bound in the table given (4 streams); the
per-arm null's pooled twin is the plain null drawn on another stream, confirmed by it.
`--margin`: the plan's post-hoc follow-up (its section 5), the margin-of-persists row on 8
streams of its own.

A row not within tolerance is not shown within it, never shown above its bound: at a true
5%, a row of 4 streams x ~90 studies (a not-rising family) passes only ~44% of the time,
one of 4 x 500 ~97%, one of 200 studies in the table ~33% (binomial simulations).

    python -m moe_core.analysis.confirmation --table moe_core/analysis/calibration_table.json \\
        --noise moe_core/analysis/noise_fitted.json --jobs 2 --out FILE
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moe_core.analysis import verdicts as vd
from moe_core.analysis.calibration import (
    HOLD_CONFIDENCE,
    HOLD_TOLERANCE,
    MARGIN_OF_PERSISTS,
    NOT_RISING,
    NOT_RISING_MIN_STUDIES,
    PLAIN_NULL,
    POOLED_TWIN,
    NullScenario,
    any_effect,
    margin_of_persists,
    null_rows,
    null_truths,
    plain_null_rows,
    processes,
    read_noise,
    realism_nulls,
    row_bound,
    row_studies,
    run_scenario,
    study_arms,
    upper_limit,
)
from moe_core.errors import UserInputError

# stream seeds no calibration table uses (the table's scenarios use 1-36)
FIRST_STREAM = 1001
PLAIN_STREAMS = 8
OTHER_STREAMS = 4
PER_STREAM = 500
PLAIN = PLAIN_NULL  # the plain null's scenario, as the table names it
# the plain null's rows tested for homogeneity across its streams
HOMOGENEITY = tuple(f"an effect on {name}" for name in vd.HYPOTHESES) + (
    "any explanation supported",)


@dataclass(frozen=True)
class Confirmed:
    """One bounded row over k streams: its hits and studies per stream, pooled, and the
    two upper limits (the pooled Clopper-Pearson one, the streams' mean + t)."""

    scenario: str
    indicator: str
    bound: float
    hits: tuple[int, ...]
    studies: tuple[int, ...]
    confidence: float = HOLD_CONFIDENCE

    @property
    def rate(self) -> float:
        return sum(self.hits) / sum(self.studies)

    @property
    def pooled_upper(self) -> float:
        return upper_limit(sum(self.hits), sum(self.studies), self.confidence)

    @property
    def streams_upper(self) -> float:
        """The streams' mean rate (unweighted) + t(confidence, k - 1) x their sd /
        sqrt(k), over the k streams that had studies of this row (a not-rising family that
        no study of a stream had has no rate there)."""
        from scipy.stats import t

        rates = np.array([h / n for h, n in zip(self.hits, self.studies, strict=True) if n])
        if len(rates) < 2:
            return float("nan")
        return float(rates.mean() + t.ppf(self.confidence, len(rates) - 1)
                     * rates.std(ddof=1) / np.sqrt(len(rates)))

    @property
    def upper(self) -> float:
        return max(self.pooled_upper, self.streams_upper)

    @property
    def within(self) -> bool:
        return self.upper <= HOLD_TOLERANCE * self.bound

    def record(self) -> dict:
        """The row as the JSON files keep it (and the report reads it)."""
        return {"scenario": self.scenario, "indicator": self.indicator, "bound": self.bound,
                "hits": list(self.hits), "studies": list(self.studies), "rate": self.rate,
                "pooled upper": self.pooled_upper, "streams' upper": self.streams_upper,
                "upper": self.upper, "confidence": self.confidence, "within": self.within}


def _over_streams(streams: Sequence[int], per_stream: int, draw, log) -> list:
    """`draw(stream)` for each stream in turn, each timed in `log`."""
    drawn = []
    for stream in streams:
        started = time.perf_counter()
        drawn.append(draw(stream))
        log(f"  stream {stream}: {per_stream} studies in {time.perf_counter() - started:.0f} s")
    return drawn


def stream_rows(null: NullScenario, stream: int, per_stream: int, seeds: int, plain: bool
                ) -> list[dict]:
    """One stream of `null`: its bounded rows as the table builds them (`plain_null_rows`
    or `null_rows`), each with its hits and studies (a not-rising family counted among the
    studies that had one, however few)."""
    rates = run_scenario(null.truths, any_effect, per_stream, seeds, null.noise, seed=stream,
                         arm_noise=null.arm_noise)
    scenario = f"{null.name} ({per_stream} studies)"
    build = plain_null_rows if plain else null_rows
    rows = []
    for name, expected, values in build(scenario, rates, per_stream, least=1):
        for indicator, rate in values.items():
            bound = row_bound({"what it should be": expected, "indicator": indicator})
            if bound is None:
                continue
            n = row_studies({"scenario": name}, per_stream)
            rows.append({"indicator": indicator, "bound": bound, "stream": stream,
                         "hits": round(rate * n), "studies": n})
    return rows


def confirm(null: NullScenario, streams: Sequence[int], per_stream: int, seeds: int,
            plain: bool = False, log=print, confidence: float = HOLD_CONFIDENCE
            ) -> list[Confirmed]:
    """Every bounded row of `null` over `streams`, pooled (a row missing from a stream
    counts 0 hits there, of its studies, or of none for a not-rising family that no study
    had); a not-rising family is kept where NOT_RISING_MIN_STUDIES or more studies had one,
    as in the table."""
    frame = pd.DataFrame([row for rows in _over_streams(
        streams, per_stream, lambda stream: stream_rows(null, stream, per_stream, seeds, plain),
        log) for row in rows])
    confirmed = []
    for (indicator, bound), group in frame.groupby(["indicator", "bound"], sort=False):
        by_stream = group.set_index("stream")
        # a row a stream lacks: a crossed control no study of it had claims nothing in its
        # studies (0 of per_stream, as the table counts it); a not-rising family no study
        # had has no studies to count (0 of 0)
        absent = 0 if NOT_RISING in indicator else per_stream
        hits = tuple(int(by_stream["hits"].get(s, 0)) for s in streams)
        studies = tuple(int(by_stream["studies"].get(s, absent)) for s in streams)
        if sum(studies) < NOT_RISING_MIN_STUDIES:
            continue
        confirmed.append(Confirmed(null.name, indicator, bound, hits, studies, confidence))
    return confirmed


# the post-hoc follow-up (docs/calibration_plan.md, section 5): the margin-of-persists row,
# not a null, redrawn on its own fresh streams
MARGIN_FIRST_STREAM = 2001
MARGIN_INDICATOR = "called persisting"


def confirm_margin(noise, streams: Sequence[int], per_stream: int, seeds: int,
                   log=print, confidence: float = HOLD_CONFIDENCE) -> Confirmed:
    """"called persisting" at the margin of persists (`calibration.margin_of_persists`, held
    to 5%) over `streams`."""
    truths, measure = margin_of_persists(study_arms())
    hits = _over_streams(streams, per_stream, lambda stream: round(run_scenario(
        truths, measure, per_stream, seeds, noise, seed=stream)[MARGIN_INDICATOR]
        * per_stream), log)
    return Confirmed(MARGIN_OF_PERSISTS, MARGIN_INDICATOR, 0.05, tuple(hits),
                     (per_stream,) * len(hits), confidence)


def homogeneity(rows: Sequence[Confirmed]) -> pd.DataFrame:
    """Chi-square of streams x (hit, miss) for each row named in HOMOGENEITY, its
    dispersion (chi-square / df) and Holm's adjusted p over them."""
    from scipy.stats import chi2_contingency
    from statsmodels.stats.multitest import multipletests

    tests = []
    for row in rows:
        if row.indicator not in HOMOGENEITY:
            continue
        counts = np.array([[h, n - h] for h, n in zip(row.hits, row.studies, strict=True)])
        if counts[:, 0].sum() == 0:
            tests.append({"indicator": row.indicator, "chi-square": 0.0,
                          "df": len(counts) - 1, "p": 1.0})
            continue
        chi2, p, df, _ = chi2_contingency(counts, correction=False)
        tests.append({"indicator": row.indicator, "chi-square": float(chi2), "df": int(df),
                      "p": float(p)})
    frame = pd.DataFrame(tests)
    if len(frame):
        frame["dispersion"] = frame["chi-square"] / frame["df"]
        frame["Holm p"] = multipletests(frame["p"], method="holm")[1]
    return frame


def table_digest(table: Mapping) -> str:
    """What identifies a calibration table (its stored JSON's rows and noise): a
    confirmation is quoted beside the table it was made from only."""
    canonical = json.dumps({"rows": table.get("rows"), "noise": table.get("noise")},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def to_confirm(table: pd.DataFrame, nulls: Sequence[NullScenario]) -> list[NullScenario]:
    """The realism nulls with a bounded row above its bound in `table` (rows of the
    per-arm null's pooled twin excepted: the plain null confirms them)."""
    chosen = []
    for null in nulls:
        own = table[table["scenario"].str.startswith(null.name)
                    & ~table["scenario"].str.contains(POOLED_TWIN, regex=False)]
        if any(bound is not None and row["rate"] > bound
               for _, row in own.iterrows() for bound in [row_bound(row)]):
            chosen.append(null)
    return chosen


def short_name(scenario: str) -> str:
    """A null's name to its first colon ("null with onset jitter"); the plain one's "the
    plain null"."""
    return "the plain null" if scenario == PLAIN else scenario.split(":")[0]


def markdown(rows: Sequence[Confirmed]) -> str:
    lines = ["| scenario | indicator | streams | hits / studies | rate | pooled upper | "
             "streams' upper | within tolerance |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        label = short_name(r.scenario)
        lines.append(
            f"| {label} | {r.indicator} | {sum(1 for n in r.studies if n)} | "
            f"{sum(r.hits)} / {sum(r.studies)} | {r.rate:.3f} | {r.pooled_upper:.3f} | "
            f"{r.streams_upper:.3f} | {'yes' if r.within else 'no'} "
            f"(limit {HOLD_TOLERANCE * r.bound:g}) |")
    return "\n".join(lines)


def read_table(path: Path, noise, noise_path: Path) -> dict:
    """The calibration table stored at `path` (its JSON), refused where it is not one or
    was drawn with another noise than `noise` (read from `noise_path`)."""
    try:
        stored = json.loads(path.read_text())
        pd.DataFrame(stored["rows"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserInputError(f"--table {path}: not a calibration table ({error}); write one "
                             "with `python -m moe_core.analysis.calibration --out FILE`"
                             ) from error
    if stored.get("noise") != asdict(noise):
        raise UserInputError(f"--table {path} was drawn with another noise than --noise "
                             f"{noise_path}: give the noise file the table was drawn with "
                             "(its JSON's \"noise\")")
    return stored


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moe_core.analysis.confirmation",
        description="The calibration table's nulls redrawn on fresh streams "
                    "(docs/calibration_plan.md).")
    parser.add_argument("--table", type=Path, required=True,
                        help="the calibration table (JSON) whose rows choose the nulls")
    parser.add_argument("--noise", type=Path, required=True,
                        help="the noise file the table was drawn with")
    parser.add_argument("--per-stream", type=int, default=PER_STREAM)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the confirmation here as JSON")
    parser.add_argument("--margin", action="store_true", help="instead: the post-hoc "
                        "follow-up of the plan's section 5, the margin-of-persists row on 8 "
                        f"streams from {MARGIN_FIRST_STREAM}")
    args = parser.parse_args(argv)
    try:
        noise, fitted_to, arm_noise = read_noise(args.noise)
        stored = read_table(args.table, noise, args.noise)
        table = pd.DataFrame(stored["rows"])
    except UserInputError as error:
        print(f"confirmation: {error}", file=sys.stderr)
        return 2
    if args.margin:
        return _margin(args, noise, stored)
    arms = study_arms()
    plain = NullScenario(PLAIN, null_truths(arms), noise)
    others = to_confirm(table, realism_nulls(arms, noise, arm_noise))
    started = time.perf_counter()
    rows: list[Confirmed] = []
    with processes(args.jobs):
        for null, k, is_plain in [(plain, PLAIN_STREAMS, True),
                                  *[(n, OTHER_STREAMS, False) for n in others]]:
            print(f"{null.name}: {k} streams x {args.per_stream} studies")
            rows += confirm(null, range(FIRST_STREAM, FIRST_STREAM + k), args.per_stream,
                            args.seeds, is_plain)
    tests = homogeneity([r for r in rows if r.scenario == PLAIN])
    print("\n" + markdown(rows))
    print("\nthe plain null's streams, homogeneity (chi-square, Holm):")
    print(tests.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\n{sum(r.within for r in rows)} of {len(rows)} rows within tolerance")
    if args.out:
        args.out.write_text(json.dumps({
            "command": f"python -m moe_core.analysis.confirmation --table {args.table} "
                       f"--noise {args.noise} --per-stream {args.per_stream} "
                       f"--seeds {args.seeds}",
            "table": table_digest(stored), "noise": asdict(noise),
            "arm_noise": {arm: asdict(n) for arm, n in arm_noise.items()},
            "streams": {r.scenario: [FIRST_STREAM, FIRST_STREAM + len(r.studies) - 1]
                        for r in rows},
            "per_stream": args.per_stream, "seeds": args.seeds, "noise_fitted_to": fitted_to,
            "minutes": (time.perf_counter() - started) / 60,
            "rows": [r.record() for r in rows],
            "homogeneity": tests.to_dict("records")}, indent=1))
        print(f"written to {args.out}")
    return 0


def _margin(args: argparse.Namespace, noise, stored: Mapping) -> int:
    """`--margin`: the post-hoc follow-up, printed and written apart from the confirmation."""
    started = time.perf_counter()
    with processes(args.jobs):
        row = confirm_margin(noise, range(MARGIN_FIRST_STREAM,
                                          MARGIN_FIRST_STREAM + PLAIN_STREAMS),
                             args.per_stream, args.seeds)
    print("\npost hoc (docs/calibration_plan.md, section 5):\n" + markdown([row]))
    if args.out:
        args.out.write_text(json.dumps({
            "post hoc": "docs/calibration_plan.md, section 5: added after the table was seen",
            "command": f"python -m moe_core.analysis.confirmation --margin --table "
                       f"{args.table} --noise {args.noise} --per-stream {args.per_stream} "
                       f"--seeds {args.seeds}",
            "table": table_digest(stored), "minutes": (time.perf_counter() - started) / 60,
            "streams": [MARGIN_FIRST_STREAM, MARGIN_FIRST_STREAM + PLAIN_STREAMS - 1],
            **row.record()}, indent=1))
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
