"""The study's cost before and after, side by side on this machine: setup, one experiment's
runs split into training and everything else, and (with --whole) each revision's own study.

    python benchmarks/bench_study.py                        # 0da81fe (before issue 23) vs HEAD
    python benchmarks/bench_study.py --before REV --after REV -e baseline no_lb --seeds 2
    python benchmarks/bench_study.py --whole                # also each revision's `make demo`
    python benchmarks/bench_study.py --json FILE

Each revision is checked out with `git worktree` into a temporary folder (beside a link to
../shared, as a clone has it) and measured in turn, in the same process and on the same
machine:
- setup: its own `make setup` with the installers' caches cold (an empty UV_CACHE_DIR;
  PIP_NO_CACHE_DIR=1), torch from $PIP_FIND_LINKS as on these machines;
- runs: `moe-suite run -e EXPERIMENTS --seeds N --jobs J --no-report` (the way `make demo`
  runs every run; by default 2 experiments x 4 seeds, 2 at a time: as in the demo, each
  execution of the notebook trains an experiment's 4 seeds where the code batches them):
  wall and CPU time of the suite and its kernels, each run's training time (its
  metrics.json: train()'s own clock), its evals, and the rest, per run:
  jobs x wall / runs - mean training time: kernel starts, imports, data, figures, writing
  and the suite's bookkeeping, i.e. the start-up tax a run pays beyond its training;
- --whole: `make demo` of that revision (its own study design), wall time.
CPU time is the robust figure on a shared machine; the wall figures assume it is idle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from profile_run import children_cpu_s  # the script beside this one

REPO = Path(__file__).resolve().parents[1]
BEFORE = "0da81fe"  # main before issue 23: pip setup, one notebook execution per run, 100 evals


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the child and its children) of a command run to its end."""
    cpu, wall = children_cpu_s(), time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall, children_cpu_s() - cpu
    if done.returncode:
        sys.exit(f"{' '.join(argv)} in {cwd} failed ({done.returncode}):\n"
                 f"{(done.stdout + done.stderr)[-3000:]}")
    return wall, cpu


def checkout(rev: str, into: Path) -> Path:
    """A worktree of `rev` at into/<rev>/repo, with ../shared as a clone beside it has."""
    tree = into / rev / "repo"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), rev], cwd=REPO,
                   check=True)
    shared = REPO.parent / "shared"
    if shared.exists():
        (tree.parent / "shared").symlink_to(shared)
    return tree


def run_parts(runs: Path) -> list[dict]:
    """Each run's training time and evals, from its metrics.json."""
    parts = []
    for path in sorted(runs.glob("*/seed*/metrics.json")):
        metrics = json.loads(path.read_text())
        evals = metrics["evals"]
        parts.append({"run": str(path.parent.relative_to(runs)), "evals": len(evals),
                      "train_s": evals[-1]["elapsed_s"], "status": metrics["status"]})
    return parts


def measure(rev: str, into: Path, experiments: list[str], seeds: int, jobs: int,
            whole: bool) -> dict:
    tree = checkout(rev, into)
    env = {**os.environ, "UV_CACHE_DIR": str(into / rev / "uv-cache"), "PIP_NO_CACHE_DIR": "1"}
    out: dict = {"rev": subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO,
                                       capture_output=True, text=True).stdout.strip()}
    out["setup"] = timed(["make", "setup"], tree, env)
    runs = into / rev / "runs"
    out["runs"] = timed([str(tree / ".venv/bin/moe-suite"), "run", "-e", *experiments,
                         "--preset", "cpu", "--seeds", str(seeds), "--jobs", str(jobs),
                         "--no-report", "--out", str(runs)], tree, env)
    out["per_run"] = parts = run_parts(runs)
    train = sum(p["train_s"] for p in parts) / len(parts)
    out["train_s"] = train
    out["outside_training_s"] = jobs * out["runs"][0] / len(parts) - train
    if whole:
        out["demo"] = timed(["make", "demo"], tree, env)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("-e", "--experiments", nargs="+",
                        default=["baseline@reference_lr", "no_lb@reference_lr"],
                        help="the experiments whose runs are timed (each revision must know "
                        "them)")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--whole", action="store_true",
                        help="also each revision's `make demo` (its own study: tens of minutes)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average (1, 5, 15 min) at start {load}")
    results = {}
    into = Path(tempfile.mkdtemp(prefix="bench_study_"))
    try:
        for name, rev in (("before", args.before), ("after", args.after)):
            results[name] = r = measure(rev, into, args.experiments, args.seeds, args.jobs,
                                        args.whole)
            evals = sorted({p["evals"] for p in r["per_run"]})
            print(f"\n{name} ({r['rev']}): setup {r['setup'][0]:.1f} s wall (caches cold)")
            print(f"  {len(r['per_run'])} runs of {', '.join(args.experiments)}, {args.jobs} at "
                  f"a time: {r['runs'][0]:.1f} s wall, {r['runs'][1]:.1f} CPU-s")
            print(f"  per run: training {r['train_s']:.1f} s ({evals} evals), everything else "
                  f"{r['outside_training_s']:.1f} s")
            if args.whole:
                print(f"  make demo (its own study): {r['demo'][0] / 60:.1f} min wall")
    finally:
        for rev in (args.before, args.after):
            tree = into / rev / "repo"
            if tree.exists():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO)
        shutil.rmtree(into, ignore_errors=True)
    b, a = results["before"], results["after"]
    print(f"\nafter / before: setup {a['setup'][0] / b['setup'][0]:.2f}, the runs' wall "
          f"{a['runs'][0] / b['runs'][0]:.2f}, CPU {a['runs'][1] / b['runs'][1]:.2f}")
    if args.whole:
        print(f"  make demo {a['demo'][0] / b['demo'][0]:.2f}")
    print(f"load average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
