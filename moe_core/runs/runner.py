"""One run of a suite: its spec (config, seed, folder, already validated), the plan of a
suite's runs, the lock that keeps two suites from training one run, executing the training
notebook for it, and its outcome (failures recorded, never raised).

A suite hands the runs of one experiment to one notebook execution (a `RunBatch`): its kernel
starts and imports once and trains the seeds in turn, while each run keeps its own folder,
lock, skip and resume, executed notebook and failure record. A run that fails inside the
execution is recorded failed and the batch's runs after it go on in a fresh execution.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moe_core.config.run_config import ConfigError, RunConfig, build_config, split_arm
from moe_core.data.corpus import local_corpus_files
from moe_core.errors import UserInputError
from moe_core.paths import TRAIN_NOTEBOOK
from moe_core.record.metrics_json import (
    DIVERGED,
    FAILED,
    INTERRUPTED,
    RUNNING,
    RunRecord,
    failure_record,
    has_ended,
    is_finished_run,
    is_finished_status,
    is_this_run,
    other_run,
    read_metrics,
    write_json_atomic,
    write_metrics,
)
from moe_core.runs.jupyter_kernel import describe_error, execute_notebook

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.holder"


@dataclass(frozen=True)
class RunSpec:
    """One (arm, seed) to execute: everything a worker needs, already validated."""

    experiment: str  # the arm: `no_lb`, or `no_lb@reference_lr` under a condition
    seed: int
    preset: str
    overrides: dict[str, Any]
    config: RunConfig
    run_dir: Path  # absolute: <out>/<experiment>/seed<k>
    notebook: Path
    force: bool = False
    threads: int = 0  # torch threads in the kernel; 0 = torch's default

    @property
    def label(self) -> str:
        return f"{self.experiment} seed{self.seed}"


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_run(jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of `jobs` concurrent runs, so they share the cores instead of
    oversubscribing them (0: one run at a time keeps torch's default)."""
    if jobs <= 1:
        return 0
    return max(1, (cores or cpu_cores()) // jobs)


def plan_runs(
    experiments: Sequence[str],
    seeds: Sequence[int] = (0,),
    preset: str = "cpu",
    overrides: dict[str, Any] | None = None,
    out_dir: str | Path = "runs/custom",
    force: bool = False,
    jobs: int = 1,
    notebook: str | Path = TRAIN_NOTEBOOK,
    threads: int | None = None,
) -> list[RunSpec]:
    """Build and validate every run's config up front: one mistake fails here, before any
    run starts. Raises UserInputError (ConfigError for configs). threads: torch threads per
    run (0: the environment's default; None: a share of the cores for `jobs` runs at once)."""
    if jobs < 1:
        raise UserInputError(f"--jobs {jobs}: expected at least 1 concurrent run")
    notebook = Path(notebook).absolute()
    if not notebook.is_file():
        raise UserInputError(f"training notebook {notebook} not found; run from a checkout of "
                             "the repository or pass the notebook to use")
    overrides = dict(overrides or {})
    # the same parameters/ as the notebook's, so both compute the same config hash
    configs = {arm: build_config(split_arm(arm)[0], preset, overrides,
                                 condition=split_arm(arm)[1])
               for arm in dict.fromkeys(experiments)}
    for cfg in configs.values():
        _check_fits_in_memory(cfg)
        if cfg.data_source == "local":
            local_corpus_files(cfg)  # a missing or unusable data_path fails every run: say so now
    out = Path(out_dir).absolute()
    threads = threads_per_run(jobs) if threads is None else threads
    specs = [RunSpec(experiment=name, seed=seed, preset=preset, overrides=overrides,
                     config=cfg, run_dir=out / name / f"seed{seed}",
                     notebook=notebook, force=force, threads=threads)
             for name, cfg in configs.items() for seed in dict.fromkeys(seeds)]
    if not force:
        _refuse_other_runs(specs)
    return specs


# fp32 weights, their gradients and the optimizer's two moments (AdamW; Muon keeps one)
TRAINING_BYTES_PER_PARAMETER = 16


def _check_fits_in_memory(cfg: RunConfig) -> None:
    """A ConfigError when the model alone could not be trained in this machine's memory (a
    typo such as d_model=38400 would otherwise fail inside the kernel, minutes later)."""
    need = cfg.parameter_count * TRAINING_BYTES_PER_PARAMETER
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ConfigError(
            f"{cfg.arm}: d_model {cfg.d_model}, n_layers {cfg.n_layers}, num_experts "
            f"{cfg.num_experts}, d_ff {cfg.d_ff} and vocab_size {cfg.vocab_size} make a model of "
            f"{cfg.parameter_count:,} parameters, ~{need / 2**30:,.0f} GiB to train, more than "
            f"this machine's {have / 2**30:.0f} GiB of memory; lower those keys")


def _refuse_other_runs(specs: Sequence[RunSpec]) -> None:
    """A UserInputError when a planned folder holds a run of another config or seed: a
    finished run is data, and replacing it takes --force."""
    taken = []
    for spec in specs:
        other = other_run(_read_quietly(spec.run_dir), spec.config.config_hash(), spec.seed)
        if other:
            taken.append(f"{spec.run_dir} ({other})")
    if taken:
        shown = "; ".join(taken[:5]) + (f"; and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise UserInputError(
            f"{len(taken)} run folder(s) hold a run of another config or seed: {shown}. "
            "Runs are never replaced silently: choose another --out, or pass --force to "
            "replace them")


class RunLock:
    """`<run>/.lock`, held with an OS file lock (the `filelock` package, flock on Unix) while
    a suite trains the run; who holds it is written beside it in `.lock.holder`.

    The operating system drops the lock when its process ends, however it ends (Ctrl-C,
    SIGKILL, out of memory), so a dead suite never leaves a run busy, and a lock file left
    on disk means nothing by itself. On a shared filesystem the server drops the locks of a
    client that died once its lease runs out (NFSv4: about 90 s by default).
    """

    def __init__(self, run_dir: Path):
        from filelock import FileLock

        self.path = Path(run_dir) / LOCK_FILE
        self.holder_path = Path(run_dir) / HOLDER_FILE
        self._lock = FileLock(self.path, is_singleton=False)

    def acquire(self) -> str | None:
        """Take the lock without waiting: None on success, else who holds it."""
        from filelock import Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return self._describe()
        write_json_atomic(self.holder_path, {
            "pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return None

    def release(self) -> None:
        if self._lock.is_locked:
            self.holder_path.unlink(missing_ok=True)
            self._lock.release()

    def _describe(self) -> str:
        try:
            holder = json.loads(self.holder_path.read_text())
        except (OSError, ValueError):
            holder = {}
        who = (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
               if holder else "another process")
        return (f"held by {who} ({self.path}); the lock is released when that process ends")


@dataclass
class RunOutcome:
    """What happened to one run in this suite invocation."""

    experiment: str
    seed: int
    run_dir: Path
    action: str  # ran | skipped (finished before) | busy (another suite holds it)
    status: str  # the metrics status: completed, early_stopped, diverged, failed, ...
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    time_min: float | None = None
    error: str | None = None
    notebook: Path | None = None  # the executed notebook

    @property
    def ok(self) -> bool:
        """Finished normally (or busy elsewhere, which is not a failure of this suite)."""
        return self.action == "busy" or (self.error is None and is_finished_status(self.status))


def _outcome(spec: RunSpec, action: str, metrics: RunRecord | None, error: str | None = None,
             status: str | None = None) -> RunOutcome:
    metrics = metrics or {}
    final, best = metrics.get("final_metrics") or {}, metrics.get("best_metrics") or {}
    return RunOutcome(experiment=spec.experiment, seed=spec.seed, run_dir=spec.run_dir,
                      action=action, status=status or metrics.get("status") or "unknown",
                      final_val_loss=final.get("val_loss"), best_val_loss=best.get("val_loss"),
                      time_min=metrics.get("total_time_minutes"),
                      notebook=spec.run_dir / spec.notebook.name,
                      error=error or (metrics.get("error")
                                      if metrics.get("status") in (FAILED, DIVERGED)
                                      else None))


def failed_outcome(spec: RunSpec, error: str) -> RunOutcome:
    """A run that failed before it could record anything, or whose record cannot be reached."""
    return _outcome(spec, "ran", None, error=error, status=FAILED)


def record_failure(spec: RunSpec, metrics: RunRecord | None, error: str,
                   status: str = FAILED) -> RunRecord:
    """Mark a run failed (or interrupted) in its metrics.json, keeping whatever training of
    this config and seed recorded, so that reports show it; the checkpoint (if any) stays,
    so the next suite resumes it."""
    cfg = spec.config
    failed = failure_record(cfg.to_dict(), cfg.config_hash(), spec.seed, spec.run_dir, error,
                            metrics, status, experiment=spec.experiment,
                            notebook=str(spec.run_dir / spec.notebook.name))
    write_metrics(spec.run_dir, failed)
    return failed


@dataclass(frozen=True)
class RunBatch:
    """Runs of one experiment (one config, one notebook) that one notebook execution trains
    in turn: the kernel's start and imports are paid once for them all."""

    specs: tuple[RunSpec, ...]

    @property
    def run_dir(self) -> Path:
        """The folder of its first run: where its kernel writes kernel.log."""
        return self.specs[0].run_dir

    @property
    def steps(self) -> int:
        """Training steps it runs in all: what orders the batches, longest first."""
        return sum(spec.config.max_steps for spec in self.specs)


def batch_runs(specs: Sequence[RunSpec], slots: int = 1) -> list[RunBatch]:
    """The runs of each experiment as batches, longest first (so that the last to start are
    the short ones): one batch per experiment, or more where there are fewer experiments than
    `slots` (runs that execute at once), so that a single experiment's seeds still fill them.
    Each batch takes its experiment's seeds in order, as evenly as they divide."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.experiment, []).append(spec)
    per_group = max(1, -(-slots // max(1, len(groups))))  # ceil(slots / experiments)
    batches = []
    for group in groups.values():
        parts = min(per_group, len(group))
        size, extra = divmod(len(group), parts)
        start = 0
        for i in range(parts):
            end = start + size + (i < extra)
            batches.append(RunBatch(tuple(group[start:end])))
            start = end
    return sorted(batches, key=lambda b: -b.steps)


def execute_batch(batch: RunBatch, log: Callable[[str], None] = print) -> list[RunOutcome]:
    """Train a batch's runs in one notebook execution, each unless it is finished or another
    suite holds it; one outcome per run, in the batch's order. Never raises for a failing
    run: its outcome (and metrics.json) says it failed, and the runs after it are trained in
    a fresh execution; after an interrupt (Ctrl-C, SIGTERM) the runs not yet started are
    left alone and have no outcome."""
    specs = batch.specs
    outcomes: dict[int, RunOutcome] = {}  # by the run's place in the batch
    locks: list[RunLock] = []
    todo: list[int] = []
    try:
        for i, spec in enumerate(specs):
            claimed = _claim(spec, locks, log)
            if claimed is None:
                todo.append(i)
            else:
                outcomes[i] = claimed
        while todo:
            first = specs[todo[0]]
            seeds = ", ".join(f"seed{specs[i].seed}" for i in todo)
            log(f"{first.experiment} {seeds}: running"
                + (" in turn in one notebook execution" if len(todo) > 1 else "")
                + f" -> {first.run_dir / first.notebook.name}")
            error = _execute_notebook([specs[i] for i in todo])
            started = []
            for i in todo:
                spec = specs[i]
                metrics = _read_quietly(spec.run_dir)
                started.append(spec)
                if _records_this_run_ending(metrics, spec):
                    outcomes[i] = _outcome(spec, "ran", metrics)
                    continue
                if error is None:  # the notebook ended without training it: a bug, say so
                    error = "the training notebook ended without recording this run's end"
                ending = INTERRUPTED if error.startswith("KeyboardInterrupt") else FAILED
                outcomes[i] = _outcome(spec, "ran", record_failure(spec, metrics, error,
                                                                   status=ending), error=error)
                break  # the runs after the failing one never started in this execution
            _share_notebook(started)
            todo = [i for i in todo if i not in outcomes]
            if error is not None and error.startswith("KeyboardInterrupt"):
                break
    except OSError as e:  # a run folder itself misbehaves: its runs fail, not the suite
        for i, spec in enumerate(specs):
            outcomes.setdefault(i, failed_outcome(spec, f"{type(e).__name__}: {e}"))
    finally:
        for lock in locks:
            lock.release()
    return [outcomes[i] for i in range(len(specs)) if i in outcomes]


def _claim(spec: RunSpec, locks: list[RunLock], log: Callable[[str], None]
           ) -> RunOutcome | None:
    """Lock a run to train it (None; its lock joins `locks`), or its outcome without
    training: busy elsewhere, finished before, or unreadable."""
    try:
        lock = RunLock(spec.run_dir)
        holder = lock.acquire()
    except OSError as e:
        return failed_outcome(spec, f"cannot lock {spec.run_dir}: {e}")
    if holder is not None:
        log(f"{spec.label}: busy, another suite is training it ({holder}); not run here")
        metrics = _read_quietly(spec.run_dir)
        return _outcome(spec, "busy", metrics, status=(metrics or {}).get("status", RUNNING))
    locks.append(lock)
    try:
        metrics = read_metrics(spec.run_dir)
    except UserInputError as e:  # an unreadable metrics.json: leave it for the user
        return failed_outcome(spec, str(e))
    if not spec.force and is_finished_run(metrics, spec.config.config_hash(), spec.seed):
        log(f"{spec.label}: skipped, finished before ({metrics['status']})")
        return _outcome(spec, "skipped", metrics)
    return None


def _records_this_run_ending(metrics: RunRecord | None, spec: RunSpec) -> bool:
    """metrics.json belongs to this config and seed and says how training ended."""
    return is_this_run(metrics, spec.config.config_hash(), spec.seed) and has_ended(metrics)


def _execute_notebook(specs: Sequence[RunSpec]) -> str | None:
    """papermill on the training notebook, training these runs of one experiment in turn;
    the error (None if none). The executed notebook (showing any failing cell) is written to
    the first run's folder."""
    first = specs[0]
    try:
        execute_notebook(
            first.notebook, first.run_dir / first.notebook.name,
            {"experiment": first.config.name, "preset": first.preset, "seed": first.seed,
             "seeds": [spec.seed for spec in specs],
             "overrides": {**first.overrides, "condition": first.config.condition},
             "out_dir": str(first.run_dir.parent), "force": first.force,
             "threads": first.threads},
            run_dir=first.run_dir, threads=first.threads)
    except Exception as e:  # a failing run must not stop the others
        return describe_error(e, getattr(e, "died_with", None))
    return None


def _share_notebook(specs: Sequence[RunSpec]) -> None:
    """Each run keeps the executed notebook that trained it: a copy in the folders of the
    execution's other runs."""
    if not specs:
        return
    executed = specs[0].run_dir / specs[0].notebook.name
    if not executed.is_file():
        return
    for spec in specs[1:]:
        shutil.copyfile(executed, spec.run_dir / spec.notebook.name)


def _read_quietly(run_dir: Path) -> RunRecord | None:
    try:
        return read_metrics(run_dir)
    except UserInputError:
        return None
