"""``who`` and ``shared``: frames seen from the processes, checked against the
frames the test reads from each process's pagemap itself."""

from __future__ import annotations

import json

import pytest

from conftest import KPF_ZERO_PAGE, PAGE, cli, kpageflags, pagemap_entry, requires_root

pytestmark = requires_root  # frames are hidden from other users

FRAME = (1 << 55) - 1


def frame(pid: int, vaddr: int) -> int:
    entry = pagemap_entry(pid, vaddr)
    assert entry >> 63, hex(vaddr)
    return entry & FRAME


def test_who_finds_every_mapping_of_a_shared_page(specimen):
    """One memfd page mapped at two addresses in each of two processes: four mappings."""
    a, b = specimen.run("fd = memfd('who', 1); a = mmap(1, shared=True, fd=fd); b = mmap(1, shared=True, fd=fd)\n"
                        "write(a); read(b); result = [a, b]")
    child = specimen.run("result = fork()")
    specimen.run(f"child('read({a}); read({b})')")
    pfn = frame(specimen.pid, a)
    assert frame(specimen.pid, b) == frame(child, a) == frame(child, b) == pfn  # the kernel's fact
    hits = json.loads(cli("who", "--pfn", f"{pfn:x}", "--json").stdout)
    found = {(h["pid"], h["vaddr"]) for h in hits}
    assert found == {(specimen.pid, a), (specimen.pid, b), (child, a), (child, b)}
    assert all(h["pfn"] == pfn and h["mapping"].startswith("/memfd:who") for h in hits)
    by_address = json.loads(cli("who", f"{pfn * PAGE + 0x123:#x}", "--json").stdout)  # a physical address
    assert {(h["pid"], h["vaddr"]) for h in by_address} == found
    text = cli("who", "--pfn", f"{pfn:x}").stdout.splitlines()
    assert text[0].split() == ["PFN", "PID", "COMMAND", "VADDR", "MAPPING"] and len(text) == 5


def test_who_rejects_frames_beyond_memory():
    r = cli("who", "--pfn", "ffffffffff")
    assert r.returncode == 2 and "beyond the end of memory" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("who")
    assert r.returncode == 2


def test_shared_counts_the_frames_of_a_fork_by_mapping(specimen):
    # A private mapping of a memfd, written: anonymous copy-on-write pages in a
    # mapping with a name of its own (the specimen's other memory moves as it runs).
    a = specimen.run("fd = memfd('pairs', 500); a = mmap(500, fd=fd); write(a, 500); result = a")
    child = specimen.run("result = fork()")
    specimen.run(f"child('write({a}, 120)')")  # the child breaks copy-on-write of 120 pages

    def region_pairs() -> int:
        doc = json.loads(cli("shared", str(specimen.pid), str(child), "--json").stdout)
        return sum(p["pages"] for p in doc["pairs"] if p["mapping_a"] == p["mapping_b"] == "/memfd:pairs (deleted)")

    common = sum(frame(specimen.pid, a + i * PAGE) == frame(child, a + i * PAGE) for i in range(500))
    assert common == 380  # the kernel's view, read here
    assert region_pairs() == 380
    specimen.run(f"child('write({a + 120 * PAGE}, 80)')")
    assert region_pairs() == 300  # exactly the pages the child wrote went
    doc = json.loads(cli("shared", str(specimen.pid), str(child), "--json").stdout)
    assert doc["processes"][0]["shared_pages"] == doc["frames"] >= 300  # two processes: the same frames
    r = cli("shared", str(specimen.pid))
    assert r.returncode == 2 and "two" in r.stderr


def test_who_finds_the_processes_that_map_the_zero_page(specimen):
    """The shared zero page has map count 0 (the kernel does not count its mappings),
    yet every read-faulted page of private anonymous memory maps it."""
    a = specimen.run("a = mmap(3); read(a, 3); result = a")
    pfn = frame(specimen.pid, a)
    assert frame(specimen.pid, a + 2 * PAGE) == pfn  # the kernel's fact: one frame for all three
    assert kpageflags(pfn, "/proc/kpagecount") == 0
    hits = json.loads(cli("who", "--pfn", f"{pfn:x}", "--json").stdout)
    mine = {h["vaddr"] for h in hits if h["pid"] == specimen.pid}
    assert {a, a + PAGE, a + 2 * PAGE} <= mine
    r = cli("who", "--pfn", f"{pfn:x}")
    assert r.returncode == 0 and "mapped by no process" not in r.stderr and "zero page" in r.stderr
    assert any(line.split()[1:2] == [str(specimen.pid)] and line.split()[3] == f"{a:x}"
               for line in r.stdout.splitlines()[1:])


def test_who_finds_the_processes_that_map_the_huge_zero_page(specimen):
    """A read fault on an aligned 2 MiB of MADV_HUGEPAGE anonymous memory maps the huge
    zero page where THP uses one: its frames are found too."""
    huge = 2 << 20
    a = specimen.run(f"a = mmap({huge // PAGE}, align={huge}); madvise(a, {huge // PAGE}, MADV_HUGEPAGE); "
                     f"read(a); result = a")
    head, tail = frame(specimen.pid, a), frame(specimen.pid, a + huge - PAGE)
    if tail != head + huge // PAGE - 1 or not kpageflags(head) & KPF_ZERO_PAGE:
        pytest.skip("THP does not map the huge zero page here")
    hits = json.loads(cli("who", "--pfn", f"{head:x}", "--pfn", f"{tail:x}", "--json").stdout)
    mine = {(h["pfn"], h["vaddr"]) for h in hits if h["pid"] == specimen.pid}
    assert {(head, a), (tail, a + huge - PAGE)} <= mine


@requires_root
def test_shared_rows_are_told_apart_by_start_and_permissions(specimen):
    """A forked child shares libc's several mappings with its parent: each pair is its
    own row, named by its start and permissions as /proc/PID/maps gives them."""
    child = specimen.run("result = fork()")
    out = cli("shared", str(specimen.pid), str(child)).stdout
    rows = [line for line in out.splitlines() if "libc.so" in line]
    assert len(rows) >= 2 and len(set(rows)) == len(rows), rows
    with open(f"/proc/{specimen.pid}/maps") as f:
        libc = {(line.split()[0].split("-")[0], line.split()[1]) for line in f if "libc.so" in line}
    for row in rows:
        words = row.split()
        assert (words[4], words[5]) in libc and (words[6], words[7]) in libc, row
