"""Page states of a specimen's memory, checked against the kernel's own accounting."""

from __future__ import annotations

import json
import os

import numpy as np

import pagewalk
from conftest import (KPF_ANON, KPF_ZERO_PAGE, PAGE, cli, cli_json, kpageflags, mapping_counts, pagemap_entry,
                      requires_root, smaps_of)

PRESENT, FILE_BIT, EXCLUSIVE = 1 << 63, 1 << 61, 1 << 56
PFN_MASK = (1 << 55) - 1


def table(pid: int, addr: int, pages: int):
    with pagewalk.Process(pid) as p:
        return p.page_table(addr, addr + pages * PAGE)


@requires_root
def test_private_anonymous_written_untouched_and_read(specimen):
    """Written pages are present and exclusive; untouched are absent; read-only
    touched pages map the shared zero page (kpageflags says ZERO_PAGE) and are not RSS."""
    addr = specimen.run("result = mmap(12)")
    specimen.run(f"write({addr}, 4); read({addr} + 8 * PAGE, 4)")
    t = table(specimen.pid, addr, 12)
    assert t.present.tolist() == [True] * 4 + [False] * 4 + [True] * 4
    assert t.exclusive.tolist() == [True] * 4 + [False] * 8
    assert not t.file.any() and not t.swapped.any()
    for i in range(12):  # every PFN exactly as the raw entry has it
        entry = pagemap_entry(specimen.pid, addr + i * PAGE)
        assert t.pfn[i] == (entry & PFN_MASK if entry & PRESENT else -1)
    zero_by_kernel = [bool(t.present[i] and kpageflags(int(t.pfn[i])) & KPF_ZERO_PAGE) for i in range(12)]
    assert zero_by_kernel == [False] * 8 + [True] * 4
    assert t.zero.tolist() == zero_by_kernel
    for i in range(4):
        assert kpageflags(int(t.pfn[i])) & KPF_ANON
    counts = mapping_counts(specimen.pid, addr)
    kernel = smaps_of(specimen.pid, addr)
    assert (counts.pages, counts.present, counts.zero, counts.exclusive) == (12, 8, 4, 4)
    assert counts.rss == kernel["Rss"] == 4 * PAGE
    assert counts.exclusive * PAGE == kernel["Private_Dirty"] + kernel["Private_Clean"]
    v2p = specimen_v2p(specimen.pid, addr + 8 * PAGE + 5)
    assert v2p["zero"] is True and v2p["present"] is True and v2p["pfn"] == t.pfn[8]
    assert v2p["paddr"] == int(t.pfn[8]) * PAGE + 5


def specimen_v2p(pid: int, addr: int) -> dict:
    return cli_json("v2p", str(pid), hex(addr))[0]


@requires_root
def test_one_shared_page_mapped_twice_has_one_frame(specimen):
    """A memfd page mapped twice in one process: both virtual pages have one PFN and
    v2p gives one physical address; both carry the file bit (shmem)."""
    a, b = specimen.run("fd = memfd('twice', 1)\nresult = [mmap(1, shared=True, fd=fd), mmap(1, shared=True, fd=fd)]")
    specimen.run(f"write({a})\nread({b})")
    ea, eb = pagemap_entry(specimen.pid, a), pagemap_entry(specimen.pid, b)
    assert ea & PFN_MASK == eb & PFN_MASK and ea & PRESENT and eb & PRESENT
    r = cli_json("v2p", str(specimen.pid), hex(a + 16), hex(b + 16))
    assert r[0]["paddr"] == r[1]["paddr"] == (ea & PFN_MASK) * PAGE + 16
    assert r[0]["file"] and r[1]["file"]
    assert r[0]["mapping"] == "/memfd:twice (deleted)"
    counts = mapping_counts(specimen.pid, a)
    assert counts.file == 1 and counts.rss == smaps_of(specimen.pid, a)["Rss"] == PAGE


@requires_root
def test_fork_shares_private_pages_until_written(specimen):
    """After fork a private page has one PFN in parent and child and is not exclusive;
    when the child writes it, the child gets its own frame and both are exclusive again."""
    addr = specimen.run("result = mmap(2)")
    specimen.run(f"write({addr}, 2)")
    child = specimen.run("result = fork()")
    parent_t, child_t = table(specimen.pid, addr, 2), table(child, addr, 2)
    assert parent_t.pfn.tolist() == child_t.pfn.tolist()
    assert not parent_t.exclusive.any() and not child_t.exclusive.any()
    assert parent_t.pfn[0] == pagemap_entry(child, addr) & PFN_MASK
    specimen.run(f"child('write({addr})')")
    parent_t, child_t = table(specimen.pid, addr, 2), table(child, addr, 2)
    assert parent_t.pfn[0] != child_t.pfn[0]
    assert child_t.pfn[0] == pagemap_entry(child, addr) & PFN_MASK
    assert parent_t.exclusive[0] and child_t.exclusive[0]
    assert parent_t.pfn[1] == child_t.pfn[1] and not parent_t.exclusive[1]
    for pid in (specimen.pid, child):
        kernel = smaps_of(pid, addr)
        counts = mapping_counts(pid, addr)
        assert counts.rss == kernel["Rss"]
        assert counts.exclusive * PAGE == kernel["Private_Dirty"] + kernel["Private_Clean"]


@requires_root
def test_file_mapped_shared_and_private(specimen, tmp_path):
    """A file mapped shared and read: file bit, a page-cache frame (not anonymous);
    mapped private and written: copy-on-write gives an anonymous exclusive page."""
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(4 * PAGE))
    shared, private = specimen.run(
        f"fd = os.open({str(path)!r}, os.O_RDWR)\n"
        "result = [mmap(4, 'r', shared=True, fd=fd), mmap(4, 'rw', fd=fd)]")
    specimen.run(f"read({shared}, 4); write({private}, 2); read({private} + 2 * PAGE, 2)")
    s, p = table(specimen.pid, shared, 4), table(specimen.pid, private, 4)
    assert s.present.all() and s.file.all()
    for i in range(4):
        assert not kpageflags(int(s.pfn[i])) & KPF_ANON  # page cache
    assert p.present.all()
    assert p.exclusive[:2].all() and not p.file[:2].any()
    for i in range(2):
        assert kpageflags(int(p.pfn[i])) & KPF_ANON
    # pages only read through the private mapping are the page-cache pages themselves
    assert p.file[2:].all() and p.pfn[2:].tolist() == s.pfn[2:].tolist()
    for addr in (shared, private):
        kernel = smaps_of(specimen.pid, addr)
        counts = mapping_counts(specimen.pid, addr)
        assert counts.rss == kernel["Rss"] == 4 * PAGE
        assert counts.file * PAGE == kernel["Rss"] - kernel["Anonymous"]


def test_process_api_translation_of_an_array(specimen):
    addr = specimen.run("result = mmap(3)")
    specimen.run(f"write({addr}, 3)")
    with pagewalk.Process(specimen.pid) as p:
        one = p.translate(addr + 7)
        many = p.translate_many([addr + 2 * PAGE, addr, 0x1000])
    assert one.present and one.mapping.contains(addr) and one.vaddr == addr + 7  # may have merged with a neighbour
    assert [t.present for t in many] == [True, True, False]
    assert many[2].mapping is None and many[2].state == "not mapped"
    t = table(specimen.pid, addr, 3)
    assert np.array_equal(t.vaddr, np.array([addr, addr + PAGE, addr + 2 * PAGE], dtype=np.uint64))
    if p.pfn_visible:
        assert many[1].pfn == t.pfn[0] and many[0].pfn == t.pfn[2]


def test_v2p_reads_addresses_from_stdin_in_order(specimen):
    addr = specimen.run("result = mmap(4)")
    specimen.run(f"write({addr}, 4)")
    lines = [hex(addr + 3 * PAGE), f"{addr:x}", "0x10", hex(addr + PAGE + 1)]
    r = cli("v2p", specimen.pid, "-", "--json", input="\n".join(lines) + "\n")
    assert r.returncode == 1  # one address is in no mapping
    assert "not mapped" in r.stderr and "0x10" in r.stderr and r.stderr.count("\n") == 1
    import json

    out = json.loads(r.stdout)
    assert [o["vaddr"] for o in out] == [addr + 3 * PAGE, addr, 0x10, addr + PAGE + 1]
    assert [o["present"] for o in out] == [True, True, False, True]
    assert out[2]["mapping"] is None and out[2]["paddr"] is None


def test_translate_a_numpy_array_of_addresses(specimen):
    addr = specimen.run("a = mmap(4); write(a, 2); result = a")
    with pagewalk.Process(specimen.pid) as p:
        answers = p.translate_many(np.arange(addr, addr + 4 * PAGE, PAGE, dtype=np.uint64))
    assert [a.present for a in answers] == [True, True, False, False]
    assert all(type(a.vaddr) is int for a in answers)


def test_v2p_not_mapped_mentions_a_mapped_decimal_reading(specimen):
    """Addresses are hex, so '4096' is 0x4096; when that is in no mapping but the
    same digits read as decimal are, the answer says so (in text and JSON)."""
    a = specimen.run("fd = memfd('decimal-test', 4); a = mmap(4, shared=True, fd=fd); result = a")
    with open(f"/proc/{specimen.pid}/maps") as f:  # the kernel's word on where it is
        line = next(line for line in f if line.startswith(f"{a:x}-"))
    assert "/memfd:decimal-test" in line
    decimal = str(a + PAGE + 5)  # digits only: a hex reading, far above user space
    r = cli("v2p", specimen.pid, decimal)
    assert r.returncode == 1 and f"0x{int(decimal, 16):x}" in r.stderr
    answer = r.stdout.strip()
    assert "not mapped" in answer and "decimal" in answer and "/memfd:decimal-test" in answer
    assert f"{a + PAGE + 5:#x}" in answer and decimal in answer
    doc = json.loads(cli("v2p", specimen.pid, "-", "--json", input=decimal + "\n").stdout)
    assert doc[0]["mapping"] is None and "/memfd:decimal-test" in doc[0]["note"]
    # hex digits, or 0x, or a decimal reading mapped nowhere: no such note
    for text in ("0x" + decimal, decimal + "a", "123"):
        r = cli("v2p", specimen.pid, text)
        assert "decimal" not in r.stdout, (text, r.stdout)
