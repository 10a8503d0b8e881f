"""Specification of moe_core.report: a self-contained HTML report without code, from runs."""

import re
from pathlib import Path

import nbformat
import pytest
import torch

from moe_core import report
from moe_core.config import build_config
from moe_core.results import load_runs
from moe_core.train import train

REFERENCE_DIR = Path(__file__).parents[2] / "shared/reference/exp8_original"
TINY = {"max_steps": 8}
EMBEDDED_PNG = re.compile(r'<img[^>]*\ssrc="data:image/png;base64,')


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Two tiny finished runs (baseline, no_lb), one diverged run and one corrupted file."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 25k-parameter model trains fastest on one thread
    for experiment in ("baseline", "no_lb"):
        train(build_config(experiment, "smoke", TINY), seed=0,
              out_dir=root / experiment / "seed0", progress=False)
    train(build_config("constant_lr", "smoke", {**TINY, "fault_nan_at_step": 2}), seed=0,
          out_dir=root / "constant_lr" / "seed0", progress=False)
    broken = root / "higher_dropout" / "seed0"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text('{"status": "runn')
    torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def html(run_dir, tmp_path_factory) -> str:
    references = [REFERENCE_DIR] if REFERENCE_DIR.is_dir() else []
    out = tmp_path_factory.mktemp("report") / "report.html"
    path = report.render_report([run_dir], references, out_html=out, title="Smoke report")
    assert path == out and out.is_file()
    return out.read_text()


def test_report_names_every_experiment_in_its_summary_table(html):
    for experiment in ("baseline", "no_lb", "constant_lr"):
        assert f">{experiment}<" in html
    assert "<title>Smoke report</title>" in html


def test_report_embeds_its_figures_and_fetches_nothing(html):
    # the reference section adds its own figures when the reference files are present
    assert len(EMBEDDED_PNG.findall(html)) >= (9 if REFERENCE_DIR.is_dir() else 7)
    assert not re.search(r'<img[^>]*\ssrc="http', html)
    assert not re.search(r'<script[^>]*\ssrc=', html)
    assert not re.search(r'<link[^>]*\shref="http', html)


def test_report_hides_the_code(html):
    for code in ("load_runs(", "plots.val_loss_overlay", "report.hypothesis_evidence"):
        assert code not in html
    assert '<div class="jp-CodeMirrorEditor' not in html and 'class="highlight' not in html
    assert 'id="Runs"' in html  # markdown headings are kept, rendered


def test_report_shows_runs_that_did_not_finish(html):
    assert "diverged" in html
    assert "unreadable" in html


def test_report_says_one_seed_allows_no_seed_level_claim(html):
    assert "no seed-level claim can be made" in html
    assert "Welch" in html  # the effect method is stated


@pytest.mark.skipif(not REFERENCE_DIR.is_dir(), reason="reference files absent")
def test_report_states_what_the_reference_results_cannot_support(html):
    assert "seed_run" in html
    assert "does not rank them" in html
    assert "was not short" in html


def test_hypothesis_evidence_is_built_from_the_tables(run_dir):
    results = load_runs(run_dir)
    evidence = report.hypothesis_evidence(results)
    verdicts = report.hypothesis_verdicts(evidence)

    balance = evidence["load balancing"]
    assert 0 < balance.aux_loss_fraction < 0.1  # 0.01 x a balance loss near 1, over CE ~4.8
    assert balance.max_violation >= 0
    assert balance.no_lb == "insufficient seeds"  # one seed each
    assert set(verdicts) == {"overfitting", "the LR schedule", "load balancing"}
    assert all(state in ("supported", "not supported", "inconclusive")
               for state, _ in verdicts.values())


def test_failing_report_notebook_raises_naming_the_notebook_and_cell(tmp_path):
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("run_dirs = []\nreference_dirs = []")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell("raise ValueError('no runs here')")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, tmp_path / "broken_report.ipynb")

    with pytest.raises(report.ReportError,
                       match=r"broken_report\.ipynb failed in cell \d+") as failure:
        report.render_report([], notebook=tmp_path / "broken_report.ipynb",
                             out_html=tmp_path / "r.html")
    assert "ValueError: no runs here" in str(failure.value)
    kept = Path(str(failure.value).split("kept at ")[1].split(" to inspect")[0])
    assert kept.is_file()
    assert not (tmp_path / "r.html").exists()
