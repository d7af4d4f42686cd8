"""Reads from several threads at once, results in order.

The kernel's per-entry cost dominates bulk reads of /proc files (pagemap,
kpageflags), and a read releases the GIL, so reading ahead from a thread per CPU
overlaps those costs with each other and with the numpy work that consumes them.
"""

from __future__ import annotations

import os
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
    ahead of the consumer (bounded memory), yielded in the order of ``items``.  An
    exception of ``fn`` (or of ``items``) is raised where its result would have been.

    Plain threads and a condition, not concurrent.futures: importing that costs 13 ms
    (logging, traceback, re), as long as ``usage --all``'s whole reading."""
    import threading

    threads = threads or workers()
    todo = iter(items)
    ready = threading.Condition()
    results: dict[int, tuple[bool, object]] = {}  # task number: (succeeded, value or exception)
    taken = consumed = 0  # tasks taken from ``items``; results handed to the consumer
    exhausted = stop = False

    def work() -> None:
        nonlocal taken, exhausted
        while True:
            with ready:
                while not (stop or exhausted) and taken - consumed >= 2 * threads:
                    ready.wait()
                if stop or exhausted:
                    return
                number = taken
                try:
                    item = next(todo)
                except StopIteration:
                    exhausted = True
                    ready.notify_all()
                    return
                except BaseException as exc:  # raised to the consumer in its turn
                    exhausted = True
                    taken += 1
                    results[number] = (False, exc)
                    ready.notify_all()
                    return
                taken += 1
            try:
                outcome = (True, fn(item))
            except BaseException as exc:
                outcome = (False, exc)
            with ready:
                results[number] = outcome
                ready.notify_all()

    pool = [threading.Thread(target=work, name="pagewalk-read", daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    try:
        while True:
            with ready:
                while consumed not in results and not (exhausted and consumed >= taken):
                    ready.wait()
                if consumed not in results:
                    return
                ok, value = results.pop(consumed)
                consumed += 1
                ready.notify_all()
            if not ok:
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        with ready:
            stop = True
            ready.notify_all()
        for thread in pool:
            thread.join()


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
