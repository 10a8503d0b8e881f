"""Where the time of one run goes, start-up to figures, on this machine.

    python benchmarks/profile_run.py                  # the cpu preset at 1 torch thread
    python benchmarks/profile_run.py --suite          # also 2 runs through moe-suite, 2 at a time
    python benchmarks/profile_run.py --json FILE

Part 1, in this process and fresh interpreters, CPU seconds (wall too): the imports a run's
kernel pays, preparing the data, then one run of `train()` split into its micro-steps
(forward + backward), optimizer updates, evals, the rest of each eval's record, metrics
writes, TensorBoard curves and checkpoints, then the figures the training notebook draws.
Part 2 (--suite): `moe-suite run -e baseline --seeds 2 --jobs 2`, as `make demo` runs each
run (papermill, one kernel per run, 1 torch thread each), then `moe-suite report` on it:
wall time, the CPU time of the suite and its kernels, and each run's kernel start and cells
from the executed notebooks. CPU time is the robust figure on a shared machine: another
process's load stretches wall time but not the CPU time this work takes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# what the training notebook's first code cell imports
NOTEBOOK_IMPORTS = ("from moe_core.runs import notebook_parameters; "
                    "from moe_core.report import figures; "
                    "from moe_core.analysis.results import load_runs; "
                    "from moe_core.training.trainer import train")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of a child process and its own children, run to its end."""
    cpu, wall = children_cpu_s(), time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall, children_cpu_s() - cpu
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, cpu


def import_costs(repeats: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) of fresh interpreters importing what a run's kernel imports; medians."""
    statements = {
        "python (nothing imported)": "pass",
        "torch": "import torch",
        "torch + torch._dynamo (torch.optim's optimizers import it)":
            "import torch, torch._dynamo",
        "ipykernel (the kernel itself)": "import ipykernel.kernelapp",
        "the notebook's imports (moe_core, torch, pandas, seaborn)": NOTEBOOK_IMPORTS,
    }
    out = {}
    for name, statement in statements.items():
        samples = sorted(run_child([sys.executable, "-c", statement]) for _ in range(repeats))
        out[name] = samples[len(samples) // 2]
    return out


class PhaseClock:
    """Wall and CPU seconds spent inside wrapped functions, by phase name; a phase inside
    another is subtracted from the outer one."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            self._stack.append([0.0, 0.0])
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                inner_wall, inner_cpu = self._stack.pop()
                self.wall[name] += wall - inner_wall
                self.cpu[name] += cpu - inner_cpu
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][0] += wall
                    self._stack[-1][1] += cpu
        return timed


@contextlib.contextmanager
def patched(module, name: str, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def profile_training(cfg, threads: int) -> dict:
    """One run of train() on a temporary folder, its time split by phase."""
    import torch

    from moe_core.data.splits import prepare_data
    from moe_core.training import tensorboard_log, trainer

    torch.set_num_threads(threads)
    clock = PhaseClock()
    data_s = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MOE_CORE_CACHE"] = cache
        for kind in ("cold (generated)", "cached"):
            wall, cpu = time.perf_counter(), time.process_time()
            data = prepare_data(cfg)
            data_s[kind] = (time.perf_counter() - wall, time.process_time() - cpu)
        del os.environ["MOE_CORE_CACHE"]
    # names as the trainer calls them (an older trainer's where they differ)
    wraps = [(trainer, "_micro_step", "micro-steps (forward + backward)"),
             (trainer, "optimizer_update", "optimizer updates (clip, Muon, AdamW)"),
             (trainer, "_optimizer_update", "optimizer updates (clip, Muon, AdamW)"),
             (trainer, "evaluate", "evals (val split + train subset)"),
             (trainer, "_eval_record", "eval records (routing statistics, lists)"),
             (trainer, "write_metrics", "metrics.json writes"),
             (trainer, "write_json_atomic", "metrics.json writes"),
             (trainer, "save_checkpoint", "checkpoints"),
             (trainer, "_save_checkpoint", "checkpoints"),
             (tensorboard_log.LiveCurves, "add_eval", "TensorBoard curves")]
    with tempfile.TemporaryDirectory() as run_dir, contextlib.ExitStack() as stack:
        for module, name, phase in wraps:
            if name == "_optimizer_update" and hasattr(module, "optimizer_update"):
                continue  # today's alias of optimizer_update, which the trainer calls
            if hasattr(module, name):  # an older trainer may lack one: its time stays in "rest"
                stack.enter_context(patched(module, name,
                                            clock.wrap(phase, getattr(module, name))))
        wall, cpu = time.perf_counter(), time.process_time()
        metrics = trainer.train(cfg, seed=0, out_dir=run_dir, data=data, progress=False)
        total = (time.perf_counter() - wall, time.process_time() - cpu)
        figures = profile_figures(Path(run_dir))
    phases = {name: (clock.wall[name], clock.cpu[name]) for name in clock.wall}
    phases["the rest of train()"] = (total[0] - sum(w for w, _ in phases.values()),
                                     total[1] - sum(c for _, c in phases.values()))
    return {"data": data_s, "train_phases": phases, "train_total": total,
            "calls": dict(clock.calls), "figures": figures,
            "final_val_loss": metrics["final_metrics"]["val_loss"]}


def profile_figures(run_dir: Path) -> dict[str, tuple[float, float]]:
    """The training notebook's figures, each drawn as the notebook draws it: the two it saves
    at 120 dpi, the others as the inline backend's PNG (no tight bounding box)."""
    import matplotlib

    matplotlib.use("agg")
    from IPython.core.pylabtools import print_figure

    from moe_core.analysis.results import load_runs
    from moe_core.report import figures

    out = {}
    wall, cpu = time.perf_counter(), time.process_time()
    run = load_runs(run_dir)
    out["load_runs"] = (time.perf_counter() - wall, time.process_time() - cpu)
    drawings = {"metrics_panels (saved)": lambda: figures.metrics_panels(run.evals),
                "val_loss_vs_time (saved)": lambda: figures.val_loss_vs_time(run.evals),
                "lr_applied": lambda: figures.lr_applied(run.evals),
                "train_vs_val_loss": lambda: figures.train_vs_val_loss(run.evals),
                "aux_loss_and_balance": lambda: figures.aux_loss_and_balance(run.evals,
                                                                           run.layer_routing)}
    for name, build in drawings.items():
        wall, cpu = time.perf_counter(), time.process_time()
        figure = build()
        if "saved" in name:
            figure.savefig(io.BytesIO(), format="png", dpi=120)
        else:
            print_figure(figure, "png", bbox_inches=None)
        out[name] = (time.perf_counter() - wall, time.process_time() - cpu)
    return out


def profile_suite(threads_note: str) -> dict:
    """Two cpu-preset runs through moe-suite, 2 at a time, then the report on them."""
    suite_cli = [sys.executable, "-m", "moe_core.cli.suite"]
    with tempfile.TemporaryDirectory() as out:
        runs = Path(out) / "runs"
        run = run_child([*suite_cli, "run", "-e", "baseline", "--preset", "cpu", "--seeds",
                         "2", "--jobs", "2", "--no-report", "--out", str(runs)])
        report = run_child([*suite_cli, "report", "--out", str(runs), "--html",
                            str(Path(out) / "report.html")])
        notebooks = sorted(runs.glob("*/seed*/*.ipynb"))
        per_run = [notebook_timeline(path) for path in notebooks]
    return {"runs": len(per_run), "suite": run, "report": report, "per_run": per_run,
            "note": threads_note}


def notebook_timeline(path: Path) -> dict:
    """A papermill-executed notebook's kernel start (its start to the first cell) and its
    code cells' durations, from the metadata papermill records."""
    nb = json.loads(path.read_text())
    start = datetime.fromisoformat(nb["metadata"]["papermill"]["start_time"])
    end = datetime.fromisoformat(nb["metadata"]["papermill"]["end_time"])
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"
             and c["metadata"].get("papermill", {}).get("start_time")]
    first = datetime.fromisoformat(cells[0]["metadata"]["papermill"]["start_time"])
    return {"total_s": (end - start).total_seconds(),
            "kernel_start_s": (first - start).total_seconds(),
            "cells": [("".join(c["source"]).split("\n")[0][:50],
                       c["metadata"]["papermill"]["duration"]) for c in cells]}


