"""The loader's write gate: its writers (the batches, the side duties) each pass it around one unit of
work, and a backup closes it to see ClickHouse and the loader's offsets stand still between two units.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WriteGate:
    """Many writers at once, or one holder that no writer works under.

    `writing()` wraps one batch or one duty: it waits while the gate is closed. `closed()` waits
    until the writers in progress have finished their unit, then keeps new ones out until it exits.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._closers = 0
        self._writers = 0

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            while self._closers:
                self._cond.wait()
            self._writers += 1
        try:
            yield
        finally:
            with self._cond:
                self._writers -= 1
                self._cond.notify_all()

    @contextmanager
    def closed(self) -> Iterator[None]:
        with self._cond:
            self._closers += 1  # from now on no new unit starts: a closer is never starved
            while self._writers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._closers -= 1
                self._cond.notify_all()

    @property
    def is_closed(self) -> bool:
        return self._closers > 0
