"""The one boundary where ``OSError`` becomes a :class:`pagewalk.errors.PagewalkError`,
the way psutil wraps its readers: every reader of a kernel file opens and reads it
inside ``with translating(pid, path):``, or raises :func:`from_oserror`'s answer.

Readers whose failures mean something of their own (a per-frame file the kernel was
built without, a file name that is a symbolic link) give :func:`from_oserror` their
wording (``denied``, ``missing``, ``loop``); the errno cases are decided here only.
Reads ``/proc/PID/stat`` (fs/proc/array.c) to tell why a process has no memory.
"""

from __future__ import annotations

import errno
import os

from ..errors import AccessDenied, NoAddressSpace, NoSuchProcess, PagewalkError, ProcessGone
from .procfs import proc_stat

__all__ = ["PF_KTHREAD", "cannot_read", "explain_no_mm", "from_oserror", "translating"]


PF_KTHREAD = 0x00200000  # include/linux/sched.h


def explain_no_mm(pid: int) -> PagewalkError:
    """Why ``/proc/PID/pagemap`` (or another file of the process's memory) gave ESRCH.

    Returns :class:`NoAddressSpace` for a kernel thread (PF_KTHREAD in
    ``/proc/PID/stat``) or a zombie (state Z or X), :class:`ProcessGone` otherwise
    (the process went meanwhile).  Raises nothing."""
    stat = proc_stat(pid)
    if stat is None:
        return ProcessGone(pid)
    if stat.flags & PF_KTHREAD:
        return NoAddressSpace(pid, "a kernel thread")
    if stat.state in ("Z", "X"):
        return NoAddressSpace(pid, "a zombie: it exited and its parent has not reaped it")
    return ProcessGone(pid)


class translating:  # noqa: N801 - used like a function: ``with translating(pid, path):``
    """Translate OSError raised inside the block into a :class:`PagewalkError`
    (:func:`from_oserror`, given this ``pid``, ``path`` and ``started``).

    ``started`` says the process was already seen alive, so its disappearance
    now means it exited during the work (:class:`ProcessGone`).  (A class, not
    a contextlib generator: contextlib costs start-up time.)
    """

    __slots__ = ("pid", "path", "started")

    def __init__(self, pid: int | None, path: str, *, started: bool = False) -> None:
        self.pid, self.path, self.started = pid, path, started

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> None:
        if isinstance(exc, OSError):
            raise from_oserror(exc, self.pid, self.path, started=self.started) from exc


def from_oserror(exc: OSError, pid: int | None, path: str, *, started: bool = False,
                 denied: str | None = None, missing: PagewalkError | None = None,
                 loop: PagewalkError | None = None) -> PagewalkError:
    """The :class:`PagewalkError` that ``exc``, raised reading ``path``, means.

    EACCES/EPERM: :class:`AccessDenied` (with ``denied`` as its hint where given).
    With a ``pid`` (a file of that process): ESRCH is :func:`explain_no_mm`'s answer,
    ENOENT :class:`ProcessGone` (``started``: the process was seen alive before, or
    its /proc directory is still there) or :class:`NoSuchProcess`.  Without one,
    ENOENT is ``missing`` where given, ELOOP ``loop`` where given.  Anything else:
    ``cannot read PATH: STRERROR`` (:func:`cannot_read`).  Raises nothing."""
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return AccessDenied(path, denied)
    if pid is not None and code == errno.ESRCH:
        # Seen alive before: it exited during the work (even if a zombie now).
        return ProcessGone(pid) if started else explain_no_mm(pid)
    if pid is not None and code == errno.ENOENT:
        if started or os.path.exists(f"/proc/{pid}"):
            return ProcessGone(pid)
        return NoSuchProcess(pid)
    if code == errno.ENOENT and missing is not None:
        return missing
    if code == errno.ELOOP and loop is not None:
        return loop
    if code == errno.ENOENT:
        return PagewalkError(f"cannot read {path}: no such file")
    return cannot_read(path, exc)


def cannot_read(path: str, exc: OSError) -> PagewalkError:
    """``cannot read PATH: STRERROR``: the error for a failure no other case names."""
    return PagewalkError(f"cannot read {path}: {os.strerror(exc.errno) if exc.errno else exc}")
