"""The report's appendix: provenance and the reference's files."""

import html
import json
import re

import pytest

from moe_core import paths
from moe_core.analysis import calibration as cal
from moe_core.analysis import confirmation as conf
from moe_core.report import appendix, sections

REFERENCE_DIR = paths.CHECKOUT.parent / "shared" / "reference" / "exp8_original"


TINY = {"max_steps": 8}


needs_reference = pytest.mark.skipif(not REFERENCE_DIR.is_dir(),
                                     reason="the reference's recorded files are not present")


@needs_reference
def test_the_reference_files_alone_are_still_analysed(tmp_path):
    study = sections.build([], [REFERENCE_DIR])
    assert study.analysis is None and study.reference is not None
    text = html.unescape(appendix.reference_markdown(study))
    assert "The baseline" in text and "indistinguishable from it" in text
    assert sections.answer_markdown(study).endswith("nothing to answer yet.")


@pytest.mark.slow
def test_provenance_names_the_data_of_each_arm(run_dir):
    study = sections.build([run_dir])
    data_line = next(line for line in html.unescape(appendix.provenance_markdown(study))
                     .splitlines()
                     if line.startswith("- Data: "))
    assert data_line.startswith("- Data: synthetic") and "(fingerprint " in data_line
    for arm in ("baseline", "baseline@reference_lr", "no_lb", "no_lb@reference_lr"):
        assert re.search(rf"\b{re.escape(arm)}(,|\.|$)", data_line), (arm, data_line)


def test_the_calibration_table_splits_rows_above_their_bound_by_simulation_noise(
        tmp_path, monkeypatch):
    rows = [{"scenario": "null (1000 studies)", "indicator": "an effect", "rate": 0.09,
             "what it should be": "<= 0.05 (family-wise)"},
            {"scenario": "null", "indicator": "a <leader>", "rate": 0.06,
             "what it should be": "<= 0.05"},
            {"scenario": "null", "indicator": "any", "rate": 0.01, "what it should be": "<= 0.05"}]
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"command": "python -m x", "studies": 200, "rows": rows}))
    monkeypatch.setattr(appendix, "CALIBRATION_TABLE", table)
    text = appendix.calibration_table()["markdown"]
    beyond, within = (text.split("**Rows above their bound beyond simulation noise**")[1]
                      .split("**Rows above their bound, not distinguishable from it"))
    assert "an effect" in beyond and "90 of 1000 studies" in beyond and "leader" not in beyond
    assert "Holm-corrected over the 3 bounded rates" in beyond
    within, held = within.split("**Within tolerance**")
    assert "12 of 200 studies" in within and "whether each is within tolerance" in within
    assert "any" not in beyond + within and "<leader>" not in text
    # 0.06 of 200 (upper limit 0.095) and 0.09 of 1000 (0.106) exceed 1.5 x 0.05; 0.01 of
    # 200 does not (0.031)
    assert "1 of 3 bounded rates are within tolerance" in held
    assert html.unescape(text).count("| 0.060 | <= 0.05 | 0.095 (over 0.075) |") == 1
    assert "upper limit 0.106 against 0.075" in held and "upper limit 0.095" in held
    assert "&#60;leader&#62;" in held


def test_a_bound_holds_when_its_upper_limit_is_within_bradleys_tolerance():
    """58 of 1000 (5.8%, within simulation noise of 5%) is within tolerance: its one-sided
    95% upper limit is 0.072, under 0.075; 11 of 210 (5.2%) is not shown to be: 0.085. A
    scenario extended after a first look spends half the error rate on each look: 128 of
    2000 is within at 95% (0.0737) and not at 97.5% (0.0756)."""
    def row(rate, n, extra=""):
        return {"scenario": f"null ({n} studies{extra})", "indicator": "an effect",
                "rate": rate, "what it should be": "<= 0.05"}

    assert "1 of 1 bounded rates are within tolerance." in appendix._holding(
        [row(0.058, 1000)], 200)
    short = appendix._holding([row(11 / 210, 210), row(0.058, 1000)], 200)
    assert "1 of 2 bounded rates are within tolerance; not shown within it" in short
    assert "(11 of 210 studies), upper limit 0.085" in short and "1000 studies)" not in short
    assert appendix._holding([{**row(0.2, 10), "what it should be": "power"}], 200) == ""
    plain = cal.holding(row(0.064, 2000), 200)
    extended = cal.holding(row(0.064, 2000, f", {cal.EXTENDED}"), 200)
    assert plain.studies == extended.studies == 2000 and plain.hits == 128
    assert plain.within and not extended.within and extended.confidence == 0.975
    assert plain.upper < 0.075 < extended.upper


