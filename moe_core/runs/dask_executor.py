"""Suites on a Dask cluster: each batch (an experiment's seeds, or a share of them where
there are fewer experiments than workers: `runner.batch_runs`) is a task that runs
`execute_batch` on a dask.distributed worker: one kernel start and one set of imports per
task, and still as many tasks as workers for a single experiment's seeds. So a suite
spreads over this machine's cores or GPUs, or over the nodes of a cluster
(SLURM through dask-jobqueue, for one).

    moe-suite run --quick --executor dask                  # a local cluster
    moe-suite run --quick --scheduler tcp://node17:8786    # the workers of a running scheduler

A worker executes the training notebook exactly as the local executor does (`execute_batch`:
the same kernel, run lock, skipping and failure records), so where a run ran does not change
its results. A run folder must be reachable from the workers at the same path (a shared
filesystem on a cluster).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from moe_core.errors import UserInputError

if TYPE_CHECKING:
    from moe_core.runs.runner import RunBatch, RunOutcome

# This module is preloaded into every local worker as it starts (see dask_setup), so it imports
# moe_core.runs.suite, and with it torch, only where a function needs it.

CONNECT_TIMEOUT_S = 30.0
LOST_WORKER_RETRIES = 2  # a run is started again this often when its worker dies
DASHBOARD_ADDRESS = ":8787"  # distributed's usual port; a busy one is replaced by a free one


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries ([] without
    CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [d.strip() for d in listed.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def local_worker_specs(workers: int, gpus: Sequence[str] = ()) -> dict[str, dict]:
    """The SpecCluster workers of a local cluster: `workers` single-threaded worker processes,
    worker i seeing only GPU gpus[i % len(gpus)] (through CUDA_VISIBLE_DEVICES) when given."""
    from distributed import Nanny

    specs = {}
    for i in range(workers):
        env = {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if gpus else {}
        specs[f"moe-worker-{i}"] = {"cls": Nanny, "options": {
            "nthreads": 1, "env": env, "host": "127.0.0.1", "preload": [__name__],
            "silence_logs": logging.ERROR}}
    return specs


def dask_setup(worker: Any) -> None:
    """Run in each local worker process as it starts (a Dask preload): ignore Ctrl-C, which
    the terminal sends to the whole process group, so that the suite stops the runs itself
    and each records "interrupted" instead of losing its worker mid-run; and pass the runs'
    lines on as they are printed, even into a pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(sys.stdout, "reconfigure"):  # not when something replaced sys.stdout
        sys.stdout.reconfigure(line_buffering=True)


# On each worker: the run folders whose task is executing here, per suite (named by its stop
# event), so that stopping one suite never interrupts another suite's kernels; and the kernels
# already sent SIGINT, since a second one could interrupt training while it records the first.
_RUNNING: dict[str, set[str]] = {}
_RUNNING_LOCK = threading.Lock()
_INTERRUPTED: weakref.WeakSet = weakref.WeakSet()


def _unless_stopped(fn: Callable[[RunBatch], list[RunOutcome]], batch: RunBatch,
                    stop: str) -> list[RunOutcome] | None:
    """On a worker: fn(batch), unless the suite was stopped before this task started."""
    from distributed import Event

    if Event(stop).is_set():
        return None
    # The nanny sets MALLOC_TRIM_THRESHOLD_=65536 for its worker (glibc read it when this
    # process started). Inherited by the run's kernel, glibc hands freed tensor memory back at
    # once and page-faults it in again: a cpu run took 80 s instead of 48 s (measured). The
    # kernel is no Dask worker, so it gets glibc's default.
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with _RUNNING_LOCK:  # its kernel is known by the batch's first run folder
        _RUNNING.setdefault(stop, set()).add(str(batch.run_dir))
    try:
        return fn(batch)
    finally:
        with _RUNNING_LOCK:
            _RUNNING[stop].discard(str(batch.run_dir))
            if not _RUNNING[stop]:
                del _RUNNING[stop]


