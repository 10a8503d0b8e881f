"""`moe-suite export`: the run, arm and comparison tables as files."""

import pytest
from suite_helpers import (
    suite_cli,
)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_writes_the_run_arm_and_comparison_tables_with_their_noise(
        finished_suite, capsys, tmp_path, fmt):
    import pandas as pd

    out, _ = finished_suite
    code, stdout, _ = suite_cli(capsys, "export", "--out", out, "--to", tmp_path, "--format", fmt)
    assert code == 0
    read = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[fmt]
    runs, arms = read(tmp_path / f"runs.{fmt}"), read(tmp_path / f"arms.{fmt}")
    assert sorted(runs["arm"]) == ["baseline", "short_run"]
    assert {"end_loss", "end_loss_se", "rise", "rise_se", "rise_ci_low", "rise_p_adjusted"} \
        <= set(arms.columns)
    assert (tmp_path / f"comparisons.{fmt}").is_file()
    assert str(tmp_path / f"arms.{fmt}") in stdout
