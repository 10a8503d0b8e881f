"""What the suite tests share: reading a run's metrics, calling `moe-suite` in-process or as
a process, waiting for a run to train, and two suites racing on one folder."""

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from moe_core import paths
from moe_core.cli.suite import main as suite_cli_main

# a few seconds per run: two evals of a one-layer model
SMOKE = ["--preset", "smoke", "--set", "max_steps=8", "--set", "eval_every=4", "--no-report"]


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def suite_cli(capsys, *args) -> tuple[int, str, str]:
    """`moe-suite ARGS` in this process: (exit code, stdout, stderr)."""
    code = suite_cli_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C handling as in a terminal. A test run that is itself
    a background job of a non-interactive shell (as CI scripts start them) inherits SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def suite_process(*args, own_session: bool = False) -> subprocess.Popen:
    """`moe-suite ARGS` as a user starts it from a terminal; own_session: in a process group
    of its own, so that a Ctrl-C sent to the group reaches everything it started."""
    return subprocess.Popen([sys.executable, "-m", "moe_core.cli.suite", *map(str, args)],
                            cwd=paths.CHECKOUT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True, start_new_session=own_session,
                            preexec_fn=_default_sigint)


def wait_for(run_dir: Path, process: subprocess.Popen, ready: Callable[[dict], bool],
             what: str, timeout_s: float = 240) -> None:
    """Until the run's metrics.json satisfies `ready` (while `process` lives)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"the process ended before {run_dir} had {what}"
        assert time.monotonic() < deadline, f"no {what} in {run_dir} after {timeout_s} s"
        try:
            if ready(metrics(run_dir)):
                return
        except (FileNotFoundError, KeyError, ValueError):
            pass
        time.sleep(0.02)


def wait_for_training(run_dir: Path, process: subprocess.Popen, timeout_s: float = 240) -> None:
    """Until metrics.json records a training step."""
    wait_for(run_dir, process, lambda m: m["actual_steps"] > 0, "a training step", timeout_s)


def assert_never_trained_twice(out: Path, first: subprocess.Popen,
                               second: subprocess.Popen) -> None:
    """Both suites (of baseline and short_run, seed 0, on `out`) succeed, each run was
    trained by exactly one of them, and both runs completed."""
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    stdout = "".join(o for o, _ in outputs)
    for name in ("baseline", "short_run"):
        assert stdout.count(f"{name} seed0: running") == 1, stdout
        assert metrics(out / name / "seed0")["status"] == "completed"


HOLD_LOCK = """
import sys, time
from moe_core.runs.runner import RunLock
lock = RunLock(sys.argv[1])
assert lock.acquire() is None
print("held", flush=True)
time.sleep(120)
"""


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process (another suite) holding the run's lock until it is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder
