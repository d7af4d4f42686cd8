"""Files pagewalk reads that a user names (a snapshot, a saved copy of /proc/kpageflags).

Such a path may name anything, and opening some things does something: a FIFO
waits for a writer (or wakes one that waits), a tape rewinds, ``/dev/watchdog``
arms the watchdog.  So what it names is looked at first (``stat``, which opens
nothing) and opened only if it is a regular file (``/proc`` files are), then
checked to be the very file looked at: a FIFO or device swapped in between is
refused, not read.
"""

from __future__ import annotations

import os
import stat

from ..errors import PagewalkError

__all__ = ["NotRegularFile", "open_regular"]

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


class NotRegularFile(PagewalkError):
    """A path to be read names something other than a regular file (``kind``: "a FIFO" ...)."""

    def __init__(self, path: str, kind: str) -> None:
        self.path, self.kind = path, kind
        super().__init__(f"{path}: not a regular file ({kind})")


def open_regular(path: str, buffering: int = -1):
    """``path`` open for reading in binary (``buffering`` as :func:`open`'s), if it
    is a regular file (a symbolic link followed to one); :class:`NotRegularFile`
    otherwise, without opening it.  OSError as :func:`os.stat` and :func:`os.open` raise it."""
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotRegularFile(path, _KINDS.get(stat.S_IFMT(before.st_mode), "a special file"))
    # without waiting, never becoming a controlling terminal, not inherited: whatever
    # was swapped in since the stat does nothing more than be opened
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not os.path.samestat(before, os.fstat(fd)):
            raise NotRegularFile(path, "replaced while it was opened")
        return open(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise
