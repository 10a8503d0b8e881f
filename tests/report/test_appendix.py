"""The report's appendix: provenance and the reference's files."""

import html
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
