"""Commands that read every process, run while processes come and go (issue 13).

A churner forks short-lived children without pause: some exit at once, some exec,
some stay zombies for a moment, some map and touch memory first, so PIDs appear and
vanish between pagewalk listing them and reading their maps, pagemap and status.
Every command must finish with its normal answer (a process that left is simply not
in it), never a traceback or a failed pass.  Bounded: a few seconds in all.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request

from conftest import cli, requires_root

pytestmark = requires_root

CHURN = r"""
import mmap, os, sys
sys.stdout.write("ready\n"); sys.stdout.flush()
n = 0
while True:
    n += 1
    pid = os.fork()
    if pid == 0:
        kind = n % 4
        if kind == 1:
            m = mmap.mmap(-1, 64 << 10)
            m.write(b"x" * (64 << 10))
        elif kind == 2:
            os.execv("/bin/true", ["true"])
        os._exit(0)
    if n % 8 == 0:
        while True:  # reap in bursts: the others stay zombies a moment
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
"""


@contextlib.contextmanager
def churn():
    """A process forking short-lived children until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", CHURN], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def forks() -> int:
    """Processes made since boot (/proc/stat), to check the churn happened."""
    with open("/proc/stat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("processes "))


def assert_clean(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for line in r.stderr.splitlines():  # notes and warnings, each one line of pagewalk's
        assert line.startswith("pagewalk: "), r.stderr


def test_commands_over_every_process_while_processes_come_and_go():
    with churn():
        before = forks()
        for args in (("usage", "--all"), ("usage", "--all", "--by", "cgroup"), ("usage", "--all", "--json"),
                     ("who", "--pfn", "1000")):
            for _ in range(2):
                r = cli(*args)
                assert_clean(r)
                if "--json" in args:
                    json.loads(r.stdout)
        made = forks() - before
    assert made > 1000, f"the churner made only {made} processes: the race was not run"


def test_exporter_scans_while_processes_come_and_go():
    proc = subprocess.Popen([sys.executable, "-m", "pagewalk", "exporter", "--listen", "127.0.0.1:0",
                             "--interval", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/metrics", line).group(0)
        with churn():
            passes: set[str] = set()  # the scans whose result was served, by their end time
            deadline = time.monotonic() + 30
            while len(passes) < 4:
                assert time.monotonic() < deadline, "the exporter finished no pass in 30 s of churn"
                with urllib.request.urlopen(url, timeout=10) as r:
                    text = r.read().decode()
                failures = re.search(r"^pagewalk_scan_failures_total (\S+)$", text, re.M)
                assert failures and float(failures.group(1)) == 0, text[-2000:]
                ended = re.search(r"^pagewalk_scan_timestamp_seconds (\S+)$", text, re.M)
                if ended:
                    passes.add(ended.group(1))
                    assert f'pid="{proc.pid}"' in text  # itself, read in every pass
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[1]
    assert "Traceback" not in out and "scan failed" not in out, out