def _signal_runs(stop: str, signum: int) -> int:
    """On a worker: send signum to the kernels of the suite's runs executing here; returns
    how many were signalled."""
    with _RUNNING_LOCK:
        run_dirs = list(_RUNNING.get(stop, ()))
    if not run_dirs:
        return 0
    from moe_core.runs.jupyter_kernel import signal_live_kernels

    skip = set(_INTERRUPTED) if signum == signal.SIGINT else set()
    sent = signal_live_kernels(signum, skip=skip, run_dirs=run_dirs)
    if signum == signal.SIGINT:
        _INTERRUPTED.update(sent)
    return len(sent)


def _outcomes_of(future: Any, batch: RunBatch) -> list[RunOutcome]:
    """The task's RunOutcomes; a task that raised, was lost or lost its worker fails each of
    its runs that has no outcome (its folders are left as the worker left them: the next
    suite skips the finished ones and resumes the others)."""
    from distributed import KilledWorker

    from moe_core.runs.runner import failed_outcome

    if future.status == "finished":
        return future.result() or []
    error = future.exception() if future.status == "error" else None
    if isinstance(error, KilledWorker):
        why = (f"the Dask workers running it died, and its retries are used up ({error}); "
               "see those workers' logs, then run the suite again to resume from the last "
               "checkpoint")
    elif error is not None:
        why = f"the Dask task failed: {type(error).__name__}: {error}"
    else:
        why = f"the Dask task was {future.status} (the scheduler lost it); run the suite again"
    return [failed_outcome(spec, why) for spec in batch.specs]


def _allowed_failures(dask_scheduler: Any) -> int:
    """On the scheduler: how often a task may lose its worker before it fails."""
    return int(dask_scheduler.allowed_failures)


def _dashboard_link(client: Any) -> str | None:
    try:
        return client.dashboard_link
    except (KeyError, AttributeError):  # a scheduler without a dashboard
        return None


