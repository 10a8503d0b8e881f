"""The rendered report from real smoke runs: self-contained, no code, every section."""

import re
from pathlib import Path

import nbformat
import pytest

from moe_core import paths
from moe_core.report import render
from moe_core.report.render import tables_folder

REFERENCE_DIR = paths.CHECKOUT.parent / "shared" / "reference" / "exp8_original"


TINY = {"max_steps": 8}


EMBEDDED_PNG = re.compile(r'<img[^>]*\ssrc="data:image/png;base64,')


needs_reference = pytest.mark.skipif(not REFERENCE_DIR.is_dir(),
                                     reason="the reference's recorded files are not present")


@pytest.fixture(scope="module")
def rendered(run_dir, tmp_path_factory) -> tuple[Path, str]:
    references = [REFERENCE_DIR] if REFERENCE_DIR.is_dir() else []
    out = tmp_path_factory.mktemp("report") / "report.html"
    path = render.render_report([run_dir], references, out_html=out, title="Smoke report")
    assert path == out and out.is_file()
    return out, out.read_text()


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_report_embeds_its_figures_and_fetches_nothing(rendered):
    _, html = rendered
    # the rise figure, the LR and balancing panels, routing; two more of the reference's
    assert len(EMBEDDED_PNG.findall(html)) >= (6 if REFERENCE_DIR.is_dir() else 4)
    assert not re.search(r'<img[^>]*\ssrc="http', html)
    assert not re.search(r'<script[^>]*\ssrc=', html)
    assert not re.search(r'<link[^>]*\shref="http', html)


@pytest.mark.slow
def test_the_report_hides_the_code(rendered):
    _, html = rendered
    for code in ("report.build(", "report.show(", "notebook.report_folders"):
        assert code not in html
    assert '<div class="jp-CodeMirrorEditor' not in html and 'class="highlight' not in html


@pytest.mark.slow
def test_runs_that_did_not_finish_are_listed_and_not_counted(rendered):
    _, html = rendered
    assert "Runs not counted" in html
    assert "constant_lr/seed0 (diverged)" in html and "(unreadable)" in html


@pytest.mark.slow
def test_every_appendix_table_is_also_a_csv_beside_the_report(rendered):
    out, html = rendered
    folder = tables_folder(out)
    assert {p.name for p in folder.glob("*.csv")} >= {"runs.csv", "arms.csv",
                                                       "comparisons.csv"}
    assert "data:text/csv;base64," in html and "<details>" in html


@pytest.mark.slow
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


@pytest.mark.slow
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
