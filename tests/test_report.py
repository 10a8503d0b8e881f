"""The inflection report: its sentences from simulated studies whose answer is set, and the
rendered HTML from real smoke runs (self-contained, no code, every section)."""

import dataclasses
import html
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from moe_core.analysis import calibration as cal
from moe_core.analysis import effects as fx
from moe_core.analysis import verdicts as vd
from moe_core.analysis.results import load_runs
from moe_core.config.run_config import build_config
from moe_core.report import appendix, figures, render, sections
from moe_core.report.render import tables_folder
from moe_core.training.trainer import train

REFERENCE_DIR = Path(__file__).parents[2] / "shared/reference/exp8_original"
TINY = {"max_steps": 8}
EMBEDDED_PNG = re.compile(r'<img[^>]*\ssrc="data:image/png;base64,')
needs_reference = pytest.mark.skipif(not REFERENCE_DIR.is_dir(),
                                     reason="the reference's recorded files are not present")


# ---------------------------------------------------------------- sentences


@pytest.fixture(scope="module")
def simulated():
    """The built-in data's picture: fresh data and dropout remove the rise."""
    arms = cal.study_arms()
    truths = cal.study_like(arms, {"fresh_data@reference_lr": cal.Truth(rise=0.0),
                                   "higher_dropout@reference_lr": cal.Truth(rise=0.0)})
    results = cal.simulate_results(truths, 3, cal.Noise(), np.random.default_rng(0))
    return sections.study_of(results)


def test_the_answer_gives_where_it_rises_and_each_verdict_with_its_numbers(simulated):
    text = html.unescape(sections.answer_markdown(simulated))  # names arrive escaped
    assert text.startswith("## The answer")
    assert "the control (baseline@reference_lr) rises" in text
    assert "the control (baseline) does not rise beyond noise" in text
    for name, verdict in (("overfitting", "supported"), ("the LR schedule", "supported"),
                          ("load balancing", "not supported")):
        assert f"| {name} | **{verdict}** |" in text
    assert "fresh_data@reference_lr: rise changes -0.0" in text and "95% CI" in text
    assert "removes the rise" in text and "the rise persists" in text
    assert html.unescape(sections.one_sentence(simulated.analysis)).startswith(
        "Judged against the control that rises (baseline@reference_lr): supported: "
        "overfitting and the LR schedule; not supported: load balancing")


def test_numbers_are_rounded_to_what_their_noise_supports():
    assert sections.decimals_for(0.03) == 2 and sections.decimals_for(0.004) == 3
    assert sections.number(4.08123, 0.03) == "4.08" and sections.number(-0.0712, 0.004, True) \
        == "-0.071"


def test_p_values_are_printed_with_two_digits_never_below_one_in_a_thousand(simulated):
    a = simulated.analysis
    printed = [html.unescape(sections.answer_markdown(simulated)),
               html.unescape(sections.leader_sentence(simulated)),
               *[reason for v in a.verdicts.values() for reason in v.reasons],
               sections.comparisons_table(simulated).to_csv(),
               appendix.arms_table(simulated).to_csv()]
    assert not any(re.search(r"\d[eE][-+]?\d", text) for text in printed)
    table = sections.comparisons_table(simulated)
    two_digits = re.compile(r"< 0\.001|n/a|1|0\.0*[1-9]\d?")
    for column in ("Holm-Sidak p",):
        assert all(two_digits.fullmatch(p) for p in table[column]), list(table[column])
    assert all(two_digits.fullmatch(p) for p in appendix.arms_table(simulated)[
        "rise Holm-Sidak p"])
    # 3 seeds in every arm: each comparison seed by seed, on 2 df
    assert set(table["seeds"]) == {"paired"} and set(table["df (seeds)"]) == {"2"}


def test_a_placebo_prints_a_change_of_exactly_zero(simulated):
    a = simulated.analysis
    rises = {arm: fx.rise_statistic(c) for arm, c in a.curves.items()}
    control = rises["baseline@reference_lr"]
    placebo = fx.two_sample(dataclasses.replace(control, arm="placebo"), control)
    assert sections.with_interval(placebo) == \
        "0 (identical in every seed: a degenerate interval, no test)"


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


def test_each_intervention_is_drawn_in_a_colour_other_than_its_controls(simulated):
    # the LR's intervention is the corrected schedule's `baseline`: the control's experiment
    for name in ("the LR schedule", "overfitting", "load balancing"):
        fig = sections.hypothesis_figure(simulated, name)
        for ax in fig.axes:
            if ax.lines:
                control, intervention = (line.get_color() for line in ax.lines[:2])
                assert control != intervention, (name, ax.get_title())


def test_expert_load_heatmaps_label_about_five_steps_of_a_hundred_evals():
    routing = pd.DataFrame([{"experiment": "baseline", "layer": 0, "expert": e, "step": 4 * t,
                             "load_share": 0.125} for t in range(1, 101) for e in range(8)])
    ax = figures.expert_load_heatmaps(routing, ("baseline",)).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 3 <= len(labels) <= 6 and labels[0] == "4"


