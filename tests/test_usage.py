"""``pagewalk usage``: RSS, PSS and USS against the kernel's smaps_rollup, and a
forked family whose PSS adds up to its distinct frames.

The library is called in the test's own process: the reader's mappings of shared
libraries then count the same when pagewalk reads kpagecount and when the test
reads smaps_rollup (the observer changes what it observes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from conftest import PAGE, cli, missing_pid, requires_root
from conftest import smaps_rollup as rollup

pytestmark = requires_root

FRAME = (1 << 55) - 1


def mappings_of(pid: int) -> int:
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for _ in f)


def test_rss_pss_uss_equal_smaps_rollup(specimen, tmp_path):
    from pagewalk.analysis.usage import measure

    path = tmp_path / "data"
    path.write_bytes(os.urandom(64 * PAGE))
    specimen.run(f"import mmap as m\nf = open({str(path)!r}, 'rb')\nfm = m.mmap(f.fileno(), 0, prot=m.PROT_READ)\n"
                 "s = sum(fm[i] for i in range(0, len(fm), PAGE))\n"
                 "a = mmap(500); write(a, 400); read(a + 450 * PAGE, 20)\n"
                 "shm = mmap(50, shared=True); write(shm, 50)")
    child = specimen.run("result = fork()")  # shares everything: PSS halves, USS shrinks
    specimen.run("write(a, 100)")  # the parent breaks copy-on-write of 100 pages
    for pid in (specimen.pid, child):
        for attempt in range(3):
            report = measure([pid])
            kernel = rollup(pid)
            row = report.rows[0]
            if row.rss == kernel["Rss"] and row.uss == kernel["Private_Clean"] + kernel["Private_Dirty"]:
                break
        assert row.rss == kernel["Rss"]
        assert row.uss == kernel["Private_Clean"] + kernel["Private_Dirty"]
        assert abs(row.pss - kernel["Pss"]) <= PAGE * mappings_of(pid), (row.pss, kernel["Pss"])
        assert row.swap == kernel["Swap"] == 0


@requires_root
def test_the_kernels_sums_and_the_page_walk_agree(specimen, tmp_path):
    """``usage PID`` reads the kernel's sums (smaps_rollup) instead of every page; the
    two methods give one answer: RSS, USS, swap and THP exactly, PSS within a page a
    mapping (the map counts of shared pages may move between the two reads)."""
    from pagewalk.analysis.usage import measure, measure_one

    path = tmp_path / "data"
    path.write_bytes(os.urandom(32 * PAGE))
    specimen.run(f"import mmap as m\nf = open({str(path)!r}, 'rb')\nfm = m.mmap(f.fileno(), 0, prot=m.PROT_READ)\n"
                 "s = sum(fm[i] for i in range(0, len(fm), PAGE))\n"
                 "a = mmap(300); write(a, 200)\n"
                 "t = mmap(1024, align=2 << 20); madvise(t, 1024, MADV_HUGEPAGE); write(t, 1024)\n"
                 "shm = mmap(40, shared=True); write(shm, 40)")
    child = specimen.run("result = fork()")
    for pid in (specimen.pid, child):
        for attempt in range(3):
            walked, summed = measure([pid]).rows[0], measure_one(pid).rows[0]
            if (walked.rss, walked.uss, walked.huge) == (summed.rss, summed.uss, summed.huge):
                break
        assert (walked.rss, walked.uss, walked.swap) == (summed.rss, summed.uss, summed.swap)
        assert walked.huge is None or walked.huge == summed.huge
        assert abs(walked.pss - summed.pss) <= PAGE * mappings_of(pid), (walked.pss, summed.pss)
        assert (summed.pid, summed.command) == (walked.pid, walked.command)


@requires_root
def test_several_processes_from_the_kernels_sums_agree_with_the_walk(specimen):
    """``usage --all`` (and several PIDs) by process read the kernel's sums where no
    process has swap: the rows and totals agree with the page walk's (a process with
    swap sends every process back to the walk: tests/test_special_pages.py)."""
    from pagewalk.analysis.usage import measure, measure_rollups

    specimen.run("a = mmap(300); write(a, 200)\nshm = mmap(40, shared=True); write(shm, 40)")
    pids = [specimen.pid, specimen.run("result = fork()"), specimen.run("result = fork()")]
    for attempt in range(3):
        summed, passed_over = measure_rollups(pids)
        walked = measure(pids)
        if [(u.pid, u.rss, u.uss) for u in summed.rows] == [(u.pid, u.rss, u.uss) for u in walked.rows]:
            break
    assert summed.source == "smaps_rollup" and walked.source == "pagemap" and passed_over == {}
    by_pid = {u.pid: u for u in walked.rows}
    for u in summed.rows:
        w = by_pid[u.pid]
        assert (u.rss, u.uss, u.swap, u.command) == (w.rss, w.uss, w.swap, w.command)
        assert abs(u.pss - w.pss) <= PAGE * mappings_of(u.pid), (u.pss, w.pss)
    assert summed.totals.rss == walked.totals.rss and summed.totals.processes == 3
    assert abs(summed.totals.pss - walked.totals.pss) <= 0.01 * walked.totals.pss
    r = cli("usage", "--json", *map(str, pids))
    assert r.returncode == 0 and json.loads(r.stdout)["source"] == "smaps_rollup", r.stderr
    r = cli("usage", "--json", "--by", "user", *map(str, pids))  # groups: the walk (a shared frame counts once)
    assert r.returncode == 0 and json.loads(r.stdout)["source"] == "pagemap", r.stderr


def test_usage_of_one_process_reads_no_page(specimen):
    """``usage PID`` answers from the kernel's sums: the JSON says so, and numpy is not loaded."""
    r = cli("usage", specimen.pid, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["source"] == "smaps_rollup" and doc["processes"][0]["rss"] == rollup(specimen.pid)["Rss"]
    code = ("import sys\nfrom pagewalk.cli import main\nrc = main(['usage', sys.argv[1]])\n"
            "print('NUMPY', 'numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(specimen.pid)], capture_output=True, text=True).stdout
    assert "NUMPY False" in out
    r = cli("usage", specimen.pid, "--by", "mapping", "--json")  # per mapping: the page walk
    assert r.returncode == 0 and json.loads(r.stdout)["source"] == "pagemap"


def anon_frames(pid: int) -> set[int]:
    """PFNs of the present, non-zero-page pages of the anonymous private mappings."""
    out = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pm, \
            open("/proc/kpageflags", "rb", buffering=0) as kf:
        for line in maps:
            parts = line.split()
            if len(parts) > 5 and parts[5] not in ("[heap]", "[stack]") or parts[1][3] != "p":
                continue
            lo, hi = (int(x, 16) // PAGE for x in parts[0].split("-"))
            raw = np.frombuffer(os.pread(pm.fileno(), (hi - lo) * 8, lo * 8), dtype=np.uint64)
            for pfn in (raw[(raw >> np.uint64(63)) == 1] & np.uint64(FRAME)).tolist():
                if not int.from_bytes(os.pread(kf.fileno(), 8, pfn * 8), "little") & (1 << 24):  # not the zero page
                    out.add(pfn)
    return out


def test_a_forked_family_pss_adds_up_to_its_distinct_frames(specimen):
    from pagewalk.analysis.usage import measure

    a = specimen.run("a = mmap(2000); write(a, 2000); result = a")
    family = [specimen.pid] + [specimen.run("result = fork()") for _ in range(3)]
    specimen.run(f"child('write({a}, 300)', 0); child('write({a + 1000 * PAGE}, 50)', 2)")  # copy-on-write breaks
    anon = ("[anon]", "[heap]", "[stack]")
    for attempt in range(3):
        frames = set().union(*(anon_frames(pid) for pid in family))
        report = measure(family, by="mapping")
        pss = sum(row.pss for row in report.rows if row.name in anon)
        if abs(pss - len(frames) * PAGE) <= PAGE:
            break
    assert len(frames) >= 2000 + 350
    assert abs(pss - len(frames) * PAGE) <= PAGE  # fixed-point rounding only
    assert report.totals.processes == 4


def test_cli_all_json_and_groups(specimen):
    specimen.run("a = mmap(300); write(a, 300)")
    r = cli("usage", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    row = next(p for p in doc["processes"] if p["pid"] == specimen.pid)
    assert set(row) >= {"pid", "command", "user", "rss", "pss", "uss", "swap"}
    assert row["rss"] >= 300 * PAGE and row["uss"] >= 300 * PAGE and row["user"] == "root"
    pss = [p["pss"] for p in doc["processes"]]
    assert pss == sorted(pss, reverse=True)
    assert doc["totals"]["rss"] == sum(p["rss"] for p in doc["processes"])
    by_user = json.loads(cli("usage", "--by", "user", "--json").stdout)
    assert any(g["name"] == "root" for g in by_user["groups"])
    text = cli("usage", str(specimen.pid)).stdout.splitlines()
    assert text[0].split() == ["PID", "USER", "RSS", "PSS", "USS", "SWAP", "SWAP_PSS", "COMMAND"]
    assert text[-1].startswith("total")


def test_bad_input(specimen):
    r = cli("usage", "abc")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    r = cli("usage", "--by", "planet")
    assert r.returncode == 2
    r = cli("usage", "999999999")
    assert r.returncode == 2 or r.returncode == 1
    assert len(r.stderr.splitlines()) == 1


def test_unprivileged_fallback_is_stated(specimen):
    from specimen import Specimen

    with Specimen(uid=65534) as other:
        other.run("a = mmap(100); write(a, 100)")
        r = other.run("import pagewalk.analysis.usage as u\nfrom pagewalk.kernel import probes\n"
                      "probes.pfn_visible.cache_clear(); probes.zero_pfns.cache_clear()  # filled while root\n"
                      "u.measure([os.getpid()])  # imports and first-use growth, before the bracket\n"
                      "before = open('/proc/self/smaps_rollup').read()\n"
                      "rep = u.measure([os.getpid()])\n"
                      "after = open('/proc/self/smaps_rollup').read()\n"
                      "result = [rep.pfn_visible, rep.rows[0].uss, rep.rows[0].pss, before, after]")
        visible, uss, pss, *texts = r
        assert visible is False
        before, after = ({line.split()[0].rstrip(":"): int(line.split()[1]) * 1024 for line in text.splitlines()[1:]}
                         for text in texts)
        # Its own process: smaps_rollup is readable, so its numbers are taken.  The
        # process may still grow a little while it measures itself, so the kernel's
        # numbers read just before and just after bound the answer.
        slack = 8 * PAGE
        assert (before["Private_Clean"] + before["Private_Dirty"] - slack <= uss
                <= after["Private_Clean"] + after["Private_Dirty"] + slack)
        assert pss is not None and before["Pss"] - slack <= pss <= after["Pss"] + slack
    r = cli("usage", "--json", env={})  # as root: not the fallback
    assert json.loads(r.stdout)["pfn_visible"] is True


def test_named_pids_that_cannot_be_read_are_left_out_with_a_note(specimen, zombie):
    """As ``ps -p``: the readable processes are reported, the others (no such process,
    a kernel thread, a zombie) named in one note; exit 1 only when none could be read."""
    missing = missing_pid()
    specimen.run("a = mmap(100); write(a, 100)")
    r = cli("usage", specimen.pid, missing, 2, zombie, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [p["pid"] for p in doc["processes"]] == [specimen.pid]
    assert doc["processes"][0]["rss"] == rollup(specimen.pid)["Rss"]  # the kernel's figure
    note = r.stderr.splitlines()
    assert len(note) == 1 and all(str(pid) in note[0] for pid in (missing, 2, zombie)), r.stderr
    assert str(specimen.pid) not in note[0]
    r = cli("usage", missing, specimen.pid)
    assert r.returncode == 0 and len(r.stderr.splitlines()) == 1 and str(missing) in r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()[1:-1]] == [str(specimen.pid)]
    r = cli("usage", missing, 2)  # none could be read
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and r.stderr.startswith("pagewalk: error: ")
    assert str(missing) in r.stderr and "kernel thread" in r.stderr
