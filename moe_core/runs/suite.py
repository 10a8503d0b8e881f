"""Suites of runs: the training notebook executed by papermill once per experiment, training
its seeds in turn, each in its own run folder (more executions per experiment only where
there are fewer experiments than runs executing at once); `moe-suite run`, cli.run, is its
command line.

Every configuration is built (and so validated) before the first run starts. A run whose
folder holds a finished metrics.json with the same config hash and seed is skipped; an
interrupted one resumes from its checkpoint; a failing one is recorded as failed and the
others go on. A lock file per run keeps two suites on one folder from training a run twice.
Ctrl-C or SIGTERM interrupts the running kernels, which record "interrupted"; the same command
again continues. The Python API (`plan_runs`, `batch_runs`, `execute_batch`, `run_suite`,
`LocalExecutor`, `runs.dask_executor.DaskExecutor`, ...) does the work; cli.run is a thin
argparse skin.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moe_core.paths import TRAIN_NOTEBOOK
from moe_core.record.metrics_json import check_writable
from moe_core.runs.executors import Executor, LocalExecutor
from moe_core.runs.jupyter_kernel import kernel_for_this_python
from moe_core.runs.runner import RunOutcome, batch_runs, execute_batch, plan_runs


@dataclass
class SuiteResult:
    out_dir: Path
    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def table(self):
        """One row per run: experiment, seed, status, action, val losses, minutes."""
        import pandas as pd

        rows = [{"experiment": o.experiment, "seed": o.seed, "status": o.status,
                 "action": o.action, "final_val_loss": o.final_val_loss,
                 "best_val_loss": o.best_val_loss, "time_min": o.time_min}
                for o in self.outcomes]
        return pd.DataFrame(rows, columns=["experiment", "seed", "status", "action",
                                           "final_val_loss", "best_val_loss", "time_min"])

    def summary(self) -> str:
        """The table, a count per action and one line per failed run."""
        table = self.table()
        text = table.to_string(index=False, float_format=lambda v: f"{v:.4f}",
                               na_rep="-") if len(table) else "(no runs)"
        counts = {a: sum(o.action == a for o in self.outcomes) for a in ("ran", "skipped",
                                                                         "busy")}
        failed = [o for o in self.outcomes if not o.ok]
        lines = [text, ", ".join(f"{n} {a}" for a, n in counts.items())
                 + f", {len(failed)} failed; runs in {self.out_dir}"]
        for o in failed:
            why = o.error or f"status {o.status}"
            if o.error and o.status not in ("failed", "interrupted"):
                why = f"status {o.status}: {o.error}"
            lines.append(f"FAILED {o.experiment} seed{o.seed}: {why}; see {o.notebook}")
        return "\n".join(lines)


def run_suite(
    experiments: Sequence[str],
    seeds: Sequence[int] = (0,),
    preset: str = "cpu",
    overrides: dict[str, Any] | None = None,
    out_dir: str | Path = "runs/custom",
    force: bool = False,
    jobs: int = 1,
    executor: Executor | None = None,
    notebook: str | Path = TRAIN_NOTEBOOK,
    log: Callable[[str], None] = print,
) -> SuiteResult:
    """Validate every run, then execute them through the executor (default: local, `jobs`
    at a time). Raises UserInputError before anything runs; KeyboardInterrupt on Ctrl-C."""
    executor = executor or LocalExecutor(jobs)
    specs = plan_runs(experiments, seeds, preset, overrides, out_dir, force, jobs, notebook,
                      threads=executor.threads_per_run)
    kernel_for_this_python()  # a kernel problem is reported once, before any run
    result = SuiteResult(out_dir=Path(out_dir).absolute())
    check_writable(result.out_dir, "suite folder")
    log(f"{len(specs)} runs ({len(dict.fromkeys(s.experiment for s in specs))} experiment(s) x "
        f"{len(dict.fromkeys(s.seed for s in specs))} seed(s), preset {preset}) in "
        f"{result.out_dir}, {executor.description}")
    batches = batch_runs(specs, getattr(executor, "slots", 1))
    for outcome in executor.map(functools.partial(execute_batch, log=log), batches):
        result.outcomes.append(outcome)
        if outcome.action == "ran":
            if outcome.ok:
                log(f"{outcome.experiment} seed{outcome.seed}: {outcome.status} in "
                    f"{(outcome.time_min or 0) * 60:.1f} s, final val loss "
                    f"{outcome.final_val_loss or float('nan'):.4f}")
            else:
                log(f"{outcome.experiment} seed{outcome.seed}: {outcome.status}: "
                    f"{outcome.error or 'see its notebook'}")
    order = {(s.experiment, s.seed): i for i, s in enumerate(specs)}
    result.outcomes.sort(key=lambda o: order[o.experiment, o.seed])
    return result