class DaskExecutor:
    """Each run a task on a dask.distributed cluster: a local one of `workers` worker
    processes of one thread each (default: one per GPU, else one per core), or the one
    behind the `scheduler` address.

    Shows a progress bar over finished runs and the dashboard's address. A run whose worker
    dies (a preempted node, out of memory) is started again on another worker, up to
    `lost_worker_retries` times (the scheduler's `allowed-failures`; a remote scheduler keeps
    its own, which the suite's first lines state), and resumes from its last checkpoint;
    after that, or when its task raises, it becomes a failed run and the others go on.
    Ctrl-C (KeyboardInterrupt)
    keeps queued runs from starting and interrupts the running ones, which record
    "interrupted"; those still running after grace_s are killed.
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None,
                 gpus: Sequence[str] | None = None, grace_s: float = 60.0,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, progress: bool = True,
                 log: Callable[[str], None] = print,
                 lost_worker_retries: int = LOST_WORKER_RETRIES):
        if scheduler and workers is not None:
            raise UserInputError(f"--jobs {workers} sets the workers of a local Dask cluster, "
                                 f"but the cluster at --scheduler {scheduler} has its own; "
                                 "drop --jobs (scale that cluster instead)")
        if workers is not None and workers < 1:
            raise UserInputError(f"--jobs {workers}: expected at least 1 Dask worker")
        from moe_core.runs.runner import cpu_cores

        self.scheduler = scheduler
        self.gpus = [] if scheduler else list(visible_gpus() if gpus is None else gpus)
        self.workers = self.slots = workers or len(self.gpus) or cpu_cores()
        self.grace_s = grace_s
        self.connect_timeout_s = connect_timeout_s
        self.progress = progress
        self.log = log
        self.lost_worker_retries = lost_worker_retries
        # local workers share this machine's cores; on a remote cluster each worker's
        # environment decides (distributed gives a worker process OMP_NUM_THREADS=1 per
        # thread slot by default)
        self.threads_per_run = 0 if scheduler else max(1, cpu_cores() // self.workers)
        if scheduler:
            self.description = f"on the Dask cluster at {scheduler}"
        else:
            per = f"one GPU each ({', '.join(self.gpus)})" if self.gpus else \
                f"{self.threads_per_run} thread(s) each"
            self.description = f"on a local Dask cluster of {self.workers} workers, {per}"

    def map(self, fn: Callable[[RunBatch], list[RunOutcome]],
            batches: Sequence[RunBatch]) -> Iterator[RunOutcome]:
        from distributed import Event, as_completed

        if not batches:
            return
        with self.connect() as client:
            self._announce(client)
            stop = Event(f"moe-suite-stop-{uuid.uuid4().hex}", client=client)
            futures = {client.submit(_unless_stopped, fn, batch, stop.name, pure=False,
                                     key=f"{batch.specs[0].experiment}-seeds"
                                         f"{'-'.join(str(s.seed) for s in batch.specs)}-"
                                         f"{uuid.uuid4().hex[:8]}"): batch
                       for batch in batches}
            bar = tqdm(total=sum(len(b.specs) for b in batches), desc="runs", unit="run",
                       disable=not self.progress)
            try:
                for future in as_completed(futures):
                    for outcome in _outcomes_of(future, futures[future]):
                        bar.clear()  # the caller's lines go above the bar
                        yield outcome
                        bar.update(1)
            except BaseException:  # Ctrl-C, or the caller stopped reading: stop the runs
                bar.close()
                self._stop(client, stop, futures)
                raise
            bar.close()

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A distributed.Client of this executor's cluster (a local one lives as long as it)."""
        from distributed import Client, Scheduler, SpecCluster

        if self.scheduler:
            try:
                client = Client(self.scheduler, timeout=self.connect_timeout_s)
            except (OSError, TimeoutError, ValueError) as e:
                raise UserInputError(
                    f"--scheduler {self.scheduler}: no Dask scheduler answered within "
                    f"{self.connect_timeout_s:.0f} s ({type(e).__name__}: {e}); check the "
                    "address (a dask-jobqueue cluster prints it as cluster.scheduler_address) "
                    "and that this machine can reach it") from None
            with client:
                yield client
            return
        import dask

        dashboard = DASHBOARD_ADDRESS if importlib.util.find_spec("bokeh") else None
        # the scheduler reads allowed-failures when it is created
        retries = dask.config.set({"distributed.scheduler.allowed-failures":
                                   self.lost_worker_retries})
        with retries:
            cluster = SpecCluster(
                workers=local_worker_specs(self.workers, self.gpus),
                scheduler={"cls": Scheduler, "options": {"host": "127.0.0.1",
                                                          "dashboard_address": dashboard}},
                silence_logs=logging.ERROR, name="moe-suite")
        with cluster, Client(cluster) as client:
            yield client

    def _announce(self, client: Any) -> None:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        link = _dashboard_link(client) if (self.scheduler or
                                          importlib.util.find_spec("bokeh")) else None
        self.log(f"Dask scheduler {client.scheduler.address}, {len(workers)} worker(s); "
                 f"dashboard: {link or 'not available (install bokeh>=3.1 for one)'}")
        try:
            allowed = client.run_on_scheduler(_allowed_failures)
        except Exception:  # an old or locked-down scheduler: say what is not known
            allowed = None
        self.log("a run whose worker dies is started again on another worker "
                 + (f"up to {allowed} time(s)" if allowed is not None else
                    "as often as the scheduler's distributed.scheduler.allowed-failures says")
                 + ", resuming from its last checkpoint")
        if not workers:
            self.log("no workers yet: the runs start as workers join (e.g. cluster.scale(...))")

    def _stop(self, client: Any, stop: Any, futures: dict) -> None:
        pending = [f for f in futures if not f.done()]
        try:
            stop.set()  # queued runs see it and do not start
            deadline = time.monotonic() + self.grace_s
            try:
                while pending and time.monotonic() < deadline:
                    # keep interrupting: a kernel that was still starting registers later
                    client.run(_signal_runs, stop.name, signal.SIGINT)
                    time.sleep(0.5)
                    pending = [f for f in pending if not f.done()]
            except KeyboardInterrupt:  # a second Ctrl-C: kill now
                pass
            if pending:
                client.run(_signal_runs, stop.name, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while any(not f.done() for f in pending) and time.monotonic() < deadline:
                    time.sleep(0.2)
        except (OSError, TimeoutError) as e:  # the cluster is gone: nothing left to stop
            self.log(f"could not stop the runs on the Dask cluster ({e}); a run still "
                     "training there keeps its lock until it ends")