# ---------------------------------------------------------------- the rendered report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Tiny finished runs (baseline and no_lb under both schedules, two seeds), a diverged
    run and a corrupted file."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 25k-parameter model trains fastest on one thread
    for experiment in ("baseline", "no_lb"):
        for condition in ("", "reference_lr"):
            cfg = build_config(experiment, "smoke", TINY, condition=condition)
            for seed in (0, 1):
                train(cfg, seed=seed, out_dir=root / cfg.arm / f"seed{seed}", progress=False)
    train(build_config("constant_lr", "smoke", {**TINY, "fault_nan_at_step": 2}), seed=0,
          out_dir=root / "constant_lr" / "seed0", progress=False)
    broken = root / "higher_dropout" / "seed0"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text('{"status": "runn')
    torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def rendered(run_dir, tmp_path_factory) -> tuple[Path, str]:
    references = [REFERENCE_DIR] if REFERENCE_DIR.is_dir() else []
    out = tmp_path_factory.mktemp("report") / "report.html"
    path = render.render_report([run_dir], references, out_html=out, title="Smoke report")
    assert path == out and out.is_file()
    return out, out.read_text()


def test_the_report_opens_with_the_answer_and_has_every_section(rendered):
    _, html = rendered
    assert "<title>Smoke report</title>" in html
    headings = re.findall(r"<h[12][^>]*>(.*?)<a", html)
    assert headings[:2] == ["Why does the MoE validation loss turn up at the end of training?",
                            "The answer"]
    for section in ("The evidence, one explanation at a time", "Method", "Provenance",
                    "Appendix: every number"):
        assert section in html
    for arm in ("baseline@reference_lr", "no_lb@reference_lr", "no_lb"):
        assert arm in html


def test_the_report_embeds_its_figures_and_fetches_nothing(rendered):
    _, html = rendered
    # the rise figure, the LR and balancing panels, routing; two more of the reference's
    assert len(EMBEDDED_PNG.findall(html)) >= (6 if REFERENCE_DIR.is_dir() else 4)
    assert not re.search(r'<img[^>]*\ssrc="http', html)
    assert not re.search(r'<script[^>]*\ssrc=', html)
    assert not re.search(r'<link[^>]*\shref="http', html)


def test_the_report_hides_the_code(rendered):
    _, html = rendered
    for code in ("report.build(", "report.show(", "notebook.report_folders"):
        assert code not in html
    assert '<div class="jp-CodeMirrorEditor' not in html and 'class="highlight' not in html


def test_runs_that_did_not_finish_are_listed_and_not_counted(rendered):
    _, html = rendered
    assert "Runs not counted" in html
    assert "constant_lr/seed0 (diverged)" in html and "(unreadable)" in html


def test_every_appendix_table_is_also_a_csv_beside_the_report(rendered):
    out, html = rendered
    folder = tables_folder(out)
    assert {p.name for p in folder.glob("*.csv")} >= {"runs.csv", "arms.csv",
                                                       "comparisons.csv"}
    assert "data:text/csv;base64," in html and "<details>" in html


@needs_reference
def test_the_reference_section_derives_its_facts_from_the_files_and_labels_priors(rendered):
    _, html = rendered
    assert "short_run records max_steps 1000 and actual_steps 1000" in html
    assert "logged identical LR traces" in html
    assert "ends at 90.5% of its peak" in html
    assert "labelled priors, not findings" in html and "known from the reference's source" \
        in html
    assert "lowest" not in re.sub(r"lowest (window|\d+-eval window)", "", html.split(
        "recorded files")[1].split("Known only")[0])  # no experiment is ranked


@needs_reference
def test_the_reference_files_alone_are_still_analysed(tmp_path):
    study = sections.build([], [REFERENCE_DIR])
    assert study.analysis is None and study.reference is not None
    text = html.unescape(appendix.reference_markdown(study))
    assert "The baseline" in text and "indistinguishable from it" in text
    assert sections.answer_markdown(study).endswith("nothing to answer yet.")


def test_hypothesis_evidence_reads_the_rising_control_from_the_runs(run_dir):
    study = sections.build([run_dir])
    assert set(study.analysis.controls) == {"", "reference_lr"}
    lines = sections.extra_evidence(study, vd.LOAD_BALANCING)
    assert all("baseline" in line for line in lines)
    assert len(load_runs(run_dir).runs) == 10


def test_provenance_names_the_data_of_each_arm(run_dir):
    study = sections.build([run_dir])
    data_line = next(line for line in html.unescape(appendix.provenance_markdown(study))
                     .splitlines()
                     if line.startswith("- Data: "))
    assert data_line.startswith("- Data: synthetic") and "(fingerprint " in data_line
    for arm in ("baseline", "baseline@reference_lr", "no_lb", "no_lb@reference_lr"):
        assert re.search(rf"\b{re.escape(arm)}(,|\.|$)", data_line), (arm, data_line)


def test_failing_report_notebook_raises_naming_the_notebook_and_cell(tmp_path):
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("run_dirs = []\nreference_dirs = []")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell("raise ValueError('no runs here')")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, tmp_path / "broken_report.ipynb")

    with pytest.raises(render.ReportError,
                       match=r"broken_report\.ipynb failed in cell \d+") as failure:
        render.render_report([], notebook=tmp_path / "broken_report.ipynb",
                             out_html=tmp_path / "r.html")
    assert "ValueError: no runs here" in str(failure.value)
    kept = Path(str(failure.value).split("kept at ")[1].split(" to inspect")[0])
    assert kept.is_file()
    assert not (tmp_path / "r.html").exists()
