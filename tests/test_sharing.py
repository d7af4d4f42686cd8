"""``who`` and ``shared``: frames seen from the processes, checked against the
frames the test reads from each process's pagemap itself."""

from __future__ import annotations

import json

from conftest import PAGE, cli, pagemap_entry, requires_root

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
