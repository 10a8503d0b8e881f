"""The inflection report's content: every sentence, table and figure, computed from the
runs by `moe_core.analysis.verdicts` (ours) and `moe_core.analysis.reference` (the
reference's files).

The notebook (`notebooks/inflection_report.ipynb`) calls one function per section; the
order is the reader's: the answer first, then the evidence per explanation, the method,
the reference's files, and an appendix of every number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moe_core import escape as esc
from moe_core.analysis import effects as fx
from moe_core.analysis import progress as mp
from moe_core.analysis import verdicts as vd
from moe_core.analysis.inflection import INFLECTION
from moe_core.analysis.reference import ReferenceFindings, analyse_reference
from moe_core.analysis.results import OURS, REFERENCE, ArmGroup, Results, load_runs
from moe_core.analysis.routing import expert_warnings
from moe_core.config.run_config import arm_name, read_yaml
from moe_core.errors import UserInputError
from moe_core.paths import PARAMETERS_DIR
from moe_core.report import figures
from moe_core.report.render import (
    resolve_dirs,
)

NO_CONDITION_LABEL = "the corrected LR schedule (over optimizer updates)"
PREDICTIONS = {
    vd.OVERFITTING: ("If the model memorises its repeated train split, the rise should shrink "
                     "or vanish when the data no longer repeats (fresh data: the same steps "
                     "over 20x the train documents, the same val documents) and shrink with "
                     "more dropout."),
    vd.LR_SCHEDULE: ("If the LR is still too high late in training, schedules that are lower "
                     "in the last quarter of training (measured from each run's LR trace) "
                     "should rise less, and higher ones more, at the same fitting progress: "
                     "a lower LR also fits more slowly, and an arm that only fits more "
                     "slowly reaches the rise later without changing it."),
    vd.LOAD_BALANCING: ("If the balancing pressure on the router causes the rise, removing "
                        "the balancing loss (no_lb, or bias-based balancing without a loss) "
                        "or weakening it should shrink the rise."),
}


# ---------------------------------------------------------------- the study


@dataclass
class Study:
    """Everything the report shows, computed once from the runs."""

    results: Results
    analysis: vd.StudyAnalysis | None
    reference: ReferenceFindings | None
    colors: dict[str, str] = field(default_factory=dict)
    condition_labels: dict[str, str] = field(default_factory=dict)

    @property
    def ours(self) -> Results:
        return self.results.of_source(OURS)

    @property
    def theirs(self) -> Results:
        return self.results.of_source(REFERENCE)


def build(run_dirs: Sequence[str | Path], reference_dirs: Sequence[str | Path] = ()) -> Study:
    """Read every run under the folders and analyse them."""
    results = load_runs(*resolve_dirs(run_dirs), reference_dirs=resolve_dirs(reference_dirs))
    return study_of(results, analyse_reference(results))


def study_of(results: Results, reference: ReferenceFindings | None = None) -> Study:
    """The study of runs already read: the analysis, condition labels and colours."""
    analysis = vd.analyse(results) if len(vd.counted_runs(results)) else None
    study = Study(results, analysis, reference)
    if analysis is not None:
        study.condition_labels = {c: condition_label(c) for c in analysis.controls}
        study.colors = figures.experiment_colors(_families(analysis, results.groups))
    return study


def condition_label(condition: str) -> str:
    """A condition's readable name: its YAML's `label`, else its name."""
    if not condition:
        return NO_CONDITION_LABEL
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", condition):
        return condition  # a name read from a run, never a path to read a file from
    try:
        values = read_yaml(PARAMETERS_DIR / "conditions" / f"{condition}.yaml")
    except UserInputError:
        return condition
    return str(values.get("label") or condition)


def _families(analysis: vd.StudyAnalysis, groups: Mapping[str, ArmGroup]) -> dict[str, str]:
    """experiment -> the explanation its comparisons test (in study order)."""
    families: dict[str, str] = {}
    for c in analysis.comparisons:
        families.setdefault(groups[c.arm].experiment, c.hypothesis)
    for arm in analysis.curves:
        families.setdefault(groups[arm].experiment, vd.OTHER)
    return families


# ---------------------------------------------------------------- numbers


def decimals_for(se: float | None, default: int = 3) -> int:
    """Decimals that a value with this standard error supports (SE 0.03: 2; 0.004: 3)."""
    if se is None or not math.isfinite(se) or se <= 0:
        return default
    return int(min(6, max(0, -math.floor(math.log10(se)))))


def number(value: float | None, se: float | None = None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    digits = decimals_for(se)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def with_interval(test: fx.Test, signed: bool = True) -> str:
    """`-0.075 (95% CI -0.139 to -0.011)`, rounded to what the SE supports."""
    text = number(test.estimate, test.se, signed)
    if test.identical:
        return "0 (identical in every seed: a degenerate interval, no test)"
    if test.ci_low is None and test.se == 0 and test.estimate == 0 and test.name.startswith(
            "rise"):
        return "0 (its last window is its lowest in every seed: it never turned up)"
    if test.ci_low is None:
        return f"{text} (no noise estimate)"
    return (f"{text} (95% CI {number(test.ci_low, test.se, True)} to "
            f"{number(test.ci_high, test.se, True)})")


def text_interval(test: fx.Test) -> str:
    """The interval that also covers new val text (seed and val-set variances, the seeds'
    df), rounded like the test's own."""
    if test.ci_text is None:
        return "n/a"
    low, high = test.ci_text
    return f"{number(low, test.se, True)} to {number(high, test.se, True)}"


