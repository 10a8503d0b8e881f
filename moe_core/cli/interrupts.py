"""Ctrl-C and SIGTERM for the command lines: a batch system's or `kill`'s SIGTERM stops the
work as cleanly as Ctrl-C, and each has its conventional exit status."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the runs stop and record "interrupted"."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated (on the main thread only: elsewhere a
    signal handler cannot be set)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM, as a shell reports them."""
    return 143 if isinstance(interrupt, Terminated) else 130
