"""The back of the inflection report: the method a reviewer checks, the reference's
recorded files, the runs not counted, the appendix of every number (also as CSV), and the
provenance of the runs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from moe_core import escape as esc
from moe_core.analysis import effects as fx
from moe_core.analysis import progress as mp
from moe_core.analysis import verdicts as vd
from moe_core.analysis.calibration import (
    EXTENDED,
    EXTENDED_CONFIDENCE,
    HOLD_CONFIDENCE,
    HOLD_TOLERANCE,
    WITHOUT_GATE_SEEDS,
    holding,
    markdown_table,
    row_bound,
)
from moe_core.analysis.confirmation import short_name, table_digest
from moe_core.analysis.results import OURS
from moe_core.analysis.second_stage import CONFIDENCE as STAGE_CONFIDENCE
from moe_core.analysis.second_stage import outcome as stage_outcome
from moe_core.paths import (
    CALIBRATION_CONFIRMATION,
    CALIBRATION_MARGIN,
    CALIBRATION_SECOND_STAGE,
    CALIBRATION_TABLE,
    PACKAGE_DIR,
)
from moe_core.record.metrics_json import is_finished_status
from moe_core.report import figures
from moe_core.report.render import TABLES_ENV
from moe_core.report.sections import (
    Study,
    comparisons_table,
    html_table,
    inflect_count,
    text_interval,
    with_interval,
)


def method_markdown(study: Study) -> str:
    """What a rise is, what a noise unit is, the tests and the correction, the calibration."""
    a = study.analysis
    window = next(iter(a.curves.values())).window if a and a.curves else None
    seeds = sorted({c.n_seeds for c in a.curves.values()}) if a else []
    lines = [
        "## Method",
        "",
        f"- **Rise.** The mean val loss of the last {window or '10%'} evals minus its mean "
        "over the 10%-of-evals window where it is lowest. The reference's measure (final "
        "minus best single eval) grows with noise and curve length even on a flat curve.",
        "- **Per seed, without selection bias.** Each seed's rise is measured at the window "
        "where the *other* seeds' mean curve is lowest (leave one out), so its own noise does "
        "not choose where it is measured. Its costs: the seeds' values share the runs their "
        "places were read off, and a place read off noisier seeds strays further from the "
        "true low, so a noisier arm's rise reads smaller. So every comparison at equal "
        "steps, where a rising control has gate runs, measures both arms from one step "
        "instead: where those gate runs (compared with nothing) are lowest, each arm's "
        "change of val loss from there to the end (an arm still falling reads below 0; one "
        "that turned before it is measured from it all the same). A control's own rise test "
        "and the rise at matched fit keep the leave-one-out place.",
        f"- **The unit is the training run** ({', '.join(map(str, seeds))} seeds per arm). "
        "Every test asks whether other seeds would show the same, so its standard error "
        "and degrees of freedom come from the seeds: one arm, a t over its seeds (df n - 1); "
        "two arms that ran the same seeds (same initialisation and batch order), the "
        "difference seed by seed (paired t, df n - 1); arms on different seeds, Welch's t "
        "over the two seed variances. Pairing follows from which seeds ran, never from the "
        "result. A difference of exactly 0 in every seed (identical runs, a placebo) is "
        "reported as 0 with a degenerate interval and no test.",
        "- **Val text, a second component.** The val split is a sample of text; its "
        "sampling error (from the per-sequence losses, sequence by sequence where two arms "
        "share the split) is stated beside each test as the interval over new val text "
        "too (seed and val variances added, the seeds' df). It enters a test itself only "
        "where two arms were scored on different splits. It never adds degrees of freedom: "
        "p-values are t-based on the seeds' df and printed no finer than < 0.001 (with 4 "
        "seeds a distribution-free test could not go below 0.029 for 4 vs 4, 0.125 paired). "
        "It treats every val sequence as an independent draw of text; measured outside this "
        "report (the README's val-sample check: the same models scored on 4 samples of val "
        "text, cpu preset, 3 df) it was not found wrong for the rise and was about half too "
        "narrow (in sd) for one arm's end loss; sequences cut from one document are not "
        "independent draws, which explains part of it.",
        f"- **Tests and correction.** Does a control rise: one-sided t, Holm-Sidak over the "
        f"controls (the interventions' own rises are a second family), on the control's "
        f"gate seeds where it has them (seeds no other arm ran: the runs that decide "
        f"whether it rises are then not the runs compared with it). Does an intervention "
        f"change the rise of a control: two-sided t, Holm-Sidak "
        f"within each explanation (statsmodels), family-wise alpha {fx.ALPHA}; a family's "
        "size is its design's: a censored comparison holds its place with its test at equal "
        "steps (p 1 without one) and claims nothing, since which comparisons are tested is "
        "read off the compared runs. "
        "Not finding an effect is *inconclusive*, never a refutation; a table's 'could "
        f"detect' is the change found with {100 * fx.POWER:.0f}% power.",
        "- **A control, interventions.** A control is the `baseline` of a condition; an "
        "intervention differs from it in the config keys of one explanation only. A cause "
        "is judged only against a control whose own rise is beyond noise. An intervention "
        "that removes the suspected cause outright (no repeated data, no balancing loss, a "
        "late LR under half the control's) counts against it when the rise *persists*: the "
        "arm still rises and keeps more than half of the control's rise (one-sided t on arm "
        "rise minus half the control's, both arms' noise counted, Holm-Sidak in the family); "
        "the same test the other way (it keeps less than half, Holm over the family's "
        "reductions) is what *removes the rise* needs, with no rise of its own: one stated "
        "margin, tested from both sides, the share between them undetermined. *As "
        f"predicted* needs the change beyond noise and beyond {vd.SUPPORT_MARGIN:.0%} of the "
        "control's rise (one-sided, Holm-Sidak in the family): with seeds paired, a tiny but "
        "consistent change is beyond noise; short of the margin it is *a change within the "
        "margin*, no support. A removal that keeps more than half and still lowers the rise "
        "beyond the margin: the cause contributes and is not the main one (*part of the "
        "cause*). A smaller train split (more repetition per step) is decided by whether "
        "each seed's own lowest window comes earlier (one-sided t on its middle step, "
        "paired, Holm-Sidak in the family beside the change tests): a rise that starts "
        "sooner moves it, and so does a steeper one from the same step, each a change an "
        "explanation acting per step does not predict; its rise at equal steps decides "
        "only where it is smaller beyond noise.",
        "- **Matched progress, censoring.** An intervention is compared with the control "
        "at the same train-subset fit, not the same step: for each seed pair, the rise from "
        "the control's onset fit (its train-subset loss at the window where its other seeds "
        "are lowest) to the furthest fit both runs reached (each run's val loss read where its "
        "fit reaches those two, interpolated between its eval windows), arm minus control, "
        "paired t. An "
        "arm that only fits more slowly lies on the control's generalisation curve and "
        "rises as much between the same fits. An arm that has not fitted as far as the "
        "control's onset fit by its end, and does not rise, is *censored*: undetermined, "
        "never 'removes the rise', with the run length that would reach the control's end "
        "fit at its end-of-run fitting rate (a straight line through its last quarter: "
        "rough). So is a comparison whose matched fit comes before the control had risen "
        "beyond noise (one-sided p < 0.05 on its rise up to that fit). An arm that rises "
        "before reaching the onset fit is compared at equal steps.",
        "- **A run inflects** (per-run label, descriptive) when its rise exceeds what flat "
        "curves with its own correlated wander reach (parametric AR(1) bootstrap, p < 0.05) "
        "and its per-sequence val noise.",
        _limits_bullet(study),
    ]
    calibration = calibration_table()
    if calibration is not None:
        lines += ["", "**Calibration** (simulated studies with a known answer through this "
                  "same pipeline; measured outside this study's runs, "
                  f"{calibration['command']}):", "", calibration["markdown"]]
    return "\n".join(lines)


def _limits_bullet(study: Study) -> str:
    """What the verdicts claim and what they do not, with this study's own counts."""
    a = study.analysis
    shapes = [c.per_sequence.shape[2] for c in (a.curves.values() if a else [])
              if c.per_sequence is not None]
    split = f"{shapes[0]} val sequences" if shapes else "its val split"
    return ("- **What a verdict claims.** Training randomness on this val split "
            f"({split}): another seed, scored on the same text, would show the same. For "
            "text in general read the interval over new val text too (wider, though for end "
            "losses still too narrow: see Val text above). Each explanation's family "
            "is held at the stated alpha; across the three families the chance of some false "
            "effect is higher (the calibration's study-wide row). The t-tests assume per-seed "
            "values roughly normal, which a handful of seeds cannot check. A change beyond "
            "noise can still be small beside the control's rise: read its size. "
            + _gate_words(a))