def inflect_count(study: Study, arm: str) -> str:
    runs = vd.counted_runs(study.results)
    part = runs[runs["group"] == arm]
    if "inflection" not in part:
        return f"n/a of {len(part)}"
    return f"{int((part['inflection'] == INFLECTION).sum())} of {len(part)}"


# ---------------------------------------------------------------- the answer


def answer_markdown(study: Study) -> str:
    """The question, where the rise happens, and each explanation's verdict with the
    numbers that decide it."""
    a = study.analysis
    lines = ["## The answer", ""]
    if a is None:
        return "\n".join(lines + ["No finished runs of ours: nothing to answer yet."])
    lines.append("**Where the val loss turns up.** " + " ".join(_where_it_rises(study)))
    lines += ["", "| explanation | verdict | what decides it |", "| --- | --- | --- |"]
    for name in vd.HYPOTHESES:
        verdict = a.verdicts[name]
        lines.append(f"| {name} | **{verdict.verdict}** | {_deciding(verdict)} |")
    lines += ["", "**In one sentence.** " + one_sentence(a)]
    progress = progress_summary(a)
    if progress:
        lines += ["", "**Rise and fitting progress.** " + progress]
    return "\n".join(lines)


def progress_summary(a: vd.StudyAnalysis) -> str:
    """Which arms got as far as the rising control's onset fit, which of them rise, and
    whether those that stopped short lie on the control's generalisation curve: the
    pattern the verdicts have to be read against."""
    if not a.rising_controls:
        return ""
    control = a.rising_controls[0]
    mine = [c for c in a.comparisons if c.control == control and c.decides]
    fitted = [c for c in mine if c.progress is not None]
    if not fitted:
        return ""
    p = fitted[0].progress
    reached = [c for c in fitted if c.progress.reached]
    short = [c for c in fitted if not c.progress.reached]
    rising = [c for c in reached if c.arm_rise.significant]
    where = " over its gate runs" if p.onset_from == mp.GATE_RUNS else ""
    parts = [f"The control turned at a train-subset loss of {p.onset_fit:.2f} (seed sd "
             f"{p.onset_fit_sd:.2f}{where}) and its compared runs ended at "
             f"{p.control_end_fit:.2f}. Of the "
             f"{len(reached)} intervention(s) on its train split that fitted at least that far "
             f"by their end, {len(rising)} rise beyond noise"
             + (f" ({_listing([esc.md(c.arm) for c in rising])})" if rising else "") + "."]
    if short:
        turned = [c for c in short if c.arm_rise.significant]
        where = [f"{esc.md(c.arm)} at {c.progress.arm_end_fit:.2f}" + _curve_words(c)
                 for c in short]
        parts.append(f"Of the {len(short)} that stopped short ({_listing(where)}), "
                     f"{len(turned)} rise: a run that has not reached the point where the "
                     "control turned cannot show whether it would.")
    for c in mine:
        low = c.below_lowest
        if c.different_split and low is not None and low.ci_low is not None:
            side, sign = ("below", -1) if low.estimate < 0 else ("above", 1)
            bounds = sorted((sign * low.ci_low, sign * low.ci_high))
            turns = (f"; it rises itself, its lowest window at step {c.onsets[0][0]:.0f} "
                     f"(the control's at {c.onsets[1][0]:.0f})" if c.onsets else "")
            parts.append(f"{esc.md(c.arm)} ran on its own train split, so its fit is no "
                         f"common scale: its val loss ends {sign * low.estimate:.3f} nats "
                         f"{side} the control's lowest (95% CI {bounds[0]:.3f} to "
                         f"{bounds[1]:.3f}){turns}.")
    for c in reached:
        if c.basis == vd.MATCHED_FIT and c.outcome == vd.PERSISTS \
                and c.hypothesis == vd.LR_SCHEDULE:
            parts.append(
                f"{esc.md(c.arm)}, with a lower late LR, rises {c.progress.arm_rise.mean:.3f} "
                f"where the control rises {c.progress.control_rise.mean:.3f} between the same "
                f"fits (the first {c.progress.span_share:.0%} of the control's fit range after "
                f"its onset): over that range it keeps more than half of the rise (one-sided "
                f"Holm p {fx.format_p(c.keeps.p_adjusted)}, on this val split); whether its "
                "whole rise matches the control's is undetermined.")
    return " ".join(parts)


