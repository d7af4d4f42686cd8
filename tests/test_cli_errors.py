"""Bad input and awkward processes: one-line errors, the contract's exit statuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import pagewalk
from conftest import PAGE, cli, cli_json

VSYSCALL = 0xFFFFFFFFFF600000


def one_line_error(r: subprocess.CompletedProcess, status: int, *needles: str) -> None:
    assert r.returncode == status, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pagewalk: error: "), r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_no_such_process():
    pid = 4194303  # above any pid_max default in use here: never a live PID
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    for command in ("maps", "dump"):
        one_line_error(cli(command, pid), 1, f"no process with PID {pid}")
    one_line_error(cli("v2p", pid, "1000"), 1, "no process")
    with pytest.raises(pagewalk.NoSuchProcess):
        pagewalk.Process(pid)


def test_kernel_thread():
    """PID 2 is kthreadd: no mm, pagemap gives ESRCH; we say why."""
    one_line_error(cli("maps", 2), 1, "kernel thread")
    with pytest.raises(pagewalk.NoAddressSpace):
        pagewalk.Process(2).mappings()


def test_zombie(zombie):
    one_line_error(cli("maps", zombie), 1, "zombie")
    one_line_error(cli("dump", zombie), 1, "zombie")


@pytest.mark.parametrize("args, needle", [
    (["maps", "abc"], "not a process ID"),
    (["maps", "self"], "self"),
    (["maps", "-5"], ""),
    (["maps", "1", "--sort", "bogus"], "cannot sort by"),
    (["v2p", "1", "xyz"], "not a hexadecimal address"),
    (["v2p", "1", "0x"], "not a hexadecimal address"),
    (["dump", "1", "--range", "5000-3000"], "empty range"),
    (["dump", "1", "--range", "5000"], "not a range"),
    (["dump", "1", "--range", "1000+zz"], "not a size"),
    (["dump", "1", "--where", "bogus"], "valid: present"),
    (["dump", "1", "--format", "xml"], "invalid choice"),
    (["maps"], "required"),
    ([], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_malformed_arguments_exit_2(args, needle):
    one_line_error(cli(*args), 2, needle)


def test_vsyscall_is_listed_without_entries():
    """[vsyscall] lies above the end of user space: pagemap gives 0 bytes there,
    which is the kernel's definition, not an error."""
    pid = os.getpid()
    doc = cli_json("maps", pid)
    vsys = [m for m in doc["mappings"] if m["path"] == "[vsyscall]"]
    if not vsys:
        pytest.skip("this kernel shows no [vsyscall] mapping")
    assert all(vsys[0][k] is None for k in ("present", "swapped", "rss"))
    r = cli("dump", pid, "--range", f"{VSYSCALL:x}+4K")
    assert r.returncode == 0 and "no pagemap entries" in r.stdout
    r = cli("v2p", pid, hex(VSYSCALL), "--json")
    assert r.returncode == 0
    import json

    assert json.loads(r.stdout)[0]["present"] is False
    assert pagewalk.Process(pid).translate(VSYSCALL).entry is None


def test_process_exits_during_a_library_scan(specimen):
    """The scan raises ProcessGone once the target is gone: never silent zeros."""
    addr = specimen.run("a = mmap(1 << 20, 'none', noreserve=True); result = a")
    with pagewalk.Process(specimen.pid) as p:
        chunks = p.iter_page_tables(addr, addr + (1 << 20) * PAGE)
        first = next(chunks)
        assert len(first) > 0
        os.kill(specimen.pid, signal.SIGKILL)
        specimen._proc.wait()
        with pytest.raises(pagewalk.ProcessGone):
            for _ in chunks:
                pass