def _onset_words(a: vd.StudyAnalysis, control: str) -> str:
    """Where a gated control's onset fit, which its comparisons at matched fit start from,
    was read off, and how its gate runs differ in length or eval spacing from its compared
    runs (the gate's windows then span other steps)."""
    gate, compared = a.gates[control], a.curves[control]
    read_off = {c.progress.onset_from for c in a.comparisons
                if c.control == control and c.progress is not None}
    if read_off == {mp.GATE_RUNS}:
        words = (", and the onset they are measured from at matched fit (the fit where it "
                 "turns) is read off the gate runs too, so the compared runs' own lows do not "
                 "place it")
    elif mp.COMPARED_RUNS in read_off:
        words = ("; its gate runs recorded no train-subset loss, so the onset its comparisons "
                 "at matched fit start from was read off the compared runs, where their own "
                 "lows place it (a bias toward 'reduces' of about 0.1 SE in simulated nulls)")
    else:
        words = ""
    differs = []
    if gate.steps[-1] != compared.steps[-1]:
        differs.append(f"ran to step {int(gate.steps[-1])} (compared runs: "
                       f"{int(compared.steps[-1])})")
    if gate.eval_spacing != compared.eval_spacing:
        differs.append(f"evaluated every {gate.eval_spacing:g} steps (compared runs: "
                       f"{compared.eval_spacing:g})")
    if differs:
        words += ("; its gate runs " + " and ".join(differs) + ", so their windows, and the "
                  "onset read off them, span other steps")
    return words


