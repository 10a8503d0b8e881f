"""The local executor's progress bar."""

from moe_core.runs import executors, runner


def test_the_local_executor_shows_a_bar_over_finished_failed_and_running_runs(capsys,
                                                                            tmp_path):
    specs = runner.plan_runs(["baseline", "no_lb"], [0, 1], "smoke", out_dir=tmp_path)

    def fail_no_lb(batch):
        return [runner.RunOutcome(spec.experiment, spec.seed, spec.run_dir, "ran",
                                  "failed" if spec.experiment == "no_lb" else "completed")
                for spec in batch.specs]

    batches = runner.batch_runs(specs, slots=2)
    assert len(batches) == 2  # one notebook execution per experiment, its two seeds in turn
    outcomes = list(executors.LocalExecutor(2, progress=True).map(fail_no_lb, batches))
    assert len(outcomes) == 4  # one outcome per run, not per batch
    err = capsys.readouterr().err
    assert "runs: 100%" in err and "4/4" in err and "failed=2" in err
