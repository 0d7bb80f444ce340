"""SIGINT and SIGTERM handled by a function while a block runs (the arm's stop, a recorder's deferral), the
previous handlers restored after. Python runs signal handlers in the main thread only, so elsewhere nothing is
installed."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

#: the signals that end a run: Ctrl-C and a polite kill
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def handling_stop_signals(handler: Callable[[int, object], None]) -> Iterator[bool]:
    """While active, :data:`STOP_SIGNALS` call ``handler(signum, frame)``; yields whether it was installed (False
    outside the main thread, where nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
