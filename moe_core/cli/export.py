"""`moe-suite export`: the per-run, per-arm and comparison tables as csv, json or parquet."""

from __future__ import annotations

import argparse

from moe_core.analysis.export import EXPORT_FORMATS
from moe_core.cli.arguments import existing_folders


def add_parser(sub) -> None:
    export = sub.add_parser("export", help="write the per-run, per-arm and comparison "
                            "tables, with their noise columns, as csv, json or parquet")
    export.add_argument("--out", nargs="+", action="extend", metavar="DIR",
                        help="suite folders (default runs)")
    export.add_argument("--to", required=True, metavar="FOLDER",
                        help="where runs.<format>, arms.<format> and comparisons.<format> go")
    export.add_argument("--format", default="csv", choices=EXPORT_FORMATS)


def command(args: argparse.Namespace) -> int:
    from moe_core.analysis.export import export_tables
    from moe_core.analysis.results import load_runs

    results = load_runs(*existing_folders(args.out or ["runs"]))
    for path in export_tables(results, args.to, args.format):
        print(path)
    return 0
