"""``pagewalk wss``: a process that keeps touching a known number of pages out of a
larger resident set; every method this kernel has must report that number, and the
others must say why they cannot run.  The working set counts only what the
process's own accesses explain: an idle process has none, and a page another
process touches is not in it (mm/damon/ops-common.c, fs/proc/task_mmu.c)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from conftest import PAGE, cli, missing_pid, requires_root
from specimen import Specimen

pytestmark = requires_root

TOUCHED, RESIDENT = 2000, 20000
NR_READ, NR_CLOCK_NANOSLEEP = 0, 230  # x86-64 syscall numbers, as /proc/PID/syscall shows them

# Touches the first TOUCHED of RESIDENT private anonymous pages over and over; the
# request returns once the loop has been round once.
BUSY = f"""
import threading
a = mmap({RESIDENT}); write(a, {RESIDENT})
looped = threading.Event()
def busy():
    while True:
        for i in range({TOUCHED}):
            ctypes.memset(a + i * PAGE, 1, 1)
        looped.set()
threading.Thread(target=busy, daemon=True).start()
looped.wait()
result = a
"""


def wss(pid: int, *args: str, count: int = 3, interval: float = 0.5) -> dict:
    r = cli("wss", pid, *args, "--interval", str(interval), "--count", str(count), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["samples"]) == count
    return doc


def of_mapping(sample: dict, start: int, key: str) -> int:
    return sum(m[key] for m in sample["mappings"] if m["start"] == start) // PAGE


def wait_blocked_in(pid: int, syscall: int) -> None:
    """Wait until ``pid`` sleeps in ``syscall`` (its start-up or last request is over)."""
    while True:
        with open(f"/proc/{pid}/syscall") as f:
            if f.read().split()[0] == str(syscall):
                return
        os.sched_yield()


@pytest.mark.parametrize("method", ["referenced", "soft-dirty", "idle", "damon"])
def test_wss_counts_the_pages_being_touched(specimen, method):
    from pagewalk.analysis.wss import why_unavailable

    a = specimen.run(BUSY)
    r = cli("wss", specimen.pid, "--method", method, "--interval", "0.5", "--count", "3", "--json")
    why = why_unavailable(method, specimen.pid)
    if why is not None:  # the kernel's own configuration says so, not pagewalk's result
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and why in r.stderr
        pytest.skip(f"{method} is not available here: {why}")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["method"] == method and len(doc["samples"]) == 3
    times = [s["time"] for s in doc["samples"]]
    # Each sample is stamped at the end of its interval, counted from the start of the first.
    assert times[0] >= 0.5 and all(b - a >= 0.5 for a, b in zip(times, times[1:])), times
    for sample in doc["samples"]:
        region = of_mapping(sample, a, "wss_bytes")
        assert abs(region - TOUCHED) <= TOUCHED // 50, (method, region)
        # The region is this process's alone: nothing in it is left unattributed.
        assert not of_mapping(sample, a, "unattributed_bytes"), sample
        assert sample["rss_bytes"] >= RESIDENT * PAGE
        assert sample["wss_bytes"] >= region * PAGE
    assert doc["cost"]["pages_scanned"] > 0


def test_an_idle_process_has_no_working_set(specimen):
    """``sleep`` and a Python blocked in read(): nothing they run touches a page.
    Their libraries' pages are marked referenced by everyone else who uses them
    (process exits, read(2), a kdamond), and that is what wss leaves out."""
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        wait_blocked_in(sleeper.pid, NR_CLOCK_NANOSLEEP)
        wait_blocked_in(specimen.pid, NR_READ)
        for pid in (sleeper.pid, specimen.pid):
            doc = wss(pid, "--method", "referenced")
            for sample in doc["samples"]:
                assert sample["wss_bytes"] <= 2 * PAGE, (pid, sample)
                assert sample["unattributed_bytes"] is not None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_shared_file_page_another_process_touches_is_not_in_the_working_set(specimen):
    """The target maps two files: one only it uses, whose pages it touches itself in
    a loop (its working set), and one another process also uses, touching a page
    through its own mapping, through read(2) and by mapping it briefly.  The
    kernel's flags for that page say "referenced" in the target too."""
    directory = tempfile.mkdtemp(prefix="pagewalk-wss-", dir="/var/tmp")  # a disk file: page cache, not shmem
    own_path, shared_path = os.path.join(directory, "own"), os.path.join(directory, "shared")
    # One page for the own file: a folio of its own (the kernel's flags are per folio).
    pages = 16
    for path, size in ((own_path, 1), (shared_path, pages)):
        with open(path, "wb") as f:
            f.write(b"\x5a" * size * PAGE)
    try:
        own, shared = specimen.run(f"""
import threading
own = mmap(1, "r", shared=True, fd=os.open({own_path!r}, os.O_RDONLY)); read(own)
shared = mmap({pages}, "r", shared=True, fd=os.open({shared_path!r}, os.O_RDONLY)); read(shared, {pages})
looped = threading.Event()
def busy():
    while True:
        read(own)
        looped.set()
threading.Thread(target=busy, daemon=True).start()
looped.wait()
result = [own, shared]
""")
        with Specimen() as other:
            other.run(f"""
import mmap as mmap_module, threading
fd = os.open({shared_path!r}, os.O_RDONLY)
b = mmap({pages}, "r", shared=True, fd=fd)
looped = threading.Event()
def busy():
    while True:
        read(b + 9 * PAGE)
        os.pread(fd, 1, 9 * PAGE)
        with mmap_module.mmap(fd, 0, prot=mmap_module.PROT_READ) as c:  # mapped, touched, unmapped
            c[9 * PAGE]
        looped.set()
threading.Thread(target=busy, daemon=True).start()
looped.wait()
""")
            doc = wss(specimen.pid, "--method", "referenced")
        for sample in doc["samples"]:
            assert of_mapping(sample, shared, "wss_bytes") == 0, sample
            # The method did see it referenced: it is reported apart.
            assert of_mapping(sample, shared, "unattributed_bytes") >= 1, sample
            assert of_mapping(sample, own, "wss_bytes") == 1, sample
    finally:
        for path in (own_path, shared_path):
            os.unlink(path)
        os.rmdir(directory)


