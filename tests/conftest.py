"""Fixtures shared by the test modules."""

import pytest
import torch


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
