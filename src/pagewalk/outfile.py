"""Files pagewalk writes that hold physical addresses (snapshots, pictures).

The kernel hides PFNs from unprivileged users for security reasons, so what pagewalk
creates is mode 0600, never more open.  What ``-o PATH`` does depends on what is at PATH,
decided before any work (:func:`check_writable`) and again when writing
(:func:`write_private`); the README ("What pagewalk changes") has the same rules:

- nothing, or a regular file of this user with no other hard link: *replaced*: a
  temporary file (0600) in PATH's directory is written, synced and renamed over PATH, so
  a reader never sees half a file, and nothing is left behind on an error, SIGINT,
  SIGTERM or SIGHUP;
- ``-``, or a symbolic link to standard output (``/dev/stdout``, ``/dev/fd/1``): written
  to standard output as a stream;
- a character device or a FIFO (``/dev/null``, a named pipe), itself or through a
  symbolic link: written *in place*, as a stream: the node stays what it is;
- refused, naming PATH: a directory, a block device or a socket; a symbolic link to
  anything else (followed to a regular file, root would write wherever the link's owner
  points it); unless ``force``: a regular file of another user (replacing it would make it
  this user's, mode 0600) or with other hard links (replacing it splits them), and a
  symbolic link, FIFO or device of a user other than this one or root (one planted where
  root writes could lead to /dev/mem, or hand the reader the file).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import sys

from .errors import PagewalkError

STDOUT = "-"  # the file name that means standard output

_KINDS = {stat.S_IFREG: "regular file", stat.S_IFDIR: "directory", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device", stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFLNK: "symbolic link"}


def check_writable(path: str, what: str, binary: bool, force: bool = False) -> None:
    """Fail before any work, naming ``path``, where ``write_private`` would not write
    ``what`` (the snapshot, the picture ...): see the module's rules; also (``binary``)
    a terminal as standard output.  Nothing is opened (a FIFO would wait for a reader)."""
    if _target(path, force)[0] == "stdout" and binary and sys.stdout.isatty():
        raise PagewalkError(f"will not write {what} (binary) to a terminal: redirect standard output or "
                            "name a file with -o")


def write_private(path: str, write, force: bool = False) -> int:
    """``write(f)`` to ``path`` by the module's rules (a new file is mode 0600); the
    bytes written.  An error names ``path``, never the temporary file."""
    how, st, followed = _target(path, force)
    if how == "stdout":
        return _write_stdout(write)
    if how == "in place":
        return _write_in_place(path, write, st, followed)
    return _replace(path, write)


def _target(path: str, force: bool) -> tuple[str, os.stat_result | None, bool]:
    """How ``path`` is written: ``("stdout" | "in place" | "replace", the stat of what
    is written in place, whether a symbolic link leads there)``; or the error that
    refuses it."""
    if path == STDOUT:
        return "stdout", None, False
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
        return "replace", None, False
    link = stat.S_ISLNK(st.st_mode)
    if link:
        try:
            st, owner = os.stat(path), st.st_uid
        except FileNotFoundError:
            raise PagewalkError(f"will not write through {path}: a symbolic link to nothing, which pagewalk "
                                "does not follow (name the file itself)") from None
        if _is_stdout(st):
            return "stdout", None, False
        if not force and owner not in (0, os.geteuid()):
            raise PagewalkError(f"will not write through {path}: a symbolic link of another user (uid {owner}); "
                                "--force follows it")
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), "special file")
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        if not force and st.st_uid not in (0, os.geteuid()):
            raise PagewalkError(f"will not write to {path}: a {kind} of another user (uid {st.st_uid}); "
                                "--force writes to it")
        return "in place", st, link
    if link:
        raise PagewalkError(f"will not write through {path}: a symbolic link to a {kind}, which pagewalk "
                            "does not follow (name the file itself)")
    if not stat.S_ISREG(st.st_mode):
        raise PagewalkError(f"will not write to {path}: a {kind}")
    if not force and st.st_uid != os.geteuid():
        raise PagewalkError(f"will not replace {path}: it belongs to another user (uid {st.st_uid}); --force "
                            "replaces it with a file of this user, mode 0600")
    if not force and st.st_nlink > 1:
        raise PagewalkError(f"will not replace {path}: it has {st.st_nlink} hard links, which replacing would "
                            "split; --force replaces it (the other names keep the old file)")
    return "replace", None, False


def _is_stdout(st: os.stat_result) -> bool:
    try:
        return os.path.samestat(st, os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # closed, or replaced by an object without a file
        return False


def _replace(path: str, write) -> int:
    """Write a temporary file beside ``path`` (0600), sync it and rename it over ``path``."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    restore = _signals_raise()
    created = True  # until the exclusive create says otherwise: a signal may land just after it
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            created = False  # nothing of ours there (an existing one is not ours to remove)
            raise
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
        os.replace(tmp, path)
    except BaseException as exc:
        if created:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError) and tmp in (exc.filename, exc.filename2):
            raise OSError(exc.errno, exc.strerror, path) from None  # name the file asked for
        raise
    finally:
        restore()
    return size


def _signals_raise():
    """Until the returned function is called, SIGTERM and SIGHUP (and SIGINT if Python's
    handler is gone) raise SystemExit(128 + signal), so that the temporary file is
    removed and the exit status is still the shell's for that signal.  Signals a program
    handles or ignores are left alone, as they are outside the main thread."""
    import signal

    def stop(signum: int, frame) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second one must not cut the clean-up short
        raise SystemExit(128 + signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, stop)
        except ValueError:  # not the main thread
            break
    return lambda: [signal.signal(signum, handler) for signum, handler in previous.items()]


def _write_in_place(path: str, write, st: os.stat_result, followed: bool) -> int:
    """Open the device or FIFO ``st`` at ``path`` (a FIFO waits for its reader, as for
    ``cat > fifo``) and write to it as a stream."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (0 if followed else os.O_NOFOLLOW))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        with open(fd, "wb") as f:
            if not os.path.samestat(os.fstat(fd), st):  # swapped since it was checked
                raise PagewalkError(f"will not write to {path}: it changed while pagewalk worked")
            stream = _Stream(f)
            write(stream)
    except OSError as exc:
        if exc.filename is None:  # a write (or the flush on close): name the file asked for
            raise OSError(exc.errno, exc.strerror, path) from None
        raise
    return stream.written


class _Stream:
    """A binary file (standard output, a device, a FIFO) as a write-only stream that counts what it is given; its
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
        raise io.UnsupportedOperation("written as a stream")

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
