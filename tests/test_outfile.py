"""What ``-o PATH`` does to what is already at PATH (pagewalk.kernel.outfile, the README's
"What pagewalk changes"): a file is replaced atomically (0600), a device or FIFO is
written to in place, another user's file or link (the last component or a directory on
the way), a hard link, a directory and other special files are refused, a closed
standard output or a FIFO's reader that goes away is one line, and a killed write leaves
no temporary file."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest

from conftest import cli, requires_root
from test_cli_errors import one_line_error

from pagewalk.kernel import outfile

pytestmark = requires_root  # device nodes (mknod) and other users' files (chown) need root

NOBODY = 65534


def snapshot_meta(data: bytes, tmp_path) -> dict:
    """The metadata of the npz snapshot ``data`` (numpy alone reads it)."""
    path = tmp_path / "read-back.npz"
    path.write_bytes(data)
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
    path.unlink()
    return meta


def node(path) -> tuple[int, int, int, int]:
    """What a test checks stays as it was: kind and mode, owner, device number, inode."""
    st = os.lstat(path)
    return st.st_mode, st.st_uid, st.st_rdev, st.st_ino


def test_a_character_device_is_written_to_in_place(specimen, tmp_path):
    """A null device (made here, not the system's) stays a device: written through,
    itself or through a symbolic link; a full one gives a one-line 'no space' error and
    stays too.  Then, the code being right, the real /dev/null once."""
    null, full, link = tmp_path / "null", tmp_path / "full", tmp_path / "to-null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    link.symlink_to(null)
    before = {p: node(p) for p in (null, full, link)}
    for path in (null, link):
        r = cli("snapshot", specimen.pid, "-o", path)
        assert r.returncode == 0 and f"wrote {path}" in r.stderr, r.stderr
    r = cli("picture", specimen.pid, "-o", null, "--format", "html")
    assert r.returncode == 0, r.stderr
    one_line_error(cli("snapshot", specimen.pid, "-o", full), 1, str(full), "no space left")
    assert {p: node(p) for p in (null, full, link)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null", "to-null"]  # no temporary file
    devnull = node("/dev/null")
    assert cli("snapshot", specimen.pid, "-o", "/dev/null").returncode == 0
    assert node("/dev/null") == devnull and stat.S_ISCHR(devnull[0])


@pytest.mark.parametrize("file_format", ["npz", "parquet"])
def test_a_fifo_is_written_to_as_a_stream(specimen, tmp_path, file_format):
    """A named pipe gets the whole file, streamed, and stays a pipe; checking it before
    the work does not open it (that would wait for a reader that is not there yet)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo, 0o600)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    try:
        r = cli("snapshot", specimen.pid, "-o", fifo, "--format", file_format)
    finally:
        if not stat.S_ISFIFO(os.lstat(fifo).st_mode):  # replaced: the reader would wait for ever
            reader.kill()
        data = reader.communicate(timeout=60)[0]
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and [p.name for p in tmp_path.iterdir()] == ["pipe"]
    if file_format == "npz":
        assert snapshot_meta(data, tmp_path)["pid"] == specimen.pid
    else:
        import pyarrow.parquet as pq

        (tmp_path / "read.parquet").write_bytes(data)
        meta = json.loads(pq.read_schema(tmp_path / "read.parquet").metadata[b"pagewalk"])
        assert meta["pid"] == specimen.pid


