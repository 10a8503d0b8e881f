"""The report's sentences from simulated studies whose answer is set."""

import dataclasses
import html
import re

import numpy as np
import pytest

from moe_core import escape as esc
from moe_core.analysis import calibration as cal
from moe_core.analysis import effects as fx
from moe_core.analysis import verdicts as vd
from moe_core.analysis.results import load_runs
from moe_core.report import appendix, sections

TINY = {"max_steps": 8}


@pytest.fixture(scope="module")
def simulated():
    """A picture with an answer for each: fresh data, dropout and a low LR after the onset
    remove the rise, the balancing arms keep it."""
    # the smaller split's arms drawn last (the others keep their draws); more repetition
    # per step rises more, as in a world where repetition causes the rise
    small = ["small_split@reference_lr", "small_split"]
    arms = [a for a in cal.study_arms() if a not in small] + small
    truths = cal.study_like(arms, {"fresh_data@reference_lr": cal.Truth(rise=0.0),
                                   "higher_dropout@reference_lr": cal.Truth(rise=0.0),
                                   "lr_drop_long@reference_lr": cal.Truth(rise=0.0),
                                   "small_split@reference_lr": cal.Truth(rise=0.3)})
    results = cal.simulate_results(truths, 4, cal.Noise(), np.random.default_rng(0))
    return sections.study_of(results)


def test_the_answer_gives_where_it_rises_and_each_verdict_with_its_numbers(simulated):
    text = html.unescape(sections.answer_markdown(simulated))  # names arrive escaped
    assert text.startswith("## The answer")
    assert "the control (baseline@reference_lr) rises" in text
    assert "the control (baseline) does not rise beyond noise" in text
    for name, verdict in (("overfitting", "supported"), ("the LR schedule", "supported"),
                          ("load balancing", "not supported")):
        assert f"| {name} | **{verdict}** |" in text
    # these arms fit as fast as the control: compared at matched fit
    assert "higher_dropout@reference_lr: rise at matched fit changes -0.0" in text \
        and "95% CI" in text
    assert "removes the rise" in text and "the rise persists" in text
    sentence = html.unescape(sections.one_sentence(simulated.analysis))
    assert sentence.startswith(
        "Judged against the control that rises (baseline@reference_lr): supported: "
        "overfitting and the LR schedule; not supported: load balancing.")
    # what the schedule does to another experiment's rise is said apart
    assert "Apart, on another experiment's rise" in sentence
    assert "the LR schedule supported on small_split@reference_lr's" in sentence


def test_numbers_are_rounded_to_what_their_noise_supports():
    assert sections.decimals_for(0.03) == 2 and sections.decimals_for(0.004) == 3
    assert sections.number(4.08123, 0.03) == "4.08" and sections.number(-0.0712, 0.004, True) \
        == "-0.071"


def test_the_rise_figure_has_one_row_per_arm_grouped_by_condition_control_first(simulated):
    rows = sections.rise_rows(simulated)
    assert len(rows) == len(simulated.analysis.curves)
    first = rows.groupby("condition_label", sort=False).head(1)
    assert first["is_control"].all()
    assert set(rows.loc[rows["rises"], "arm"]) >= {"baseline@reference_lr"}


def test_no_leader_is_named_when_the_lowest_is_within_noise(simulated):
    a = simulated.analysis
    a.leader = {**a.leader, "named": False}
    sentence = html.unescape(sections.leader_sentence(simulated))
    assert sentence.startswith("No arm ends lowest beyond noise") and "would have been found" \
        in sentence


def test_interaction_compares_each_intervention_with_the_control_of_its_schedule(simulated):
    table = sections.interaction_table(simulated).set_index("intervention")
    labels = set(simulated.condition_labels.values())
    assert labels <= set(table.columns)
    assert table.loc["no_lb"].notna().all()  # no_lb ran under both schedules
    assert table.loc["fresh_data", sections.NO_CONDITION_LABEL] == "not run"
    # a censored comparison says it was not tested, its change at equal steps beside
    censored = [c for c in simulated.analysis.comparisons if not c.basis
                and simulated.results.groups[c.arm].condition
                == simulated.results.groups[c.control].condition]
    assert censored
    for c in censored:
        cell = table.loc[simulated.results.groups[c.arm].experiment,
                         simulated.condition_labels.get(simulated.results.groups[c.arm].condition,
                                                        simulated.results.groups[c.arm].condition)]
        assert cell.startswith("censored, not tested") and "*" not in cell


def test_each_intervention_is_drawn_in_a_colour_other_than_its_controls(simulated):
    # the LR's intervention is the corrected schedule's `baseline`: the control's experiment
    for name in ("the LR schedule", "overfitting", "load balancing"):
        fig = sections.hypothesis_figure(simulated, name)
        for ax in fig.axes:
            if ax.lines:
                control, intervention = (line.get_color() for line in ax.lines[:2])
                assert control != intervention, (name, ax.get_title())


