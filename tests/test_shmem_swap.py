"""Swapped-out shared memory (issue 12, section 1): pagemap shows such pages as none
(entry 0), smaps counts them in Swap.  pagewalk.kernel.shmem finds them with cachestat(2).

Every expectation comes from the kernel, read here without pagewalk: smaps per
mapping, raw pagemap entries, and cachestat asked page by page through the test's
own ctypes call.  A swap file is made for the module and removed after it.  A
kdamond with a pageout scheme runs on these machines and may swap out more pages
at any time, so each comparison is made while smaps holds still (the same Swap and
Rss before and after).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import uuid

import pytest

from conftest import ROOT, pagemap_entry, requires_root, smaps, swap_file
from specimen import PAGE, Specimen
from test_unprivileged import NOBODY, as_user

pytestmark = requires_root

PAGES = 64
PAGED_OUT = [(0, 8), (20, 21), (40, 64)]  # page ranges of the test's mapping given MADV_PAGEOUT
READ_ONLY = (32, 48)  # mprotect'ed afterwards: splits the mapping in three, the later ones at an offset

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def cachestat_evicted(fd: int, first_page: int, pages: int) -> int:
    """nr_evicted of cachestat(2) (x86-64 syscall 451) over file pages, the test's own call."""
    rng = (ctypes.c_uint64 * 2)(first_page * PAGE, pages * PAGE)
    out = (ctypes.c_uint64 * 5)()
    if _libc.syscall(451, fd, rng, out, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return out[3]


def swapped_vpns_page_by_page(pid: int, start: int, end: int, offset: int) -> set[int]:
    """The virtual page numbers of [start, end) whose object page is in swap, asking
    cachestat one page at a time on the file opened through map_files."""
    fd = os.open(f"/proc/{pid}/map_files/{start:x}-{end:x}", os.O_RDONLY)
    try:
        first = offset // PAGE
        return {start // PAGE + i for i in range((end - start) // PAGE) if cachestat_evicted(fd, first + i, 1)}
    finally:
        os.close(fd)


def as_vpns(runs) -> set[int]:
    return {v for a, b in runs for v in range(a, b)}


def swap_and_rss(pid: int) -> dict:
    return {span: (block.get("Swap"), block.get("Rss")) for span, block in smaps(pid).items()}


def while_still(pid: int, read):
    """smaps and ``read()`` taken while no page of the process moved in or out."""
    for _ in range(20):
        before = smaps(pid)
        value = read()
        if swap_and_rss(pid) == {span: (b.get("Swap"), b.get("Rss")) for span, b in before.items()}:
            return before, value
    pytest.fail("smaps Swap/Rss of the specimen kept changing")


def maps_of(pid: int):
    from pagewalk.kernel.maps import read_maps

    return read_maps(pid)


def pieces(maps, addr: int, pages: int) -> list[int]:
    """Indices of the mappings that cover [addr, addr + pages)."""
    return [i for i, m in enumerate(maps) if addr <= m.start and m.end <= addr + pages * PAGE]


def pin(s: Specimen) -> None:
    """Keep the specimen on one CPU: a page it just wrote waits in that CPU's LRU batch,
    which MADV_PAGEOUT drains only on the CPU it runs on (else it skips the page)."""
    s.run("os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})")


@pytest.fixture
def specimen():
    with Specimen() as s:
        pin(s)
        yield s


@pytest.fixture(scope="module")
def swap():
    with swap_file(64) as path:
        yield path


def page_out(s: Specimen, addr: int, ranges) -> None:
    for lo, hi in ranges:
        s.run(f"madvise({addr + lo * PAGE}, {hi - lo}, MADV_PAGEOUT)")


def require_swapped(pid: int, addr: int, pages: int, ranges) -> None:
    """The kernel must really have swapped the advised pages, and pagemap must show
    them as none (entry 0): the defect this module exists for."""
    total = sum(b.get("Swap", 0) for (lo, hi), b in smaps(pid).items() if addr <= lo and hi <= addr + pages * PAGE)
    if not total:
        pytest.fail("MADV_PAGEOUT with a swap file on swapped nothing out: the test would prove nothing")
    for lo, hi in ranges:
        for i in range(lo, hi):
            assert pagemap_entry(pid, addr + i * PAGE) == 0


SYSV_ATTACH = """
libc.shmget.restype = ctypes.c_int
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
sid = libc.shmget(0, {pages} * PAGE, 0o1600)  # IPC_PRIVATE, IPC_CREAT, rw owner
assert sid >= 0
a = libc.shmat(sid, None, 0)
libc.shmctl(sid, 0, None)  # IPC_RMID: freed when the specimen detaches at exit
"""

KINDS = {
    "shared anonymous": "a = mmap({pages}, shared=True)",
    "memfd": "fd = memfd('pagewalk-test', {pages}); a = mmap({pages}, shared=True, fd=fd)",
    "/dev/shm file": ("fd = os.open({path!r}, os.O_RDWR | os.O_CREAT, 0o600); os.ftruncate(fd, {pages} * PAGE); "
                      "a = mmap({pages}, shared=True, fd=fd)"),
    "SysV": SYSV_ATTACH,
    "/dev/zero shared": "fz = os.open('/dev/zero', os.O_RDWR); a = mmap({pages}, shared=True, fd=fz)",
}


@pytest.fixture
def shm_path():
    path = f"/dev/shm/pagewalk-test-{uuid.uuid4().hex}"
    yield path
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@pytest.mark.parametrize("kind", list(KINDS))
def test_swapped_shared_memory_matches_smaps_per_mapping(swap, specimen, shm_path, kind):
    """Each kind of shmem mapping, some pages paged out, then split in three by an
    mprotect (the later pieces map the object at an offset): per piece, the record's
    count is smaps Swap, its runs are exactly the pages cachestat says are swapped
    when asked page by page, and the count-only call agrees."""
    from pagewalk.kernel import shmem

    s = specimen
    addr = s.run(KINDS[kind].format(pages=PAGES, path=shm_path) + f"\nwrite(a, {PAGES}); result = a")
    page_out(s, addr, PAGED_OUT)
    require_swapped(s.pid, addr, PAGES, PAGED_OUT)
    lo, hi = READ_ONLY
    s.run(f"assert libc.mprotect(ctypes.c_void_p({addr + lo * PAGE}), {(hi - lo) * PAGE}, 1) == 0")

    maps = maps_of(s.pid)
    mine = pieces(maps, addr, PAGES)
    assert len(mine) == 3 and maps[mine[1]].offset == lo * PAGE
    assert all(maps[i].dev.startswith("00:") for i in mine)  # only major-0 devices need opening

    def read():
        exact = shmem.swapped_runs(s.pid, maps)
        counts = shmem.swapped_runs(s.pid, maps, mine, exact=False)
        reference = {i: swapped_vpns_page_by_page(s.pid, maps[i].start, maps[i].end, maps[i].offset) for i in mine}
        return exact, counts, reference

    before, (exact, counts, reference) = while_still(s.pid, read)
    assert not exact.why
    advised = {addr // PAGE + p for a, b in PAGED_OUT for p in range(a, b)}
    for i in mine:
        m, record = maps[i], exact[i]
        assert record.pages * PAGE == before[(m.start, m.end)]["Swap"]
        assert as_vpns(record.runs) == reference[i]
        assert record.first_page == m.offset // PAGE and record.first_vpn == m.start // PAGE
        assert not record.needs_pte_check
        assert counts[i].pages == record.pages and counts[i].runs in (None, [])
        assert advised & set(range(m.start // PAGE, m.end // PAGE)) <= reference[i]
    assert len({exact[i].key for i in mine}) == 1  # one object
    assert shmem.unique_pages(exact[i] for i in mine) == sum(exact[i].pages for i in mine)


def test_private_mapping_of_a_tmpfs_file_counts_only_where_the_pte_is_none(swap, specimen, shm_path):
    """A MAP_PRIVATE mapping of a tmpfs file: pages 0-7 copied on write and paged out
    (anonymous swap entries), 8-15 copied on write and present, 16-31 read (the
    object's pages, mapped here too, so not paged out; the mapping is aligned so that
    these are one fault-around window),
    32-63 never touched here.  The object's pages 0-15 and 32-63 are paged out
    through a shared mapping.  smaps Swap of the private mapping counts the object's
    swapped pages only where the PTE is none (32-63), plus its own swap entries
    (0-7): the record's runs
    intersected with pagemap's none entries, plus pagemap's swap entries, is that."""
    from pagewalk.kernel import shmem

    s = specimen
    shared = s.run(KINDS["/dev/shm file"].format(pages=PAGES, path=shm_path) + f"\nwrite(a, {PAGES}); result = a")
    private = s.run(f"p = mmap({PAGES}, fd=fd, align=16 * PAGE); write(p, 16, 0x33); read(p + 16 * PAGE, 16); "
                    "result = p")
    page_out(s, shared, [(0, 16), (32, PAGES)])
    page_out(s, private, [(0, 8)])
    require_swapped(s.pid, shared, PAGES, [(0, 16), (32, PAGES)])

    maps = maps_of(s.pid)
    (index,) = pieces(maps, private, PAGES)

    def read():
        record = shmem.swapped_runs(s.pid, maps, [index])[index]
        entries = [pagemap_entry(s.pid, private + i * PAGE) for i in range(PAGES)]
        return record, entries

    before, (record, entries) = while_still(s.pid, read)
    smaps_swap = before[(private, private + PAGES * PAGE)]["Swap"]
    vpn0 = private // PAGE
    none_runs = [(vpn0 + i, vpn0 + i + 1) for i, e in enumerate(entries) if e == 0]
    swap_entries = sum(1 for e in entries if e >> 62 & 1)
    assert record.needs_pte_check and record.runs is not None
    assert as_vpns(record.runs) >= {vpn0 + i for i in range(0, 16)}  # the object's pages under the copies
    assert record.pages * PAGE != smaps_swap  # so the intersection below matters
    # the rule every command applies: the object's pages in swap where the entry is empty
    import numpy as np

    from pagewalk.core.pagetable import PageTable

    table = PageTable(private, np.array(entries, dtype=np.uint64), pfn_visible=True)
    table.mark_shmem_swap(record.runs)
    visible = {vpn0 + i for i in np.flatnonzero(table.shmem_swapped).tolist()}
    assert (len(visible) + swap_entries) * PAGE == smaps_swap
    assert visible == as_vpns(record.runs) & as_vpns(none_runs)
    assert swap_entries >= 1 and visible
    # count-only still gives the runs this mapping needs
    assert shmem.swapped_runs(s.pid, maps, [index], exact=False)[index].runs == record.runs


def test_two_processes_mapping_one_object_count_it_once(swap, specimen):
    """A forked child maps the same shared anonymous object (its PTEs empty) and
    splits its own mapping with an mprotect: smaps charges the swapped pages to both
    processes; unique_pages counts each object page once, exact runs or not (where
    the ranges are the same)."""
    from pagewalk.kernel import shmem

    s = specimen
    addr = s.run(f"a = mmap({PAGES}, shared=True); write(a, {PAGES}); result = a")
    page_out(s, addr, PAGED_OUT)
    require_swapped(s.pid, addr, PAGES, PAGED_OUT)
    child = s.run("result = fork()")
    try:
        parent_maps, child_maps = maps_of(s.pid), maps_of(child)

        def read():
            return (shmem.swapped_runs(s.pid, parent_maps), shmem.swapped_runs(child, child_maps),
                    shmem.swapped_runs(s.pid, parent_maps, exact=False),
                    shmem.swapped_runs(child, child_maps, exact=False))

        before, (parent, kid, parent_counts, kid_counts) = while_still(s.pid, read)
        (pi,) = pieces(parent_maps, addr, PAGES)
        (ci,) = pieces(child_maps, addr, PAGES)
        kid_swap = smaps(child)[(addr, addr + PAGES * PAGE)]["Swap"]
        assert parent[pi].pages * PAGE == before[(addr, addr + PAGES * PAGE)]["Swap"] == kid_swap > 0
        assert kid[ci].pages == parent[pi].pages and kid[ci].key == parent[pi].key
        assert shmem.unique_pages([parent[pi], kid[ci]]) == parent[pi].pages
        assert shmem.unique_pages([parent_counts[pi], kid_counts[ci]]) == parent[pi].pages
        assert shmem.unique_pages([parent_counts[pi], kid[ci], None]) == parent[pi].pages

        lo, hi = READ_ONLY
        s.run(f"child('assert libc.mprotect(ctypes.c_void_p({addr + lo * PAGE}), {(hi - lo) * PAGE}, 1) == 0')")
        child_maps = maps_of(child)
        split = pieces(child_maps, addr, PAGES)
        assert len(split) == 3
        kid = shmem.swapped_runs(child, child_maps, split)
        kid_counts = shmem.swapped_runs(child, child_maps, split, exact=False)
        assert sum(kid[i].pages for i in split) == parent[pi].pages
        assert shmem.unique_pages([parent[pi], *(kid[i] for i in split)]) == parent[pi].pages
        with pytest.raises(ValueError):  # parts of one range, counts only: cannot tell
            shmem.unique_pages([parent_counts[pi], *(kid_counts[i] for i in split)])
    finally:
        s.run("os.kill(children[-1][0], 9); os.waitpid(children[-1][0], 0)")


def test_mappings_that_are_not_shared_memory_are_absent(specimen, tmp_path):
    """A disk file mapped shared, private anonymous memory and a private /dev/zero
    mapping are no shmem objects: not in the result (not None, not 0)."""
    from pagewalk.kernel import shmem

    path = tmp_path / "disk-file"
    path.write_bytes(b"\1" * 8 * PAGE)
    s = specimen
    starts = s.run(f"""
fd3 = os.open({str(path)!r}, os.O_RDWR)
d = mmap(8, shared=True, fd=fd3); write(d, 8)
p = mmap(8); write(p, 8)
z = mmap(8, fd=os.open('/dev/zero', os.O_RDWR)); write(z, 8)
result = [d, p, z]""")
    maps = maps_of(s.pid)
    disk = next(m for m in maps if m.start == starts[0])
    assert not disk.dev.startswith("00:")  # a disk filesystem: never opened
    indices = [i for i, m in enumerate(maps) if m.start in starts]
    assert len(indices) == 3
    result = shmem.swapped_runs(s.pid, maps)
    assert not set(indices) & set(result)


def test_a_process_without_candidate_mappings_costs_no_import():
    """A process whose maps show no device with major 0 (but 00:00, no file): nothing
    is opened, ctypes not even imported."""
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            devs = {line.split()[3] for line in open(f"/proc/{sleeper.pid}/maps")}
            assert not {d for d in devs if d.startswith("00:") and d != "00:00"}
            code = ("import sys; from pagewalk.kernel import shmem; from pagewalk.kernel.maps import read_maps; "
                    f"r = shmem.swapped_runs({sleeper.pid}, read_maps({sleeper.pid})); "
                    "print(len(r), 'ctypes' in sys.modules)")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            assert out.split() == ["0", "False"]
        finally:
            sleeper.kill()


def as_nobody(work):
    """``work()`` (returning JSON-able data) run in a forked child that dropped to nobody."""
    answer = as_user(NOBODY, work)
    assert "error" not in answer, answer["error"]
    return answer["value"]


def _seen_by_nobody(pid: int) -> dict:
    """swapped_runs of ``pid`` as nobody sees it: {start: [pages or None, why]}."""
    from pagewalk.kernel import shmem
    from pagewalk.kernel.maps import read_maps

    def work():
        maps = read_maps(pid)
        result = shmem.swapped_runs(pid, maps)
        return {maps[i].start: [None if rec is None else rec.pages, result.why.get(i)] for i, rec in result.items()}

    return {int(k): v for k, v in as_nobody(work).items()}


def test_an_unprivileged_reader_gets_unknown_not_zero(swap, shm_path):
    """nobody reading nobody's process: shared anonymous memory (no path, no fd, and
    map_files needs CAP_SYS_ADMIN) is unknown with a reason, never 0; a memfd the
    process holds open is found through /proc/PID/fd and counted exactly; a
    root-owned tmpfs file mapped read-only is unknown (cachestat needs write
    permission or ownership)."""
    from pagewalk.kernel import shmem

    with open(shm_path, "wb") as f:
        f.write(b"\1" * 8 * PAGE)
    os.chmod(shm_path, 0o644)
    with Specimen(uid=NOBODY) as s:
        pin(s)
        anon = s.run(f"a = mmap({PAGES}, shared=True); write(a, {PAGES}); result = a")
        memfd = s.run(f"fd = memfd('pagewalk-test', {PAGES}); b = mmap({PAGES}, shared=True, fd=fd); "
                      f"write(b, {PAGES}); result = b")
        rootfile = s.run(f"c = mmap(8, prot='r', shared=True, fd=os.open({shm_path!r}, os.O_RDONLY)); result = c")
        page_out(s, anon, PAGED_OUT)
        page_out(s, memfd, PAGED_OUT)
        require_swapped(s.pid, anon, PAGES, PAGED_OUT)
        require_swapped(s.pid, memfd, PAGES, PAGED_OUT)

        before, seen = while_still(s.pid, lambda: _seen_by_nobody(s.pid))
        assert seen[anon][0] is None and "CAP_SYS_ADMIN" in seen[anon][1]
        assert seen[memfd][0] * PAGE == before[(memfd, memfd + PAGES * PAGE)]["Swap"] > 0
        assert seen[rootfile][0] is None and "write permission" in seen[rootfile][1]

        maps = maps_of(s.pid)  # root sees the shared anonymous memory exactly
        before, result = while_still(s.pid, lambda: shmem.swapped_runs(s.pid, maps))
        (i,) = pieces(maps, anon, PAGES)
        assert result[i].pages * PAGE == before[(anon, anon + PAGES * PAGE)]["Swap"] > 0


def test_doctor_says_whether_swapped_shared_memory_can_be_found():
    """root: cachestat and map_files work; nobody: map_files is refused, and doctor
    says what that costs."""
    from pagewalk.kernel import shmem
    from pagewalk.analysis.doctor import run_checks

    def row():
        return next(c.as_dict() for c in run_checks() if c.name.startswith("swapped shared memory"))

    assert ROOT and shmem.why_unavailable() is None
    assert row()["ok"] is True
    nobody = as_nobody(row)
    assert nobody["ok"] is False and "map_files" in nobody["value"] and "smaps" in nobody["cost"]