def test_a_symbolic_link_to_standard_output_writes_there(specimen, tmp_path):
    """A link to /proc/self/fd/1 (what /dev/stdout is) writes to standard output, be it
    a pipe or a regular file, and stays a link; then the real /dev/stdout once."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    r = subprocess.run([sys.executable, "-m", "pagewalk", "snapshot", str(specimen.pid), "-o", str(link)],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert snapshot_meta(r.stdout, tmp_path)["pid"] == specimen.pid
    out = tmp_path / "redirected.npz"
    with open(out, "wb") as f:
        r = subprocess.run([sys.executable, "-m", "pagewalk", "snapshot", str(specimen.pid), "-o", str(link)],
                           stdout=f, stderr=subprocess.PIPE, timeout=300)
    assert r.returncode == 0, r.stderr
    assert snapshot_meta(out.read_bytes(), tmp_path)["pid"] == specimen.pid
    assert os.readlink(link) == "/proc/self/fd/1" and sorted(p.name for p in tmp_path.iterdir()) == [
        "redirected.npz", "stdout"]
    devstdout = os.readlink("/dev/stdout")
    r = subprocess.run([sys.executable, "-m", "pagewalk", "snapshot", str(specimen.pid), "-o", "/dev/stdout"],
                       capture_output=True, timeout=300)
    assert r.returncode == 0 and snapshot_meta(r.stdout, tmp_path)["pid"] == specimen.pid, r.stderr
    assert os.readlink("/dev/stdout") == devstdout


def test_another_users_file_is_refused_unless_forced(specimen, tmp_path):
    """Replacing another user's file would make it root's, mode 0600: refused in one
    line naming it and --force, the file untouched; --force replaces it."""
    for argv, name in ((["snapshot"], "theirs.npz"), (["picture", "--format", "html"], "theirs.html")):
        theirs = tmp_path / name
        theirs.write_bytes(b"their data")
        os.chown(theirs, NOBODY, NOBODY)
        theirs.chmod(0o644)
        before = node(theirs)
        r = cli(*argv, specimen.pid, "-o", theirs)
        one_line_error(r, 1, str(theirs), "another user", "--force")
        assert node(theirs) == before and theirs.read_bytes() == b"their data"
        r = cli(*argv, specimen.pid, "-o", theirs, "--force")
        assert r.returncode == 0, r.stderr
        st = os.lstat(theirs)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600) and theirs.read_bytes() != b"their data"
    assert snapshot_meta((tmp_path / "theirs.npz").read_bytes(), tmp_path)["pid"] == specimen.pid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.html", "theirs.npz"]


def test_a_planted_symbolic_link_is_not_followed(specimen, tmp_path):
    """Another user's link where root writes (to a device: /dev/mem would do) is refused
    unless --force; a link to a regular file is never followed, nor replaced."""
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    secret = tmp_path / "secret"
    secret.write_bytes(b"root's")
    planted, to_file = tmp_path / "planted", tmp_path / "to-file"
    planted.symlink_to(null)
    os.lchown(planted, NOBODY, NOBODY)
    to_file.symlink_to(secret)
    before = {p: node(p) for p in (null, secret, planted, to_file)}
    one_line_error(cli("snapshot", specimen.pid, "-o", planted), 1, str(planted), "another user", "--force")
    for force in ([], ["--force"]):
        one_line_error(cli("snapshot", specimen.pid, "-o", to_file, *force), 1, str(to_file), "symbolic link",
                       "regular file")
    assert {p: node(p) for p in before} == before and secret.read_bytes() == b"root's"
    assert cli("snapshot", specimen.pid, "-o", planted, "--force").returncode == 0
    assert {p: node(p) for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "planted", "secret", "to-file"]


def test_a_hard_link_is_not_split_unless_forced(specimen, tmp_path):
    """Renaming over one name of a file with two would split them: refused; with --force
    that name gets the new file (0600) and the other keeps the old one."""
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    first.write_bytes(b"old")
    os.link(first, second)
    one_line_error(cli("snapshot", specimen.pid, "-o", first), 1, str(first), "hard links", "--force")
    assert os.path.samefile(first, second) and first.read_bytes() == b"old"
    assert cli("snapshot", specimen.pid, "-o", first, "--force").returncode == 0
    assert second.read_bytes() == b"old" and os.lstat(second).st_nlink == 1
    assert stat.S_IMODE(os.lstat(first).st_mode) == 0o600
    assert snapshot_meta(first.read_bytes(), tmp_path)["pid"] == specimen.pid


def test_what_cannot_be_written_is_refused_before_the_work(specimen, tmp_path):
    """A directory (itself or through a link), a block device, a socket, a link to
    nothing: one line naming the path, exit 1, nothing changed or left behind."""
    directory, to_directory = tmp_path / "dir", tmp_path / "to-dir"
    block, sock, dangling = tmp_path / "block", tmp_path / "sock", tmp_path / "dangling"
    directory.mkdir()
    to_directory.symlink_to(directory)
    os.mknod(block, 0o600 | stat.S_IFBLK, os.makedev(7, 200))  # never opened
    os.mknod(sock, 0o600 | stat.S_IFSOCK)
    dangling.symlink_to(tmp_path / "nothing")
    before = {p: node(p) for p in tmp_path.iterdir()}
    for path, words in ((directory, "directory"), (to_directory, "directory"), (block, "block device"),
                        (sock, "socket"), (dangling, "symbolic link")):
        one_line_error(cli("snapshot", specimen.pid, "-o", path), 1, str(path), words)
    assert {p: node(p) for p in tmp_path.iterdir()} == before and not list(directory.iterdir())


def test_a_directory_link_of_another_user_is_not_followed(specimen, tmp_path):
    """Another user's symbolic link to a directory, anywhere in PATH (as its first
    component, behind a link of root's, or after ..), is refused in one line naming PATH
    and the link, unless --force; the file it leads to (root's, 0644) is untouched.  A
    link of root's is followed."""
    victim, work = tmp_path / "victim", tmp_path / "work"
    victim.mkdir()
    work.mkdir()
    important = victim / "important"
    important.write_bytes(b"root's")
    important.chmod(0o644)
    attacker, mine = tmp_path / "attacker", tmp_path / "mine"
    attacker.symlink_to(victim)
    os.lchown(attacker, NOBODY, NOBODY)
    mine.symlink_to(attacker)  # root's, to theirs
    before = {p: node(p) for p in (victim, important, attacker, mine)}
    for path in (attacker / "important", mine / "important", work / ".." / "attacker" / "important"):
        one_line_error(cli("snapshot", specimen.pid, "-o", path), 1, str(path), "attacker", "another user",
                       "--force")
    one_line_error(cli("picture", specimen.pid, "-o", attacker / "important", "--format", "html"), 1,
                   str(attacker / "important"), "another user")
    assert {p: node(p) for p in before} == before and important.read_bytes() == b"root's"
    assert sorted(p.name for p in victim.iterdir()) == ["important"]
    os.lchown(attacker, 0, 0)  # root's now: followed
    r = cli("snapshot", specimen.pid, "-o", mine / "new.npz")
    assert r.returncode == 0, r.stderr
    assert snapshot_meta((victim / "new.npz").read_bytes(), tmp_path)["pid"] == specimen.pid
    os.lchown(attacker, NOBODY, NOBODY)
    r = cli("snapshot", specimen.pid, "-o", attacker / "important", "--force")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.lstat(important).st_mode) == 0o600 and important.read_bytes() != b"root's"
    assert sorted(p.name for p in victim.iterdir()) == ["important", "new.npz"]