def _gate_words(a: vd.StudyAnalysis | None) -> str:
    """Whether the runs that decided that a control rises are also the runs compared with
    it (the selection then biases the comparisons), for this study's controls: each gated
    on seeds of its own, each with own seeds too few for a gate, each rising one gated on
    its compared runs, and the crossed controls (chosen by their own rise)."""
    if a is None or not a.controls:
        return ""
    words = []
    for control in a.controls.values():
        own = ", ".join(map(str, a.own_seeds.get(control, ())))
        if control in a.gates:
            words.append(
                f"{esc.md(control)}'s rise was tested on its {a.gates[control].n_seeds} gate "
                f"seeds ({own}), runs that no other arm has the seed of and no comparison "
                "reads; its comparisons read its other runs, so a control that passes by luck "
                "does not carry that luck into them" + _onset_words(a, control) + ".")
        elif own:
            words.append(f"{esc.md(control)}'s own seed(s) {own}, too few for a gate (2 "
                         "needed), enter no comparison.")
    # a control that does not rise judges nothing: how it was gated then matters not
    reused = [c for c in a.rising_controls if c not in a.gates]
    if reused:
        words.append(
            ", ".join(esc.md(c) for c in reused)
            + (" has" if len(reused) == 1 else " have")
            + " no gate seeds, so whether it rises was tested on the runs compared with it: "
            "where it barely passes, that selection raises the chance of a false reduction "
            "(the calibration's marginal-gate rows measure it).")
    if a.crossed:
        words.append(
            "The crossed controls (" + ", ".join(esc.md(c) for c in a.crossed) + ") are "
            "chosen by their own rise test on the runs they are compared with, a selection "
            "not corrected for (the calibration's crossed-control rows measure its "
            "false-effect rate).")
    return ("A cause is judged only where the control rises. " + " ".join(words)) \
        if words else ""


def calibration_table() -> dict | None:
    """The calibration table stored by `python -m moe_core.analysis.calibration --out`, if any."""
    try:
        stored = json.loads(CALIBRATION_TABLE.read_text())
    except (OSError, ValueError):
        return None
    rows = stored.get("rows") or []
    studies = stored.get("studies")
    table = [markdown_table(pd.DataFrame(rows), studies, text=esc.md)]
    over = _over_bound(rows, studies)
    tested = sum(holding(r, studies) is not None for r in rows)
    for kind, words in (
            (BEYOND, f"**Rows above their bound beyond simulation noise** (a one-sided exact "
                     f"binomial test of each rate against its bound, Holm-corrected over the "
                     f"{tested} bounded rates with a study count)"),
            (WITHIN, f"**Rows above their bound, not distinguishable from it with their "
                     f"studies** (not beyond noise after Holm over the {tested} rates; "
                     "whether each is within tolerance: below)"),
            (UNCOUNTED, "**Rows above their bound without a study count** (not judged)")):
        mine = [text for text, k in over if k == kind]
        if mine:
            table += ["", words + ": " + "; ".join(mine) + "."]
    held = _holding(rows, studies)
    if held:
        table += ["", held]
    for extra in (_confirmation(stored), _post_hoc(stored), _second_stage(stored)):
        if extra:
            table += ["", extra]
    summary = _error_summary(rows)
    if summary:
        table = [summary, ""] + table
    return {"command": esc.md(stored.get("command", "python -m moe_core.analysis.calibration")),
            "markdown": "\n".join(table)}


