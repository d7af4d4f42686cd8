"""Terminal behaviour: tables coloured by meaning on a terminal, plain when piped
or with NO_COLOR; a progress bar on stderr for whole-machine work when stderr is a
terminal, nothing when it is not.  Real pseudo-terminals, no mocks."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import requires_root, run_on_terminal

pytestmark = requires_root
ESC = b"\x1b["


def test_tables_are_coloured_on_a_terminal_only(specimen):
    specimen.run("a = mmap(20); write(a, 20)")
    args = ["maps", str(specimen.pid)]
    wide = {"COLUMNS": "400"}  # a terminal wide enough for every column
    on_tty, _ = run_on_terminal(args, "stdout", wide)
    assert ESC in on_tty and b"\x1b[34m" in on_tty  # the present column, in blue
    plain = re.sub(rb"\x1b\[[0-9;]*m", b"", on_tty.replace(b"\r\n", b"\n"))
    assert ESC not in plain  # colour codes only
    piped = subprocess.run([sys.executable, "-m", "pagewalk", *args], capture_output=True).stdout
    assert ESC not in piped
    # the same layout: header line identical, one line a mapping plus the total
    assert plain.splitlines()[0] == piped.splitlines()[0] and len(plain.splitlines()) == len(piped.splitlines())
    no_color, _ = run_on_terminal(args, "stdout", {"NO_COLOR": "1", **wide})
    assert ESC not in no_color
    dumb, _ = run_on_terminal(["usage", str(specimen.pid)], "stdout", {"TERM": "dumb"})
    assert ESC not in dumb


def test_progress_bar_on_a_terminal_stderr_only():
    on_tty, stdout = run_on_terminal(["usage", "--all"], "stderr")
    assert b"pagewalk usage" in on_tty and b"processes" in on_tty
    assert stdout.startswith(b"  PID") or b"PID" in stdout.splitlines()[0]
    assert ESC not in stdout  # stdout piped: plain
    r = subprocess.run([sys.executable, "-m", "pagewalk", "usage", "--all"], capture_output=True)
    assert b"pagewalk usage" not in r.stderr and ESC not in r.stderr


def test_maps_fits_the_terminal_and_wide_or_piped_keeps_every_column(specimen):
    """At 80 columns every line fits, the mapping names are shortened from the middle
    and stay apart; --wide, a wide terminal, or a pipe: every column."""
    specimen.run("import ctypes.util; ctypes.CDLL(ctypes.util.find_library('m'))")  # libm beside libc
    args = ["maps", str(specimen.pid)]
    on_tty, _ = run_on_terminal(args, "stdout", {"COLUMNS": "80", "NO_COLOR": "1"})
    lines = on_tty.decode().replace("\r\n", "\n").splitlines()
    assert lines[0].split() == ["START", "PERMS", "SIZE", "RSS", "EXCL", "OTHER", "MAPPING"]
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    with open(f"/proc/{specimen.pid}/maps") as f:
        paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    libs = {p.rsplit("/", 1)[1] for p in paths if "/libc.so" in p or "/libm.so" in p}
    shown = {line.split()[-1] for line in lines[1:-1]}
    assert len(libs) == 2 and all(any(s.endswith(lib) for s in shown) for lib in libs), (libs, shown)
    piped = subprocess.run([sys.executable, "-m", "pagewalk", *args], capture_output=True, text=True).stdout
    for wide in (run_on_terminal([*args, "--wide"], "stdout", {"COLUMNS": "80", "NO_COLOR": "1"})[0].decode(),
                 run_on_terminal(args, "stdout", {"COLUMNS": "400", "NO_COLOR": "1"})[0].decode(), piped):
        assert wide.split("\n")[0].split()[:4] == ["START", "END", "PERMS", "PAGES"], wide[:200]


def test_ctrl_c_during_a_dump_to_a_file_clears_the_progress_bar(specimen, tmp_path):
    """The bar is on the terminal (stderr) while the dump goes to a file; Ctrl-C (SIGINT)
    stops it with status 130, and the bar's line is erased, not left on screen."""
    import os
    import pty
    import signal

    specimen.run("a = mmap(262144); write(a, 262144)")  # 1 GiB: a dump of some seconds
    master, slave = pty.openpty()
    with open(tmp_path / "dump.csv", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pagewalk", "dump", str(specimen.pid), "--format", "csv"],
                                stdout=out, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    got = b""
    while b"pagewalk dump" not in got:  # the bar is drawn: the dump is under way
        chunk = os.read(master, 65536)
        assert chunk, got
        got += chunk
    proc.send_signal(signal.SIGINT)
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 130
    after_bar = got[got.rindex(b"pagewalk dump"):]
    assert after_bar.endswith(b"\x1b[2K") or b"\x1b[2K" in after_bar.split(b"\x1b[?25h")[-1], after_bar[-200:]