def _curve_words(c: vd.Comparison) -> str:
    """Whether a censored arm lies on the control's generalisation curve, in brackets."""
    level = c.level
    if level is None or level.ci_low is None:
        return ""
    off = level.ci_high < 0 or level.ci_low > 0
    return (f" ({'off' if off else 'on'} the control's curve: val at its fit "
            f"{level.estimate:+.3f}, 95% CI {level.ci_low:+.3f} to {level.ci_high:+.3f})")


def _where_it_rises(study: Study) -> list[str]:
    a = study.analysis
    sentences = []
    for condition, control in a.controls.items():
        test = a.rise_tests[control]
        if test.ci_low is None and test.se == 0 and test.estimate == 0:
            how = ("never turns up: its last window is its lowest in every seed, and "
                   f"{inflect_count(study, control)} seeds inflect")
        else:
            state = "rises" if test.significant else "does not rise beyond noise"
            gate = a.gates.get(control)
            where = ("" if gate is None else
                     f" on its {gate.n_seeds} gate seeds ({', '.join(map(str, gate.seeds))}: "
                     f"runs no comparison uses; its {a.curves[control].n_seeds} compared runs "
                     f"rise {fx.rise_statistic(a.curves[control]).mean:.3f})")
            how = (f"{state}: by {with_interval(test, signed=False)} nats{where}, "
                   f"{inflect_count(study, control)} seeds inflect on their own")
        sentences.append(f"Under {esc.md(study.condition_labels[condition])} the control "
                         f"({esc.md(control)}) {how}.")
    return sentences


def _deciding(verdict: vd.HypothesisVerdict) -> str:
    if not verdict.comparisons:
        return esc.md(verdict.reasons[0]) if verdict.reasons else ""
    scoped = dict(verdict.scoped)
    own = [c for c in verdict.comparisons if c.control not in scoped]
    decisive = [c for c in own if c.outcome in (vd.AS_PREDICTED, vd.AGAINST, vd.PERSISTS,
                                                vd.SURVIVES)]
    if verdict.verdict == vd.UNDETERMINED:  # what keeps it open first, then the rest
        first = [c for c in own if c.outcome == vd.CENSORED and c.removes_cause] + decisive
        decisive = first + [c for c in own if c not in first]
    shown = (decisive or own)[:3]
    text = "; ".join(_deciding_one(c) for c in shown)
    for control, scoped_verdict in scoped.items():
        theirs = [c for c in verdict.comparisons if c.control == control
                  and c.outcome != vd.CENSORED]
        if theirs:
            text += (f". Apart, on another experiment's rise ({esc.md(control)}, a crossed "
                     f"control): {scoped_verdict}: "
                     + "; ".join(_deciding_one(c) for c in theirs))
    return text


def _deciding_one(c: vd.Comparison) -> str:
    """One comparison in the answer's table: what it compares, the change, the outcome."""
    p = c.progress
    if c.outcome == vd.CENSORED:
        if c.different_split and not c.arm_rise.significant:
            return (f"{esc.md(c.arm)}: no rise, on its own train split (its fit is not "
                    f"comparable): {_outcome_words(c)}")
        if p is not None and not p.reached and not c.arm_rise.significant:
            return (f"{esc.md(c.arm)}: no rise, but it fitted only to {p.arm_end_fit:.2f} "
                    f"(the control turned at {p.onset_fit:.2f}): {_outcome_words(c)}")
        return f"{esc.md(c.arm)}: {_outcome_words(c)}"
    if c.onset_shift is not None and c.onsets:
        (mine, *_, passes), (theirs, *_, their_passes) = c.onsets
        shift = c.onset_shift
        interval = ("" if shift.ci_low is None else
                    f", 95% CI {shift.ci_low:+.0f} to {shift.ci_high:+.0f}")
        return (f"{esc.md(c.arm)}: lowest at step {mine:.0f} where the control is lowest at "
                f"{theirs:.0f} ({shift.estimate:+.0f} steps{interval}), after "
                f"{passes:.1f} passes over its split against the control's {their_passes:.1f}: "
                f"{_outcome_words(c)}")
    where = "at matched fit" if c.basis == vd.MATCHED_FIT else "at equal steps"
    kept = ""
    if c.basis == vd.MATCHED_FIT and c.progress is not None and \
            c.progress.arm_rise is not None and c.progress.control_rise.mean > 0:
        kept = (f" (it keeps {c.progress.arm_rise.mean / c.progress.control_rise.mean:.0%} "
                "of that control's rise there)" if c.outcome == vd.AS_PREDICTED else "")
    return (f"{esc.md(c.arm)}: rise {where} changes {with_interval(c.change)} nats, "
            f"{_outcome_words(c)}{kept}")