@pytest.mark.slow
def test_hypothesis_evidence_reads_the_rising_control_from_the_runs(run_dir):
    study = sections.build([run_dir])
    assert set(study.analysis.controls) == {"", "reference_lr"}
    lines = sections.extra_evidence(study, vd.LOAD_BALANCING)
    assert all("baseline" in line for line in lines)
    assert len(load_runs(run_dir).runs) == 10


def test_p_values_are_printed_with_two_digits_never_below_one_in_a_thousand(simulated):
    a = simulated.analysis
    printed = [html.unescape(sections.answer_markdown(simulated)),
               html.unescape(sections.leader_sentence(simulated)),
               *[reason for v in a.verdicts.values() for reason in v.reasons],
               sections.comparisons_table(simulated).to_csv(),
               appendix.arms_table(simulated).to_csv()]
    assert not any(re.search(r"\d[eE][-+]?\d", text) for text in printed)
    table = sections.comparisons_table(simulated)
    two_digits = re.compile(r"< 0\.001|n/a|not tested|1|0\.0*[1-9]\d?")
    for column in ("Holm-Sidak p",):
        assert all(two_digits.fullmatch(p) for p in table[column]), list(table[column])
    assert all(two_digits.fullmatch(p) for p in appendix.arms_table(simulated)[
        "rise Holm-Sidak p"])
    # 4 seeds in every arm: each comparison seed by seed, on 3 df
    assert set(table["seeds"]) == {"paired"} and set(table["df (seeds)"]) == {"3"}


def test_a_placebo_prints_a_change_of_exactly_zero(simulated):
    a = simulated.analysis
    rises = {arm: fx.rise_statistic(c) for arm, c in a.curves.items()}
    control = rises["baseline@reference_lr"]
    placebo = fx.two_sample(dataclasses.replace(control, arm="placebo"), control)
    assert sections.with_interval(placebo) == \
        "0 (identical in every seed: a degenerate interval, no test)"


def test_the_progress_section_shows_who_reached_the_onset_and_censors_the_rest(simulated):
    table = sections.onset_table(simulated).set_index("arm")
    assert table.index[0] == "baseline@reference_lr (control)"
    fresh = table.loc["fresh_data@reference_lr"]
    assert fresh["seeds at the control's onset fit"] == "n/a: its own train split"
    assert fresh["its comparison"].startswith("censored: undetermined")
    assert fresh["onset step per seed (> N: censored)"] == ", ".join(["> 400"] * 4)
    assert table.loc["higher_dropout@reference_lr", "its comparison"] \
        == "compared at matched fit"
    text = html.unescape(sections.answer_markdown(simulated))
    assert "**Rise and fitting progress.** The control turned at a train-subset loss of" in text
    assert "fresh_data@reference_lr ran on its own train split" in text


def test_the_generalisation_figure_keeps_an_arm_on_another_split_off_the_common_scale(
        simulated):
    markdown_text, figure, _ = sections.progress_section(simulated)
    left, right = figure.axes[:2]
    styles = {line.get_label(): line.get_linestyle() for line in left.lines
              if not line.get_label().startswith("_")}
    fresh = [label for label in styles if label.startswith("fresh_data")]
    assert fresh and styles[fresh[0]] == "--" and "not comparable" in fresh[0]
    assert not any(line.get_label().startswith("fresh_data") for line in right.lines)
    # the control's onset fit is marked on both panels
    onset = next(c.progress.onset_fit for c in simulated.analysis.comparisons
                 if c.progress is not None)
    for ax in (left, right):
        assert any(set(line.get_xdata()) == {onset} for line in ax.lines)


def test_calibration_rows_above_their_bound_are_named_with_their_interval():
    rows = [{"scenario": "null", "indicator": "an effect", "rate": 0.095,
             "what it should be": "<= 0.05 (family-wise)"},
            {"scenario": "null", "indicator": "a leader", "rate": 0.005,
             "what it should be": "<= 0.05"},
            {"scenario": "power", "indicator": "detected", "rate": 0.6,
             "what it should be": "power"}]
    [(line, kind)] = appendix._over_bound(rows, 200)
    assert line.startswith("an effect under") and "0.095 against 0.05" in line
    assert "19 of 200 studies, 95% CI 0.058 to 0.144" in line and kind == appendix.BEYOND
    assert appendix._over_bound(rows[1:], 200) == []
    # not beyond the bound after Holm over the bounded rows: not distinguishable from it
    [(line, kind)] = appendix._over_bound([{**rows[0], "rate": 0.07}, *rows[1:]], 200)
    assert "14 of 200 studies" in line and kind == appendix.WITHIN
    # Holm over every bounded row: one row beyond on its own is not beyond among many
    alone = [{**rows[0], "rate": 0.085}]
    assert appendix._over_bound(alone, 200)[0][1] == appendix.BEYOND
    many = alone + [{**rows[1], "scenario": f"null {i}"} for i in range(30)]
    assert appendix._over_bound(many, 200)[0][1] == appendix.WITHIN
    # no study count: no interval, not judged
    assert appendix._over_bound(rows[:1], None)[0][1] == appendix.UNCOUNTED