def test_the_fresh_stream_confirmation_is_quoted_only_beside_the_table_it_was_made_from(
        tmp_path, monkeypatch):
    stored = {"studies": 200, "noise": {"wander_sd": 0.017}, "command": "python -m x", "rows": [
        {"scenario": "null (1000 studies)", "indicator": "an effect", "rate": 0.03,
         "what it should be": "<= 0.05"}]}
    table = tmp_path / "table.json"
    table.write_text(json.dumps(stored))
    rows = [conf.Confirmed("null <b>: more", "an effect on <i>x</i>", 0.05, (20, 22),
                           (500, 500)),
            conf.Confirmed(conf.PLAIN, "any explanation supported", 0.05, (2, 70), (500, 500))]
    confirmation = tmp_path / "confirmation.json"
    confirmation.write_text(json.dumps({
        "command": "python -m moe_core.analysis.confirmation --table a_b.json",
        "table": conf.table_digest(stored),
        "rows": [r.record() for r in rows],
        "homogeneity": conf.homogeneity(
            [conf.Confirmed(conf.PLAIN, r.indicator, 0.05, r.hits, r.studies)
             for r in rows]).to_dict("records")}))
    monkeypatch.setattr(appendix, "CALIBRATION_TABLE", table)
    monkeypatch.setattr(appendix, "CALIBRATION_CONFIRMATION", confirmation)
    text = appendix.calibration_table()["markdown"].split("**Confirmed on fresh streams**")[1]
    assert "1 of 2 bounded rows within tolerance" in text
    # which nulls were redrawn, named to their first colon
    assert html.unescape(text).count("redrawn on streams no table uses: null <b>, the plain "
                                     "null.") == 1
    # the row that is not: 72 of 1000, its streams 0.4% and 14%
    assert "any explanation supported under" in text and "(72 of 1000)" in text
    assert "streams differ beyond binomial noise" in text
    assert "the table's Clopper-Pearson limits, which assume one rate per row, are too " \
           "narrow" in text
    assert "<i>" not in text and "<b>" not in text
    # the command is escaped text, not a code span (which would show the entities)
    assert "`" not in text
    assert "python -m moe_core.analysis.confirmation --table a_b.json" in html.unescape(text)
    # the same noise, another table: not quoted
    table.write_text(json.dumps({**stored, "rows": stored["rows"] * 2}))
    assert "Confirmed on fresh streams" not in appendix.calibration_table()["markdown"]


def _margin_table(tmp_path, monkeypatch):
    """A one-row table (the margin row at 12 of 200) as the report's, no follow-up beside it."""
    stored = {"studies": 200, "noise": {}, "rows": [
        {"scenario": "m (200 studies)", "indicator": "called persisting", "rate": 0.06,
         "what it should be": "<= 0.05"}]}
    table = tmp_path / "table.json"
    table.write_text(json.dumps(stored))
    monkeypatch.setattr(appendix, "CALIBRATION_TABLE", table)
    for name in ("CALIBRATION_CONFIRMATION", "CALIBRATION_MARGIN", "CALIBRATION_SECOND_STAGE"):
        monkeypatch.setattr(appendix, name, tmp_path / "absent.json")
    return stored, table


def test_the_post_hoc_follow_up_is_labelled_and_quoted_beside_its_own_table(
        tmp_path, monkeypatch):
    stored, table = _margin_table(tmp_path, monkeypatch)
    row = conf.Confirmed("the margin <of> persists", "called persisting", 0.05,
                         (26, 26, 18, 23, 20, 26, 17, 25), (500,) * 8)
    margin = tmp_path / "margin.json"
    margin.write_text(json.dumps({"table": conf.table_digest(stored), **row.record()}))
    monkeypatch.setattr(appendix, "CALIBRATION_MARGIN", margin)
    text = appendix.calibration_table()["markdown"].split("**Post hoc**")[1]
    assert "added after this table was seen" in text and "does not change the outcome" in text
    assert f"181 of 4000 studies (0.045), upper limit {row.upper:.3f} against 0.075." in text
    assert "<of>" not in text and "the margin &#60;of&#62; persists" in text
    table.write_text(json.dumps({**stored, "rows": stored["rows"] * 2}))  # another table
    assert "Post hoc" not in appendix.calibration_table()["markdown"]


