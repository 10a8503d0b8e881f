"""Suites of runs: the training notebook executed by papermill once per (experiment, seed).

    moe-suite list
    moe-suite run --quick --seeds 3 --jobs 2
    moe-suite run --quick --seeds 3 --executor dask [--scheduler tcp://host:8786]
    moe-suite view --out runs/quick
    moe-suite report --out runs/quick --include exp8_original

Every configuration is built (and so validated) before the first run starts. A run whose
folder holds a finished metrics.json with the same config hash and seed is skipped; an
interrupted one resumes from its checkpoint; a failing one is recorded as failed and the
others go on. A lock file per run keeps two suites on one folder from training a run twice.
Ctrl-C or SIGTERM interrupts the running kernels, which record "interrupted"; the same command
again continues. The Python API (`plan_runs`, `execute_run`, `run_suite`, `LocalExecutor`,
`moe_core.cluster.DaskExecutor`, ...) does the work; `main` is a thin argparse skin.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moe_core.config.catalog import (
    SUITES_FILE,
    ExperimentInfo,
    check_arm,
    format_listing,
    list_experiments,
    load_suites,
    parse_overrides,
    parse_seeds,
    resolve_experiments,
)
from moe_core.config.run_config import PARAMETERS_DIR, build_config
from moe_core.errors import UserInputError
from moe_core.report.escape import csv_cell
from moe_core.runs.executors import Executor, LocalExecutor, make_executor
from moe_core.runs.jupyter_kernel import (
    KERNEL_LOG,
    REPO_ROOT,
    _runs_this_python,
    find_or_install_kernel,
    kernel_for_this_python,
    signal_live_kernels,
)
from moe_core.record.metrics_json import check_writable
from moe_core.runs.runner import (
    HOLDER_FILE,
    LOCK_FILE,
    TRAIN_NOTEBOOK,
    RunLock,
    RunOutcome,
    RunSpec,
    _outcome,
    cpu_cores,
    execute_run,
    failed_outcome,
    plan_runs,
    record_failure,
    threads_per_run,
)


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
    for outcome in executor.map(functools.partial(execute_run, log=log), specs):
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


def view(out_dirs: Sequence[str | Path]):
    """The results table of every run under out_dirs (a pandas DataFrame)."""
    from moe_core.analysis.results import load_runs
    from moe_core.analysis.summary import results_table

    for d in out_dirs:
        if not Path(d).is_dir():
            raise UserInputError(f"run folder {d} does not exist; pass the --out of a suite")
    return results_table(load_runs(*out_dirs))


EXPORT_FORMATS = ("csv", "json", "parquet")


def export(out_dirs: Sequence[str | Path], to: str | Path, fmt: str = "csv") -> list[Path]:
    """Write the per-run, per-arm and comparison tables (with their noise columns) of every
    run under out_dirs into the folder `to`, as csv, json (records) or parquet."""
    from moe_core.analysis import verdicts
    from moe_core.analysis.results import load_runs

    if fmt not in EXPORT_FORMATS:
        raise UserInputError(f"--format {fmt}: expected one of {', '.join(EXPORT_FORMATS)}")
    for d in out_dirs:
        if not Path(d).is_dir():
            raise UserInputError(f"run folder {d} does not exist; pass the --out of a suite")
    results = load_runs(*out_dirs)
    tables = {"runs": results.runs}
    if len(verdicts.counted_runs(results)):
        analysis = verdicts.analyse(results)
        tables["arms"] = verdicts.arms_frame(analysis)
        tables["comparisons"] = verdicts.comparisons_frame(analysis)
    folder = Path(to)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"--to {folder} cannot be created ({e.strerror})") from None
    written = []
    for name, table in tables.items():
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":  # a name a spreadsheet would read as a formula is quoted
            table.map(csv_cell).rename(columns=csv_cell).to_csv(path, index=False)
        elif fmt == "json":
            table.to_json(path, orient="records", indent=1)
        else:
            table.to_parquet(path, index=False)
        written.append(path)
    return written


def report(out_dirs: Sequence[str | Path], reference_dirs: Sequence[str | Path] = (),
           html: str | Path | None = None) -> Path:
    """Render the inflection report over out_dirs (reference_dirs labelled as reference)."""
    from moe_core.report.render import render_report

    for d in [*out_dirs, *reference_dirs]:
        if not Path(d).is_dir():
            raise UserInputError(f"folder {d} does not exist; pass folders of runs")
    kwargs = {"out_html": html} if html is not None else {}
    return Path(render_report(list(out_dirs), reference_dirs=list(reference_dirs), **kwargs))


def main(argv: Sequence[str] | None = None) -> int:
    """`moe-suite` (moe_core.cli.suite_main)."""
    from moe_core.cli.main import suite_main

    return suite_main(argv)


if __name__ == "__main__":
    # `python -m moe_core.runs.suite`: run the imported module, not this __main__ copy, so that
    # Dask pickles execute_run by reference (by value it would drag this module's locks along)
    import sys

    from moe_core.runs.suite import main as _main

    sys.exit(_main())