def test_the_calibration_states_the_verdicts_largest_measured_error_rate():
    gated, reused = "marginal gate <b>, with gate seeds", "marginal gate, without gate seeds"
    rows = [{"scenario": "null A", "indicator": "any explanation supported", "rate": 0.005,
             "what it should be": "<= 0.05"},
            {"scenario": "null A", "indicator": "any intervention effect (study-wide)",
             "rate": 0.125, "what it should be": "reported (3 families)"},
            {"scenario": gated, "indicator": "load balancing supported",
             "rate": 0.035, "what it should be": "<= 0.05 (each explanation)"},
            {"scenario": gated, "indicator": "any explanation supported",
             "rate": 0.06, "what it should be": "reported (3 explanations)"},
            {"scenario": gated, "indicator": "control called rising", "rate": 0.25,
             "what it should be": "reported"},
            {"scenario": reused, "indicator": "load balancing supported", "rate": 0.045,
             "what it should be": "<= 0.05 (each explanation)"},
            {"scenario": "overfitting false", "indicator": "supported", "rate": 0.04,
             "what it should be": "supported <= 0.05, not supported high"},
            {"scenario": "overfitting false", "indicator": "not supported", "rate": 0.8,
             "what it should be": "supported <= 0.05, not supported high"},
            {"scenario": "overfitting true", "indicator": "supported", "rate": 0.6,
             "what it should be": "supported high, not supported <= 0.05"},
            {"scenario": "power", "indicator": "detected", "rate": 0.6,
             "what it should be": "power"}]
    # a compound bound counts for the indicator it names, and for no other
    assert [cal.row_bound(r) for r in rows[6:9]] == [0.05, None, None]
    text = html.unescape(appendix._error_summary(rows))
    assert "the largest of the 3 rates bounded by their row is 0.040 (supported under " \
           "\"overfitting false\")" in text
    # over every study, and among those that judged (a false support needs a rising control)
    assert "one explanation was wrongly supported in at most 0.035 of studies, 0.140 of " \
           "those that judged (load balancing supported under" in text
    assert "some explanation was wrongly supported in at most 0.060 of studies, 0.240" in text
    assert "some comparison claimed an effect anywhere in the study in at most 0.125" in text
    assert "0.045" not in text  # the design without gate seeds is the comparison, left out
    assert "<b>" not in appendix._error_summary(rows)  # names escaped
    assert appendix._error_summary(rows[-1:]) == ""
    # a row's own study count where its scenario states one
    [(over, _)] = appendix._over_bound([{**rows[6], "rate": 0.09,
                                         "scenario": "crossed (1000 studies)"}], 200)
    assert "0.090 against 0.05 (90 of 1000 studies" in over
    # a rate among some of a scenario's studies counts those (its last count)
    [(over, _)] = appendix._over_bound([{**rows[6], "rate": 0.1, "scenario":
                                         "null (1000 studies); among those with one (230 "
                                         "studies)"}], 200)
    assert "23 of 230 studies" in over


def test_a_control_with_gate_seeds_says_its_rise_was_tested_on_them():
    arms = ["baseline@reference_lr", "no_lb@reference_lr"]
    results = cal.simulate_results(cal.null_truths(arms), 3, cal.Noise(),
                                   np.random.default_rng(1), gates=cal.GATE_SEEDS)
    study = sections.study_of(results)
    text = html.unescape(sections.answer_markdown(study))
    assert "on its 4 gate seeds (100, 101, 102, 103: runs no comparison uses; its 3 " \
           "compared runs rise" in text
    limits = html.unescape(appendix._gate_words(study.analysis))
    assert "baseline@reference_lr's rise was tested on its 4 gate seeds (100, 101, 102, " \
           "103), runs that no other arm has the seed of and no comparison reads" in limits
    table = appendix.arms_table(study).set_index("arm")
    assert table.loc["baseline@reference_lr", "seeds"] == "3 compared + 4 gate"
    assert table.loc["no_lb@reference_lr", "rise tested on"] == "its runs"
    # without them, the report says the gate reused the compared runs
    plain = sections.study_of(cal.simulate_results(cal.null_truths(arms), 3, cal.Noise(),
                                                   np.random.default_rng(1)))
    assert "no gate seeds" in appendix._gate_words(plain.analysis)