def _outcome_words(c: vd.Comparison) -> str:
    if c.outcome == vd.CENSORED:
        if c.steps_to_decide is not None:
            return (f"undetermined: needs a run of at least "
                    f"{vd.round_steps(c.steps_to_decide)} steps")
        return "undetermined: needs a longer run"
    if c.outcome == vd.AS_PREDICTED:
        if c.predicted < 0:
            return ("removes the rise" if c.removes else vd.reduces_words(c) + (
                " (keeps less than half)" if c.keeps_under is not None
                and c.keeps_under.significant else ""))
        if c.onset_shift is not None:
            return "its lowest window comes earlier in steps beyond noise, as predicted"
        return "raises it, as predicted"
    if c.outcome == vd.AGAINST:
        return "against the prediction"
    if c.outcome == vd.PERSISTS:
        return ("the rise persists (more than half); it lowers it beyond the margin: the cause "
                "contributes, not the main one" if vd.contributes_only(c)
                else "the rise persists (more than half)")
    if c.outcome == vd.WITHIN_MARGIN:
        return (f"a change beyond noise, not shown beyond {vd.SUPPORT_MARGIN:.0%} of the "
                "control's rise: no support")
    if c.outcome == vd.SURVIVES:
        own = fx.one_sample(c.progress.arm_rise, alternative="two-sided")
        within = ("; its change is beyond noise, within the margin" if c.change.significant
                  else "")
        return (f"a rise survives without the cause (it rises {own.estimate:.3f}, 95% CI "
                f"{own.ci_low:.3f} to {own.ci_high:.3f}, over the control's whole range"
                f"{within})")
    if c.outcome == vd.NO_PREDICTION:
        return "no prediction"
    return "no detected change"


def one_sentence(a: vd.StudyAnalysis) -> str:
    """The verdicts in one sentence, each name with its verdict."""
    by_verdict: dict[str, list[str]] = {}
    for name, verdict in a.verdicts.items():
        by_verdict.setdefault(verdict.verdict, []).append(name)
    if set(by_verdict) == {vd.UNTESTED}:
        return ("No control rises beyond noise, so there is no rise to explain and no "
                "explanation was tested.")
    words = {vd.SUPPORTED: "supported", vd.NOT_SUPPORTED: "not supported",
             vd.NOT_WHOLE: "not the whole cause (where an intervention removes it over "
                           "the control's fit range a rise stays; its share of the rise is "
                           "undetermined)",
             vd.PART: "part of the cause (it acts as predicted: a change beyond the "
                      "margin, or a lowest window earlier; and without it a rise stays: "
                      "more than half of it, or more than it allows)",
             vd.MIXED: "mixed", vd.INCONCLUSIVE: "inconclusive", vd.UNTESTED: "untested",
             vd.UNDETERMINED: "undetermined (a deciding intervention is censored: it "
                              "never fitted as far as the control had when it turned)"}
    parts = [f"{words[v]}: {_listing(names)}" for v, names in by_verdict.items()]
    controls = ", ".join(esc.md(c) for c in a.rising_controls)
    scoped = [f"{name} {verdict} on {esc.md(control)}'s" for name, v in a.verdicts.items()
              for control, verdict in v.scoped if verdict not in (vd.UNDETERMINED,
                                                                  vd.INCONCLUSIVE)]
    apart = ("" if not scoped else " Apart, on another experiment's rise (a crossed control: "
             "the same experiment under the other schedule): " + _listing(scoped) + ".")
    return (f"Judged against the control that rises ({controls}): "
            + "; ".join(parts) + "." + apart)