def test_process_exits_during_a_dump(specimen):
    """The CLI prints what it had, then says the output is partial (exit 1)."""
    specimen.run("a = mmap(1 << 28, 'none', noreserve=True); write(mmap(1))")  # 1 TiB: seconds to read
    proc = subprocess.Popen([sys.executable, "-m", "pagewalk", "dump", str(specimen.pid), "--format", "seed"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    os.kill(specimen.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert b"exited during the dump" in err and b"partial" in err
    assert err.count(b"\n") == 1 and b"Traceback" not in err


def test_mappings_that_change_during_a_scan_are_reported(specimen):
    """counts() reads maps again afterwards: a mapping unmapped meanwhile is named,
    not silently counted as zeros."""
    a, b = specimen.run("a = mmap(4); b = mmap(4); write(a, 4); write(b, 4); result = [a, b]")
    with pagewalk.Process(specimen.pid) as p:
        before = p.mappings()
        specimen.run(f"munmap({b}, 4)")
        report = p.counts(before)
    assert [m.start for m in report.changed] == [b]
    assert all(m.start != b for m in p.counts().changed)
    r = cli("maps", specimen.pid)
    assert r.returncode == 0 and "changed during the scan" not in r.stderr


@pytest.mark.parametrize("args, needle", [
    (["maps", "²"], "not a process ID"),
    (["maps", "١"], "not a process ID"),
    (["dump", "1", "--range", "1000+1_0"], "not a size"),
    (["dump", "1", "--where", "~~present"], "unknown page state"),
])
def test_more_malformed_arguments_exit_2(args, needle):
    one_line_error(cli(*args), 2, needle)


def test_v2p_with_empty_stdin_is_a_usage_error():
    one_line_error(cli("v2p", os.getpid(), "-", input=""), 2, "no addresses")


def test_a_thread_id_is_refused_with_its_process_id():
    import threading

    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    thread.start()
    try:
        tid = thread.native_id
        one_line_error(cli("maps", tid), 2, f"thread of process {os.getpid()}")
    finally:
        done.set()
        thread.join()


def test_output_errors_are_one_line(specimen):
    with open("/dev/full", "w") as full:
        for args in (["maps", str(specimen.pid)], ["v2p", str(specimen.pid), "1000"]):
            r = subprocess.run([sys.executable, "-m", "pagewalk", *args], stdout=full, stderr=subprocess.PIPE,
                               text=True)
            one_line_error(r, 1, "cannot write output")


def test_where_on_what_cannot_be_known_fails_before_any_output(specimen):
    r = cli("dump", specimen.pid, "--where", "huge", "--format", "csv", env={"PAGEWALK_NO_SCAN": "1"})
    one_line_error(r, 1, "PAGEMAP_SCAN")
    assert r.stdout == ""


def test_paths_that_are_not_utf8(specimen, tmp_path):
    """A mapped file whose name is not UTF-8: JSON stays valid Unicode (\\xNN escapes),
    the seed format gives the raw bytes."""
    path = os.path.join(os.fsencode(str(tmp_path)), b"bad\xffname")
    with open(path, "wb") as f:
        f.write(b"x" * PAGE)
    addr = specimen.run(f"fd = os.open({path!r}, os.O_RDONLY); a = mmap(1, 'r', shared=True, fd=fd); read(a)\n"
                        "result = a")
    doc = cli_json("maps", specimen.pid)
    row = next(m for m in doc["mappings"] if m["start"] == addr)
    assert row["path"].endswith("bad\\xffname")
    r = subprocess.run([sys.executable, "-m", "pagewalk", "dump", str(specimen.pid), "--format", "seed",
                        "--range", f"{addr:x}+4K"], capture_output=True)
    assert r.returncode == 0 and r.stdout.splitlines()[1].endswith(b"bad\xffname")
    import json

    line = cli("dump", specimen.pid, "--format", "jsonl", "--range", f"{addr:x}+4K").stdout
    assert json.loads(line)["mapping"].endswith("bad\\xffname")


def test_a_walk_on_a_process_that_exited_is_process_gone(specimen):
    """PAGEMAP_SCAN on the fd of a process that exited fails with ESRCH: that is
    ProcessGone, like a read, never a raw OSError."""
    with pagewalk.Process(specimen.pid) as p:
        scanner = p._scanner()
        if scanner is None:
            pytest.skip("no PAGEMAP_SCAN on this kernel")
        os.kill(specimen.pid, signal.SIGKILL)
        specimen._proc.wait()
        with pytest.raises(pagewalk.ProcessGone):
            scanner.region_array(0x10000, 0x7FFF0000, anyof=8, return_mask=8)


def test_a_read_in_the_background_of_a_process_that_exited_is_process_gone(specimen):
    """snapshot reads the page table in a thread while numpy imports: a target that
    exits meanwhile is ProcessGone when the result is asked for, not a thread's
    traceback, and the CLI says so in one line without leaving a file."""
    from pagewalk.parallel import in_background

    with pagewalk.Process(specimen.pid) as p:
        if not p.scan_in_use:
            pytest.skip("no PAGEMAP_SCAN on this kernel")
        resident = p.resident_read()
        os.kill(specimen.pid, signal.SIGKILL)
        specimen._proc.wait()
        reading = in_background(resident.scan_and_read)
        with pytest.raises(pagewalk.ProcessGone):
            resident.read_pending()  # nothing queued yet, or the pieces of a process that is gone
            reading.result()
        with pytest.raises(pagewalk.ProcessGone):
            p.resident_table()


def test_a_snapshot_of_a_process_that_exits_is_a_one_line_error(specimen, tmp_path):
    """The target exits while the snapshot is under way: pagewalk is caught (stopped)
    as soon as it holds the target's pagemap open, the target is killed and reaped,
    and pagewalk goes on: whichever read notices first (the page table read, or the
    check after the frames, whose flags would be those of frames the target had
    freed), it says the process exited, in one line, exit 1, and leaves no file."""
    # Pages to read (1 GiB of read-faulted private memory: the zero page 262144
    # times, no memory used; MADV_POPULATE_READ). From the open to the check, pagewalk
    # imports numpy and reads them all (some 200 ms here): it is stopped well inside.
    specimen.run("a = mmap(1 << 18, noreserve=True); madvise(a, 1 << 18, 22)")
    out = tmp_path / "snap.npz"
    proc = subprocess.Popen([sys.executable, "-m", "pagewalk", "snapshot", str(specimen.pid), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    target = f"/proc/{specimen.pid}/pagemap"
    try:
        while not _holds_open(proc.pid, target):
            assert proc.poll() is None, f"pagewalk ended before it opened {target}: {proc.stderr.read()}"
        os.kill(proc.pid, signal.SIGSTOP)  # held where it is, with the target's pagemap open
        os.kill(specimen.pid, signal.SIGKILL)
        specimen._proc.wait()  # gone and reaped: its memory is freed
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"process {specimen.pid} exited" in err, err
    assert not out.exists() and not list(tmp_path.iterdir())


def _holds_open(pid: int, path: str) -> bool:
    """Whether process ``pid`` has ``path`` open (its fd table, as /proc shows it)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            continue
    return False


def test_output_file_errors_name_the_users_path(specimen, tmp_path):
    """-o naming a directory or a file in a missing directory: the error names what the
    user typed, never the temporary file, and nothing is left behind."""
    directory = tmp_path / "a-directory"
    directory.mkdir()
    missing = tmp_path / "no-such-dir" / "s.npz"
    for args, path in ((["snapshot", specimen.pid, "-o", directory], directory),
                       (["snapshot", specimen.pid, "-o", missing], missing),
                       (["picture", specimen.pid, "-o", directory, "--format", "html"], directory)):
        r = cli(*args)
        one_line_error(r, 1, str(path))
        assert ".tmp" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"] and not list(directory.iterdir())


def _pagewalk_bytes(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pagewalk", *map(str, args)], capture_output=True, cwd=cwd,
                          timeout=300)


def test_output_dash_writes_to_stdout(specimen, tmp_path):
    """-o - writes the snapshot or the picture to stdout (no file named '-'); a format
    that cannot be told from '-' is asked for."""
    import json

    import numpy as np

    a = specimen.run("a = mmap(40); write(a, 30); result = a")
    r = _pagewalk_bytes("snapshot", specimen.pid, "-o", "-", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "-").exists() and b"standard output" in r.stderr and len(r.stderr.splitlines()) == 1
    (tmp_path / "piped.npz").write_bytes(r.stdout)
    with np.load(tmp_path / "piped.npz") as z:  # a complete archive, readable by numpy alone
        assert json.loads(str(z["meta"]))["pid"] == specimen.pid
    doc = cli_json("snapshot", "--load", tmp_path / "piped.npz")
    row = next(m for m in doc["mappings"] if m["start"] == a)
    present = sum(pagemap_present(specimen.pid, a + k * PAGE) for k in range(40))
    assert row["present"] == present == 30
    r = _pagewalk_bytes("picture", specimen.pid, "-o", "-", "--format", "html", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.lstrip().lower().startswith(b"<!doctype html"), r.stderr
    assert not (tmp_path / "-").exists()
    r = cli("picture", specimen.pid, "-o", "-")
    assert r.returncode == 2 and "--format" in r.stderr and len(r.stderr.splitlines()) == 1
    from importlib.util import find_spec

    if find_spec("matplotlib"):  # the test extra installs it
        import xml.etree.ElementTree as ET

        r = _pagewalk_bytes("picture", specimen.pid, "-o", "-", "--format", "svg", cwd=tmp_path)
        assert r.returncode == 0 and ET.fromstring(r.stdout).tag == "{http://www.w3.org/2000/svg}svg", r.stderr
        r = _pagewalk_bytes("picture", specimen.pid, "-o", "-", "--format", "png", cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith(b"\x89PNG\r\n"), r.stderr
        assert not (tmp_path / "-").exists()
    if not find_spec("pyarrow"):
        return
    r = _pagewalk_bytes("snapshot", specimen.pid, "-o", "-", "--format", "parquet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "piped.parquet").write_bytes(r.stdout)
    doc = cli_json("snapshot", "--load", tmp_path / "piped.parquet")
    assert next(m for m in doc["mappings"] if m["start"] == a)["present"] == 30


def test_binary_output_is_not_written_to_a_terminal(specimen, tmp_path):
    import pty

    master, slave = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "pagewalk", "snapshot", str(specimen.pid), "-o", "-"],
                           stdout=slave, stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=300)
        os.set_blocking(master, False)
        try:
            written = os.read(master, 65536)
        except BlockingIOError:
            written = b""
    finally:
        os.close(slave)
        os.close(master)
    one_line_error(r, 1, "terminal")
    assert written == b"" and not (tmp_path / "-").exists()


def pagemap_present(pid: int, vaddr: int) -> bool:
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(vaddr // PAGE * 8)
        return bool(int.from_bytes(f.read(8), "little") >> 63)


@pytest.mark.parametrize("args", [["maps", "{pid}"], ["usage", "{pid}"], ["dump", "{pid}"], ["v2p", "{pid}", "0x10"],
                                  ["snapshot", "{pid}", "-o", "-"], ["who", "--pfn", "1"]])
def test_a_closed_standard_output_is_one_line(specimen, args):
    """``pagewalk ... >&-``: an error as ``ls >&-`` gives one, not a traceback (Python
    leaves sys.stdout None), nor silence."""
    argv = [sys.executable, "-m", "pagewalk", *[a.format(pid=specimen.pid) for a in args]]
    r = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *argv], capture_output=True, text=True, timeout=60)
    one_line_error(r, 1, "standard output is closed")
