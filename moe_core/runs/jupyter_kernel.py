"""The Jupyter kernel a notebook runs in, and the one papermill entry point (the suite's
training runs and the report both use it): a kernel of this very Python, started in the
repository root with a run's thread count, its own output (warnings, crashes) in a
kernel.log instead of the terminal, and interruptible from the suite (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from moe_core.errors import UserInputError
from moe_core.paths import project_root

KERNEL_LOG = "kernel.log"


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

    log_dir: Path | None = None

    @property
    def kernel_log(self) -> Path | None:
        return self.log_dir / KERNEL_LOG if self.log_dir else None

    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        kw.setdefault("cwd", str(project_root()))
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


def describe_error(e: BaseException, died_with: int | None = None) -> str:
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


def kernel_manager_class(run_dir: Path | None, threads: int = 0,
                         log_dir: Path | None = None) -> type[_RunKernelManager]:
    """A kernel manager class for one notebook: `threads` torch threads (0: the default), its
    output in `<log_dir or run_dir>/kernel.log`, interruptible by signal_live_kernels."""
    env = {}
    if threads > 0:
        env = {var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return type("RunKernelManager", (_RunKernelManager,),
                {"kernel_env": env, "run_dir": run_dir, "log_dir": log_dir or run_dir})


# how long a kernel may take to answer after it starts: papermill's 60 s default failed a run
# whose kernel started beside another kernel and a test session on 2 busy cores (a CI run
# here); a slow start is not a failed run
KERNEL_START_TIMEOUT_S = 300


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any],
                     run_dir: Path | None = None, threads: int = 0,
                     log_dir: Path | None = None) -> None:
    """papermill on a notebook in this Python's kernel, started in the repository root, its
    low-level output (the kernel's own warnings, crashes) in kernel.log rather than the
    terminal. Raises what papermill raises; the executed notebook (showing any failing cell)
    is written to `output` either way."""
    import papermill

    manager = kernel_manager_class(run_dir, threads, log_dir)
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                                   kernel_name=kernel_for_this_python(), progress_bar=False,
                                   kernel_manager_class=manager,
                                   start_timeout=KERNEL_START_TIMEOUT_S)
    except Exception as e:
        e.died_with = manager.died_with  # type: ignore[attr-defined]
        raise
