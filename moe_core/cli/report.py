"""`moe-suite report`: the HTML inflection report over folders of runs."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from moe_core.cli.arguments import existing_folders
from moe_core.cli.interrupts import exit_status
from moe_core.report.render import DEFAULT_HTML

HTML_HELP = (f"where to write the HTML report, relative to the current folder (default: "
             f"{DEFAULT_HTML} in the current folder)")


def add_parser(sub) -> None:
    report = sub.add_parser("report", help="render the HTML inflection report")
    report.add_argument("--out", nargs="+", action="extend", metavar="DIR",
                        help="suite folders (default runs)")
    report.add_argument("--include", nargs="+", action="extend", default=[],
                        metavar="REFERENCE_DIR",
                        help="folders of reference-format metrics, labelled as reference")
    report.add_argument("--html", default=DEFAULT_HTML, help=HTML_HELP)


def write_report(out_dirs: Sequence[str | Path], include: Sequence[str | Path] = (),
                 html: str | Path = DEFAULT_HTML) -> Path:
    """Render the report over the folders (include: the reference's, labelled) to html."""
    from moe_core.report.render import render_report

    return render_report(existing_folders(out_dirs),
                         existing_folders(include, "--include"), out_html=html)


def command(args: argparse.Namespace) -> int:
    try:
        print(write_report(args.out or ["runs"], args.include, args.html))  # the path written
    except KeyboardInterrupt as e:
        # the same Ctrl-C reaches the notebook's kernel: when it dies first, the abandoned
        # execution task ends in DeadKernelError, which asyncio would print as a traceback
        # ("Task exception was never retrieved") when the task is collected
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        print("\nmoe-suite: report interrupted; no report was written and an earlier one at "
              "that path is unchanged: run the same command again", file=sys.stderr)
        return exit_status(e)
    return 0
