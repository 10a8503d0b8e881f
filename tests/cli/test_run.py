"""`moe-suite run`: every configuration validated before any run, finished runs skipped, failures
recorded while the others go on, one lock per run, Ctrl-C that loses nothing."""

import shutil
import signal
import time

import nbformat
import pytest
from suite_helpers import (
    SMOKE,
    assert_never_trained_twice,
    hold_lock,
    metrics,
    suite_cli,
    suite_process,
    wait_for_training,
)

from moe_core.cli import run as cli_run
from moe_core.config import run_config
from moe_core.runs import runner

NOTEBOOK = runner.TRAIN_NOTEBOOK.name


def test_unknown_experiment_exits_2_with_did_you_mean_before_anything_runs(capsys, tmp_path):
    out = tmp_path / "runs"
    code, stdout, err = suite_cli(capsys, "run", "-e", "baseline", "no_lbb", "--out", out, *SMOKE)
    assert code == 2
    assert err.startswith("moe-suite: error: unknown experiment 'no_lbb'")
    assert "did you mean 'no_lb'?" in err and "available:" in err
    assert "Traceback" not in err and stdout == ""
    assert not out.exists()


def test_bad_override_is_the_config_error_before_anything_runs(capsys, tmp_path):
    out = tmp_path / "runs"
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "short_run", "--out", out, *SMOKE,
                             "--set", "dropuot=0.2")
    assert code == 2 and "unknown key 'dropuot'; did you mean 'dropout'?" in err
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "--out", out, *SMOKE,
                             "--set", "dropout=1.5")
    assert code == 2 and "overrides: key 'dropout' = 1.5" in err
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "--out", out, *SMOKE,
                             "--set", "dropout")
    assert code == 2 and "expected key=value" in err
    assert not out.exists()


def test_unknown_suite_and_bad_jobs_are_user_errors(capsys, tmp_path):
    code, _, err = suite_cli(capsys, "run", "--suite", "quik", "--out", tmp_path, *SMOKE)
    assert code == 2 and "unknown suite 'quik'; did you mean 'quick'?" in err
    code, _, err = suite_cli(capsys, "run", "--quick", "--jobs", "0", "--out", tmp_path, *SMOKE)
    assert code == 2 and "--jobs 0" in err


def test_a_run_locked_by_another_suite_is_busy_not_failed_and_not_executed(capsys, tmp_path):
    out = tmp_path / "runs"
    holder = hold_lock(out / "baseline" / "seed0")  # the folder the suite plans for it
    try:
        code, stdout, _ = suite_cli(capsys, "run", "-e", "baseline", "--out", out, *SMOKE)
    finally:
        holder.kill()
        holder.wait()
    assert code == 0
    assert "baseline seed0: busy" in stdout and f"pid {holder.pid}" in stdout
    assert "1 busy, 0 failed" in stdout
    assert not (out / "baseline" / "seed0" / NOTEBOOK).exists()


@pytest.mark.slow
def test_run_creates_each_run_folder_with_executed_notebook_and_finished_metrics(
        finished_suite):
    out, code = finished_suite
    assert code == 0
    for name in ("baseline", "short_run"):
        run_dir = out / name / "seed0"
        recorded = metrics(run_dir)
        assert recorded["status"] == "completed" and recorded["seed"] == 0
        assert recorded["config"]["name"] == name and recorded["config"]["preset"] == "smoke"
        nb = nbformat.read(run_dir / NOTEBOOK, as_version=4)
        assert nb.metadata["papermill"]["parameters"]["experiment"] == name
        assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
        assert not (run_dir / runner.HOLDER_FILE).exists()
    assert metrics(out / "short_run" / "seed0")["actual_steps"] == 4  # 60% of 8 steps


@pytest.mark.slow
def test_parallel_runs_get_a_share_of_the_cores(finished_suite):
    out, _ = finished_suite
    for name in ("baseline", "short_run"):
        env = metrics(out / name / "seed0")["environment"]
        assert env["cpu_threads"] == runner.threads_per_run(2)


@pytest.mark.slow
def test_second_identical_run_skips_finished_runs_without_reexecuting(finished_suite, capsys):
    out, _ = finished_suite
    notebooks = [out / n / "seed0" / NOTEBOOK for n in ("baseline", "short_run")]
    before = [p.stat().st_mtime_ns for p in notebooks]
    code, stdout, _ = suite_cli(capsys, "run", "-e", "baseline", "short_run", "--out", out, *SMOKE)
    assert code == 0
    assert "baseline seed0: skipped" in stdout and "short_run seed0: skipped" in stdout
    assert "0 ran, 2 skipped" in stdout
    assert [p.stat().st_mtime_ns for p in notebooks] == before


@pytest.mark.slow
def test_run_renders_the_report_of_its_folder_unless_no_report(finished_suite, capsys,
                                                               monkeypatch, tmp_path):
    out, _ = finished_suite
    calls = []
    monkeypatch.setattr(cli_run, "write_report", lambda dirs, html=None: calls.append(dirs) or
                        tmp_path / "r.html")
    args = ["run", "-e", "baseline", "--out", out, *SMOKE]
    suite_cli(capsys, *args)
    assert calls == []
    code, stdout, _ = suite_cli(capsys, *[a for a in args if a != "--no-report"])
    assert code == 0 and calls == [[out]] and f"report: {tmp_path / 'r.html'}" in stdout


