"""`moe-suite run`: train experiments x seeds through the training notebook, then report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moe_core.cli.report import HTML_HELP, write_report
from moe_core.config.catalog import parse_overrides, parse_seeds, resolve_experiments
from moe_core.paths import TRAIN_NOTEBOOK
from moe_core.report.render import DEFAULT_HTML


def add_parser(sub) -> None:
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
    _add_execution_options(run)
    run.add_argument("--no-report", action="store_true", help="do not render the report")
    run.add_argument("--html", default=DEFAULT_HTML, help=HTML_HELP)
    run.add_argument("--notebook", default=str(TRAIN_NOTEBOOK),
                     help="the training notebook to execute (default: the package's)")


def _add_execution_options(run) -> None:
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


def command(args: argparse.Namespace) -> int:
    from moe_core.runs.executors import make_executor
    from moe_core.runs.suite import run_suite

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
            print(f"report: {write_report([result.out_dir], html=args.html)}")
        except Exception as e:  # the runs are safe; say how to retry the report alone
            print(f"moe-suite: the report failed ({type(e).__name__}: {e}); the runs are kept: "
                  f"retry with `moe-suite report --out {out}`", file=sys.stderr)
            code = 1
    return code