def test_an_unprivileged_reader_still_counts_its_own_pages():
    """Without root the frames' flags are hidden: only pages the page table says are
    this process's alone (exclusive, anonymous) can be counted, and they are."""
    from test_unprivileged import NOBODY, run_as

    with Specimen(uid=NOBODY) as s:
        a = s.run(BUSY)
        status, out, err = run_as(NOBODY, ["wss", str(s.pid), "--method", "referenced", "--interval", "0.5",
                                           "--count", "2", "--json"])
    assert status == 0, err
    doc = json.loads(out)
    for sample in doc["samples"]:
        assert abs(of_mapping(sample, a, "wss_bytes") - TOUCHED) <= TOUCHED // 50, sample
        assert of_mapping(sample, a, "unattributed_bytes") == 0, sample
    assert doc["unattributed_reason"] is None or "without root" in doc["unattributed_reason"]


def test_auto_says_which_method_and_what_it_disturbs(specimen):
    specimen.run(BUSY)
    r = cli("wss", specimen.pid, "--interval", "0.2", "--count", "1")
    assert r.returncode == 0, r.stderr
    assert "chosen by auto" in r.stderr and "cost" in r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("t=0.2s  wss ") and "unattributed" in first, r.stdout
    assert cli("wss", specimen.pid, "--count", "0").returncode == 2


def test_doctor_names_the_kdamond_that_runs_and_what_it_costs():
    import glob

    running = [os.path.basename(os.path.dirname(state))
               for state in glob.glob("/sys/kernel/mm/damon/admin/kdamonds/*/state")
               if open(state).read().strip() == "on"]
    r = cli("doctor", "--json")
    assert r.returncode == 0, r.stderr
    check = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["undisturbed accessed bits"]
    assert check["ok"] == (not running and not os.path.exists("/sys/kernel/mm/page_idle/bitmap")), check
    for k in running:
        assert f"kdamond {k} runs" in check["value"], check
    if not check["ok"]:
        assert "wss" in check["cost"] and "unattributed" in check["cost"], check


def test_wss_of_a_process_without_memory_fails_as_maps_does(zombie):
    """A missing PID, a kernel thread and a zombie: the same one-line error as maps."""
    missing = missing_pid()
    for pid, needle in ((missing, f"no process with PID {missing}"), (2, "kernel thread"), (zombie, "zombie")):
        r = cli("wss", pid, "--interval", "0.1", "--count", "1")
        assert r.returncode == 1 and r.stdout == "", (pid, r.stdout, r.stderr)
        assert r.stderr == cli("maps", pid).stderr and needle in r.stderr, (pid, r.stderr)
        assert len(r.stderr.splitlines()) == 1
