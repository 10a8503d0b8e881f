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

import argparse
import functools
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from jupyter_client.manager import AsyncKernelManager

from moe_core.catalog import (  # noqa: F401  (the suite's public API since before catalog)
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
from moe_core.config import (
    PARAMETERS_DIR,
    RunConfig,
    build_config,
    split_arm,
)
from moe_core.data import local_corpus_files
from moe_core.errors import UserInputError
from moe_core.runfiles import (
    FINISHED,
    METRICS_FILE,
    check_writable,
    failure_record,
    is_finished,
    read_metrics,
    write_json_atomic,
)

REPO_ROOT = PARAMETERS_DIR.parent
TRAIN_NOTEBOOK = REPO_ROOT / "notebooks" / "train_experiment.ipynb"
LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.holder"
KERNEL_LOG = "kernel.log"


# ---------------------------------------------------------------- planning


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


def _refuse_other_runs(specs: Sequence[RunSpec]) -> None:
    """A UserInputError when a planned folder holds a run of another config or seed: a
    finished run is data, and replacing it takes --force."""
    taken = []
    for spec in specs:
        recorded = _read_quietly(spec.run_dir)
        if recorded and (recorded.get("config_hash"), recorded.get("seed")) != (
                spec.config.config_hash(), spec.seed):
            taken.append(f"{spec.run_dir} ({recorded.get('status')}, config "
                         f"{recorded.get('config_hash')}, seed {recorded.get('seed')})")
    if taken:
        shown = "; ".join(taken[:5]) + (f"; and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise UserInputError(
            f"{len(taken)} run folder(s) hold a run of another config or seed: {shown}. "
            "Runs are never replaced silently: choose another --out, or pass --force to "
            "replace them")


# ---------------------------------------------------------------- the Jupyter kernel


def _runs_this_python(argv: Sequence[str]) -> bool:
    """Whether a kernelspec's command starts the interpreter (environment) running us."""
    if not argv:
        return False
    major, minor = sys.version_info[:2]
    # jupyter_client itself replaces a bare `python` with sys.executable when it launches
    if argv[0] in ("python", f"python{major}", f"python{major}.{minor}"):
        return True
    # a venv's python is a symlink to the base one: compare environments, not real files
    return Path(os.path.abspath(argv[0])).parent == Path(os.path.abspath(sys.executable)).parent


@functools.cache
def kernel_for_this_python() -> str:
    """The name of a Jupyter kernel that runs this very Python (found or installed once)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return find_or_install_kernel(KernelSpecManager())


def find_or_install_kernel(ksm: Any, install_prefix: str | None = None) -> str:
    """`python3` when that kernelspec runs this Python, else a `moe-core-<hash>` kernelspec
    that does, installed into this environment's prefix (or the user's Jupyter folder) when
    missing: so that notebooks see the same packages as the suite."""
    from jupyter_client.kernelspec import NoSuchKernel

    own = "moe-core-" + hashlib.sha256(sys.executable.encode()).hexdigest()[:8]
    for name in ("python3", own):
        try:
            if _runs_this_python(ksm.get_kernel_spec(name).argv):
                return name
        except NoSuchKernel:
            pass
    from ipykernel.kernelspec import install

    display = f"Python ({sys.prefix})"
    errors = []
    for where in ({"prefix": install_prefix or sys.prefix}, {"user": True}):
        try:
            install(kernel_spec_manager=ksm, kernel_name=own, display_name=display, **where)
            return own
        except OSError as e:
            errors.append(f"{e.filename or where}: {e.strerror}")
    raise UserInputError(
        f"no Jupyter kernel runs this Python ({sys.executable}) and none could be installed "
        f"({'; '.join(errors)}); install one with `{sys.executable} -m ipykernel install "
        f"--user --name {own}`")


# kernels started by this process and not yet shut down: Ctrl-C interrupts them, because a
# kernel runs in a session of its own and never sees the terminal's SIGINT
_LIVE_KERNELS: set[AsyncKernelManager] = set()
_LIVE_LOCK = threading.Lock()


class _RunKernelManager(AsyncKernelManager):
    """Starts the kernel in the repository root (not through papermill's `cwd`, which chdirs
    the whole process and so races between concurrent runs) with the run's thread count in
    its environment and its low-level output (crashes, native warnings) in the run's
    kernel.log, and registers it for interruption."""

    kernel_env: dict[str, str] = {}
    run_dir: Path | None = None
    # the kernel's exit status when it ended before being shut down (it died): a negative
    # number -N means killed by signal N
    died_with: int | None = None

    @property
    def kernel_log(self) -> Path | None:
        return self.run_dir / KERNEL_LOG if self.run_dir else None

    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        kw.setdefault("cwd", str(REPO_ROOT))
        kw["env"] = {**os.environ, **self.kernel_env}
        log = open(self.kernel_log, "a") if self.kernel_log else None
        try:
            if log is not None:
                kw["stdout"] = kw["stderr"] = log
            await super().start_kernel(**kw)
        finally:
            if log is not None:
                log.close()  # the kernel process holds its own copy
        with _LIVE_LOCK:
            _LIVE_KERNELS.add(self)

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:  # type: ignore[override]
        self._forget()
        await super().shutdown_kernel(now=now, restart=restart)

    async def cleanup_resources(self, restart: bool = False) -> None:  # type: ignore[override]
        self._forget()  # a dead kernel is cleaned up without being shut down
        await super().cleanup_resources(restart=restart)

    def _forget(self) -> None:
        """No more signals to this kernel (its pid may be reused); note how it ended if it
        ended by itself."""
        with _LIVE_LOCK:
            _LIVE_KERNELS.discard(self)
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.poll() is not None:
            type(self).died_with = process.returncode


def _kernel_manager_class(spec: RunSpec) -> type[_RunKernelManager]:
    env = {}
    if spec.threads > 0:
        env = {var: str(spec.threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return type("RunKernelManager", (_RunKernelManager,),
                {"kernel_env": env, "run_dir": spec.run_dir})


def signal_live_kernels(signum: int = signal.SIGINT, skip: set | None = None,
                        run_dirs: Sequence[str | Path] | None = None) -> set:
    """Send signum to every kernel this process runs (except those in skip; only those of
    run_dirs when given); returns them."""
    with _LIVE_LOCK:
        kernels = set(_LIVE_KERNELS) - (skip or set())
    if run_dirs is not None:
        wanted = {Path(d) for d in run_dirs}
        kernels = {km for km in kernels if km.run_dir in wanted}
    for km in kernels:
        provisioner = km.provisioner
        pid = getattr(provisioner, "pid", None)
        pgid = getattr(provisioner, "pgid", None)
        try:
            if pgid:
                os.killpg(pgid, signum)
            elif pid:
                os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
    return kernels


# ---------------------------------------------------------------- per-run lock


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


# ---------------------------------------------------------------- executing one run


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
        return self.action == "busy" or (self.error is None and self.status in FINISHED)


def _outcome(spec: RunSpec, action: str, metrics: dict | None, error: str | None = None,
             status: str | None = None) -> RunOutcome:
    metrics = metrics or {}
    final, best = metrics.get("final_metrics") or {}, metrics.get("best_metrics") or {}
    return RunOutcome(experiment=spec.experiment, seed=spec.seed, run_dir=spec.run_dir,
                      action=action, status=status or metrics.get("status") or "unknown",
                      final_val_loss=final.get("val_loss"), best_val_loss=best.get("val_loss"),
                      time_min=metrics.get("total_time_minutes"),
                      notebook=spec.run_dir / spec.notebook.name,
                      error=error or (metrics.get("error")
                                      if metrics.get("status") in ("failed", "diverged")
                                      else None))


def failed_outcome(spec: RunSpec, error: str) -> RunOutcome:
    """A run that failed before it could record anything, or whose record cannot be reached."""
    return _outcome(spec, "ran", None, error=error, status="failed")


def record_failure(spec: RunSpec, metrics: dict | None, error: str,
                   status: str = "failed") -> dict:
    """Mark a run failed (or interrupted) in its metrics.json, keeping whatever training of
    this config and seed recorded, so that reports show it; the checkpoint (if any) stays,
    so the next suite resumes it."""
    cfg = spec.config
    failed = failure_record(cfg.to_dict(), cfg.config_hash(), spec.seed, spec.run_dir, error,
                            metrics, status, experiment=spec.experiment,
                            notebook=str(spec.run_dir / spec.notebook.name))
    write_json_atomic(spec.run_dir / METRICS_FILE, failed)
    return failed


def _describe_error(e: BaseException, died_with: int | None = None) -> str:
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(e, PapermillExecutionError):
        return f"{e.ename}: {e.evalue} (in notebook cell [{e.exec_count}])"
    if isinstance(e, DeadKernelError):
        if died_with is not None and died_with < 0:
            how = f"killed by {signal.Signals(-died_with).name}"
            if died_with == -signal.SIGKILL:
                how += " (out of memory, or killed by hand)"
        elif died_with is not None:
            how = f"exited with status {died_with}"
        else:
            how = "ended"
        return (f"the notebook's kernel died ({how}) while running it: DeadKernelError: {e}; "
                f"its output is in {KERNEL_LOG} and the executed notebook in the run folder; "
                "run the suite again to resume from the last checkpoint")
    return f"{type(e).__name__}: {e}"


def execute_run(spec: RunSpec, log: Callable[[str], None] = print) -> RunOutcome:
    """Run the training notebook for one spec, unless it is finished or another suite holds
    it. Never raises for a failing run: the outcome (and metrics.json) says it failed."""
    try:
        lock = RunLock(spec.run_dir)
        holder = lock.acquire()
    except OSError as e:
        return failed_outcome(spec, f"cannot lock {spec.run_dir}: {e}")
    if holder is not None:
        log(f"{spec.label}: busy, another suite is training it ({holder}); not run here")
        metrics = _read_quietly(spec.run_dir)
        return _outcome(spec, "busy", metrics, status=(metrics or {}).get("status", "running"))
    try:
        try:
            metrics = read_metrics(spec.run_dir)
        except UserInputError as e:  # an unreadable metrics.json: leave it for the user
            return failed_outcome(spec, str(e))
        if not spec.force and is_finished(metrics, spec.config.config_hash(), spec.seed):
            log(f"{spec.label}: skipped, finished before ({metrics['status']})")
            return _outcome(spec, "skipped", metrics)
        log(f"{spec.label}: running -> {spec.run_dir / spec.notebook.name}")
        error = _execute_notebook(spec)
        metrics = _read_quietly(spec.run_dir)
        if error is not None and not _records_this_run_ending(metrics, spec):
            ending = "interrupted" if error.startswith("KeyboardInterrupt") else "failed"
            metrics = record_failure(spec, metrics, error, status=ending)
        return _outcome(spec, "ran", metrics, error=error)
    except OSError as e:  # the run folder itself misbehaves: this run fails, not the suite
        return failed_outcome(spec, f"{type(e).__name__}: {e}")
    finally:
        lock.release()


def _records_this_run_ending(metrics: dict | None, spec: RunSpec) -> bool:
    """metrics.json belongs to this config and seed and says how training ended."""
    return bool(metrics) and metrics.get("status") != "running" \
        and metrics.get("config_hash") == spec.config.config_hash() \
        and metrics.get("seed") == spec.seed


def _execute_notebook(spec: RunSpec) -> str | None:
    """papermill on the training notebook; the error (None if none), the executed notebook
    (showing any failing cell) kept in the run folder."""
    import papermill

    manager = _kernel_manager_class(spec)
    try:
        papermill.execute_notebook(
            str(spec.notebook), str(spec.run_dir / spec.notebook.name),
            parameters={"experiment": spec.config.name, "preset": spec.preset,
                        "seed": spec.seed,
                        "overrides": {**spec.overrides, "condition": spec.config.condition},
                        "out_dir": str(spec.run_dir), "force": spec.force,
                        "threads": spec.threads},
            kernel_name=kernel_for_this_python(), progress_bar=False,
            kernel_manager_class=manager)
    except Exception as e:  # a failing run must not stop the others
        return _describe_error(e, manager.died_with)
    return None


def _read_quietly(run_dir: Path) -> dict | None:
    try:
        return read_metrics(run_dir)
    except UserInputError:
        return None


# ---------------------------------------------------------------- executors


class Executor(Protocol):
    """Runs `fn` on every spec and yields the results as they finish (in any order); `fn`
    may run in another process or on another machine, so it and the specs must pickle.
    A KeyboardInterrupt while iterating stops the runs (they record "interrupted")."""

    threads_per_run: int  # torch threads each run uses; 0: the environment's default
    description: str  # where the runs execute, for the suite's first line

    def map(self, fn: Callable[[RunSpec], RunOutcome],
            specs: Sequence[RunSpec]) -> Iterator[RunOutcome]: ...


class LocalExecutor:
    """Up to `jobs` runs at once on this machine (threads driving separate kernels).

    Ctrl-C stops new runs from starting and interrupts the running kernels, so training
    records an "interrupted" status; a second Ctrl-C kills them. Either way KeyboardInterrupt
    is re-raised once the workers have stopped.
    """

    def __init__(self, jobs: int = 1, grace_s: float = 60.0, progress: bool = True):
        if jobs < 1:
            raise UserInputError(f"--jobs {jobs}: expected at least 1 concurrent run")
        self.jobs = jobs
        self.grace_s = grace_s
        self.progress = progress
        self.threads_per_run = threads_per_run(jobs)
        self.description = f"{jobs} at a time on this machine"

    def map(self, fn: Callable[[RunSpec], RunOutcome],
            specs: Sequence[RunSpec]) -> Iterator[RunOutcome]:
        from tqdm.auto import tqdm

        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="moe-run")
        spec_of = {pool.submit(fn, spec): spec for spec in specs}
        futures: set[Future] = set(spec_of)
        # a bar over runs: finished, failed, running (the caller's lines print above it)
        bar = tqdm(total=len(specs), desc="runs", unit="run", disable=not self.progress,
                   dynamic_ncols=True)
        failed = 0
        try:
            while futures:
                done, futures = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    # execute_run records failures itself: this is a bug, not a run's failure,
                    # but it still must not stop the other runs
                    outcome = future.result() if error is None else failed_outcome(
                        spec_of[future], f"{type(error).__name__}: {error}")
                    failed += not outcome.ok
                    bar.clear()
                    yield outcome
                    bar.update(1)
                bar.set_postfix(failed=failed, running=sum(f.running() for f in futures),
                                refresh=False)
                bar.refresh()
        except BaseException:  # Ctrl-C, or the caller stopped reading: stop the runs too
            bar.close()
            pool.shutdown(wait=False, cancel_futures=True)
            self._stop(futures)
            raise
        bar.close()
        pool.shutdown()

    def _stop(self, futures: set[Future]) -> None:
        running = {f for f in futures if not f.cancelled()}
        interrupted: set = set()
        deadline = time.monotonic() + self.grace_s
        try:
            while running and time.monotonic() < deadline:
                # keep interrupting: a kernel that was still starting registers later
                interrupted |= signal_live_kernels(signal.SIGINT, skip=interrupted)
                _, running = wait(running, timeout=0.5)
        except KeyboardInterrupt:
            pass
        if running:
            signal_live_kernels(signal.SIGKILL)
            wait(running, timeout=10)


# ---------------------------------------------------------------- a suite


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
    from moe_core.results import load_runs
    from moe_core.summary import results_table

    for d in out_dirs:
        if not Path(d).is_dir():
            raise UserInputError(f"run folder {d} does not exist; pass the --out of a suite")
    return results_table(load_runs(*out_dirs))


EXPORT_FORMATS = ("csv", "json", "parquet")


def export(out_dirs: Sequence[str | Path], to: str | Path, fmt: str = "csv") -> list[Path]:
    """Write the per-run, per-arm and comparison tables (with their noise columns) of every
    run under out_dirs into the folder `to`, as csv, json (records) or parquet."""
    from moe_core import verdicts
    from moe_core.results import load_runs

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
        if fmt == "csv":
            table.to_csv(path, index=False)
        elif fmt == "json":
            table.to_json(path, orient="records", indent=1)
        else:
            table.to_parquet(path, index=False)
        written.append(path)
    return written


def report(out_dirs: Sequence[str | Path], reference_dirs: Sequence[str | Path] = (),
           html: str | Path | None = None) -> Path:
    """Render the inflection report over out_dirs (reference_dirs labelled as reference)."""
    from moe_core.report import render_report

    for d in [*out_dirs, *reference_dirs]:
        if not Path(d).is_dir():
            raise UserInputError(f"folder {d} does not exist; pass folders of runs")
    kwargs = {"out_html": html} if html is not None else {}
    return Path(render_report(list(out_dirs), reference_dirs=list(reference_dirs), **kwargs))


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moe-suite", description="Run, view and report suites of MoE training runs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="the experiments, what each changes, and the named suites")

    run = sub.add_parser("run", help="train experiments x seeds through the training notebook")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_const", const="all", dest="suite",
                       help="the suite 'all'")
    which.add_argument("--quick", action="store_const", const="quick", dest="suite",
                       help="the suite 'quick'")
    which.add_argument("--suite", help="a suite named in parameters/suites.yaml")
    which.add_argument("-e", "--experiment", dest="experiments", nargs="+", action="extend",
                       metavar="NAME", help="these experiments (see `moe-suite list`); "
                       "NAME@CONDITION runs one under a condition")
    run.add_argument("--condition", default="",
                     help="run every selected experiment that names no condition under this "
                     "one (see `moe-suite list`), e.g. --suite reference --condition "
                     "reference_lr: the reference's nine with its own LR schedule")
    run.add_argument("--preset", "-p", default="cpu", help="paper, cpu or smoke (default cpu)")
    run.add_argument("--seeds", default="1",
                     help="a count (3: seeds 0,1,2) or a comma list (0,4,7); default 1")
    run.add_argument("--out", help='the suite folder (default runs/<suite name or "custom">)')
    run.add_argument("--force", action="store_true", help="rerun finished runs too")
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="override a config key in every run (repeatable)")
    run.add_argument("--jobs", "-j", type=int,
                     help="runs at once on this machine, sharing its cores (default 1; with "
                     "--executor dask: the local cluster's workers, default one per core or GPU)")
    run.add_argument("--executor", choices=["local", "dask"],
                     help="local: runs in this process's kernels (the default); dask: each "
                     "run a task on a dask.distributed cluster (see --scheduler)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="the address of a running Dask scheduler (tcp://host:8786) whose "
                     "workers run the suite; implies --executor dask (default: start a local "
                     "cluster)")
    run.add_argument("--no-report", action="store_true", help="do not render the report")
    run.add_argument("--html", help="the report's path (default: the report's own)")
    run.add_argument("--notebook", default=str(TRAIN_NOTEBOOK),
                     help="the training notebook to execute (default: the repository's)")

    view_p = sub.add_parser("view", help="the results table of finished runs")
    view_p.add_argument("--out", nargs="+", action="extend", metavar="DIR",
                        help="suite folders (default runs)")

    export_p = sub.add_parser("export", help="write the per-run, per-arm and comparison "
                              "tables, with their noise columns, as csv, json or parquet")
    export_p.add_argument("--out", nargs="+", action="extend", metavar="DIR",
                          help="suite folders (default runs)")
    export_p.add_argument("--to", required=True, metavar="FOLDER",
                          help="where runs.<format>, arms.<format> and comparisons.<format> go")
    export_p.add_argument("--format", default="csv", choices=EXPORT_FORMATS)

    report_p = sub.add_parser("report", help="render the HTML inflection report")
    report_p.add_argument("--out", nargs="+", action="extend", metavar="DIR",
                          help="suite folders (default runs)")
    report_p.add_argument("--include", nargs="+", action="extend", default=[],
                          metavar="REFERENCE_DIR",
                          help="folders of reference-format metrics, labelled as reference")
    report_p.add_argument("--html", help="the report's path (default: the report's own)")
    return parser


def make_executor(name: str | None = None, jobs: int | None = None,
                  scheduler: str | None = None) -> Executor:
    """The executor the command line asks for: `local` (jobs at a time, default 1) or `dask`
    (a local cluster of `jobs` workers, default one per core or GPU, or the cluster behind
    `scheduler`)."""
    name = name or ("dask" if scheduler else "local")
    if name == "local":
        if scheduler:
            raise UserInputError(f"--scheduler {scheduler} needs --executor dask; drop "
                                 "--executor local or the --scheduler address")
        return LocalExecutor(1 if jobs is None else jobs)
    from moe_core.cluster import DaskExecutor  # deferred: distributed is slow to import

    return DaskExecutor(scheduler=scheduler, workers=jobs)


def _run_command(args: argparse.Namespace) -> int:
    experiments = resolve_experiments(args.experiments or (), args.suite,
                                      condition=args.condition)
    seeds = parse_seeds(args.seeds)
    overrides = parse_overrides(args.overrides)
    out = Path(args.out or Path("runs") / (args.suite or "custom"))
    executor = make_executor(args.executor, args.jobs, args.scheduler)
    result = run_suite(experiments, seeds, args.preset, overrides, out, args.force,
                       executor=executor, notebook=args.notebook)
    print("\n" + result.summary(), flush=True)
    code = 0 if result.ok else 1
    if not args.no_report:
        try:
            print(f"report: {report([result.out_dir], html=args.html)}")
        except Exception as e:  # the runs are safe; say how to retry the report alone
            print(f"moe-suite: the report failed ({type(e).__name__}: {e}); the runs are kept: "
                  f"retry with `moe-suite report --out {out}`", file=sys.stderr)
            code = 1
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the runs stop and record "interrupted"."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """`moe-suite`: exit 0 when every run finished, 1 when one failed, 2 for a user error,
    130 on Ctrl-C, 143 on SIGTERM."""
    args = build_parser().parse_args(argv)
    # a batch system's or `kill`'s SIGTERM stops the runs as cleanly as Ctrl-C does
    on_sigterm = None
    if threading.current_thread() is threading.main_thread():
        on_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        if args.command == "list":
            print(format_listing())
            return 0
        if args.command == "run":
            return _run_command(args)
        if args.command == "export":
            for path in export(args.out or ["runs"], args.to, args.format):
                print(path)
            return 0
        if args.command == "view":
            table = view(args.out or ["runs"])
            print(table.to_string(index=False) if len(table) else
                  f"no runs under {', '.join(map(str, args.out or ['runs']))}")
            return 0
        print(report(args.out or ["runs"], args.include, args.html))
        return 0
    except UserInputError as e:
        print(f"moe-suite: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("\nmoe-suite: interrupted; finished runs are kept and interrupted ones resume "
              "from their last checkpoint: run the same command again to continue",
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if on_sigterm is not None:
            signal.signal(signal.SIGTERM, on_sigterm)


if __name__ == "__main__":
    # `python -m moe_core.suite`: run the imported module, not this __main__ copy, so that
    # Dask pickles execute_run by reference (by value it would drag this module's locks along)
    from moe_core.suite import main as _main

    sys.exit(_main())
