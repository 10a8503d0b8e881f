"""`moe-suite report`: the HTML report over folders of runs."""

import pytest
from suite_helpers import (
    suite_cli,
)


@pytest.mark.slow
def test_report_renders_html_over_the_runs(finished_suite, capsys, tmp_path):
    out, _ = finished_suite
    html = tmp_path / "report.html"
    code, stdout, _ = suite_cli(capsys, "report", "--out", out, "--html", html)
    assert code == 0 and stdout.strip() == str(html)
    assert "baseline" in html.read_text()
