"""pagewalk's exceptions: one small hierarchy, translated from OSError at one boundary.

Every error a user can cause or meet (a PID that does not exist, a process that
exits while it is read, a kernel without a feature) is a :class:`PagewalkError`.
Library callers catch the subclass they care about; the CLI prints ``str(exc)``
as one line.  :func:`translating` is the one place where ``OSError`` from a
``/proc`` file becomes one of these, the way psutil wraps its readers.
"""

from __future__ import annotations

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


