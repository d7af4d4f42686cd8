"""The one boundary where ``OSError`` becomes a :class:`pagewalk.errors.PagewalkError`,
the way psutil wraps its readers: every reader of a kernel file opens and reads it
inside ``with translating(pid, path):``.
"""

from __future__ import annotations

import errno
import os

from ..errors import AccessDenied, NoAddressSpace, NoSuchProcess, PagewalkError, ProcessGone
from .procfs import proc_state


PF_KTHREAD = 0x00200000  # include/linux/sched.h


def explain_no_mm(pid: int) -> PagewalkError:
    """Say why ``/proc/PID/pagemap`` gave ESRCH: kernel thread, zombie, or gone."""
    state = proc_state(pid)
    if state is None:
        return ProcessGone(pid)
    letter, flags = state
    if flags & PF_KTHREAD:
        return NoAddressSpace(pid, "a kernel thread")
    if letter in ("Z", "X"):
        return NoAddressSpace(pid, "a zombie: it exited and its parent has not reaped it")
    return ProcessGone(pid)


class translating:  # noqa: N801 - used like a function: ``with translating(pid, path):``
    """Translate OSError raised inside the block into a :class:`PagewalkError`.

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


def from_oserror(exc: OSError, pid: int | None, path: str, *, started: bool = False) -> Exception:
    """The PagewalkError that an OSError from ``path`` means (or the OSError itself)."""
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return AccessDenied(path)
    if pid is not None and code == errno.ESRCH:
        # Seen alive before: it exited during the work (even if a zombie now).
        return ProcessGone(pid) if started else explain_no_mm(pid)
    if pid is not None and code == errno.ENOENT:
        if started or os.path.exists(f"/proc/{pid}"):
            return ProcessGone(pid)
        return NoSuchProcess(pid)
    if code == errno.ENOENT:
        return PagewalkError(f"cannot read {path}: no such file")
    return PagewalkError(f"cannot read {path}: {os.strerror(code) if code else exc}")
