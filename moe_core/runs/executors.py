"""Executors run `execute_batch` over a suite's batches (the runs of one experiment that one
notebook execution trains in turn): the local one (threads driving kernels on this machine)
and, in moe_core.runs.dask_executor, Dask; `make_executor` picks one from the command line's
words. Either yields one outcome per run.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol

from moe_core.errors import UserInputError
from moe_core.runs.jupyter_kernel import signal_live_kernels
from moe_core.runs.runner import RunBatch, RunOutcome, failed_outcome, threads_per_run


class Executor(Protocol):
    """Runs `fn` on every batch and yields its runs' outcomes as batches finish (in any
    order); `fn` may run in another process or on another machine, so it and the batches
    must pickle. A KeyboardInterrupt while iterating stops the runs (they record
    "interrupted")."""

    threads_per_run: int  # torch threads each run uses; 0: the environment's default
    description: str  # where the runs execute, for the suite's first line
    slots: int  # how many batches execute at once (jobs, workers)

    def map(self, fn: Callable[[RunBatch], list[RunOutcome]],
            batches: Sequence[RunBatch]) -> Iterator[RunOutcome]: ...


def batch_failed(batch: RunBatch, error: BaseException) -> list[RunOutcome]:
    """Every run of a batch whose execution raised (a bug, not a run's failure)."""
    return [failed_outcome(spec, f"{type(error).__name__}: {error}") for spec in batch.specs]


class LocalExecutor:
    """Up to `jobs` runs at once on this machine (threads driving separate kernels).

    Ctrl-C stops new runs from starting and interrupts the running kernels, so training
    records an "interrupted" status; a second Ctrl-C kills them. Either way KeyboardInterrupt
    is re-raised once the workers have stopped.
    """

    def __init__(self, jobs: int = 1, grace_s: float = 60.0, progress: bool | None = None):
        if jobs < 1:
            raise UserInputError(f"--jobs {jobs}: expected at least 1 concurrent run")
        self.jobs = self.slots = jobs
        self.grace_s = grace_s
        self.progress = progress
        self.threads_per_run = threads_per_run(jobs)
        self.description = f"{jobs} at a time on this machine"

    def map(self, fn: Callable[[RunBatch], list[RunOutcome]],
            batches: Sequence[RunBatch]) -> Iterator[RunOutcome]:
        from tqdm.auto import tqdm

        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="moe-run")
        batch_of = {pool.submit(fn, batch): batch for batch in batches}
        futures: set[Future] = set(batch_of)
        # a bar over runs: finished, failed, running batches (the caller's lines print
        # above it); progress None: a bar on a terminal only (a log file gets the runs'
        # lines alone)
        bar = tqdm(total=sum(len(b.specs) for b in batches), desc="runs", unit="run",
                   disable=None if self.progress is None else not self.progress,
                   dynamic_ncols=True)
        failed = 0
        try:
            while futures:
                done, futures = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    # execute_batch records failures itself: this is a bug, not a run's
                    # failure, but it still must not stop the other runs
                    outcomes = future.result() if error is None else batch_failed(
                        batch_of[future], error)
                    for outcome in outcomes:
                        failed += not outcome.ok
                        bar.clear()
                        yield outcome
                        bar.update(1)
                bar.set_postfix(failed=failed,
                                running_batches=sum(f.running() for f in futures),
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
    from moe_core.runs.dask_executor import DaskExecutor

    return DaskExecutor(scheduler=scheduler, workers=jobs)