def test_a_directory_swapped_during_the_write_does_not_redirect_it(tmp_path):
    """The directory checked is the one written in: swapped for another user's link to
    root's directory while the file is written, the new file still lands in the
    directory that was checked (now under another name), never through the link."""
    work, victim, moved = tmp_path / "work", tmp_path / "victim", tmp_path / "moved"
    work.mkdir()
    victim.mkdir()
    (victim / "important").write_bytes(b"root's")

    def write(f) -> None:
        work.rename(moved)
        work.symlink_to(victim)
        os.lchown(work, NOBODY, NOBODY)
        f.write(b"the snapshot")

    assert outfile.write_private(str(work / "important"), write) == len(b"the snapshot")
    assert (victim / "important").read_bytes() == b"root's" and sorted(p.name for p in victim.iterdir()) == [
        "important"]
    assert (moved / "important").read_bytes() == b"the snapshot" and sorted(p.name for p in moved.iterdir()) == [
        "important"]


def _stdout_closed(*args) -> subprocess.CompletedProcess:
    """pagewalk with its standard output closed (as by ``>&-``)."""
    return subprocess.run([sys.executable, "-m", "pagewalk", *map(str, args)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=300, preexec_fn=lambda: os.close(1))


def test_a_closed_standard_output_is_one_line(specimen, tmp_path):
    """-o -, /dev/stdout, /dev/fd/1 or a link to /dev/stdout with standard output closed:
    'standard output is closed' naming the path, exit 1, no traceback and no file."""
    link = tmp_path / "out"
    link.symlink_to("/dev/stdout")
    for args in (["snapshot", "-o", "-"], ["picture", "-o", "-", "--format", "html"],
                 ["picture", "-o", "-", "--format", "png"], ["snapshot", "-o", "/dev/stdout"],
                 ["snapshot", "-o", "/dev/fd/1"], ["snapshot", "-o", link]):
        r = _stdout_closed(args[0], specimen.pid, *args[1:])
        one_line_error(r, 1, str(args[2]), "standard output is closed")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("file_format", ["npz", "parquet"])
def test_a_fifo_reader_that_goes_away_is_an_error(specimen, tmp_path, file_format):
    """A FIFO whose reader closes it before the end: one line naming the FIFO, exit 1
    (standard output's reader going away, as with | head, is no error: that one is the
    user's own pipeline; a FIFO named with -o was to get the whole file).  The reader
    here holds the FIFO open before pagewalk opens it, with a one-page buffer, and closes
    it after the first bytes: pagewalk's next write finds no reader."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDWR)  # a reader that does not wait for the writer (and sees no end of file)
    try:
        fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
        proc = subprocess.Popen([sys.executable, "-m", "pagewalk", "snapshot", str(specimen.pid), "-o", str(fifo),
                                 "--format", file_format], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        while not select.select([reader], [], [], 1)[0]:  # (an error before the write would never end a read)
            assert proc.poll() is None, proc.stderr.read()
        assert os.read(reader, 100)
    finally:
        os.close(reader)
    _, err = proc.communicate(timeout=300)
    one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, "", err), 1, str(fifo),
                   "reader", "went away")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_a_planted_temporary_name_does_not_stop_the_write(specimen, tmp_path):
    """A file where the temporary file would be (pagewalk's PID was once its name)
    neither stops the write nor is touched: the temporary name is random."""
    out = tmp_path / "snap.npz"

    def plant() -> None:  # in the child, whose PID pagewalk keeps
        planted = tmp_path / f".snap.npz.{os.getpid()}.tmp"
        planted.write_bytes(b"planted")
        os.chown(planted, NOBODY, NOBODY)

    r = subprocess.run([sys.executable, "-m", "pagewalk", "snapshot", str(specimen.pid), "-o", str(out)],
                       capture_output=True, text=True, timeout=300, preexec_fn=plant)
    assert r.returncode == 0, r.stderr
    assert snapshot_meta(out.read_bytes(), tmp_path)["pid"] == specimen.pid
    (planted,) = [p for p in tmp_path.iterdir() if p != out]
    assert planted.read_bytes() == b"planted" and os.lstat(planted).st_uid == NOBODY


def test_a_taken_temporary_name_is_tried_again(tmp_path, monkeypatch):
    """Temporary names already taken are skipped (and left alone) for another; when
    every name tried is taken, one error names the file asked for."""
    names = iter(["taken1", "taken2", "free"])
    monkeypatch.setattr(outfile, "_random_suffix", lambda: next(names))
    for suffix in ("taken1", "taken2"):
        (tmp_path / f".out.{suffix}.tmp").write_bytes(b"not ours")
    out = tmp_path / "out"
    assert outfile.write_private(str(out), lambda f: f.write(b"data")) == 4
    assert out.read_bytes() == b"data" and sorted(p.name for p in tmp_path.iterdir()) == [
        ".out.taken1.tmp", ".out.taken2.tmp", "out"]
    monkeypatch.setattr(outfile, "_random_suffix", lambda: "taken1")
    with pytest.raises(FileExistsError) as caught:
        outfile.write_private(str(out), lambda f: f.write(b"new"))
    assert caught.value.filename == str(out) and out.read_bytes() == b"data"
    assert (tmp_path / ".out.taken1.tmp").read_bytes() == b"not ours"


def _stopped_mid_write(proc: subprocess.Popen, directory) -> bool:
    """Stop ``proc`` once its temporary file is in ``directory``; whether it was
    stopped still writing it (false: it finished first, and has exited or is exiting;
    it is then left to run).  Stopped means the rename has not happened, as the
    temporary file is still there: waitid waits until it is stopped (kill returns
    before), without reaping it for Popen."""
    while not any(p.name.endswith(".tmp") for p in directory.iterdir()):
        if proc.poll() is not None:
            return False
    os.kill(proc.pid, signal.SIGSTOP)
    info = os.waitid(os.P_PID, proc.pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
    if info.si_code != os.CLD_STOPPED:
        return False
    return any(p.name.endswith(".tmp") for p in directory.iterdir())


@pytest.mark.parametrize("signum, file_format", [(signal.SIGTERM, "parquet"), (signal.SIGHUP, "npz"),
                                                 (signal.SIGINT, "npz"), (signal.SIGINT, "parquet")])
def test_a_killed_write_leaves_no_temporary_file(specimen, tmp_path, signum, file_format):
    """SIGTERM, SIGHUP or SIGINT while the file is written: the temporary file is
    removed, no file is made, and the exit status is the shell's for the signal (128 +
    its number).  The writer is stopped once its temporary file appears, and the signal
    sent only if it was still writing; a write that finished first is tried again."""
    # 1 GiB of read-faulted private memory (the zero page: no memory used): 262144 pages
    # to write, some 100 ms for npz, more for Parquet
    specimen.run("a = mmap(1 << 18, noreserve=True); madvise(a, 1 << 18, 22)")
    out = tmp_path / f"snap.{file_format}"
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "pagewalk", "snapshot", str(specimen.pid), "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
        try:
            if _stopped_mid_write(proc, tmp_path):
                proc.send_signal(signum)
                break
        finally:
            proc.send_signal(signal.SIGCONT)  # (not if poll() reaped it: its PID may be another's now)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        out.unlink()
    else:
        pytest.fail("every write finished before it could be stopped")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, (proc.returncode, err)
    assert list(tmp_path.iterdir()) == [], err
