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
    on_tty, _ = run_on_terminal(args, "stdout")
    assert ESC in on_tty and b"\x1b[34m" in on_tty  # the present column, in blue
    plain = re.sub(rb"\x1b\[[0-9;]*m", b"", on_tty.replace(b"\r\n", b"\n"))
    assert ESC not in plain  # colour codes only
    piped = subprocess.run([sys.executable, "-m", "pagewalk", *args], capture_output=True).stdout
    assert ESC not in piped
    # the same layout: header line identical, one line a mapping plus the total
    assert plain.splitlines()[0] == piped.splitlines()[0] and len(plain.splitlines()) == len(piped.splitlines())
    no_color, _ = run_on_terminal(args, "stdout", {"NO_COLOR": "1"})
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
