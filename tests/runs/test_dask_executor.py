"""moe-suite on Dask: each batch (an experiment's seeds) a task on a dask.distributed cluster
that runs the notebook as the local executor does, with the same results; a task that fails
fails only its runs; local workers share the cores or get one GPU each; Ctrl-C stops the runs
cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import distributed  # noqa: F401  (its config defaults, before dask.config.set)
import pytest
from suite_helpers import (
    SMOKE,
    assert_never_trained_twice,
    metrics,
    suite_cli,
    suite_process,
    wait_for_training,
)

from moe_core.errors import UserInputError
from moe_core.runs import runner
from moe_core.runs.dask_executor import LOST_WORKER_RETRIES, DaskExecutor, local_worker_specs


def specs(tmp_path, *experiments, seeds=(0,)):
    """The suite's batches (one per experiment) of these experiments' runs."""
    return runner.batch_runs(runner.plan_runs(list(experiments), list(seeds), "smoke",
                                              out_dir=tmp_path))


# what the workers run in the fast tests below, instead of the training notebook: one
# outcome per run of the batch


def _finished(spec: runner.RunSpec) -> runner.RunOutcome:
    return runner.RunOutcome(spec.experiment, spec.seed, spec.run_dir, action="ran",
                            status="completed", final_val_loss=float(os.getpid()))


def finish(batch: runner.RunBatch) -> list[runner.RunOutcome]:
    return [_finished(spec) for spec in batch.specs]


def finish_or_raise(batch: runner.RunBatch) -> list[runner.RunOutcome]:
    if batch.specs[0].experiment == "no_lb":
        raise RuntimeError("a bug in the task")
    return finish(batch)


def finish_or_die(batch: runner.RunBatch) -> list[runner.RunOutcome]:
    if batch.specs[0].experiment == "short_run":
        time.sleep(1.0)  # let the other run finish first
        os._exit(1)  # the worker process itself dies
    return finish(batch)


def die_once(batch: runner.RunBatch) -> list[runner.RunOutcome]:
    """The first attempt's worker process dies (a preempted node); the retry finishes."""
    batch.run_dir.mkdir(parents=True, exist_ok=True)
    marker = batch.run_dir / "attempts"
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if attempts == 1:
        os._exit(1)
    return finish(batch)


def report_child_malloc_trim(batch: runner.RunBatch) -> list[runner.RunOutcome]:
    """What a process the task starts (as papermill starts the kernel) sees of
    MALLOC_TRIM_THRESHOLD_, in the outcome's error field."""
    seen = subprocess.run([sys.executable, "-c", "import os; "
                           "print(os.environ.get('MALLOC_TRIM_THRESHOLD_'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return [runner.RunOutcome(spec.experiment, spec.seed, spec.run_dir, action="ran",
                              status="completed", error=seen) for spec in batch.specs]


# ---------------------------------------------------------------- the executor


@pytest.mark.slow
def test_a_runs_kernel_does_not_inherit_the_nannys_malloc_trim_threshold(tmp_path):
    # glibc then returns freed tensor memory at once and faults it in again: 80 s vs 48 s
    executor = DaskExecutor(workers=1, progress=False)
    with executor.connect() as client:
        assert list(client.run(os.getenv, "MALLOC_TRIM_THRESHOLD_").values()) == ["65536"]
    [outcome] = executor.map(report_child_malloc_trim, specs(tmp_path, "baseline"))
    assert outcome.error == "None"


@pytest.mark.slow
def test_a_task_that_raises_fails_only_its_run(tmp_path):
    executor = DaskExecutor(workers=2, progress=False)
    outcomes = {o.experiment: o for o in executor.map(
        finish_or_raise, specs(tmp_path, "baseline", "no_lb", "short_run"))}
    assert outcomes["baseline"].ok and outcomes["short_run"].ok
    raised = outcomes["no_lb"]
    assert (raised.status, raised.ok) == ("failed", False)
    assert raised.error == "the Dask task failed: RuntimeError: a bug in the task"


@pytest.mark.slow
def test_a_batch_whose_task_raises_fails_each_of_its_runs(tmp_path):
    executor = DaskExecutor(workers=2, progress=False)
    outcomes = list(executor.map(finish_or_raise, specs(tmp_path, "baseline", "no_lb",
                                                         seeds=(0, 1))))
    assert sorted((o.experiment, o.seed, o.ok) for o in outcomes) == [
        ("baseline", 0, True), ("baseline", 1, True), ("no_lb", 0, False), ("no_lb", 1, False)]


@pytest.mark.slow
def test_a_run_whose_workers_keep_dying_is_failed_after_its_retries(tmp_path):
    executor = DaskExecutor(workers=2, progress=False, lost_worker_retries=0)
    outcomes = {o.experiment: o for o in executor.map(
        finish_or_die, specs(tmp_path, "baseline", "short_run"))}
    assert outcomes["baseline"].ok
    died = outcomes["short_run"]
    assert (died.status, died.ok) == ("failed", False)
    assert died.error.startswith("the Dask workers running it died, and its retries are "
                                 "used up")
    assert "run the suite again to resume" in died.error


@pytest.mark.slow
def test_a_run_whose_worker_dies_once_is_retried_on_another_worker(tmp_path):
    lines = []
    executor = DaskExecutor(workers=2, progress=False, log=lines.append)
    [outcome] = executor.map(die_once, specs(tmp_path, "baseline"))
    assert outcome.ok and outcome.status == "completed"
    assert (tmp_path / "baseline" / "seed0" / "attempts").read_text() == "2"
    assert any(f"up to {LOST_WORKER_RETRIES} time(s)" in line for line in lines)


