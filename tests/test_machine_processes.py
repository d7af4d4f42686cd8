"""Every process on the machine that holds still: pagewalk's per-mapping counts
against the kernel's smaps, and the two read paths (PAGEMAP_SCAN or not) agreeing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import pagewalk
from conftest import PAGE, requires_root, smaps

SMAPS_FIELDS = ("Rss", "Swap", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb",
                "Private_Hugetlb")


def user_processes() -> list[int]:
    me = os.getpid()
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            try:
                with open(f"/proc/{name}/maps") as f:
                    if f.readline():
                        pids.append(int(name))
            except OSError:
                pass
    return pids


def kernel_view(pid: int):
    try:
        return {k: {f: v.get(f, 0) for f in SMAPS_FIELDS} | {"path": v["path"]} for k, v in smaps(pid).items()}
    except OSError:
        return None


@requires_root
def test_counts_equal_smaps_for_every_still_process(specimen):
    specimen.run("a = mmap(64); write(a, 40); read(a + 50 * PAGE, 10)")
    compared = 0
    for pid in user_processes():
        before = kernel_view(pid)
        try:
            with pagewalk.Process(pid) as p:
                report = p.counts()
        except pagewalk.PagewalkError:
            continue
        after = kernel_view(pid)
        if before is None or before != after:
            continue  # the process moved while we looked: not comparable
        for mc in report.mappings:
            m, c = mc.mapping, mc.counts
            kernel = before.get((m.start, m.end))
            assert kernel is not None, (pid, m)
            if c is None:
                assert m.is_vsyscall
                continue
            where = (pid, m.label(), hex(m.start))
            assert c.rss == kernel["Rss"], where
            if not m.shared:
                assert c.swapped * PAGE == kernel["Swap"], where
            huge_bytes = sum(kernel[f] for f in SMAPS_FIELDS[2:])
            assert c.huge * PAGE == huge_bytes, where
        compared += 1
    assert compared >= 3, f"only {compared} processes held still"


def read_path_table(pid: int, start: int, end: int, no_scan: bool):
    old = os.environ.get("PAGEWALK_NO_SCAN")
    os.environ["PAGEWALK_NO_SCAN"] = "1" if no_scan else "0"
    try:
        with pagewalk.Process(pid) as p:
            return p.page_table(start, end)
    finally:
        if old is None:
            del os.environ["PAGEWALK_NO_SCAN"]
        else:
            os.environ["PAGEWALK_NO_SCAN"] = old


@requires_root
def test_scan_and_read_paths_agree_page_by_page(specimen):
    """Zero pages found by PAGEMAP_SCAN (PFNZERO) and from the zero page's PFN agree,
    on the specimen and every still process (the selftests' page_entry_is idea)."""
    specimen.run("a = mmap(64); write(a, 10); read(a + 20 * PAGE, 30)\n"
                 "h = mmap(1024, align=2 << 20); madvise(h, 512, MADV_HUGEPAGE); read(h, 1)")
    checked = 0
    for pid in [specimen.pid, *user_processes()]:
        try:
            maps = pagewalk.Process(pid).mappings()
        except pagewalk.PagewalkError:
            continue
        for m in maps:
            if m.is_vsyscall or m.size_bytes > (1 << 30):
                continue
            try:
                scan = read_path_table(pid, m.start, m.end, no_scan=False)
                plain = read_path_table(pid, m.start, m.end, no_scan=True)
            except pagewalk.PagewalkError:
                break
            if not np.array_equal(scan.raw, plain.raw):
                continue  # the mapping changed between the two reads
            assert plain.huge is None
            if scan.huge is None:
                pytest.skip("no PAGEMAP_SCAN on this kernel")
            assert np.array_equal(scan.zero, plain.zero), (pid, m)
            for name in ("present", "swapped", "file", "exclusive", "guard", "uffd_wp", "pfn"):
                assert np.array_equal(getattr(scan, name), getattr(plain, name)), (pid, m, name)
            checked += 1
    assert checked > 10


def test_run_arithmetic_for_regions_that_straddle_mappings():
    """PAGEMAP_SCAN merges equal neighbours across adjacent VMAs: counts per mapping
    are the members of the runs inside each mapping, whichever way the runs fall."""
    from pagewalk.runs import pages_within

    found = [(2, 5), (10, 20), (30, 31)]
    cuts = [0, 2, 3, 5, 7, 10, 15, 20, 25, 30, 31, 99]
    bounds = list(zip(cuts, cuts[1:]))
    brute = [sum(max(0, min(b, e) - max(a, s)) for s, e in found) for a, b in bounds]
    assert pages_within(found, bounds) == brute
    assert sum(brute) == 14


def counts_both_ways(pid: int):
    """counts() with PAGEMAP_SCAN and with plain reads, and whether the scan path
    read only the populated ranges."""
    results = []
    for no_scan in ("0", "1"):
        os.environ["PAGEWALK_NO_SCAN"] = no_scan
        try:
            with pagewalk.Process(pid) as p:
                results.append(p.counts())
                if no_scan == "0":
                    layout = p._scan_layout(p.mappings())
        finally:
            del os.environ["PAGEWALK_NO_SCAN"]
    return results[0], results[1], layout is not None and layout.sparse


def assert_same_counts(scan, plain, where) -> None:
    assert plain.totals.huge is None
    for a, b in zip(scan.mappings, plain.mappings):
        assert a.mapping == b.mapping
        if a.counts is None:
            assert b.counts is None
            continue
        da, db = a.counts.as_dict(), b.counts.as_dict()
        da.pop("huge"), db.pop("huge")
        assert da == db, (where, a.mapping)


@requires_root
def test_counts_agree_with_and_without_pagemap_scan(specimen):
    """Both read paths give the same counts, on a dense specimen (every entry read)
    and once a 64 GiB reservation makes it sparse (only populated runs read)."""
    specimen.run("a = mmap(64); write(a, 10); read(a + 20 * PAGE, 30)\n"
                 "h = mmap(1024, align=2 << 20); madvise(h, 512, MADV_HUGEPAGE); read(h, 1)\n"
                 "g = mmap(4); madvise(g, 2, MADV_GUARD_INSTALL)\n"
                 "u = mmap(8); uffd_wp(u, 8); write(u + 2 * PAGE)\n"
                 "d = mmap(6000); write(d, 6000)")  # dense: most of the address space resident
    paths = set()
    for step in range(2):
        scan, plain, sparse = counts_both_ways(specimen.pid)
        paths.add(sparse)
        assert scan.totals.zero >= 30 + 512
        assert_same_counts(scan, plain, specimen.pid)
        specimen.run("r = mmap(1 << 24, 'none', noreserve=True); w = mmap(64); write(w, 64)")  # now sparse
    assert paths == {False, True}, "both the dense and the sparse scan path must have run"


@requires_root
def test_counts_agree_for_every_still_process():
    compared = 0
    for pid in user_processes():
        before = kernel_view(pid)
        try:
            scan, plain, _ = counts_both_ways(pid)
        except pagewalk.PagewalkError:
            continue
        if before is None or before != kernel_view(pid):
            continue
        assert_same_counts(scan, plain, pid)
        compared += 1
    assert compared >= 3


@requires_root
def test_dump_is_the_same_with_and_without_pagemap_scan(specimen):
    """The scan path reads only populated pages and fills the rest with zeros; the
    read path reads every entry: every per-page record must be the same."""
    from conftest import cli

    specimen.run("a = mmap(64); write(a, 10); read(a + 20 * PAGE, 30)\n"
                 "h = mmap(1024, align=2 << 20); madvise(h, 512, MADV_HUGEPAGE); write(h, 512)\n"
                 "g = mmap(4); madvise(g, 2, MADV_GUARD_INSTALL)\n"
                 "u = mmap(8); uffd_wp(u, 8); write(u + 2 * PAGE)\n"
                 "r = mmap(1 << 16, 'none', noreserve=True)")
    for fmt in ("jsonl", "seed"):
        scan = cli("dump", specimen.pid, "--format", fmt)
        plain = cli("dump", specimen.pid, "--format", fmt, "--no-scan")
        assert scan.returncode == plain.returncode == 0
        if fmt == "seed":
            assert scan.stdout == plain.stdout
            continue
        # The exclusive bit of a file page moves with whoever else maps the file at
        # that moment (the reader itself maps libc and friends).
        a = [json.loads(line) for line in scan.stdout.splitlines()]
        b = [json.loads(line) for line in plain.stdout.splitlines()]
        assert len(a) == len(b) > (1 << 16)
        for x, y in zip(a, b):
            if x["file"]:
                x.pop("exclusive"), y.pop("exclusive")
            assert x == y


@requires_root
def test_resident_pages_are_the_same_with_and_without_pagemap_scan(specimen, monkeypatch):
    """resident_table (behind usage, who and shared) finds the same pages, entry for
    entry, whether PAGEMAP_SCAN finds them or every entry is read; with PAGEMAP_SCAN
    both when the runs are read one by one (a few runs) and through merged spans."""
    import pagewalk.core.reading as reading

    specimen.run("a = mmap(64); write(a, 10); read(a + 20 * PAGE, 30)\n"
                 "g = mmap(4); madvise(g, 2, MADV_GUARD_INSTALL)\n"
                 "r = mmap(1 << 16, 'none', noreserve=True); w = mmap(600); write(w, 1); write(w + 300 * PAGE, 1)")
    compared = 0
    for pid in [specimen.pid, *user_processes()]:
        try:
            plain = pagewalk.Process(pid, use_scan=False).resident_table()
            scans = []
            for direct in (False, True):  # run by run (normally for large processes only), or spans
                monkeypatch.setattr(reading, "DIRECT_READ_MAX_RUNS", 1 << 30 if direct else 0)
                monkeypatch.setattr(reading, "PARALLEL_MIN_PAGES", 0 if direct else 1 << 60)
                scans.append(pagewalk.Process(pid, use_scan=True).resident_table())
        except pagewalk.PagewalkError:
            continue
        finally:
            monkeypatch.undo()
        if not all(np.array_equal(s.vaddr, plain.vaddr) and np.array_equal(s.raw, plain.raw) for s in scans):
            assert pid != specimen.pid, "the specimen holds still"
            continue  # another process moved between the reads
        assert len(plain) and plain.present.any()
        compared += 1
    assert compared >= 3


@requires_root
def test_a_reader_that_starts_before_the_scan_reads_into_its_buffer(specimen):
    """snapshot's main thread helps read the page table while another thread scans:
    a reader that starts before the scan has queued its pieces must still read them
    into the scan's buffer (a reader once kept the empty buffer it saw at first, and
    every entry of the snapshot stayed 0)."""
    from collections import deque

    specimen.run("a = mmap(64); write(a, 40)")
    with pagewalk.Process(specimen.pid) as p:
        if not p.scan_in_use:
            pytest.skip("no PAGEMAP_SCAN on this kernel")
        expected = p.resident_read().scan_and_read()  # in this thread alone
        resident = p.resident_read()

        class ScanOnFirstTake(deque):  # the scan lands between the reader's start and its first piece
            scanned = False

            def popleft(self):
                if not self.scanned:
                    self.scanned = True
                    resident.scan()
                return super().popleft()

        resident._pending = ScanOnFirstTake()
        resident.read_pending()
    assert resident.lo == expected.lo and any(resident.entries)
    assert bytes(resident.entries) == bytes(expected.entries)


def test_ramps_are_exact_for_any_start():
    """The per-page addresses and buffer positions of resident_table come from
    ramps(): exact for unsigned starts beyond 2**53 (no float on the way), empty
    runs skipped, against the Python loop it replaces."""
    from pagewalk.runs import ramps

    for starts in (np.array([2**64 - 8192, 5, 2**63 + 3, 2**53 + 1, 7], dtype=np.uint64),
                   np.array([40, 3, 1 << 40, 0, 9], dtype=np.int64)):
        lengths = np.array([2, 3, 0, 4, 1])
        for step in (1, 4096):
            expected = [int(s) + i * step for s, n in zip(starts, lengths) for i in range(n)]
            got = ramps(starts, lengths, step)
            assert got.dtype == starts.dtype and got.tolist() == [e % 2**64 for e in expected]
    assert len(ramps(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))) == 0


