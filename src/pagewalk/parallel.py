"""Reads from several threads at once, results in order.

The kernel's per-entry cost dominates bulk reads of /proc files (pagemap,
kpageflags), and a read releases the GIL, so reading ahead from a thread per CPU
overlaps those costs with each other and with the numpy work that consumes them.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


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