@pytest.mark.slow
def test_local_workers_are_single_threaded_and_each_sees_only_its_gpu(tmp_path):
    executor = DaskExecutor(workers=2, gpus=["3", "5"], progress=False)
    assert executor.threads_per_run == max(1, runner.cpu_cores() // 2)
    assert [s["options"]["env"] for s in local_worker_specs(3, ["3", "5"]).values()] == \
        [{"CUDA_VISIBLE_DEVICES": g} for g in ("3", "5", "3")]
    with executor.connect() as client:
        seen = client.run(os.getenv, "CUDA_VISIBLE_DEVICES")
        threads = client.nthreads()
    assert sorted(seen.values()) == ["3", "5"]
    assert list(threads.values()) == [1, 1]


@pytest.mark.slow
def test_an_existing_scheduler_runs_the_tasks_on_its_workers(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        executor = DaskExecutor(scheduler=cluster.scheduler_address, progress=False)
        assert executor.threads_per_run == 0  # the workers' environment decides
        outcomes = list(executor.map(finish, specs(tmp_path, "baseline", "no_lb")))
    assert sorted(o.experiment for o in outcomes) == ["baseline", "no_lb"]
    pids = {o.final_val_loss for o in outcomes}  # finish() records the worker's pid
    assert len(pids) == 1 and pids != {float(os.getpid())}


@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_user_error_naming_the_address(tmp_path):
    executor = DaskExecutor(scheduler="tcp://127.0.0.1:9", connect_timeout_s=2, progress=False)
    with pytest.raises(UserInputError, match=r"--scheduler tcp://127\.0\.0\.1:9: no Dask "
                                             r"scheduler answered within 2 s"):
        list(executor.map(finish, specs(tmp_path, "baseline")))


def test_scheduler_and_jobs_or_a_local_executor_do_not_go_together(capsys, tmp_path):
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "--out", tmp_path, *SMOKE,
                             "--scheduler", "tcp://127.0.0.1:9", "--jobs", "2")
    assert code == 2 and "--jobs 2 sets the workers of a local Dask cluster" in err
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "--out", tmp_path, *SMOKE,
                             "--executor", "local", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and "needs --executor dask" in err


# ---------------------------------------------------------------- suites on Dask


@pytest.mark.slow
def test_two_local_dask_workers_give_the_local_executors_val_loss_histories(capsys, tmp_path):
    local, on_dask = tmp_path / "local", tmp_path / "dask"
    runs = ["run", "-e", "baseline", "short_run", *SMOKE]
    assert suite_cli(capsys, *runs, "--jobs", "2", "--out", local)[0] == 0
    code, stdout, err = suite_cli(capsys, *runs, "--executor", "dask", "--jobs", "2",
                                  "--out", on_dask)
    assert code == 0
    assert "on a local Dask cluster of 2 workers" in stdout
    assert "dashboard: http://127.0.0.1:" in stdout  # bokeh is a dependency: a live dashboard
    assert "2 ran, 0 skipped, 0 busy, 0 failed" in stdout
    assert "2/2" in err  # the progress bar over finished runs
    for name in ("baseline", "short_run"):
        expected, got = metrics(local / name / "seed0"), metrics(on_dask / name / "seed0")
        assert got["status"] == "completed"
        assert got["history"]["val_losses"] == expected["history"]["val_losses"]
        assert [r["train_loss"] for r in got["evals"]] == \
            [r["train_loss"] for r in expected["evals"]]
        assert got["environment"]["cpu_threads"] == expected["environment"]["cpu_threads"]


@pytest.mark.slow
def test_ctrl_c_on_a_dask_suite_records_interrupted_and_leaves_no_kernel_or_lock(tmp_path):
    out = tmp_path / "runs"
    run_dir = out / "baseline" / "seed0"
    process = suite_process("run", "-e", "baseline", "--executor", "dask", "--jobs", "1",
                            "--out", out, "--preset", "smoke", "--set", "max_steps=20000",
                            "--set", "eval_every=4", "--no-report", own_session=True)
    wait_for_training(run_dir, process)
    os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "run the same command again" in err and "Traceback" not in err
    recorded = metrics(run_dir)
    assert recorded["status"] == "interrupted" and 0 < recorded["actual_steps"] < 20000
    assert not (run_dir / runner.HOLDER_FILE).exists()
    deadline = time.monotonic() + 20  # orphans notice their parent is gone within seconds
    while processes_of_this_module() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_of_this_module() == []  # no worker, no kernel left behind


def processes_of_this_module() -> list[str]:
    """The command lines of the processes whose environment holds this module's data cache,
    other than pytest and its children: what this module's suite processes left behind."""
    mark = f"MOE_CORE_CACHE={os.environ['MOE_CORE_CACHE']}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if os.getpid() not in (int(proc.name), parent) and \
                    mark in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            pass
    return found


@pytest.mark.slow
def test_a_local_and_a_dask_suite_on_one_folder_never_train_a_run_twice(tmp_path):
    out = tmp_path / "runs"
    args = ["run", "-e", "baseline", "short_run", "--out", out, *SMOKE]
    first = suite_process(*args, "--executor", "dask", "--jobs", "2", own_session=True)
    time.sleep(1.0)
    assert_never_trained_twice(out, first, suite_process(*args, own_session=True))
