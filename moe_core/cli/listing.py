"""`moe-suite list`: the experiments, what each changes, the conditions and the suites."""

from __future__ import annotations

import argparse

from moe_core.config.catalog import format_listing


def add_parser(sub) -> None:
    sub.add_parser("list", help="the experiments, what each changes, and the named suites")


def command(args: argparse.Namespace) -> int:
    print(format_listing())
    return 0