@requires_root
def test_counts_read_from_threads_equal_counts_read_in_turn(specimen, monkeypatch):
    """counts() reads large processes from several threads in small tasks; forced
    onto every process here (tasks of 1,000 entries, so pieces split across tasks),
    it must count exactly what the one-thread path counts."""
    import pagewalk.core.process as process_module
    import pagewalk.core.reading as reading

    specimen.run("a = mmap(5000); write(a, 3000); read(a + 4000 * PAGE, 500)\n"
                 "g = mmap(4); madvise(g, 2, MADV_GUARD_INSTALL)")
    compared = 0
    for pid in [specimen.pid, *user_processes()]:
        before = kernel_view(pid)
        try:
            monkeypatch.setattr(reading, "PARALLEL_MIN_PAGES", 1 << 60)
            with pagewalk.Process(pid) as p:
                one, one_table = p.counts(), p.resident_table()
            monkeypatch.setattr(reading, "PARALLEL_MIN_PAGES", 0)
            monkeypatch.setattr(reading, "PAGES_PER_READ", 1000)
            with pagewalk.Process(pid) as p:
                many, many_table = p.counts(), p.resident_table()
        except pagewalk.PagewalkError:
            continue
        finally:
            monkeypatch.undo()
        if before is None or before != kernel_view(pid):
            continue
        assert [mc.counts for mc in one.mappings] == [mc.counts for mc in many.mappings], pid
        # resident_table() too reads large processes in chunks from threads
        assert np.array_equal(one_table.vaddr, many_table.vaddr) and np.array_equal(one_table.raw, many_table.raw)
        compared += 1
    assert compared >= 3
