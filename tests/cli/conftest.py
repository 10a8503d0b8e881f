"""What the command-line tests share: one finished suite for the whole session."""

import pytest
from suite_helpers import SMOKE

from moe_core.cli.suite import main as suite_cli_main


@pytest.fixture(scope="session")
def finished_suite(tmp_path_factory, data_cache):
    """baseline and short_run, seed 0, trained two at a time."""
    out = tmp_path_factory.mktemp("suite") / "runs"
    code = suite_cli_main(["run", "-e", "baseline", "short_run", "--jobs", "2", "--out", str(out),
                       *SMOKE])
    return out, code
