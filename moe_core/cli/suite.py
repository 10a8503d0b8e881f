"""`moe-suite`: run, view, export and report suites of runs, one module per command.

    moe-suite list
    moe-suite run --quick --seeds 3 --jobs 2
    moe-suite run --quick --seeds 3 --executor dask [--scheduler tcp://host:8786]
    moe-suite view --out runs/quick
    moe-suite export --out runs/quick --to exports --format parquet
    moe-suite report --out runs/quick --include exp8_original
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from moe_core.cli import export, listing, report, run, view
from moe_core.cli.interrupts import exit_status, sigterm_as_interrupt
from moe_core.errors import UserInputError

COMMANDS = {"list": listing, "run": run, "view": view, "export": export, "report": report}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moe-suite", description="Run, view and report suites of MoE training runs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`moe-suite`: exit 0 when every run finished, 1 when one failed, 2 for a user error,
    130 on Ctrl-C, 143 on SIGTERM."""
    args = build_parser().parse_args(argv)
    with sigterm_as_interrupt():
        try:
            return COMMANDS[args.command].command(args)
        except UserInputError as e:
            print(f"moe-suite: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            print("\nmoe-suite: interrupted; finished runs are kept and interrupted ones "
                  "resume from their last checkpoint: run the same command again to continue",
                  file=sys.stderr)
            return exit_status(e)


if __name__ == "__main__":
    # `python -m moe_core.cli.suite`: Dask pickles runs.runner.execute_batch by reference, so
    # nothing of this __main__ copy travels to the workers
    sys.exit(main())