def test_stage_two_is_quoted_beside_its_own_table_with_the_outcome_recomputed(
        tmp_path, monkeypatch):
    stored, table = _margin_table(tmp_path, monkeypatch)

    def record(hits, judged):
        return {**conf.Confirmed("null <b>: more", "an effect on <i>x</i>", 0.05, (hits,) * 8,
                                 (250,) * 8, 0.975).record(), "judged": judged,
                "streams": [4001, 4008]}

    second = tmp_path / "second.json"
    second.write_text(json.dumps({
        "command": "python -m moe_core.analysis.second_stage --table a_b.json",
        "table": conf.table_digest(stored),
        "burnt": {"streams": [3001, 3008], "rows": {"an effect on <i>x</i>": [4, 163]}},
        "judged": [{"scenario": "null <b>: more", "indicator": "an effect on <i>x</i>",
                    "why": "stage 1"}],
        "rows": [record(11, "stage 1"), {**record(20, None), "indicator": "y"}],
        "outcome": {"met": True}}))  # what the file says is not what the report says
    monkeypatch.setattr(appendix, "CALIBRATION_SECOND_STAGE", second)
    text = appendix.calibration_table()["markdown"].split("**Stage 2**")[1]
    assert "1 of 1 within tolerance" in text and "Streams 3001-3008 were burnt" in text
    assert "printed their rates (an effect on <i>x</i> 4 of 163)" in html.unescape(text)
    assert "decided after those rates were seen" in text
    # the judged row, in the table; the other is redrawn alongside
    assert "| not within at stage 1 | 4001-4008 | 88 / 2000 | 0.044 |" in text
    assert text.count("| not within") == 1
    # 20 of 250 on every stream (8%): beyond noise against 5%, so the plan is not met
    assert "some rate beyond noise" in text and "**not met**" in text
    assert "<i>" not in text and "<b>" not in text and "`" not in text
    assert "python -m moe_core.analysis.second_stage --table a_b.json" in html.unescape(text)
    second.write_text(json.dumps({**json.loads(second.read_text()),
                                  "rows": [record(11, "stage 1"),
                                           {**record(12, None), "indicator": "y"}]}))
    assert "none beyond noise" in appendix.calibration_table()["markdown"]
    assert "**met**" in appendix.calibration_table()["markdown"]
    # beside a confirmation of this table: the first plan's outcome, counted (the table's
    # 12 of 200, upper limit 0.095, and the confirmation's row not within)
    confirmation = tmp_path / "confirmation.json"
    confirmation.write_text(json.dumps({"table": conf.table_digest(stored), "rows": [
        conf.Confirmed("n", "a", 0.05, (40, 40), (500, 500)).record()]}))
    monkeypatch.setattr(appendix, "CALIBRATION_CONFIRMATION", confirmation)
    assert "the first (docs/calibration_plan.md: every row of the table and of the " \
           "confirmation within tolerance) was not met (1 of the table's rows and 1 of the " \
           "confirmation's not shown within it" in \
           html.unescape(appendix.calibration_table()["markdown"])
    # a judged row the file lacks is not within: not met
    second.write_text(json.dumps({**json.loads(second.read_text()), "rows": [
        {**record(12, None), "indicator": "y"}]}))
    text = appendix.calibration_table()["markdown"]
    assert "0 of 1 within tolerance" in text and "| not drawn |" in text
    assert "**not met**" in text
    # a trial of the code is never quoted
    second.write_text(json.dumps({**json.loads(second.read_text()), "trial": "--counted 2"}))
    assert "Stage 2" not in appendix.calibration_table()["markdown"]
    table.write_text(json.dumps({**stored, "rows": stored["rows"] * 2}))  # another table
    assert "Stage 2" not in appendix.calibration_table()["markdown"]
