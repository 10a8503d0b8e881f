"""Command-line skins over the library: `moe-train` (one run) and `moe-suite` (many):
argparse, one-line messages for user errors, exit codes, SIGTERM handled like Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moe_core.config.catalog import (
    format_listing,
    parse_overrides,
    parse_seeds,
    resolve_experiments,
)
from moe_core.config.run_config import build_config, parse_override, split_arm
from moe_core.errors import UserInputError
from moe_core.runs import suite
from moe_core.runs.executors import make_executor
from moe_core.runs.runner import TRAIN_NOTEBOOK


def _overrides(pairs: list[str] | None) -> dict:
    return dict(parse_override(p) for p in pairs or [])


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moe-train", description="Train one MoE run.")
    parser.add_argument("--experiment", "-e", default="baseline",
                        help="an experiment, or EXPERIMENT@CONDITION (see `moe-suite list`)")
    parser.add_argument("--condition", default="",
                        help="a condition of parameters/conditions to run the experiment under")
    parser.add_argument("--preset", "-p", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="run folder (default runs/single/<experiment>/seed<k>)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="override a config key, e.g. --set dropout=0.2 (repeatable)")
    parser.add_argument("--force", action="store_true", help="retrain even if finished")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over instead of resuming from the last checkpoint")
    args = parser.parse_args(argv)
    from moe_core.training.trainer import train

    try:
        experiment, condition = split_arm(args.experiment)
        cfg = build_config(experiment, args.preset, _overrides(args.overrides),
                           condition=condition or args.condition)
        out = args.out or f"runs/single/{cfg.arm}/seed{args.seed}"
        metrics = train(cfg, seed=args.seed, out_dir=out, force=args.force,
                        resume=not args.no_resume)
    except UserInputError as e:
        print(f"moe-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moe-train: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    best, final = metrics.get("best_metrics"), metrics.get("final_metrics")
    floor = metrics.get("bayes_floor")
    line = (f"{cfg.arm} seed {args.seed}: {metrics['status']} after {metrics['actual_steps']} "
            f"steps in {metrics['total_time_minutes'] * 60:.1f} s")
    if best and final:
        line += (f"; val loss best {best['val_loss']:.4f} @ {best['step']}, "
                 f"final {final['val_loss']:.4f}")
    else:
        line += "; no evaluation finished"
    if floor is not None:
        line += f"; Bayes floor {floor:.4f}"
    if metrics.get("error"):
        line += f"\n{metrics['error']}"
    print(f"{line}\nmetrics: {out}/metrics.json")
    return 0 if metrics["status"] in ("completed", "early_stopped") else 1




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moe-suite", description="Run, view and report suites of MoE training runs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="the experiments, what each changes, and the named suites")

    _add_run_command(sub)

    view_p = sub.add_parser("view", help="the results table of finished runs")
    view_p.add_argument("--out", nargs="+", action="extend", metavar="DIR",
                        help="suite folders (default runs)")

    export_p = sub.add_parser("export", help="write the per-run, per-arm and comparison "
                              "tables, with their noise columns, as csv, json or parquet")
    export_p.add_argument("--out", nargs="+", action="extend", metavar="DIR",
                          help="suite folders (default runs)")
    export_p.add_argument("--to", required=True, metavar="FOLDER",
                          help="where runs.<format>, arms.<format> and comparisons.<format> go")
    export_p.add_argument("--format", default="csv", choices=suite.EXPORT_FORMATS)

    report_p = sub.add_parser("report", help="render the HTML inflection report")
    report_p.add_argument("--out", nargs="+", action="extend", metavar="DIR",
                          help="suite folders (default runs)")
    report_p.add_argument("--include", nargs="+", action="extend", default=[],
                          metavar="REFERENCE_DIR",
                          help="folders of reference-format metrics, labelled as reference")
    report_p.add_argument("--html", help="where to write the HTML report, relative to the "
                          "current folder (default: reports/inflection_report.html in the "
                          "current folder)")
    return parser


def _add_run_command(sub) -> None:
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
    run.add_argument("--html", help="where to write the HTML report, relative to the current "
                     "folder (default: reports/inflection_report.html in the current folder)")
    run.add_argument("--notebook", default=str(TRAIN_NOTEBOOK),
                     help="the training notebook to execute (default: the repository's)")


def _run_command(args: argparse.Namespace) -> int:
    experiments = resolve_experiments(args.experiments or (), args.suite,
                                      condition=args.condition)
    seeds = parse_seeds(args.seeds)
    overrides = parse_overrides(args.overrides)
    out = Path(args.out or Path("runs") / (args.suite or "custom"))
    executor = make_executor(args.executor, args.jobs, args.scheduler)
    result = suite.run_suite(experiments, seeds, args.preset, overrides, out, args.force,
                       executor=executor, notebook=args.notebook)
    print("\n" + result.summary(), flush=True)
    code = 0 if result.ok else 1
    if not args.no_report:
        try:
            print(f"report: {suite.report([result.out_dir], html=args.html)}")
        except Exception as e:  # the runs are safe; say how to retry the report alone
            print(f"moe-suite: the report failed ({type(e).__name__}: {e}); the runs are kept: "
                  f"retry with `moe-suite report --out {out}`", file=sys.stderr)
            code = 1
    return code


def _report_command(args: argparse.Namespace) -> int:
    try:
        print(suite.report(args.out or ["runs"], args.include, args.html))  # the path written
    except KeyboardInterrupt as e:
        print("\nmoe-suite: report interrupted; no report was written and an earlier one at "
              "that path is unchanged: run the same command again", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the runs stop and record "interrupted"."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def suite_main(argv: Sequence[str] | None = None) -> int:
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
            for path in suite.export(args.out or ["runs"], args.to, args.format):
                print(path)
            return 0
        if args.command == "view":
            table = suite.view(args.out or ["runs"])
            print(table.to_string(index=False) if len(table) else
                  f"no runs under {', '.join(map(str, args.out or ['runs']))}")
            return 0
        return _report_command(args)
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
    sys.exit(train_main())