def _error_summary(rows: list[dict]) -> str:
    """The verdicts' own error rates as the table measured them: the largest rate among the
    rows that bound a wrong call; where nothing differs between arms, how often one
    explanation and some explanation were wrongly supported, over every simulated study
    and among the studies that judged (where the control was called rising: a false
    support needs one), how often a verdict was mixed, and how often some comparison
    claimed an effect anywhere. The marginal-gate rows of a design without gate seeds are
    the comparison the gate seeds are measured against, not this design's rates."""
    rows = [r for r in rows if WITHOUT_GATE_SEEDS not in r["scenario"]]
    bounded = [r for r in rows if row_bound(r) is not None]
    if not bounded:
        return ""
    worst = max(bounded, key=lambda r: r["rate"])
    text = (f"**The verdicts' error rates, measured** (simulated studies only; each rate "
            f"from its row's studies, so the largest of many is itself partly noise; the "
            f"marginal-gate rows {WITHOUT_GATE_SEEDS} left out): the largest of the {len(bounded)} "
            f"rates bounded by their row is {worst['rate']:.3f} "
            f"({esc.md(worst['indicator'])} under \"{esc.md(worst['scenario'])}\")")
    nulls = [r for r in rows if r["scenario"].startswith(("null", "marginal gate"))]
    judged = {r["scenario"]: r["rate"] for r in nulls
              if r["indicator"] == "control called rising"}

    def one(indicator: str) -> bool:
        return indicator.endswith(" supported") and not indicator.startswith("any")

    parts = []
    # (what was claimed, its rows' indicator, whether it needs a control called rising: a
    # verdict's claim does, so its rate among the studies that judged is given too)
    for words, match, verdict in (
            ("one explanation was wrongly supported", one, True),
            ("some explanation was wrongly supported",
             lambda i: i == "any explanation supported", True),
            ("some explanation was called mixed (which includes two controls against which "
             "nothing was decided)", lambda i: i == "any explanation mixed", False),
            ("some comparison claimed an effect anywhere in the study",
             lambda i: i == "any intervention effect (study-wide)", False)):
        mine = [r for r in nulls if match(r["indicator"])]
        if not mine:
            continue
        top = max(mine, key=lambda r: r["rate"])
        part = f"{words} in at most {top['rate']:.3f} of studies"
        given = [(r["rate"] / judged[r["scenario"]], r) for r in mine
                 if verdict and judged.get(r["scenario"])]
        if given:
            rate, r = max(given, key=lambda g: g[0])
            part += (f", {rate:.3f} of those that judged ({esc.md(r['indicator'])} under "
                     f"\"{esc.md(r['scenario'])}\")")
        parts.append(part)
    if parts:
        text += ("; where nothing differs between arms: " + "; ".join(parts)
                 + ". Each explanation's family of comparisons is held at 5% by Holm-Sidak; "
                 "the verdicts are not held at 5% together, nor each one among the "
                 "studies that judged")
    return text + "."


BEYOND, WITHIN, UNCOUNTED = "beyond", "within", "uncounted"  # `_over_bound`'s kinds


def _over_bound(rows: list[dict], studies: int | None) -> list[tuple[str, str]]:
    """The rows whose rate exceeds the "<= x" they should hold, each with its binomial 95%
    interval over the simulated studies, and its kind: BEYOND simulation noise (a one-sided
    exact binomial test against the bound, Holm over every bounded row with a study count:
    the rows share studies and scenarios, and Holm holds under any dependence), WITHIN it
    (not shown above the bound), or UNCOUNTED (the table says no study count)."""
    from scipy.stats import binomtest
    from statsmodels.stats.multitest import multipletests

    counted = []  # (row, its holding, one-sided p against its bound)
    for r in rows:
        held = holding(r, studies)
        if held is not None:
            counted.append((r, held, held.above_p))
    beyond = {}
    if counted:
        reject, adjusted, _, _ = multipletests([c[2] for c in counted], method="holm")
        beyond = {id(c[0]): (c[1], bool(x), float(p))
                  for c, x, p in zip(counted, reject, adjusted, strict=True)}
    out = []
    for r in rows:
        bound = row_bound(r)
        if bound is None or not r["rate"] > bound:
            continue
        text = (f"{esc.md(r['indicator'])} under \"{esc.md(r['scenario'])}\": "
                f"{r['rate']:.3f} against {bound:g}")
        if id(r) not in beyond:
            out.append((text, UNCOUNTED))
            continue
        held, significant, p = beyond[id(r)]
        ci = binomtest(held.hits, held.studies).proportion_ci()
        out.append((text + f" ({held.hits} of {held.studies} studies, 95% CI {ci.low:.3f} to "
                    f"{ci.high:.3f}; Holm p {p:.2g})", BEYOND if significant else WITHIN))
    return out


