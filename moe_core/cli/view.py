"""`moe-suite view`: the results table of every run under the folders, in the terminal."""

from __future__ import annotations

import argparse

from moe_core.cli.arguments import existing_folders


def add_parser(sub) -> None:
    view = sub.add_parser("view", help="the results table of finished runs")
    view.add_argument("--out", nargs="+", action="extend", metavar="DIR",
                      help="suite folders (default runs)")


def command(args: argparse.Namespace) -> int:
    from moe_core.analysis.results import load_runs
    from moe_core.analysis.summary import results_table

    folders = existing_folders(args.out or ["runs"])
    table = results_table(load_runs(*folders))
    print(table.to_string(index=False) if len(table) else
          f"no runs under {', '.join(map(str, folders))}")
    return 0
