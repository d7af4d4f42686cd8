"""Files pagewalk writes that hold physical addresses (snapshots, pictures).

The kernel hides PFNs from unprivileged users for security reasons, so such files
are created mode 0600, never more open, and written atomically: a reader never
sees half a file, and a failure leaves nothing behind.
"""

from __future__ import annotations

import os


def write_private(path: str, write) -> int:
    """``write(f)`` to a temporary file (mode 0600) in ``path``'s directory, synced,
    then renamed to ``path``; the file's size.  Nothing is left behind on failure."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return os.path.getsize(path)