def _holding(rows: list[dict], studies: int | None) -> str:
    """Whether each bounded rate with a study count is shown within its tolerance
    (`calibration.holding`): how many are, and each one that is not, with its limit."""
    counted, short = 0, []
    for r in rows:
        held = holding(r, studies)
        if held is None:
            continue
        counted += 1
        if not held.within:
            short.append(f"{esc.md(r['indicator'])} under \"{esc.md(r['scenario'])}\": "
                         f"{r['rate']:.3f} ({held.hits} of {held.studies} studies), upper "
                         f"limit {held.upper:.3f} against {held.tolerance:g}")
    if not counted:
        return ""
    text = (f"**Within tolerance**: a bounded rate is shown within tolerance when its "
            f"one-sided {HOLD_CONFIDENCE:.0%} upper limit over its studies (Clopper-Pearson; "
            f"{EXTENDED_CONFIDENCE:.1%} for a scenario {EXTENDED}, each look "
            f"spending half) is at most {HOLD_TOLERANCE:g}x its bound: Bradley's (1978) "
            "\"liberal\" criterion for a test's robustness, a convention from outside these "
            "data, adopted after an earlier table's rates were seen (c3813d3's) and fixed "
            "before the tables drawn since (docs/calibration_plan.md). A rate within tolerance "
            "may still be above its bound (the list above): it is not shown to be at most "
            f"the bound, only below {HOLD_TOLERANCE:g}x it. {counted - len(short)} of "
            f"{counted} bounded rates are within tolerance")
    if short:
        return (text + "; not shown within it (more studies, on a fresh stream, would "
                "decide): " + "; ".join(short) + ".")
    return text + "."


def _made_from(path: Path, table: dict) -> dict:
    """The JSON at `path` where it was made from this very table
    (`confirmation.table_digest`); {} where it is absent, unreadable or another table's."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) and stored.get("table") == table_digest(
        table) else {}


def _confirmation(table: dict) -> str:
    """The fresh-stream confirmation of the table's null rows
    (`python -m moe_core.analysis.confirmation`), where it was made from this very table
    (`confirmation.table_digest`): which nulls it redrew, how many rows it holds within
    tolerance and each that it does not, and whether the plain null's streams differ
    (if they do, the table's limits are too narrow: said so, with the dispersion)."""
    stored = _made_from(CALIBRATION_CONFIRMATION, table)
    rows = stored.get("rows") or []
    if not rows:
        return ""
    short = [f"{esc.md(r['indicator'])} under {esc.md(short_name(r['scenario']))}: "
             f"{r['rate']:.3f} "
             f"({sum(r['hits'])} of {sum(r['studies'])}), upper limit {r['upper']:.3f}"
             for r in rows if not r["within"]]
    redrawn = ", ".join(esc.md(short_name(name)) for name in dict.fromkeys(
        r["scenario"] for r in rows))
    text = (f"**Confirmed on fresh streams** ({esc.md(stored.get('command', ''))}; its plan "
            f"fixed before this table was drawn: docs/calibration_plan.md): redrawn on streams "
            f"no table uses: {redrawn}. {sum(r['within'] for r in rows)} of {len(rows)} "
            "bounded rows within tolerance, each limit the larger of the pooled count's "
            "(Clopper-Pearson) and the streams' mean + t over the streams' rates")
    text += ("; not shown within it: " + "; ".join(short) if short else "")
    tests = stored.get("homogeneity") or []
    if tests:
        worst = min(tests, key=lambda t: t["Holm p"])
        spread = max(t["dispersion"] for t in tests)
        if worst["Holm p"] < 0.05:
            text += (f". The plain null's {worst['df'] + 1} streams differ beyond binomial "
                     f"noise ({esc.md(worst['indicator'])}: chi-square Holm p "
                     f"{worst['Holm p']:.2g}), so the table's Clopper-Pearson limits, which "
                     f"assume one rate per row, are too narrow (dispersion up to {spread:.2f}x "
                     "binomial)")
        else:
            text += (f". The plain null's {worst['df'] + 1} streams are not shown to differ "
                     f"(chi-square per family and for some explanation supported, smallest "
                     f"Holm p {worst['Holm p']:.2g}; dispersion up to {spread:.2f}x binomial)")
    return text + "."


def _post_hoc(table: dict) -> str:
    """The post-hoc follow-up of the confirmation (`confirmation --margin`), made from this
    very table, labelled as added after the table was seen."""
    stored = _made_from(CALIBRATION_MARGIN, table)
    if not stored.get("studies"):
        return ""
    return (f"**Post hoc** (added after this table was seen, docs/calibration_plan.md section "
            f"5; it does not change the outcome above): {esc.md(stored['indicator'])} under "
            f"\"{esc.md(stored['scenario'])}\" redrawn on {len(stored['studies'])} fresh "
            f"streams: {sum(stored['hits'])} of {sum(stored['studies'])} studies "
            f"({stored['rate']:.3f}), upper limit {stored['upper']:.3f} against "
            f"{HOLD_TOLERANCE * stored['bound']:g}" + ("" if stored["within"] else
                                                       ": not within tolerance") + ".")


def _second_stage(table: dict) -> str:
    """Stage 2 of docs/calibration_plan_next.md (`python -m moe_core.analysis.second_stage`),
    made from this very table and not a trial of the code: the rows it judged and each one
    not within, the plan's outcome recomputed here from the table and the redrawn rows
    (`second_stage.outcome`), the burnt streams and the sensitivity reading with them."""
    stored = _made_from(CALIBRATION_SECOND_STAGE, table)
    rows, judged = stored.get("rows") or [], stored.get("judged") or []
    if not rows or not judged or stored.get("trial"):
        return ""
    verdict = stage_outcome(pd.DataFrame(table.get("rows") or []), table.get("studies"), rows,
                            judged)
    drawn = {(r["scenario"], r["indicator"]): r for r in rows}
    lines = ["| row | why judged | streams | hits / studies | rate | upper limit | with the "
             "burnt draws | within tolerance |", "| --- | --- | --- | --- | --- | --- | --- | "
             "--- |"]
    for j in judged:
        r = drawn.get((j["scenario"], j["indicator"]))
        why = ("not within at stage 1" if j["why"] == "stage 1"
               else "not within in the confirmation")
        name = f"{esc.md(j['indicator'])} under {esc.md(short_name(j['scenario']))}"
        if r is None:
            lines.append(f"| {name} | {why} | not drawn | | | | | no |")
            continue
        burnt = r.get("with the burnt draws")
        lines.append(
            f"| {name} | {why} | {r['streams'][0]}-{r['streams'][1]} | {sum(r['hits'])} / "
            f"{sum(r['studies'])} | {r['rate']:.3f} | {r['upper']:.3f} | "
            + (f"{burnt['hits']} / {burnt['studies']}, {burnt['upper']:.3f}" if burnt else "")
            + f" | {'yes' if r['within'] else 'no'} (limit {HOLD_TOLERANCE * r['bound']:g}) |")
    text = (f"**Stage 2** ({esc.md(stored.get('command', ''))}; its sizes and criterion fixed "
            "before it was drawn: docs/calibration_plan_next.md with its amendments): each "
            f"bounded row of this table whose one-sided {STAGE_CONFIDENCE:.1%} upper limit is "
            f"over {HOLD_TOLERANCE:g}x its bound, and each row the confirmation above did not "
            "show within tolerance (judged here on stage 2 alone), redrawn on 8 streams of "
            "its scenario that no table or confirmation had used, each limit at "
            f"{STAGE_CONFIDENCE:.1%} the larger of the pooled count's (Clopper-Pearson) and "
            f"the streams' mean + t. {verdict.within} of {verdict.judged} within tolerance "
            "(the table below)")
    burnt = stored.get("burnt") or {}
    if burnt:
        first, last = burnt["streams"]
        seen = "; ".join(f"{esc.md(k)} {v[0]} of {v[1]}"
                         for k, v in (burnt.get("rows") or {}).items())
        text += (f". Streams {first}-{last} were burnt: a trial of the code drew their first "
                 f"studies before the plan was amended and printed their rates ({seen}); the "
                 "move to fresh streams was decided after those rates were seen, and leans "
                 "slightly toward \"met\" (the seen rates of two rows were high). Their counts "
                 "are pooled in (the table's \"with the burnt draws\": the pooled count and "
                 "its limit) only as the plan's sensitivity reading, never in the outcome")
    text += (f". Against their bounds (one-sided exact binomial, Holm over the "
             f"{verdict.tested} rates of both stages, the rows redrawn alongside included): "
             + ("none beyond noise" if verdict.smallest_holm_p >= 0.05 else
                "some rate beyond noise") + f", smallest Holm p {verdict.smallest_holm_p:.2g}. "
             "By the plan's rule (every bounded row within tolerance at stage 1 or, if not, "
             "at stage 2; every row the confirmation did not show within, within at stage 2; "
             "none above its bound beyond noise): " + ("**met**" if verdict.met else
                                                      "**not met**") + ". Within tolerance "
             "shows a rate below 1.5x its bound, not at most its bound" + _first_plan(table)
             + ".")
    return text + "\n\n" + "\n".join(lines)


def _first_plan(table: dict) -> str:
    """The first plan's outcome (docs/calibration_plan.md: every bounded row of the table
    and of its confirmation within tolerance), where the confirmation was made from this
    very table; the stage 2 plan was written after it."""
    confirmed = _made_from(CALIBRATION_CONFIRMATION, table).get("rows") or []
    if not confirmed:
        return ""
    studies = table.get("studies")
    held = [h for h in (holding(r, studies) for r in table.get("rows") or []) if h]
    in_table = sum(not h.within for h in held)
    confirming = sum(not r["within"] for r in confirmed)
    return ("; this second plan was written after the first (docs/calibration_plan.md: every "
            "row of the table and of the confirmation within tolerance) was "
            + (f"not met ({in_table} of the table's rows and {confirming} of the "
               "confirmation's not shown within it, above)" if in_table + confirming
               else "met"))


def provenance_markdown(study: Study) -> str:
    """Commit, presets, seeds, data, machine, date and compute time of the runs."""
    runs = study.results.runs
    ours = runs[(runs["source"] == OURS) & runs["status"].map(is_finished_status)]
    envs = [study.results.environments.get(r, {}) for r in ours["run_id"]]
    data: dict[str, tuple[str, list[str]]] = {}  # fingerprint -> source, arm of each run
    for arm, e in zip(ours["group"], envs, strict=True):
        if e.get("data"):
            source, arms = data.setdefault(e["data"].get("fingerprint"),
                                           (e["data"].get("source"), []))
            arms.append(arm)
    machines = {((e.get("environment") or {}).get("device_name"),
                 (e.get("environment") or {}).get("torch")) for e in envs}
    lines = ["## Provenance", "",
             f"- Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from commit "
             f"{_commit()}.",
             f"- {len(ours)} finished runs of ours in {ours['group'].nunique()} arms; presets "
             f"{', '.join(sorted(map(esc.md, ours['preset'].dropna().unique()))) or 'n/a'}; "
             "seeds "
             f"{', '.join(str(int(s)) for s in sorted(ours['seed'].dropna().unique()))}.",
             f"- Total training time {ours['time_min'].sum():.1f} min of compute.",
             "- Data: " + ("; ".join(f"{esc.md(source)} (fingerprint {esc.md(fp)}): {len(arms)} "
                                     f"runs of {', '.join(map(esc.md, dict.fromkeys(arms)))}"
                                     for fp, (source, arms) in data.items()) or "n/a") + ".",
             "- Machines: " + ("; ".join(f"{esc.md(name)}, torch {esc.md(torch)}"
                                         for name, torch in machines
                                         if name) or "n/a") + "."]
    dropped = runs[~runs["status"].map(is_finished_status)]
    if len(dropped):
        lines.append(f"- Not counted: {len(dropped)} run(s) "
                     + ", ".join(f"{esc.md(r)} ({esc.md(s)})" for r, s in zip(dropped["run_id"],
                                                              dropped["status"], strict=True))
                     + " (see the appendix).")
    return "\n".join(lines)


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(PACKAGE_DIR), "rev-parse", "--short",
                               "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(PACKAGE_DIR), "status",
                                "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    if head.returncode:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def reference_markdown(study: Study) -> str:
    lines = ["## The reference study's recorded files", ""]
    if study.reference is None:
        return "\n".join(lines + ["No reference results were included (`moe-suite report "
                                  "--include <folder>` adds them)."])
    lines += ["What its files show (computed from them):", ""]
    lines += [f"- {esc.md(fact)}" for fact in study.reference.facts]
    lines += ["", "Known only from outside its files (labelled priors, not findings):", ""]
    lines += [f"- {esc.md(prior)}" for prior in study.reference.priors]
    return "\n".join(lines)


def reference_figures(study: Study) -> list:
    theirs = study.theirs
    if theirs.runs.empty:
        return []
    return [figures.val_loss_overlay(theirs.evals, from_fraction=figures.ZOOM_FROM_FRACTION),
            figures.lr_applied(theirs.evals)]


def runs_table(study: Study) -> pd.DataFrame:
    runs = study.results.runs
    table = runs[["run_id", "source", "status", "end_loss", "final_loss", "best_loss",
                  "best_step", "rise", "degradation", "inflection", "onset_step",
                  "epochs_seen", "final_gap", "time_min", "error"]].copy()
    return table.rename(columns={
        "end_loss": "end loss (nats)", "final_loss": "final loss (nats)",
        "best_loss": "best loss (nats)", "rise": "rise (nats)",
        "degradation": "final - best (nats)", "final_gap": "val - train gap (nats)",
        "time_min": "time (min)", "onset_step": "onset step"})


def arms_table(study: Study) -> pd.DataFrame:
    """Per arm: seeds, end loss and rise with their intervals."""
    a = study.analysis
    rows = []
    for arm, c in a.curves.items():
        end = fx.one_sample(fx.end_statistic(c))
        rise = a.rise_tests[arm]
        gate = a.gates.get(arm)
        rows.append({"arm": arm, "seeds": c.n_seeds if gate is None else
                     f"{c.n_seeds} compared + {gate.n_seeds} gate",
                     "end loss (nats)": with_interval(end, signed=False),
                     "rise (nats)": with_interval(rise, signed=False),
                     "rise Holm-Sidak p": fx.format_p(rise.p_adjusted),
                     "rise 95% CI over new val text too": text_interval(rise),
                     "rises": "yes" if rise.significant else "no",
                     "rise tested on": "its runs" if gate is None else
                     f"its gate seeds {', '.join(map(str, gate.seeds))} (never compared)",
                     "runs that inflect": inflect_count(study, arm),
                     "late LR (% of peak)": f"{100 * a.late_lr[arm]:.0f}"})
    return pd.DataFrame(rows)


def appendix(study: Study) -> Any:
    """Every table in collapsible sections; each also written as CSV beside the report."""
    from IPython.display import HTML

    tables = {"runs": (runs_table(study), "Every run read (duplicates and failures included)")}
    if study.analysis is not None:
        tables["arms"] = (arms_table(study), "Every arm: seeds, end loss, rise")
        tables["comparisons"] = (comparisons_table(study),
                                 "Every intervention against every control")
    if study.reference is not None:
        tables["reference"] = (study.reference.runs.drop(columns=["lr_trace", "steps", "loss"],
                                                         errors="ignore"),
                               "The reference's runs, one curve each")
    folder = os.environ.get(TABLES_ENV)
    parts = []
    for name, (table, caption) in tables.items():
        csv = table.map(esc.csv_cell).rename(columns=esc.csv_cell).to_csv(index=False)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / f"{name}.csv").write_text(csv)
        # the CSV travels inside the page, so a report shared on its own keeps its tables
        encoded = base64.b64encode(csv.encode()).decode()
        link = (f' (<a download="{name}.csv" href="data:text/csv;base64,{encoded}">'
                f"{name}.csv</a>)")
        parts.append(f"<details><summary>{caption}{link}</summary>"
                     f"{html_table(table).to_html()}</details>")
    return HTML("\n".join(parts))


def problems_markdown(study: Study) -> str | None:
    runs = study.results.runs
    bad = runs[~runs["status"].map(is_finished_status)]
    if bad.empty:
        return None
    lines = ["**Runs not counted** (failed, interrupted, unreadable or duplicate copies):", ""]
    for _, row in bad.iterrows():
        why = row["error"] if isinstance(row["error"], str) else row["status"]
        lines.append(f"- {esc.md(row['run_id'])} ({esc.md(row['status'])}): {esc.md(why)}")
    return "\n".join(lines)
