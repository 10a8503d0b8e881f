"""The local executor's progress bar."""

from moe_core.runs import executors, runner


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