def print_rows(title: str, rows: dict[str, tuple[float, float]], total_cpu: float | None = None
               ) -> None:
    print(title)
    width = max(len(k) for k in rows)
    for name, (wall, cpu) in rows.items():
        share = f"  {100 * cpu / total_cpu:4.1f}%" if total_cpu else ""
        print(f"  {name:<{width}}  CPU {cpu:7.2f} s  wall {wall:7.2f} s{share}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="baseline")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the in-process run (default 1: each of the "
                        "demo's 2 parallel runs on 2 cores)")
    parser.add_argument("--import-repeats", type=int, default=3)
    parser.add_argument("--suite", action="store_true",
                        help="also time 2 runs through moe-suite, 2 at a time, and the report")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    from moe_core.config.run_config import build_config

    cfg = build_config(args.experiment, args.preset)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{args.experiment} on preset {args.preset}, {os.cpu_count()} cores, load average "
          f"(1, 5, 15 min) at start {load}\n")
    out: dict = {"load_start": load, "experiment": args.experiment, "preset": args.preset}
    out["imports"] = import_costs(args.import_repeats)
    print_rows("Start-up: fresh interpreters (each includes the one above it where named)",
               out["imports"])
    out["training"] = profile_training(cfg, args.threads)
    t = out["training"]
    print_rows("Data", t["data"])
    print_rows(f"train(), {args.threads} torch thread(s) (share of its CPU time)",
               t["train_phases"], t["train_total"][1])
    print(f"  train() total: CPU {t['train_total'][1]:.1f} s, wall {t['train_total'][0]:.1f} s;"
          f" final val loss {t['final_val_loss']:.4f}\n")
    print_rows("Figures (the training notebook's)", t["figures"])
    if args.suite:
        out["suite"] = profile_suite("moe-suite gives each of 2 parallel runs 1 torch thread")
        s = out["suite"]
        print(f"moe-suite: {s['runs']} runs, 2 at a time: wall {s['suite'][0]:.1f} s, CPU of "
              f"the suite and its kernels {s['suite'][1]:.1f} s; report: wall "
              f"{s['report'][0]:.1f} s, CPU {s['report'][1]:.1f} s")
        for r in s["per_run"]:
            cells = ", ".join(f"{d:.1f}" for _, d in r["cells"])
            print(f"  a run: {r['total_s']:.1f} s in papermill; kernel start "
                  f"{r['kernel_start_s']:.1f} s; cells (s) {cells}")
        print()
    out["load_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average at end {out['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
