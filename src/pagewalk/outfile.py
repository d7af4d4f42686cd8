"""Files pagewalk writes that hold physical addresses (snapshots, pictures).

The kernel hides PFNs from unprivileged users for security reasons, so such files
are created mode 0600, never more open, and written atomically: a reader never
sees half a file, and a failure leaves nothing behind.  The name ``-`` means
standard output (``-o -``), written as a stream.
"""

from __future__ import annotations

import errno
import io
import os
import sys

STDOUT = "-"  # the file name that means standard output


def check_writable(path: str, what: str, binary: bool) -> None:
    """Fail before any work, naming ``path``, where ``write_private`` could not write
    ``what`` (the snapshot, the picture ...): a directory, a directory that does not
    exist, or (``binary``) a terminal as standard output."""
    if path == STDOUT:
        if binary and sys.stdout.isatty():
            from .errors import PagewalkError

            raise PagewalkError(f"will not write {what} (binary) to a terminal: redirect standard output or "
                                "name a file with -o")
        return
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)


def write_private(path: str, write) -> int:
    """``write(f)`` to a temporary file (mode 0600) in ``path``'s directory, synced,
    then renamed to ``path``; the file's size.  Nothing is left behind on failure,
    and an error names ``path``, never the temporary file.  ``-`` writes to standard
    output instead; the size is then the bytes written."""
    if path == STDOUT:
        return _write_stdout(write)
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
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and tmp in (exc.filename, exc.filename2):
            raise OSError(exc.errno, exc.strerror, path) from None
        raise
    return os.path.getsize(path)


class _Stream:
    """Standard output as a write-only stream that counts what it is given; its
    ``tell`` is that count, and ``seek`` fails (zipfile then writes as to a pipe;
    matplotlib takes only objects that have the method)."""

    def __init__(self, raw) -> None:
        self.raw, self.written, self.closed = raw, 0, False

    def write(self, data) -> int:
        self.raw.write(data)
        n = memoryview(data).nbytes
        self.written += n
        return n

    def tell(self) -> int:
        return self.written

    def seek(self, *_) -> int:
        raise io.UnsupportedOperation("standard output is written as a stream")

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False


def _write_stdout(write) -> int:
    sys.stdout.flush()
    stream = _Stream(sys.stdout.buffer)
    write(stream)
    stream.flush()
    return stream.written