def test_the_report_says_where_a_gated_controls_onset_was_read_off():
    arms = ["baseline@reference_lr", "no_lb@reference_lr"]
    results = cal.simulate_results(cal.null_truths(arms), 3, cal.Noise(),
                                   np.random.default_rng(1), gates=cal.GATE_SEEDS)
    words = html.unescape(appendix._gate_words(sections.study_of(results).analysis))
    assert "the onset they are measured from at matched fit (the fit where it turns) is " \
           "read off the gate runs too" in words and "ran to step" not in words
    assert "over its gate runs) and its compared runs ended at" in sections.progress_summary(
        sections.study_of(results).analysis)
    gate = results.evals["seed"] >= 100
    # gate runs without a train-subset loss: the onset comes from the compared runs, said
    blind = dataclasses.replace(results, evals=results.evals.assign(
        train_subset_loss=results.evals["train_subset_loss"].where(~gate)))
    analysis = sections.study_of(blind).analysis
    assert cal.CONTROL in analysis.gates
    assert {c.progress.onset_from for c in analysis.comparisons if c.progress} \
        == {"compared runs"}
    assert "its gate runs recorded no train-subset loss, so the onset" in html.unescape(
        appendix._gate_words(analysis))
    # gate runs cut short: their length is said beside it
    short = dataclasses.replace(results, evals=results.evals[~(gate & (
        results.evals["step"] > 352))])
    assert "its gate runs ran to step 352 (compared runs: 400)" in html.unescape(
        appendix._gate_words(sections.study_of(short).analysis))


def test_each_explanation_says_how_large_its_family_is_and_how_many_places_are_held():
    arms = cal.study_arms()
    fresh = "fresh_data@reference_lr"
    results = cal.simulate_results(cal.study_like(arms, {fresh: cal.Truth(rise=0.0)}), 4,
                                   cal.Noise(), np.random.default_rng(2), gates=cal.GATE_SEEDS)
    a = sections.study_of(results).analysis
    members = [c for c in a.comparisons if c.hypothesis == vd.OVERFITTING
               and c.control in a.rising_controls]
    held = sum(not c.basis for c in members)
    assert held >= 1  # fresh data does not rise: censored
    words = sections.family_words(a, vd.OVERFITTING)
    assert f"over the {len(members)} comparison(s)" in words
    assert f"{len(members) - held} tested, {held} censored, each holding its place" in words


def test_the_interaction_says_where_rises_are_measured_against_a_control_that_does_not_rise(
        simulated):
    # no gate runs: each arm from its own place, and why, with the bias that leaves
    words = sections.interaction_section(simulated)[0].data
    assert "no rising control has gate runs" in words and "noisier of two arms" in words
    # the small split under the corrected schedule rises, from early in the run
    gated = sections.study_of(cal.simulate_results(
        cal.study_like(cal.study_arms(), {"small_split": cal.Truth(rise=0.3,
                                                                   rise_fraction=0.7)}),
        4, cal.Noise(), np.random.default_rng(1), gates=cal.GATE_SEEDS))
    a = gated.analysis
    assert "baseline" not in a.rising_controls and a.gate_low is not None
    words = sections.flat_window_sentence(a)
    assert words.startswith("Against baseline, which does not rise,")
    assert f"change of val loss from step {a.gate_low} to the end" in words
    assert f"the gate runs of {esc.md(cal.CONTROL)} (the first rising control" in words
    assert "still falling after that step reads below 0" in words
    early = next(c for c in a.comparisons if c.arm == "small_split" and c.control == "baseline")
    assert early.onsets[0][0] < a.gate_low
    assert vd._from_words(early) == (f" (from step {a.gate_low} to the end; it was lowest at step "
                                     f"{round(early.onsets[0][0])}, so its rise before is not "
                                     "counted)")
    assert f"Lowest before it (its rise before the step not counted): small&#95;split (at " \
           f"step {round(early.onsets[0][0])}" in words
    table = sections.comparisons_table(gated)
    flat = table[table["control"] == "baseline"]
    assert len(flat) and (flat["compared at"] == f"equal steps, from step {a.gate_low}").all()
    # against the rising control: matched fit says so alone; censored rows where from
    rising = table[table["control"] == cal.CONTROL].set_index("intervention")
    assert rising.loc["no_lb@reference_lr", "compared at"] == "matched fit"
    assert set(rising["compared at"]) <= {
        "matched fit", f"equal steps, from step {a.gate_low}",
        f"not compared (censored); at equal steps, from step {a.gate_low}:",
        "not compared (censored); at equal steps:"}
