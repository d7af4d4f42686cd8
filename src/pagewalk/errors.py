"""pagewalk's exceptions: one small hierarchy.

Every error a user can cause or meet is a :class:`PagewalkError`; the CLI prints
``str(exc)`` as one line and exits 2 for :class:`InvalidArgument` (malformed input),
1 for the others.  The tree::

    PagewalkError
    ├── NoSuchProcess          no process has this PID
    │   ├── ProcessGone        it exited (or ran exec) while it was read
    │   └── NoAddressSpace     it has no memory to read: a kernel thread, a zombie
    ├── AccessDenied           the kernel refuses this user (root or the owner needed)
    ├── Unsupported            this kernel lacks the feature (config option, version)
    ├── MissingExtra           an optional Python package is not installed
    ├── NotMapped              an address lies in no mapping (also a LookupError)
    └── InvalidArgument        malformed input (also a ValueError)

Catching :class:`NoSuchProcess` catches every way a process cannot be read for
not being (or no longer being) a process with memory, as psutil's ``ZombieProcess``
is a ``NoSuchProcess``.  ``OSError`` from a kernel file becomes one of these in one
place, :mod:`pagewalk.kernel.oserrors`.
"""

from __future__ import annotations

import os

__all__ = [
    "PagewalkError", "NoSuchProcess", "ProcessGone", "NoAddressSpace", "AccessDenied", "Unsupported",
    "MissingExtra", "NotMapped", "InvalidArgument", "Denied"
]


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


class NoAddressSpace(NoSuchProcess):
    """The process exists but has no user address space: a kernel thread, or a zombie
    (it exited and its parent has not reaped it).  ``reason`` says which."""

    def __init__(self, pid: int, reason: str) -> None:
        self.reason = reason
        super().__init__(pid, f"process {pid} has no user address space ({reason})")


class AccessDenied(PagewalkError):
    """The kernel refused this user ``path`` (a /proc or /sys file), or what was asked
    needs a privilege this user lacks (``msg`` then says which)."""

    def __init__(self, path: str, hint: str | None = None, msg: str | None = None) -> None:
        self.path = path
        if hint is None:
            hint = ("the kernel refuses even root here: a security module, Yama ptrace scope or another "
                    "user namespace" if os.geteuid() == 0 else "run as root or as the process owner")
        super().__init__(msg or f"cannot read {path}: permission denied ({hint})")


class Unsupported(PagewalkError):
    """This kernel (or its configuration) lacks a feature that was asked for."""


class Denied(str):
    """A reason a feature cannot be used here that is a missing privilege (root, the
    process's owner), not a missing kernel feature: code that raises on such a reason
    raises :class:`AccessDenied`, and :class:`Unsupported` for any other reason."""


class MissingExtra(PagewalkError, ImportError):
    """An optional Python package is not installed: ``package`` (PyPI name), which the
    extra ``pagewalk[extra]`` installs."""

    def __init__(self, package: str, extra: str) -> None:
        self.package, self.extra = package, extra
        super().__init__(f"this needs {package}, which is not installed: pip install 'pagewalk[{extra}]'")


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


