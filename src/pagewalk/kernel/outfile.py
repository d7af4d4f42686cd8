"""Files pagewalk writes that hold physical addresses (snapshots, pictures).

The kernel hides PFNs from unprivileged users for security reasons, so what pagewalk
creates is mode 0600, never more open.  What ``-o PATH`` does depends on what is at PATH,
decided before any work (:func:`check_writable`) and again when writing
(:func:`write_private`); the README ("What pagewalk changes") has the same rules:

- PATH's directory is found one component at a time, following only symbolic links of
  this user or root (unless ``force``: one of another user could point root's write
  into any directory), and is then held open: what is checked, created, renamed or
  opened is a name in that directory, so a directory swapped for a link meanwhile
  cannot redirect the write;
- nothing, or a regular file of this user with no other hard link: *replaced*: a
  temporary ``.NAME.RANDOM.tmp`` (0600) in PATH's directory is written, synced and
  renamed over PATH, so a reader never sees half a file, and nothing is left behind on
  an error, SIGINT, SIGTERM or SIGHUP;
- ``-``, or a symbolic link to standard output (``/dev/stdout``, ``/dev/fd/1``): written
  to standard output as a stream (refused if standard output is closed);
- a character device or a FIFO (``/dev/null``, a named pipe), itself or through a
  symbolic link: written *in place*, as a stream: the node stays what it is; a reader
  that goes away before the end is an error naming PATH;
- refused, naming PATH: a directory, a block device or a socket; a symbolic link to
  anything else (followed to a regular file, root would write wherever the link's owner
  points it); unless ``force``: a regular file of another user (replacing it would make it
  this user's, mode 0600) or with other hard links (replacing it splits them), and a
  symbolic link, FIFO or device of a user other than this one or root (one planted where
  root writes could lead to /dev/mem, or hand the reader the file).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import signal
import stat
import sys

from ..errors import PagewalkError

__all__ = ["STDOUT", "check_writable", "write_private"]

STDOUT = "-"  # the file name that means standard output

_KINDS = {stat.S_IFREG: "regular file", stat.S_IFDIR: "directory", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device", stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFLNK: "symbolic link"}
_MAX_LINKS = 40  # symbolic links followed in one path, as the kernel's MAXSYMLINKS
_TEMPORARY_TRIES = 3  # random temporary names tried before giving up (one taken is already a surprise)
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # what stops a write: its temporary file is removed


def check_writable(path: str, what: str, binary: bool, force: bool = False) -> None:
    """Fail before any work, naming ``path``, where ``write_private`` would not write
    ``what`` (the snapshot, the picture ...): see the module's rules; also (``binary``)
    a terminal as standard output.  Nothing is opened (a FIFO would wait for a reader)."""
    with _target(path, force) as target:
        if target.how == "stdout" and binary and sys.stdout.isatty():
            raise PagewalkError(f"will not write {what} (binary) to a terminal: redirect standard output or "
                                "name a file with -o")


def write_private(path: str, write, force: bool = False) -> int:
    """``write(f)`` to ``path`` by the module's rules (a new file is mode 0600); the
    bytes written.  An error names ``path``, never the temporary file."""
    with _target(path, force) as target:
        if target.how == "stdout":
            return _write_stdout(write)
        if target.how == "in place":
            return _write_in_place(path, target, write)
        return _replace(path, target, write)


class _Target:
    """How ``-o PATH`` is written: ``how`` is "stdout", "in place" or "replace";
    ``directory`` (an O_PATH descriptor) and ``name`` the entry written, ``st`` the stat
    of what is written in place, ``followed`` whether a symbolic link leads there."""

    __slots__ = ("how", "directory", "name", "st", "followed")

    def __init__(self, how: str, directory: int = -1, name: str = "", st: os.stat_result | None = None,
                 followed: bool = False) -> None:
        self.how, self.directory, self.name, self.st, self.followed = how, directory, name, st, followed


@contextlib.contextmanager
def _target(path: str, force: bool):
    """The :class:`_Target` of ``path`` (its directory held open until the end of the
    ``with``), or the error that refuses it."""
    if path == STDOUT:
        _stdout_open(path)
        yield _Target("stdout")
        return
    if not _stdout_open(None) and _names_standard_output(path):
        _stdout_open(path)  # raises: say so rather than "a link to nothing" (or to whatever now holds fd 1)
    directory, name = _open_directory(path, force)
    try:
        yield _classify(path, directory, name, force)
    finally:
        os.close(directory)


def _classify(path: str, directory: int, name: str, force: bool) -> _Target:
    """What is at ``name`` in ``directory`` decides how ``path`` is written (the module's
    rules), or the error that refuses it."""
    try:
        st = os.lstat(name, dir_fd=directory)
    except FileNotFoundError:
        return _Target("replace", directory, name)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    link = stat.S_ISLNK(st.st_mode)
    if link:
        try:
            st, owner = os.stat(name, dir_fd=directory), st.st_uid
        except FileNotFoundError:
            raise PagewalkError(f"will not write through {path}: a symbolic link to nothing, which pagewalk "
                                "does not follow (name the file itself)") from None
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, path) from None
        if _is_stdout(st):
            return _Target("stdout")
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
        return _Target("in place", directory, name, st, link)
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
    return _Target("replace", directory, name)


def _open_directory(path: str, force: bool) -> tuple[int, str]:
    """The directory that holds ``path``'s last component, opened O_PATH, and that
    component.  The kernel would follow every symbolic link on the way; here each
    component is opened in the one before without following, and a link is followed
    only if this user or root owns it (or ``force``): root's ``-o theirs/x`` must not
    write where another user's link points.  (Stricter than the kernel's
    protected_symlinks, which guards only sticky world-writable directories and
    trusts a link of the directory's owner.)"""
    parts = path.split("/")
    name = parts.pop()
    names_directory = name in ("", ".", "..")  # "d/", "d/.": the path is a directory's
    if names_directory:
        parts.append(name)
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        fd = os.open("/" if path.startswith("/") else ".", flags)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    todo, walked, links = parts[::-1], "/" if path.startswith("/") else "", 0
    try:
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            try:
                step = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            except NotADirectoryError:  # a link (O_NOFOLLOW opens it, O_DIRECTORY refuses it) or a file
                step = -1
            if step >= 0:
                os.close(fd)
                fd, walked = step, os.path.join(walked, part)
                continue
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            # the link itself, so that its owner and its text are one link's, not two
            # (it may be swapped between the two calls)
            link = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                st = os.fstat(link)
                if stat.S_ISDIR(st.st_mode):  # a directory again: open it
                    todo.append(part)
                    continue
                if not stat.S_ISLNK(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                if not force and st.st_uid not in (0, os.geteuid()):
                    raise PagewalkError(f"will not write to {path}: {os.path.join(walked, part)} is a symbolic "
                                        f"link of another user (uid {st.st_uid}), which pagewalk does not follow "
                                        "to a directory; --force follows it")
                target = os.readlink("", dir_fd=link)
            finally:
                os.close(link)
            if target.startswith("/"):
                os.close(fd)
                fd, walked = -1, "/"
                fd = os.open("/", flags)
            todo.extend(reversed(target.split("/")))
        if names_directory:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        if isinstance(exc, OSError) and exc.filename != path:
            raise OSError(exc.errno, exc.strerror, path) from None  # name the path asked for
        raise
    return fd, name


def _stdout_open(path: str | None) -> bool:
    """Whether standard output is open (fd 1 closed when Python started leaves
    ``sys.stdout`` None); if not and ``path`` is given, the error that names it."""
    out = sys.stdout
    if out is None or out.closed:
        is_open = False
    else:
        try:
            os.fstat(out.fileno())
            is_open = True
        except io.UnsupportedOperation:  # an object in its place (a caller's capture): written as it is
            is_open = True
        except (OSError, ValueError):
            is_open = False
    if not is_open and path is not None:
        raise PagewalkError(f"cannot write to {path}: standard output is closed")
    return is_open


def _names_standard_output(path: str) -> bool:
    """Whether ``path`` is, by its text, this process's fd 1 (``/dev/fd/1``,
    ``/proc/self/fd/1``), itself or through symbolic links such as ``/dev/stdout``:
    where fd 1 is closed, following them would find nothing, or a file this process
    opened since."""
    own = rf"/proc/(?:self|thread-self|{os.getpid()}(?:/task/\d+)?)/fd/1|/dev/fd/1"
    path = os.path.abspath(path)
    for _ in range(_MAX_LINKS):
        if re.fullmatch(own, os.path.normpath(path)):
            return True
        try:
            path = os.path.join(os.path.dirname(path), os.readlink(path))
        except OSError:
            return False
    return False


def _is_stdout(st: os.stat_result) -> bool:
    try:
        return os.path.samestat(st, os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # closed, or replaced by an object without a file
        return False


def _replace(path: str, target: _Target, write) -> int:
    """Write a temporary file beside ``path`` (0600), sync it and rename it over ``path``,
    all in the directory found when ``path`` was checked."""
    directory, name = target.directory, target.name
    restore = _signals_raise()
    made: list[str] = []  # the temporary file, once created: a signal may land just after
    try:
        fd = _create_temporary(directory, name, made)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
        os.replace(made[0], name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException as exc:
        for tmp in made:
            try:
                os.unlink(tmp, dir_fd=directory)
            except OSError:
                pass
        if isinstance(exc, OSError) and {exc.filename, exc.filename2} & {*made, name}:
            raise OSError(exc.errno, exc.strerror, path) from None  # name the file asked for
        raise
    finally:
        restore()
    return size


def _create_temporary(directory: int, name: str, made: list[str]) -> int:
    """Create ``.NAME.RANDOM.tmp`` (0600) in ``directory``, appending its name to
    ``made`` with the signals that stop a write blocked, so that a signal's clean-up
    removes it if (and only if) it is ours: a name already taken (by anyone: one that
    can be guessed could be planted) is tried again with another.  An error names
    ``name``."""
    for _ in range(_TEMPORARY_TRIES):
        tmp = f".{name}.{_random_suffix()}.tmp"
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=directory)
            made.append(tmp)
            return fd
        except FileExistsError:
            continue
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, name) from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    raise OSError(errno.EEXIST, f"every temporary name tried beside it was taken ({_TEMPORARY_TRIES})", name)


def _random_suffix() -> str:
    """8 random hex digits: a temporary name no one can plant in advance."""
    return os.urandom(4).hex()


def _signals_raise():
    """Until the returned function is called, SIGTERM and SIGHUP (and SIGINT if Python's
    handler is gone) raise SystemExit(128 + signal), so that the temporary file is
    removed and the exit status is still the shell's for that signal.  Signals a program
    handles or ignores are left alone, as they are outside the main thread."""
    def stop(signum: int, frame) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second one must not cut the clean-up short
        raise SystemExit(128 + signum)

    previous = {}
    for signum in _SIGNALS:
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, stop)
        except ValueError:  # not the main thread
            break
    return lambda: [signal.signal(signum, handler) for signum, handler in previous.items()]


def _write_in_place(path: str, target: _Target, write) -> int:
    """Open the device or FIFO found at ``path`` (a FIFO waits for its reader, as for
    ``cat > fifo``) and write to it as a stream."""
    try:
        fd = os.open(target.name, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (0 if target.followed else os.O_NOFOLLOW),
                     dir_fd=target.directory)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        with open(fd, "wb") as f:
            if not os.path.samestat(os.fstat(fd), target.st):  # swapped since it was checked
                raise PagewalkError(f"will not write to {path}: it changed while pagewalk worked")
            stream = _Stream(f)
            write(stream)
    except BrokenPipeError:
        # not standard output's reader (pagewalk ... | head, which is no error): a
        # FIFO's, which the user named, and which has half a file
        raise PagewalkError(f"the reader of {path} went away before the whole file was written") from None
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