def _listing(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def rise_rows(study: Study) -> pd.DataFrame:
    """One row per arm for the answer's figure: its rise with the 95% interval."""
    a = study.analysis
    rows = []
    order = {c: i for i, c in enumerate(sorted(a.controls, key=lambda c: c == ""))}
    groups = study.results.groups
    for arm, test in a.rise_tests.items():
        experiment, condition = groups[arm].experiment, groups[arm].condition
        rows.append({"arm": arm, "experiment": experiment, "condition": condition,
                     "condition_label": study.condition_labels.get(condition, condition),
                     "rise": test.estimate,
                     "ci_low": np.nan if test.ci_low is None else test.ci_low,
                     "ci_high": np.nan if test.ci_high is None else test.ci_high,
                     "rises": test.significant,
                     "is_control": arm in a.controls.values()})
    table = pd.DataFrame(rows)
    table["order"] = table["condition"].map(order).fillna(len(order))
    return table.sort_values(["order", "is_control"], ascending=[True, False], kind="stable")


def answer_figure(study: Study):
    if study.analysis is None:
        return figures._message_figure("no finished runs of ours")
    gated = "on its gate seeds, " if study.analysis.gates else ""
    return figures.rise_forest(rise_rows(study), study.colors,
                             "Filled: rises beyond noise (Holm-Sidak; the controls one family, "
                             f"the interventions another). Shaded: the control's interval "
                             f"({gated}what decides whether it rises).\n"
                             "A rise of exactly 0 without an interval: the arm's lowest "
                             "window is its last (still falling at the end).")


# ---------------------------------------------------------------- matched progress


def progress_markdown(study: Study) -> str:
    """Whether the arms without a rise got as far as the control had when it turned: the
    onset fit, who reached it, who is censored, and the changes at matched fit."""
    a = study.analysis
    control = a.rising_controls[0]
    mine = [c for c in a.comparisons if c.control == control and c.progress is not None]
    lines = ["## Removed, or not reached yet?", ""]
    if not mine:
        return "\n".join(lines + ["No intervention has a train-subset loss to match progress "
                                   "on."])
    p = mine[0].progress
    lines.append(
        f"The control ({esc.md(control)}) turned when it had fitted its train subset to a "
        f"loss of {p.onset_fit:.2f} nats (mean over seeds, at the window where the other "
        f"seeds are lowest) and ended at {p.control_end_fit:.2f}. An intervention is "
        "compared with it at the same fit, not at the same step: one that only slows "
        "fitting lies on the control's curve in the figure and turns later.")
    censored = [c for c in a.comparisons if c.control == control and c.outcome == vd.CENSORED]
    matched = [c for c in mine if c.basis == vd.MATCHED_FIT]
    if censored:
        lines += ["", "**Censored (undetermined):**", ""] + [
            f"- {esc.md(c.arm)}: {_censored_words(c)}{_decided_by(c, mine)}." for c in censored]
    if matched:
        lines += ["", "**At matched fit:** " + "; ".join(
            f"{esc.md(c.arm)}: from fit {c.progress.onset_fit:.2f} to "
            f"{c.progress.matched_fit:.2f} it rises {c.progress.arm_rise.mean:+.3f} where the "
            f"control rises {c.progress.control_rise.mean:+.3f}, a change of "
            f"{with_interval(c.change)} nats (Holm p {fx.format_p(c.change.p_adjusted)}), "
            f"{_outcome_words(c)}" for c in matched) + "."]
    crossed = [c for c in a.comparisons if c.control in a.crossed and c.progress is not None]
    if crossed:
        lines += ["", "**Against a crossed control** (an arm that rises under the control's "
                  "schedule, against its own experiment under the other schedule, at matched "
                  "fit on its own train split): " + "; ".join(
                      f"{esc.md(c.arm)} against {esc.md(c.control)}: "
                      + (f"from fit {c.progress.onset_fit:.2f} to {c.progress.matched_fit:.2f} "
                         f"it rises {c.progress.arm_rise.mean:+.3f} where that control rises "
                         f"{c.progress.control_rise.mean:+.3f}, a change of "
                         f"{with_interval(c.change)} nats (Holm p "
                         f"{fx.format_p(c.change.p_adjusted)}), {_outcome_words(c)}"
                         if c.basis == vd.MATCHED_FIT else f"censored: {_censored_words(c)}")
                      for c in crossed) + "."]
    return "\n".join(lines)


def _decided_by(c: vd.Comparison, others: Sequence[vd.Comparison]) -> str:
    longer = vd.superseded_by(c, others)
    return "" if longer is None else (f"; decided by its longer run, {esc.md(longer.arm)}, "
                                      "compared at matched fit below")


def _censored_words(c: vd.Comparison) -> str:
    return esc.md(c.censored_because)


def onset_table(study: Study) -> pd.DataFrame:
    """The time-to-event view: per arm, the seeds that turned (per-run label) and when;
    seeds that never turned are censored at their run's length. Beside it, how far each arm
    fitted against the control's onset, and what its comparison rests on."""
    a = study.analysis
    control = a.rising_controls[0]
    mine = {c.arm: c for c in a.comparisons if c.control == control and c.decides}
    progress = next((c.progress for c in mine.values() if c.progress is not None), None)
    runs = vd.counted_runs(study.results)
    fit = {}
    if progress is not None:
        fit = {control: progress.control_end_fit}
    rows = []
    for arm in [control, *mine]:
        part = runs[runs["group"] == arm]
        last = int(a.curves[arm].steps[-1])
        turned = part["inflection"] == INFLECTION if "inflection" in part else \
            pd.Series(False, index=part.index)
        onsets = part.loc[turned, "onset_step"].astype(float).to_numpy() \
            if "onset_step" in part else np.empty(0)
        cells = sorted(f"{int(v)}" for v in onsets) + [f"> {last}"] * int((~turned).sum())
        interval = ""
        if onsets.size == len(part) >= 2:
            # onsets are read at evals: an interval never narrower than the grid allows
            mean = fx.one_sample(fx.ArmStatistic(arm, "onset step", onsets), "two-sided",
                                 resolution=a.curves[arm].eval_spacing)
            interval = f"{mean.estimate:.0f} ({mean.ci_low:.0f} to {mean.ci_high:.0f})"
        c = mine.get(arm)
        p = None if c is None else c.progress
        if arm == control:
            end_fit, at_onset, basis = fit.get(arm), "all (it defines the onset fit)", ""
        elif c.different_split:
            end_fit, at_onset = None, "n/a: its own train split"
            basis = ""
        else:
            end_fit = None if p is None else p.arm_end_fit
            at_onset = "n/a" if p is None else f"{p.seeds_reached} of {p.n_seeds}"
            basis = ""
        if c is not None:
            basis = (f"censored: {_outcome_words(c)}" if c.outcome == vd.CENSORED
                     else f"compared at {c.basis}")
        rows.append({
            "arm": arm + (" (control)" if arm == control else ""),
            "seeds turned by the end": f"{int(turned.sum())} of {len(part)}",
            "onset step per seed (> N: censored)": ", ".join(cells),
            "mean onset (95% CI)": interval or "n/a (not every seed turned)",
            "train-subset loss at the end": "n/a" if end_fit is None else f"{end_fit:.2f}",
            "seeds at the control's onset fit": at_onset,
            "its comparison": basis})
    return pd.DataFrame(rows)


def progress_section(study: Study) -> list:
    """Matched progress, on the report's second screen: the text, the generalisation-curve
    figure and the time-to-event table."""
    a = study.analysis
    if a is None or not a.rising_controls:
        return []
    control = a.rising_controls[0]
    mine = [c for c in a.comparisons if c.control == control and c.decides]
    fitted = [c for c in mine if c.progress is not None]
    if not fitted:
        return [markdown(progress_markdown(study))]
    colors = _arm_colors(study, [c.arm for c in mine])
    figure = figures.generalisation_curves(
        a.curves, control, [c.arm for c in mine], colors, fitted[0].progress.onset_fit,
        censored=[c.arm for c in mine if c.outcome == vd.CENSORED],
        own_split=[c.arm for c in mine if c.different_split])
    return [markdown(progress_markdown(study)), figure,
            html_table(onset_table(study), "When each seed turned (per-run label: "
                       "its window rise beyond its own noise). Seeds that never turned are "
                       "censored at their run's length, not counted as removing the rise.")]


def _arm_colors(study: Study, arms: Sequence[str]) -> dict[str, str]:
    """Each arm's colour: its experiment's, or a free shade of its explanation's family
    for the control's own experiment under another condition (never the control's black)."""
    a = study.analysis
    groups = study.results.groups
    family = {c.arm: c.hypothesis for c in a.comparisons}
    colors = {arm: study.colors.get(groups[arm].experiment) for arm in a.curves}
    for arm in arms:
        if colors.get(arm) in (None, figures.CONTROL_COLOR):
            colors[arm] = figures.free_shade(family.get(arm, vd.OTHER),
                                             [colors[other] for other in arms if other != arm])
    return colors


# ---------------------------------------------------------------- one explanation


def hypothesis_markdown(study: Study, name: str) -> str:
    """The prediction, the verdict, and one bullet per comparison."""
    verdict = study.analysis.verdicts[name]
    lines = [f"### {name[0].upper() + name[1:]}: {verdict.verdict}", "",
             f"*Prediction.* {PREDICTIONS[name]}", ""]
    lines += [f"- {esc.md(reason)}" for reason in verdict.reasons]
    lines += [f"- {esc.md(line)}" for line in extra_evidence(study, name)]
    family = family_words(study.analysis, name)
    return "\n".join(lines + ([f"- {family}"] if family else []))


def family_words(a: vd.StudyAnalysis, name: str) -> str:
    """The size of the explanation's family against the rising controls, and how many of
    its places are held by censored comparisons (their equal-steps test, or p 1)."""
    members = [c for c in a.comparisons if a.family_of(c) == (name, vd.VERDICT_FAMILY)]
    if not members:
        return ""
    held = sum(not c.basis for c in members)
    return (f"*Correction.* Holm-Sidak over the {len(members)} comparison(s) of this "
            f"explanation against the rising control(s): {len(members) - held} tested"
            + (f", {held} censored, each holding its place with its test at equal steps "
               "(p 1 without one) and claiming nothing" if held else "") + ".")


def hypothesis_figure(study: Study, name: str):
    a = study.analysis
    control = (a.rising_controls or tuple(a.controls.values()))[0]
    arms = [c.arm for c in a.comparisons if c.hypothesis == name and c.control == control]
    if not arms:
        return None
    return figures.control_vs_interventions(a.curves, control, arms, _arm_colors(study, arms))


def comparisons_table(study: Study, name: str | None = None) -> pd.DataFrame:
    """Each intervention against each control: the change of the rise and its outcome."""
    rows = []
    a = study.analysis
    for c in a.comparisons:
        if name is not None and (c.hypothesis != name or (
                a.rising_controls and c.control not in a.judging_controls)):
            continue  # a section shows the comparisons that decide it; the appendix all
        t = c.change if c.basis else c.at_equal_steps
        if t is None:  # censored, and of another length: nothing was compared
            t = replace(c.change, estimate=float("nan"), ci_low=None, ci_high=None,
                        ci_text=None, se=None, df=None, detectable=None)
        rows.append({"intervention": c.arm, "outcome": _outcome_words(c),
                     "compared at": _compared_at(c),
                     "change of rise (nats)": number(t.estimate, t.se, True),
                     "95% CI": "0 to 0 (identical in every seed)" if t.identical
                     else "n/a" if t.ci_low is None else
                     f"{number(t.ci_low, t.se, True)} to {number(t.ci_high, t.se, True)}",
                     "Holm-Sidak p": fx.format_p(t.p_adjusted) if c.basis
                     else "not tested",
                     "seeds": "paired" if t.paired_seeds else "unpaired (Welch)",
                     "df (seeds)": "n/a" if t.df is None else f"{t.df:.2g}",
                     "95% CI over new val text too": text_interval(t),
                     "could detect (nats)": number(t.detectable, t.se),
                     "control": c.control, "explanation": c.hypothesis,
                     "prediction": {-1: "lower rise", 1: "higher rise", 0: "none"}[c.predicted]
                     + f" ({c.prediction_basis})", "config keys changed": ", ".join(c.changed)})
    return pd.DataFrame(rows)


def _compared_at(c: vd.Comparison) -> str:
    """What a comparison's row compares: its basis, and at equal steps where from."""
    steps = vd.EQUAL_STEPS + (f", from step {c.window_from}" if c.window_from is not None
                              else ", each arm from its own lowest place"
                              if c.own_places_because else "")
    if not c.basis:
        return f"not compared (censored); at {steps}:"
    return steps if c.basis == vd.EQUAL_STEPS else c.basis


def extra_evidence(study: Study, name: str) -> list[str]:
    """Measured context for an explanation, from the rising controls' runs."""
    a = study.analysis
    runs = vd.counted_runs(study.results)
    lines = []
    for control in a.rising_controls:
        mine = runs[runs["group"] == control]
        if name == vd.OVERFITTING:
            gap = a.gap_growth.get(control)
            if gap is not None:
                lines.append(f"{control}: the val - train-subset gap grows by "
                             f"{with_interval(gap, signed=False)} nats from the lowest window "
                             "to the end (the model fits its train split better while val "
                             "gets worse).")
            floor, train = mine["bayes_floor"].mean(), mine["final_train_loss"].mean()
            if math.isfinite(floor) and math.isfinite(train):
                relation = "below" if train < floor else "above"
                lines.append(f"{control}: the train-subset loss ends at {train:.3f} nats, "
                             f"{relation} the Bayes floor of the language ({floor:.3f}), which "
                             "no model reaches on unseen text: "
                             + ("it has memorised train sequences." if train < floor
                                else "no sign of memorisation from this number alone."))
            lines.append(f"{control}: {mine['epochs_seen'].mean():.1f} passes over its train "
                         "split by the end.")
        elif name == vd.LR_SCHEDULE:
            lines.append(f"{control}: its LR over the last quarter of training averages "
                         f"{100 * a.late_lr[control]:.0f}% of its peak.")
        elif name == vd.LOAD_BALANCING:
            evals = study.results.evals[study.results.evals["run_id"].isin(mine["run_id"])]
            last = evals.sort_values("step").groupby("run_id").tail(1)
            share = (last["aux_loss"] / last["train_loss"]).mean()
            if math.isfinite(share):
                lines.append(f"{control}: the balancing loss is {100 * share:.2f}% of the "
                             "training loss at the end; the busiest expert gets "
                             f"{100 * last['max_violation'].mean():.0f}% more tokens than "
                             "the mean.")
    return lines


# ---------------------------------------------------------------- interaction, ranking


def interaction_table(study: Study) -> pd.DataFrame:
    """For each intervention run under several conditions: its change of the rise against
    each condition's control (the question: does it matter under either?)."""
    a = study.analysis
    rows: dict[str, dict] = {}
    groups = study.results.groups
    for c in a.comparisons:
        experiment, condition = groups[c.arm].experiment, groups[c.arm].condition
        if groups[c.control].condition != condition:
            continue  # an arm is compared with the control of its own condition here
        label = study.condition_labels.get(condition, condition)
        mark = " *" if c.change.significant else ""
        # a censored comparison was not tested: its change at equal steps is for the record
        words = (f"{with_interval(c.change)}{mark}" if c.basis
                 else "censored, not tested" if c.at_equal_steps is None
                 else f"censored, not tested (at equal steps {with_interval(c.at_equal_steps)})")
        rows.setdefault(experiment, {"intervention": experiment})[label] = words
    return pd.DataFrame(list(rows.values())).fillna("not run")


def flat_window_sentence(a: vd.StudyAnalysis) -> str:
    """How the rises are measured against the controls that do not rise ("" when none was
    compared so)."""
    flat = [c for c in a.comparisons if not c.decides and c.basis]
    if not flat:
        return ""
    names = list(dict.fromkeys(c.control for c in flat))
    head = (f"Against {', '.join(esc.md(c) for c in names)}, which "
            f"{'does' if len(names) == 1 else 'do'} not rise, ")
    own = [c for c in flat if c.window_from is None]
    caveat = "which reads the rise of the noisier of two arms smaller"
    if own and len(own) == len(flat) and a.gate_low is None:
        return head + ("each arm's rise is measured from where its other seeds are lowest "
                       f"({own[0].own_places_because}), {caveat}.")
    source = next(c for c in a.rising_controls if c in a.gates)
    text = (head + f"the rise compared is each arm's change of val loss from step {a.gate_low} "
            f"to the end, seed by seed: where the gate runs of {esc.md(source)} (the first "
            "rising control with gate runs) are lowest, a place chosen by runs compared with "
            f"nothing, rather than each arm from its own lowest place, {caveat}. An arm still "
            "falling after that step reads below 0; an arm that turns before it is measured "
            "from it all the same.")
    early = [(c, onset) for c in flat if (onset := vd.turned_before_window(c)) is not None]
    if early:
        text += (" Lowest before it (its rise before the step not counted): "
                 + "; ".join(f"{esc.md(c.arm)} (at step {round(onset)} on average)"
                             for c, onset in early) + ".")
    if own:
        text += (" Except, each arm from where its other seeds are lowest: "
                 + "; ".join(f"{esc.md(c.arm)} against {esc.md(c.control)} "
                             f"({esc.md(c.own_places_because)})" for c in own) + ".")
    return text


def leader_sentence(study: Study) -> str:
    """The lowest end loss, named only when it is beyond noise from the runner-up."""
    lead = study.analysis.leader
    if not lead:
        return "Fewer than two arms share a val split: no ranking of end losses."
    t = lead["test"]
    if lead["named"]:
        lowest = number(lead["end_loss"][lead["lowest"]], t.se)
        return (f"Lowest end loss: {esc.md(lead['lowest'])} ({lowest} nats), "
                f"{number(-t.estimate, t.se)} below the runner-up {esc.md(lead['runner_up'])} "
                f"(95% CI {number(-t.ci_high, t.se)} to {number(-t.ci_low, t.se)}; Holm-Sidak "
                f"p {fx.format_p(t.p_adjusted)}).")
    detect = "" if t.detectable is None else \
        f"; a difference of about {number(t.detectable, t.se)} nats would have been found"
    return (f"No arm ends lowest beyond noise: {esc.md(lead['lowest'])} and "
            f"{esc.md(lead['runner_up'])} differ "
            f"by {number(-t.estimate, t.se)} nats, within noise{detect}.")


# ---------------------------------------------------------------- tables and sections


def html_table(table: pd.DataFrame, caption: str = "") -> Any:
    """A table without its index, cells wrapping (no truncation), left-aligned, numbers at
    4 decimals unless already formatted; every cell and header escaped (they hold names from
    runs and configs), the caption too."""
    table = table.map(lambda v: esc.visible(v) if isinstance(v, str) else v) \
        .rename(columns=esc.visible)
    styler = table.style.hide(axis="index").format(precision=4, na_rep="", escape="html") \
        .format_index(escape="html", axis=1) \
        .set_table_styles([{"selector": "th, td", "props": "text-align: left;"}])
    if caption:
        styler = styler.set_caption(esc.html(caption))
    return styler


def hypothesis_section(study: Study, name: str) -> list:
    """The section of one explanation: verdict and reasons, the curves, the comparisons."""
    if study.analysis is None:
        return []
    items = [markdown(hypothesis_markdown(study, name)), hypothesis_figure(study, name)]
    table = comparisons_table(study, name)
    if len(table):
        items.append(html_table(table.drop(columns=["explanation"])))
    return items


def interaction_section(study: Study) -> list:
    if study.analysis is None:
        return []
    table = interaction_table(study)
    text = ("## Does each intervention matter under either schedule?\n\nThe change of the "
            "rise against the control of the same schedule (nats, 95% CI; * beyond noise "
            "after correction). " + flat_window_sentence(study.analysis) + " "
            + leader_sentence(study))
    return [markdown(text)] + ([html_table(table)] if len(table) else [])


def routing_section(study: Study) -> list:
    """Expert load over training for the rising control and its no-balancing arm."""
    a = study.analysis
    routing = study.ours.routing
    if a is None or routing.empty:
        return []
    control = (a.rising_controls or tuple(a.controls.values()))[0]
    groups = study.results.groups
    no_lb = ArmGroup(arm_name("no_lb", groups[control].condition))
    arms = [control] + [arm for arm in a.curves if groups[arm] == no_lb]
    shown = routing[routing["arm"].isin(arms)].assign(experiment=lambda d: d["arm"])
    warnings = []
    for run_id, part in routing[routing["arm"].isin(arms)].groupby("run_id", sort=False):
        last = part[part["step"] == part["step"].max()]
        load = last.pivot_table(index="layer", columns="expert", values="load_share")
        warnings += [f"{esc.md(run_id)}: {esc.md(w)}" for w in expert_warnings(load.to_numpy())]
    note = ("Dead or collapsed experts at the end: " + "; ".join(warnings) + "." if warnings
            else "No expert is dead or collapsed (under 1/(4E) of the tokens) at the end of "
            "these runs.")
    return [markdown("### Routing: each expert's share of tokens over training\n\nEach "
                     "expert's share minus 1/E (perfect balance): red above it, blue below, "
                     "white balanced; the control beside the run without a balancing loss. "
                     + note),
            figures.expert_load_heatmaps(shown, experiments=tuple(arms))]


def show(items: Sequence[Any]) -> None:
    """Display each item (Markdown, figure, table) in order."""
    from IPython.display import display

    for item in items:
        if item is not None:
            display(item)


def markdown(text: str) -> Any:
    from IPython.display import Markdown

    return Markdown(text)

