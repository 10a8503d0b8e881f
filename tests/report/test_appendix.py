"""The report's appendix: provenance and the reference's files."""

import html
import json
import re

import pytest

from moe_core import paths
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
    assert "12 of 200 studies" in within and "nor that the bound holds" in within
    assert "<leader>" not in text and "any" not in beyond + within
