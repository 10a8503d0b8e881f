"""moe-suite: validate everything first, execute the training notebook once per (experiment,
seed), skip finished runs, record failures without stopping, and never train a run twice."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from suite_helpers import (
    SMOKE,
    assert_never_trained_twice,
    metrics,
    suite_cli,
    suite_process,
    wait_for_training,
)

from moe_core.cli import run as cli_run
from moe_core.cli.suite import main as suite_cli_main
from moe_core.config import catalog, run_config
from moe_core.config.run_config import load_experiment
from moe_core.errors import UserInputError
from moe_core.runs import executors, jupyter_kernel, runner

REFERENCE_NINE = ["baseline", "early_stopping", "constant_lr", "lower_lb_weight", "no_lb",
                  "higher_dropout", "linear_decay", "slower_min_lr", "short_run"]
NOTEBOOK = runner.TRAIN_NOTEBOOK.name


HOLD_LOCK = """
import sys, time
from moe_core.runs.runner import RunLock
lock = RunLock(sys.argv[1])
assert lock.acquire() is None
print("held", flush=True)
time.sleep(120)
"""


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process (another suite) holding the run's lock until it is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture(scope="module")
def finished_suite(tmp_path_factory, data_cache):
    """baseline and short_run, seed 0, trained two at a time."""
    out = tmp_path_factory.mktemp("suite") / "runs"
    code = suite_cli_main(["run", "-e", "baseline", "short_run", "--jobs", "2", "--out", str(out),
                       *SMOKE])
    return out, code


# ---------------------------------------------------------------- list and validation


def test_list_shows_the_nine_reference_experiments_with_descriptions_and_changes(capsys):
    code, out, _ = suite_cli(capsys, "list")
    assert code == 0
    for name in REFERENCE_NINE:
        description = load_experiment(name)["description"]
        assert f"{name}" in out and description in out
    assert "changes: lr_schedule=\"constant\"" in out
    assert "changes: load_balancing_weight=0.001" in out
    # the listing follows the reference order, baseline first
    assert out.index("baseline") < out.index("early_stopping") < out.index("short_run")


def test_list_shows_the_named_suites(capsys):
    _, out, _ = suite_cli(capsys, "list")
    suites = out.split("Suites", 1)[1]
    assert "quick" in suites and "baseline, early_stopping, lower_lb_weight, no_lb" in suites
    assert "reference" in suites and "(9)" in suites


def test_seed_count_means_seeds_from_zero_and_a_comma_list_means_exactly_those():
    assert catalog.parse_seeds("3") == [0, 1, 2]
    assert catalog.parse_seeds("0,4,7") == [0, 4, 7]
    assert catalog.parse_seeds("5,") == [5]
    for bad in ("0", "-1", "a", "1,x", ""):
        with pytest.raises(UserInputError, match="--seeds"):
            catalog.parse_seeds(bad)


def test_seeds_two_plans_seed0_and_seed1_folders_and_0_3_plans_seed0_and_seed3(tmp_path):
    def folders(seeds):
        specs = runner.plan_runs(["baseline"], catalog.parse_seeds(seeds), "smoke",
                                 out_dir=tmp_path)
        return [s.run_dir.relative_to(tmp_path).as_posix() for s in specs]

    assert folders("2") == ["baseline/seed0", "baseline/seed1"]
    assert folders("0,3") == ["baseline/seed0", "baseline/seed3"]


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


def test_all_and_quick_are_the_suites_of_those_names():
    suites = catalog.load_suites()
    assert catalog.resolve_experiments(suite="quick") == suites["quick"]
    assert set(REFERENCE_NINE) <= set(catalog.resolve_experiments(suite="all"))
    assert catalog.resolve_experiments(suite="reference") == REFERENCE_NINE


def test_parallel_runs_share_the_cores_instead_of_oversubscribing():
    assert runner.threads_per_run(1, cores=16) == 0  # one run at a time: torch's default
    assert runner.threads_per_run(2, cores=2) == 1
    assert runner.threads_per_run(4, cores=16) == 4
    assert runner.threads_per_run(3, cores=2) == 1


# ---------------------------------------------------------------- kernel


def test_kernel_runs_the_suites_own_python():
    name = jupyter_kernel.kernel_for_this_python()
    argv = KernelSpecManager().get_kernel_spec(name).argv
    assert jupyter_kernel._runs_this_python(argv)


def test_a_python3_kernel_of_another_environment_is_replaced_by_one_for_this_python(tmp_path):
    foreign = tmp_path / "user" / "kernels" / "python3"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(json.dumps({
        "argv": ["/opt/other-env/bin/python", "-m", "ipykernel_launcher", "-f",
                 "{connection_file}"], "display_name": "other", "language": "python"}))
    prefix = tmp_path / "prefix"
    ksm = KernelSpecManager(kernel_dirs=[str(foreign.parent),
                                         str(prefix / "share" / "jupyter" / "kernels")])
    name = jupyter_kernel.find_or_install_kernel(ksm, install_prefix=str(prefix))
    assert name.startswith("moe-core-")
    assert ksm.get_kernel_spec(name).argv[0] == sys.executable
    # found now
    assert jupyter_kernel.find_or_install_kernel(ksm, install_prefix=str(prefix)) == name


# ---------------------------------------------------------------- locks and failure records


def test_a_live_lock_makes_the_run_busy_until_released(tmp_path):
    first, second = runner.RunLock(tmp_path), runner.RunLock(tmp_path)
    assert first.acquire() is None
    assert f"pid {os.getpid()}" in second.acquire()
    first.release()
    assert not (tmp_path / runner.HOLDER_FILE).exists()
    assert second.acquire() is None
    second.release()


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path):
    holder = hold_lock(tmp_path)
    busy = runner.RunLock(tmp_path).acquire()
    assert busy is not None and f"pid {holder.pid}" in busy
    holder.kill()  # SIGKILL: no cleanup runs; the lock file and its holder note stay
    holder.wait()
    assert (tmp_path / runner.LOCK_FILE).exists()
    lock = runner.RunLock(tmp_path)
    assert lock.acquire() is None  # the operating system dropped the dead process's lock
    lock.release()


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


def test_a_folder_holding_another_configs_run_is_refused_before_anything_runs(tmp_path):
    [spec] = runner.plan_runs(["baseline"], [0], "smoke", out_dir=tmp_path)
    spec.run_dir.mkdir(parents=True)
    finished = {"status": "completed", "config_hash": "0123", "seed": 0}
    (spec.run_dir / "metrics.json").write_text(json.dumps(finished))
    with pytest.raises(UserInputError, match=r"1 run folder\(s\) hold a run of another "
                                             r"config.*config 0123.*--force"):
        runner.plan_runs(["baseline"], [0], "smoke", out_dir=tmp_path)
    assert json.loads((spec.run_dir / "metrics.json").read_text()) == finished
    assert runner.plan_runs(["baseline"], [0], "smoke", out_dir=tmp_path, force=True)


def test_record_failure_marks_a_run_failed_keeping_what_training_recorded(tmp_path):
    [spec] = runner.plan_runs(["no_lb"], [2], "smoke", out_dir=tmp_path)
    spec.run_dir.mkdir(parents=True)
    written = runner.record_failure(spec, None, "KeyError: 'x'")
    assert metrics(spec.run_dir) == written
    assert written["status"] == "failed" and written["error"] == "KeyError: 'x'"
    assert (written["experiment"], written["seed"]) == ("no_lb", 2)
    assert written["config_hash"] == spec.config.config_hash()
    running = {"status": "running", "history": {"steps": [4]}, "actual_steps": 4,
               "config_hash": spec.config.config_hash(), "seed": 2}
    kept = runner.record_failure(spec, running, "DeadKernelError: kernel died")
    assert kept["status"] == "failed" and kept["history"] == {"steps": [4]}
    # a finished run of another config in the folder is not passed off as this one's
    other = {**running, "status": "completed", "config_hash": "0123", "actual_steps": 80}
    replaced = runner.record_failure(spec, other, "DeadKernelError: kernel died")
    assert replaced["actual_steps"] == 0 and replaced["config_hash"] == spec.config.config_hash()


# ---------------------------------------------------------------- running


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


def test_parallel_runs_get_a_share_of_the_cores(finished_suite):
    out, _ = finished_suite
    for name in ("baseline", "short_run"):
        env = metrics(out / name / "seed0")["environment"]
        assert env["cpu_threads"] == runner.threads_per_run(2)


def test_second_identical_run_skips_finished_runs_without_reexecuting(finished_suite, capsys):
    out, _ = finished_suite
    notebooks = [out / n / "seed0" / NOTEBOOK for n in ("baseline", "short_run")]
    before = [p.stat().st_mtime_ns for p in notebooks]
    code, stdout, _ = suite_cli(capsys, "run", "-e", "baseline", "short_run", "--out", out, *SMOKE)
    assert code == 0
    assert "baseline seed0: skipped" in stdout and "short_run seed0: skipped" in stdout
    assert "0 ran, 2 skipped" in stdout
    assert [p.stat().st_mtime_ns for p in notebooks] == before


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


def test_view_prints_the_results_table(finished_suite, capsys):
    out, _ = finished_suite
    code, stdout, _ = suite_cli(capsys, "view", "--out", out)
    assert code == 0
    header = stdout.splitlines()[0]
    assert "arm" in header and "final loss" in header and "rise (nats)" in header
    assert "baseline" in stdout and "short_run" in stdout


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


def test_the_local_executor_shows_a_bar_over_finished_failed_and_running_runs(capsys,
                                                                            tmp_path):
    specs = runner.plan_runs(["baseline", "no_lb"], [0, 1], "smoke", out_dir=tmp_path)

    def fail_no_lb(spec):
        status = "failed" if spec.experiment == "no_lb" else "completed"
        return runner.RunOutcome(spec.experiment, spec.seed, spec.run_dir, "ran", status)

    outcomes = list(executors.LocalExecutor(2, progress=True).map(fail_no_lb, specs))
    assert len(outcomes) == 4
    err = capsys.readouterr().err
    assert "runs: 100%" in err and "4/4" in err and "failed=2" in err


def test_view_of_a_missing_folder_is_a_user_error(capsys, tmp_path):
    code, _, err = suite_cli(capsys, "view", "--out", tmp_path / "nowhere")
    assert code == 2 and "--out" in err and "nowhere: no such folder" in err


@pytest.mark.slow
def test_report_renders_html_over_the_runs(finished_suite, capsys, tmp_path):
    out, _ = finished_suite
    html = tmp_path / "report.html"
    code, stdout, _ = suite_cli(capsys, "report", "--out", out, "--html", html)
    assert code == 0 and stdout.strip() == str(html)
    assert "baseline" in html.read_text()


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