@pytest.mark.slow
def test_force_reruns_finished_runs_and_a_seed_list_runs_exactly_those_seeds(
        finished_suite, capsys, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(finished_suite[0], out)
    notebook = out / "short_run" / "seed0" / NOTEBOOK
    before = notebook.stat().st_mtime_ns
    code, stdout, _ = suite_cli(capsys, "run", "-e", "short_run", "--seeds", "0,3", "--force",
                                "--jobs", "2", "--out", out, *SMOKE)
    assert code == 0 and "2 ran, 0 skipped" in stdout
    assert notebook.stat().st_mtime_ns > before
    assert sorted(p.name for p in (out / "short_run").iterdir()) == ["seed0", "seed3"]
    assert [metrics(out / "short_run" / s)["seed"] for s in ("seed0", "seed3")] == [0, 3]


@pytest.mark.slow
def test_a_diverged_run_is_marked_while_the_others_complete_and_exit_code_is_1(
        capsys, tmp_path):
    out = tmp_path / "runs"
    # the NaN at step 6 hits baseline (8 steps) but not short_run (4 steps)
    code, stdout, _ = suite_cli(capsys, "run", "-e", "baseline", "short_run", "--jobs", "2",
                                "--out", out, *SMOKE, "--set", "fault_nan_at_step=6")
    assert code == 1
    assert metrics(out / "baseline" / "seed0")["status"] == "diverged"
    assert metrics(out / "short_run" / "seed0")["status"] == "completed"
    table = stdout.split("experiment", 1)[1]
    assert "diverged" in table and "completed" in table
    assert "FAILED baseline seed0: status diverged" in stdout


@pytest.mark.slow
def test_a_failing_notebook_is_recorded_failed_while_the_others_complete(capsys, tmp_path):
    out = tmp_path / "runs"
    # 6 documents leave baseline too few train sequences for a batch of 16; fresh_data has
    # twenty times the documents and trains (val_fraction set for both: fresh_data's own
    # 0.005 of 120 documents would leave its val split shorter than one window)
    code, stdout, _ = suite_cli(capsys, "run", "-e", "baseline", "fresh_data", "--jobs", "2",
                                "--out", out, *SMOKE, "--set", "num_documents=6",
                                "--set", "batch_size=16", "--set", "val_fraction=0.1")
    assert code == 1
    failed = metrics(out / "baseline" / "seed0")
    assert failed["status"] == "failed" and "fewer than batch_size" in failed["error"]
    assert (failed["experiment"], failed["seed"]) == ("baseline", 0)
    assert failed["config_hash"] == run_config.build_config(
        "baseline", "smoke", {"max_steps": 8, "eval_every": 4, "num_documents": 6,
                              "batch_size": 16, "val_fraction": 0.1}).config_hash()
    nb = nbformat.read(out / "baseline" / "seed0" / NOTEBOOK, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0].ename == "UserInputError"
    assert metrics(out / "fresh_data" / "seed0")["status"] == "completed"
    assert "FAILED baseline seed0: UserInputError" in stdout


@pytest.mark.slow
def test_one_execution_trains_an_experiments_seeds_and_a_failing_one_stops_only_itself(
        capsys, tmp_path):
    out = tmp_path / "runs"
    # seed 1's folder holds a checkpoint that cannot be loaded: its training raises
    (out / "baseline" / "seed1").mkdir(parents=True)
    (out / "baseline" / "seed1" / "checkpoint.pt").write_text("not a checkpoint")
    code, stdout, _ = suite_cli(capsys, "run", "-e", "baseline", "--seeds", "3", "--out", out,
                                *SMOKE)
    assert code == 1
    assert "baseline seed0, seed1, seed2: running in turn in one notebook execution" in stdout
    assert "baseline seed2: running -> " in stdout  # after the failure, a fresh execution
    status = {k: metrics(out / "baseline" / f"seed{k}")["status"] for k in range(3)}
    assert status == {0: "completed", 1: "failed", 2: "completed"}
    assert "cannot be loaded as a checkpoint" in metrics(out / "baseline" / "seed1")["error"]
    first, failed, fresh = (nbformat.read(out / "baseline" / f"seed{k}" / NOTEBOOK,
                                          as_version=4) for k in range(3))
    # the first execution trained seed 0 and failed on seed 1: both keep its notebook
    assert first.metadata["papermill"]["parameters"]["seeds"] == [0, 1, 2]
    assert failed == first
    assert fresh.metadata["papermill"]["parameters"]["seeds"] == [2]
    for k in (0, 2):  # each run's own figures, in its folder
        assert (out / "baseline" / f"seed{k}" / "metrics_plot.png").is_file()


@pytest.mark.slow
def test_two_concurrent_suites_on_one_folder_never_train_a_run_twice(tmp_path):
    out = tmp_path / "runs"
    args = ["run", "-e", "baseline", "short_run", "--out", out, *SMOKE]
    first = suite_process(*args)
    time.sleep(1.0)  # both are importing and planning while the first takes its first lock
    assert_never_trained_twice(out, first, suite_process(*args))


@pytest.mark.slow
def test_ctrl_c_interrupts_the_run_and_exits_130_saying_how_to_resume(tmp_path):
    out = tmp_path / "runs"
    run_dir = out / "baseline" / "seed0"
    process = suite_process("run", "-e", "baseline", "--out", out, "--preset", "smoke",
                            "--set", "max_steps=20000", "--set", "eval_every=4", "--no-report")
    wait_for_training(run_dir, process, timeout_s=180)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "run the same command again" in err and "Traceback" not in err
    recorded = metrics(run_dir)
    assert recorded["status"] == "interrupted" and 0 < recorded["actual_steps"] < 20000
    assert not (run_dir / runner.HOLDER_FILE).exists()
