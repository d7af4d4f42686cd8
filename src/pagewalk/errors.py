"""pagewalk's exceptions: one small hierarchy, translated from OSError at one boundary.

Every error a user can cause or meet (a PID that does not exist, a process that
exits while it is read, a kernel without a feature) is a :class:`PagewalkError`.
Library callers catch the subclass they care about; the CLI prints ``str(exc)``
as one line.  :func:`translating` is the one place where ``OSError`` from a
``/proc`` file becomes one of these, the way psutil wraps its readers.
"""

from __future__ import annotations

import errno
import os


class PagewalkError(Exception):
    """Base class of every error pagewalk raises on purpose."""


class NoSuchProcess(PagewalkError):
    """No process has this PID (or it exited before it could be read)."""

    def __init__(self, pid: int, msg: str | None = None) -> None:
        self.pid = pid
        super().__init__(msg or f"no process with PID {pid}")


class ProcessGone(NoSuchProcess):
    """The process exited while it was being read: what was read is partial."""

    def __init__(self, pid: int, msg: str | None = None) -> None:
        super().__init__(pid, msg or f"process {pid} exited during the scan; results would be partial")


class NoAddressSpace(PagewalkError):
    """The process exists but has no user address space (kernel thread or zombie)."""

    def __init__(self, pid: int, reason: str) -> None:
        self.pid = pid
        self.reason = reason
        super().__init__(f"process {pid} has no user address space ({reason})")


class AccessDenied(PagewalkError):
    """The kernel refused to let this user read the file."""

    def __init__(self, path: str, hint: str | None = None) -> None:
        self.path = path
        if hint is None:
            hint = ("the kernel refuses even root here: a security module, Yama ptrace scope or another "
                    "user namespace" if os.geteuid() == 0 else "run as root or as the process owner")
        super().__init__(f"cannot read {path}: permission denied ({hint})")


class Unsupported(PagewalkError):
    """This kernel (or its configuration) lacks a feature that was asked for."""


class NotMapped(PagewalkError, LookupError):
    """A virtual address lies in no mapping of the process."""

    def __init__(self, pid: int, vaddrs: list[int], count: int | None = None) -> None:
        """``count``: how many addresses were not mapped, when ``vaddrs`` holds only
        the first of them (a stream of millions keeps a few to name)."""
        self.pid = pid
        self.vaddrs = vaddrs
        self.count = len(vaddrs) if count is None else count
        shown = ", ".join(f"0x{v:x}" for v in vaddrs[:8])
        more = f" and {self.count - 8} more" if self.count > 8 else ""
        super().__init__(f"not mapped in process {pid}: {shown}{more}")


class InvalidArgument(PagewalkError, ValueError):
    """Malformed input: a PID, address, range or expression that cannot mean anything."""


def _stat_fields(pid: int) -> list[bytes] | None:
    """``/proc/PID/stat``'s fields from the state on (field 3 is [0]), or None if
    unreadable.  comm may hold spaces and parentheses: the fields start after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def proc_state(pid: int) -> tuple[str, int] | None:
    """Return ``(state letter, flags)`` from ``/proc/PID/stat``, or None if unreadable."""
    fields = _stat_fields(pid)
    try:
        return fields[0].decode(), int(fields[6])
    except (TypeError, IndexError, ValueError):
        return None


def is_zombie(pid: int) -> bool:
    """Whether the process has exited and its parent not reaped it yet (state Z or X)."""
    state = proc_state(pid)
    return state is not None and state[0] in ("Z", "X")


def proc_start_time(pid: int) -> int | None:
    """When the process started (``/proc/PID/stat`` field 22, clock ticks since boot),
    or None if unreadable.  exec keeps it (and the PID) while the memory is replaced;
    a new process on a reused PID has another."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19])
    except (TypeError, IndexError, ValueError):
        return None


def execed(pid: int, start_time: int | None) -> bool:
    """Whether the process that started at ``start_time`` (:func:`proc_start_time`),
    whose memory pagewalk was reading has gone, ran exec: it still has that PID and
    start time, and has a memory again.  One that is exiting has none (its maps read
    empty), whatever its state says at that moment."""
    if start_time is None or proc_start_time(pid) != start_time:
        return False
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            return bool(f.read(1))
    except OSError:
        return False


def gone_during(pid: int, start_time: int | None, during: str) -> ProcessGone:
    """The error for a process whose memory went away during ``during`` (``"the
    dump"``), with output already written: it ran exec (:func:`execed`), or it exited."""
    what = "changed its program (exec)" if execed(pid, start_time) else "exited"
    return ProcessGone(pid, f"process {pid} {what} during {during}; the output above is partial")


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
