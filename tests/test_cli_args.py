"""Arguments that are out of range, empty or of the wrong kind get a one-line answer
with the contract's status (2 for a bad argument), never a traceback, a hang or a
silent empty result; a PID named twice is one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from conftest import cli, requires_root
from test_cli_errors import one_line_error


def run_closed_stdin(*args: str) -> subprocess.CompletedProcess:
    """``pagewalk ARGS`` with file descriptor 0 closed (Python then has no sys.stdin)."""
    return subprocess.run([sys.executable, "-m", "pagewalk", *args], capture_output=False, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60, preexec_fn=lambda: os.close(0))


@pytest.mark.parametrize("command", ["wss", "watch"])
@pytest.mark.parametrize("seconds", ["inf", "1e308", "nan", "-inf", "0", "-1", "1e-400", "soon", ""])
def test_an_interval_is_a_finite_number_of_seconds_up_to_a_day(specimen, command, seconds):
    one_line_error(cli(command, specimen.pid, "--interval", seconds), 2, "--interval")


def test_an_interval_of_a_day_is_accepted_and_a_day_and_a_second_is_not(specimen):
    # (watch checks the interval before it asks for a terminal: the refusal then says terminal)
    one_line_error(cli("watch", specimen.pid, "--interval", "86400"), 1, "terminal")
    one_line_error(cli("watch", specimen.pid, "--interval", "86401"), 2, "at most 86400")


@requires_root
@pytest.mark.parametrize("pfn", ["8000000000000000", "ffffffffffffffff", "0x80000000000000"])
def test_who_refuses_a_pfn_beyond_what_pagemap_can_hold(pfn):
    one_line_error(cli("who", "--pfn", pfn), 2, "out of range")


def test_v2p_says_when_stdin_is_closed(specimen):
    r = run_closed_stdin("v2p", str(specimen.pid), "-")
    one_line_error(r, 2, "stdin", "closed")


@requires_root
def test_types_refuses_a_device_fifo_or_other_proc_file_as_saved_kpageflags():
    one_line_error(cli("types", "-F", "/dev/zero", "-a", "0,16"), 2, "not a regular file")
    with tempfile.TemporaryDirectory() as d:
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo)
        # No writer ever opens it: reading it would wait for ever.
        r = subprocess.run([sys.executable, "-m", "pagewalk", "types", "-F", fifo], capture_output=True, text=True,
                           timeout=30)
        one_line_error(r, 2, "not a regular file")
    # A /proc file reads as empty: another than kpageflags would read on to 2**55 entries.
    r = subprocess.run([sys.executable, "-m", "pagewalk", "types", "-F", "/proc/self/pagemap"], capture_output=True,
                       text=True, timeout=30)
    one_line_error(r, 2, "not /proc/kpageflags nor a saved copy")


@requires_root
def test_types_reads_a_saved_copy_to_its_end():
    """A saved copy's size says where memory ends; the copy's pages are all counted."""
    with open("/proc/kpageflags", "rb") as f:
        head = f.read(8 * 1000)
    with tempfile.NamedTemporaryFile() as saved:
        saved.write(head)
        saved.flush()
        doc = json.loads(cli("types", "-F", saved.name, "--json").stdout)
    assert doc["total"]["pages"] == 1000


@requires_root
@pytest.mark.parametrize("pid", ["-1", "0", "4294967296", ""])
def test_types_refuses_a_pid_that_cannot_be_one(pid):
    one_line_error(cli("types", "-p", pid), 2, "process ID")


@requires_root
@pytest.mark.parametrize("where", [["-p", "{pid}"], ["-f", "/etc/passwd"], []])
@pytest.mark.parametrize("addr, needle", [("-5", "negative"), (str(2 ** 64), "out of range"),
                                          ("0x10,-5", "negative"), ("4+-1", "negative")])
def test_types_refuses_negative_and_out_of_range_page_numbers(specimen, where, addr, needle):
    where = [w.format(pid=specimen.pid) for w in where]
    one_line_error(cli("types", *where, "-a", addr), 2, needle)


@pytest.mark.parametrize("args, needle", [
    (["dump", "{pid}", "--range", ""], "not a range"),
    (["dump", "{pid}", "--where", ""], "unknown page state"),
    (["maps", "{pid}", "--sort", ""], "cannot sort by"),
    (["dump", "{pid}", "--range", "0+100000000000000000000T"], "past the end of the address space"),
    (["dump", "{pid}", "--range", "ffffffffffff0000+1M"], "past the end of the address space"),
    (["dump", "{pid}", "--range", "0+1" + "0" * 5000], "too large"),
    (["maps", "1" + "0" * 5000], "not a process ID"),
])
def test_empty_and_oversized_arguments_are_refused(specimen, args, needle):
    r = cli(*[a.format(pid=specimen.pid) for a in args])
    one_line_error(r, 2, needle)
    assert len(r.stderr) < 300  # the refused text is cut short


def test_a_range_to_the_very_end_of_the_address_space_is_accepted(specimen):
    r = cli("dump", specimen.pid, "--range", "ffffffffff600000+0xa00000", "--format", "csv")
    assert r.returncode == 0, r.stderr


def test_a_pid_named_twice_is_one_process(specimen):
    import pagewalk.analysis.usage as usage

    once, twice = usage.measure([specimen.pid]), usage.measure([specimen.pid, specimen.pid])
    assert twice.totals.processes == 1 and len(twice.rows) == 1
    assert (twice.totals.rss, twice.totals.swap) == (once.totals.rss, once.totals.swap) and once.totals.rss > 0
    doc = json.loads(cli("usage", specimen.pid, specimen.pid, f"0{specimen.pid}", "--json").stdout)
    assert len(doc["processes"]) == 1 and doc["totals"]["rss"] == doc["processes"][0]["rss"]


@pytest.mark.parametrize("args", [["snapshot", "--load", "{fifo}"], ["diff", "{fifo}", "{fifo}"],
                                  ["snapshot", "--load", "/dev/zero"], ["diff", "/dev/zero", "/dev/zero"]])
def test_a_snapshot_is_never_read_from_a_fifo_or_device(args):
    with tempfile.TemporaryDirectory() as d:
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo)
        r = subprocess.run([sys.executable, "-m", "pagewalk", *[a.format(fifo=fifo) for a in args]],
                           capture_output=True, text=True, timeout=30)
    one_line_error(r, 1, "not a snapshot file")
