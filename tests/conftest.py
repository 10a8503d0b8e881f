"""Fixtures shared by the test modules."""

import hostile
import pytest
import torch

from moe_core.report import render


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """One prepared-data cache for the test session, seen by kernels and subprocesses through
    the environment; nothing is written to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOE_CORE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def one_thread():
    """A 25k-parameter model trains fastest on one thread, whatever the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def hostile_report(tmp_path_factory):
    """The report of hostile runs (tests/hostile.py) as (HTML path, HTML text), rendered once
    for the escaping test and the browser test; its executed notebook is kept beside it."""
    root = tmp_path_factory.mktemp("hostile")
    runs, references = hostile.make_hostile_runs(root)
    out = root / "report" / "report.html"
    render.render_report([runs], [references / name for name in hostile.FOLDER_NAMES],
                         out_html=out, keep_notebook=True)
    return out, out.read_text()
