"""`moe-suite view`: the results table in the terminal."""

import pytest
from suite_helpers import (
    suite_cli,
)


@pytest.mark.slow
def test_view_prints_the_results_table(finished_suite, capsys):
    out, _ = finished_suite
    code, stdout, _ = suite_cli(capsys, "view", "--out", out)
    assert code == 0
    header = stdout.splitlines()[0]
    assert "arm" in header and "final loss" in header and "rise (nats)" in header
    assert "baseline" in stdout and "short_run" in stdout


def test_view_of_a_missing_folder_is_a_user_error(capsys, tmp_path):
    code, _, err = suite_cli(capsys, "view", "--out", tmp_path / "nowhere")
    assert code == 2 and "--out" in err and "nowhere: no such folder" in err
