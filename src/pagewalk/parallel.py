"""Reads from several threads at once, results in order.

The kernel's per-entry cost dominates bulk reads of /proc files (pagemap,
kpageflags), and a read releases the GIL, so reading ahead from a thread per CPU
overlaps those costs with each other and with the numpy work that consumes them.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (2 ms of start-up)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")
    R = TypeVar("R")

__all__ = ["workers", "ordered_map", "in_background", "Background"]


def workers() -> int:
    """Threads worth using: one a CPU this process may run on, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int = 0) -> Iterator[R]:
    """``map(fn, items)`` computed by ``threads`` threads, at most two tasks a thread
    ahead of the consumer (bounded memory), yielded in the order of ``items``."""
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or workers()
    todo = iter(items)
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque(pool.submit(fn, item) for _, item in zip(range(2 * threads), todo))
        while pending:
            result = pending.popleft().result()
            for item in todo:
                pending.append(pool.submit(fn, item))
                break
            yield result


def in_background(fn: Callable[..., R], *args, **kwargs) -> Background:
    """``fn(*args, **kwargs)`` started now in a thread of its own.  For reads that
    need no numpy, started before numpy is imported: the import keeps one CPU busy
    for tens of milliseconds, and a read releases the GIL while the kernel works."""
    return Background(fn, *args, **kwargs)


class Background:
    """A call running in a thread of its own (see :func:`in_background`)."""

    def __init__(self, fn: Callable[..., R], *args, **kwargs) -> None:
        import threading

        self._value: R | None = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller of result()
                self._error = exc

        # a daemon: Ctrl-C in the main thread must not wait for it
        self._thread = threading.Thread(target=run, name="pagewalk-background", daemon=True)
        self._thread.start()

    def result(self) -> R | None:
        """Wait for the call; its value, or its exception raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
