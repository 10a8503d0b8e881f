"""One run's plan, lock, cores and failure record."""

import json
import os

import pytest
from suite_helpers import (
    hold_lock,
    metrics,
)

from moe_core.config import catalog
from moe_core.errors import UserInputError
from moe_core.runs import runner


def test_seeds_two_plans_seed0_and_seed1_folders_and_0_3_plans_seed0_and_seed3(tmp_path):
    def folders(seeds):
        specs = runner.plan_runs(["baseline"], catalog.parse_seeds(seeds), "smoke",
                                 out_dir=tmp_path)
        return [s.run_dir.relative_to(tmp_path).as_posix() for s in specs]

    assert folders("2") == ["baseline/seed0", "baseline/seed1"]
    assert folders("0,3") == ["baseline/seed0", "baseline/seed3"]


def test_parallel_runs_share_the_cores_instead_of_oversubscribing():
    assert runner.threads_per_run(1, cores=16) == 0  # one run at a time: torch's default
    assert runner.threads_per_run(2, cores=2) == 1
    assert runner.threads_per_run(4, cores=16) == 4
    assert runner.threads_per_run(3, cores=2) == 1


def test_a_live_lock_makes_the_run_busy_until_released(tmp_path):
    first, second = runner.RunLock(tmp_path), runner.RunLock(tmp_path)
    assert first.acquire() is None
    assert f"pid {os.getpid()}" in second.acquire()
    first.release()
    assert not (tmp_path / runner.HOLDER_FILE).exists()
    assert second.acquire() is None
    second.release()


@pytest.mark.slow
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


def test_an_experiments_seeds_are_one_batch_longest_first_and_fill_the_slots(tmp_path):
    specs = runner.plan_runs(["short_run", "baseline", "no_lb"], [0, 1, 2, 3], "smoke",
                             out_dir=tmp_path)
    batches = runner.batch_runs(specs, slots=2)
    # one notebook execution per experiment; the shorter experiment last
    assert [(b.specs[0].experiment, [s.seed for s in b.specs]) for b in batches] == [
        ("baseline", [0, 1, 2, 3]), ("no_lb", [0, 1, 2, 3]), ("short_run", [0, 1, 2, 3])]
    assert batches[0].run_dir == tmp_path / "baseline" / "seed0"
    # fewer experiments than slots: the seeds are shared out so that every slot has work
    one = runner.plan_runs(["baseline"], [0, 1, 2, 3, 4], "smoke", out_dir=tmp_path)
    assert [[s.seed for s in b.specs] for b in runner.batch_runs(one, slots=2)] == \
        [[0, 1, 2], [3, 4]]
    assert [len(b.specs) for b in runner.batch_runs(one, slots=8)] == [1, 1, 1, 1, 1]
    assert sorted(s.seed for b in runner.batch_runs(specs, slots=5) for s in b.specs) == \
        sorted(s.seed for s in specs)
