"""``pagewalk types``: page-types' counts, checked against a count the test builds
itself from raw pagemap entries and /proc/kpageflags with the kernel's definitions
(tools/mm/page-types.c), and page-types' option syntax and errors."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest

from conftest import PAGE, cli, requires_root

pytestmark = requires_root  # the per-frame files are root's only

PRESENT, SWAP, FILE_BIT, EXCL, SOFT_DIRTY = 1 << 63, 1 << 62, 1 << 61, 1 << 56, 1 << 55
FRAME = (1 << 55) - 1
ANON, OWNER_2, SLAB, ACTIVE, ERROR, RECLAIM, WRITEBACK = 1 << 12, 1 << 34, 1 << 7, 1 << 6, 1 << 1, 1 << 9, 1 << 8
COMPOUND, HUGE = (1 << 15) | (1 << 16), 1 << 17
# Bits a living system flips by itself (kdamond's idle sampling, LRU aging).
VOLATILE = (1 << 25) | (1 << 2) | (1 << 6) | (1 << 5) | (1 << 50)


def stable(f: int) -> int:
    """The flags less what moves on its own.  The exclusive bit of a file page also
    depends on the reader: pagewalk's own process maps the same libraries as the
    specimen while it reads, the test's reading does not."""
    f &= ~VOLATILE
    return f & ~(1 << 63) if f & (1 << 61) else f


def entries_of(pid: int) -> tuple[np.ndarray, np.ndarray]:
    """(virtual page numbers, raw entries) of every mapping, read by the test."""
    vpns, raws = [], []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pm:
        for line in maps:
            if line.rstrip().endswith("[vsyscall]"):
                continue
            lo, hi = (int(x, 16) // PAGE for x in line.split()[0].split("-"))
            data = os.pread(pm.fileno(), (hi - lo) * 8, lo * 8)
            vpns.append(np.arange(lo, lo + len(data) // 8, dtype=np.uint64))
            raws.append(np.frombuffer(data, dtype=np.uint64))
    return np.concatenate(vpns), np.concatenate(raws)


def frame_flags(pfns: np.ndarray) -> np.ndarray:
    with open("/proc/kpageflags", "rb", buffering=0) as f:
        return np.array([int.from_bytes(os.pread(f.fileno(), 8, int(p) * 8), "little") for p in pfns],
                        dtype=np.uint64)


def expected_counts(pid: int, raw_mode: bool) -> dict[int, int]:
    """page-types -p's counts as tools/mm/page-types.c defines them, built here."""
    _, raw = entries_of(pid)
    present = (raw & np.uint64(PRESENT)) != 0
    pfn = raw & np.uint64(FRAME)
    framed = present & (pfn != 0)
    counts: dict[int, int] = {}
    for e, f in zip(raw[framed].tolist(), frame_flags(pfn[framed]).tolist()):
        if raw_mode:
            if f & ANON and f & OWNER_2:
                f ^= OWNER_2 | (1 << 47)
            if f & SLAB and f & ACTIVE:
                f ^= ACTIVE | (1 << 50)
            if f & SLAB and f & ERROR:
                f ^= ERROR | (1 << 51)
            if f & (RECLAIM | WRITEBACK) == RECLAIM:
                f ^= RECLAIM | (1 << 48)
            f |= (1 << 40 if e & SOFT_DIRTY else 0) | (1 << 61 if e & FILE_BIT else 0) \
                | (1 << 62 if e & SWAP else 0) | (1 << 63 if e & EXCL else 0)
        else:
            f &= ~(0xFFFF << 32)
            if f & COMPOUND and not f & HUGE:
                f &= ~COMPOUND
        counts[stable(f)] = counts.get(stable(f), 0) + 1
    return counts


def types_json(*args: str) -> dict:
    r = cli("types", *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def masked(doc: dict) -> dict[int, int]:
    out: dict[int, int] = {}
    for row in doc["rows"]:
        out[stable(row["flags"])] = out.get(stable(row["flags"]), 0) + row["pages"]
    return out


@pytest.mark.parametrize("walk", [[], ["-a", "0,"]], ids=["summary", "walk"])
@pytest.mark.parametrize("raw_mode", [False, True], ids=["default", "raw"])
def test_process_counts_match_the_kernel_definitions(specimen, raw_mode, walk):
    """Both ways of counting a process (the summary's compiled histogram; the numpy
    walk, which -a ranges, lists and idle marking take) give page-types' counts."""
    specimen.run("a = mmap(300); write(a, 200); read(a + 250 * PAGE, 20)\n"
                 "h = mmap(1024, align=2 << 20); madvise(h, 512, MADV_HUGEPAGE); write(h, 512)")
    args = [f"-p{specimen.pid}"] + (["-r"] if raw_mode else []) + walk
    for attempt in range(3):  # a row may move between the two reads on a living system
        expected = expected_counts(specimen.pid, raw_mode)
        doc = types_json(*args)
        if masked(doc) == expected:
            break
    assert masked(doc) == expected
    assert doc["total"]["pages"] == sum(expected.values()) == sum(r["pages"] for r in doc["rows"])
    pages = [r["pages"] for r in doc["rows"]]
    assert pages == sorted(pages, reverse=True)
    if raw_mode:
        assert any(r["flags"] & (1 << 63) for r in doc["rows"])  # mmap_exclusive seen
        # the THP's pages: compound head/tail and thp, shown only in raw mode
        assert sum(r["pages"] for r in doc["rows"] if r["flags"] & (1 << 22) and r["flags"] & COMPOUND) >= 512
    else:
        assert not any(r["flags"] & (0xFFFF << 32) for r in doc["rows"])


def test_filters_select_what_they_say(specimen):
    specimen.run("a = mmap(100); write(a, 100)")
    pid = f"{specimen.pid}"
    everything = types_json("-p", pid)
    anon = sum(r["pages"] for r in everything["rows"] if r["flags"] & ANON)
    assert types_json("-p", pid, "-b", "anon")["total"]["pages"] == anon  # prefix of "anonymous"
    swapbacked_unmapped = sum(r["pages"] for r in everything["rows"] if r["flags"] & (1 << 14) and not r["flags"] & 2048)
    assert types_json("-p", pid, "-b", "swapb,~mmap")["total"]["pages"] == swapbacked_unmapped
    mapped_not_anon = sum(r["pages"] for r in everything["rows"] if r["flags"] & 2048 and not r["flags"] & ANON)
    assert types_json("-p", pid, "-b", "mmap,anon=mmap")["total"]["pages"] == mapped_not_anon
    assert types_json("-p", pid, "-b", "~anon")["total"]["pages"] == everything["total"]["pages"] - anon
    assert types_json("-p", pid, "-b", "0x1000")["total"]["pages"] == anon  # a mask number
    exact = types_json("-p", pid, "-b", "=mmap,anonymous,uptodate,lru,swapbacked")
    assert all(r["flags"] == 0x5828 for r in exact["rows"])


def test_describe_is_page_types_own_line():
    r = cli("types", "-d", "anon,0x10")
    assert r.returncode == 0
    assert r.stdout == "0x0000000000001010\t____D_______a______________________________\tdirty,anonymous\n"


def test_whole_machine_counts_every_frame():
    with open("/proc/kpageflags", "rb", buffering=0) as f:
        frames = 0
        while chunk := f.read(1 << 22):
            frames += len(chunk) // 8
    doc = types_json()
    assert doc["total"]["pages"] == frames == sum(r["pages"] for r in doc["rows"])
    assert types_json("-a", "0x1000,0x3000")["total"]["pages"] == 0x2000
    assert types_json("-a", "0x1000+0x10", "-a", "5")["total"]["pages"] == 0x11
    r = cli("types", "-a", "0x1000,0x1008", "-l", "-N")
    lines = r.stdout.splitlines()
    assert lines[0] == "offset\tlen\tflags"
    assert sum(int(line.split("\t")[1], 16) for line in lines[1:]) == 8  # ranges cover every PFN once
    # across the boundary of two reads (128 Ki PFNs each): runs continue, every PFN once, in order
    lines = cli("types", "-a", "0x1fff0,0x20010", "-l", "-N").stdout.splitlines()[1:]
    spans = [(int(line.split("\t")[0], 16), int(line.split("\t")[1], 16)) for line in lines]
    assert spans[0][0] == 0x1FFF0 and all(a + n == b for (a, n), (b, _) in zip(spans, spans[1:]))
    assert sum(n for _, n in spans) == 0x20


def test_lists_cover_the_process_pages(specimen):
    addr = specimen.run("a = mmap(64); write(a, 64); result = a")
    pid = str(specimen.pid)
    each = cli("types", "-p", pid, "-L", "-N", "-M", "-C").stdout.splitlines()
    assert each[0] == "voffset\tcgroup\tmap-cnt\toffset\tflags"
    rows = [line.split("\t") for line in each[1:]]
    mine = [r for r in rows if addr // PAGE <= int(r[0], 16) < addr // PAGE + 64]
    assert len(mine) == 64
    with open(f"/proc/{specimen.pid}/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        raw = np.frombuffer(f.read(64 * 8), dtype=np.uint64)
    assert [int(r[3], 16) for r in mine] == (raw & np.uint64(FRAME)).tolist()
    assert all(r[2] == "1" and r[1].startswith("@") for r in mine)
    ranges = cli("types", "-p", pid, "-l", "-N").stdout.splitlines()[1:]
    assert sum(int(r.split("\t")[2], 16) for r in ranges) == len(rows)  # the runs add up to the pages


def cached_pages(fd: int, pages: int) -> list[int]:
    """Cached pages of a file by mincore(2) on the test's own mapping."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    addr = libc.mmap(None, pages * PAGE, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
    vec = (ctypes.c_ubyte * pages)()
    try:
        assert libc.mincore(addr, pages * PAGE, vec) == 0
    finally:
        libc.munmap(addr, pages * PAGE)
    return [i for i in range(pages) if vec[i] & 1]


def test_file_cache_includes_the_partial_last_page_and_each_file_of_a_directory():
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        big = os.path.join(d, "big")
        with open(big, "wb") as f:
            f.write(b"x" * (5 * PAGE + 1000))  # 6 pages, the last partial
            f.flush()
            os.fsync(f.fileno())
        fd = os.open(big, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # nothing cached
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead
        os.pread(fd, 10, 5 * PAGE)  # the partial last page
        os.pread(fd, 10, 0)
        cached = cached_pages(fd, 6)  # the kernel's word (large folios may bring neighbours)
        assert 5 in cached and 0 in cached and len(cached) < 6
        r = cli("types", "-f", big, "-L", "-N")
        assert r.returncode == 0, r.stderr
        pages = [int(line.split("\t")[0], 16) for line in r.stdout.splitlines()[1:]]
        assert pages == cached
        small = os.path.join(d, "small")
        with open(small, "wb") as f:
            f.write(b"y" * 100)
        os.pread(fd, 6 * PAGE, 0)
        os.close(fd)
        r = cli("types", "-f", d, "-l")
        assert r.returncode == 0, r.stderr
        listed = sum(int(line.split("\t")[2], 16) for line in r.stdout.split("\n\n")[0].splitlines()[1:])
        assert listed == 7  # 6 + 1: every file its own range (page-types would walk 1 page of each)
        assert f"{d}\tInode: " in r.stdout and "Modify: " in r.stdout
        # the summary alone is counted without numpy (a histogram in C), the walk with it: one answer
        for _ in range(5):  # the pages' LRU bits may still change between the two reads
            summary, walked = types_json("-f", d, "-r"), types_json("-f", d, "-r", "-a", "0,")
            if summary == walked:
                break
        assert summary == walked and summary["total"]["pages"] == 7


def test_bad_input_is_one_line_with_the_contract_status():
    r = cli("types", "-b", "bogus")
    assert r.returncode == 2 and "bogus" in r.stderr and "anonymous" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("types", "-c", "/sys/fs/cgroup/no-such-group")
    assert r.returncode == 2 and "no-such-group" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("types", "-a", "5,3")
    assert r.returncode == 2 and "invalid range" in r.stderr
    r = cli("types", "-a", "0x7fffffffffff")
    assert r.returncode == 2 and "beyond the end of memory" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("types", "-p", "xyz")
    assert r.returncode == 2 and "xyz" in r.stderr


def test_mark_idle_works_or_says_why_not(specimen):
    addr = specimen.run("a = mmap(8); write(a, 8); result = a")
    r = cli("types", "-p", str(specimen.pid), "-a", f"{addr // PAGE:#x}+8", "-i", "-N")
    if not os.path.exists("/sys/kernel/mm/page_idle/bitmap"):
        assert r.returncode == 1 and "CONFIG_IDLE_PAGE_TRACKING" in r.stderr
        pytest.skip("no idle page tracking on this kernel (checked the message instead)")
    assert r.returncode == 0, r.stderr
    from conftest import kpageflags, pagemap_entry

    for i in range(8):
        assert kpageflags(pagemap_entry(specimen.pid, addr + i * PAGE) & FRAME) & (1 << 25)


def test_kpage_reader_coalesces_and_streams():
    """KpageFile.read (sorted, unique, coalesced runs) and chunks() against one
    pread per PFN, on the live /proc/kpageflags and /proc/kpagecount."""
    from pagewalk.kernel.kpage import KPAGECOUNT, KPAGEFLAGS, KpageFile, _plan, read_together

    rng = np.random.default_rng(5)
    with KpageFile(KPAGEFLAGS) as f, open("/proc/kpageflags", "rb", buffering=0) as raw:
        end = f.end_pfn()
        assert len(os.pread(raw.fileno(), 8, (end - 1) * 8)) == 8 and os.pread(raw.fileno(), 8, end * 8) == b""
        pfns = np.concatenate([rng.integers(0, end, 500), np.arange(1000, 1040), [end - 1, 1000, 5, end + 10]])
        got = f.read(pfns.astype(np.uint64))
        one_by_one = [int.from_bytes(os.pread(raw.fileno(), 8, int(p) * 8) or bytes(8), "little") for p in pfns]
        volatile = np.uint64(VOLATILE)
        assert ((got & ~volatile) == (np.array(one_by_one, dtype=np.uint64) & ~volatile)).all()
        assert got[-1] == 0  # past the end of memory
        streamed = np.concatenate([a.copy() for _, a in f.chunks(2000, 3000, chunk=300)])
        assert len(streamed) == 1000 and ((streamed & ~volatile) == (f.read_range(2000, 1000) & ~volatile)).all()
    with KpageFile(KPAGECOUNT) as c:
        assert c.read(np.array([], dtype=np.uint64)).shape == (0,)
        many = rng.integers(0, min(end, 1 << 20), 200_000).astype(np.uint64)  # the bitmap path
        whole = c.read_range(0, int(many.max()) + 1)
        got = c.read(many)
        assert (got == whole[many]).mean() > 0.999  # map counts of a living system may move a little
        repeated = rng.integers(1000, 30000, 400_000).astype(np.uint64)  # each PFN about 14 times: the table path
        assert len(_plan(repeated.astype(np.int64))[0]) < 100
        got = c.read(repeated)
        assert (got == c.read_range(0, 30000)[repeated.astype(np.int64)]).mean() > 0.999
        # The runs path: ascending runs with small gaps, a repeat and jumps back, as a
        # process's frames come in address order; read with kpageflags together.
        runs = [np.arange(a, a + 3000, step) for a, step in ((4000, 1), (9000, 3), (2000, 1))]
        ordered = np.concatenate([*runs, [2999, 2999, end + 5]]).astype(np.uint64)
        starts, ends, _ = _plan(ordered.astype(np.int64))  # six runs, sorted; the overlapping ones merged
        assert list(zip(starts.tolist(), ends.tolist())) == [(2000, 7000), (9000, 11998), (end + 5, end + 6)]
        with KpageFile(KPAGEFLAGS) as f:
            flags, counts = read_together([f, c], ordered)
            whole_flags = np.append(f.read_range(0, 12000), np.uint64(0))  # index 12000: past the end
        inside = np.minimum(ordered, np.uint64(12000)).astype(np.int64)
        assert ((flags & ~volatile) == (whole_flags[inside] & ~volatile)).all()
        assert (counts[:-1] == c.read_range(0, 12000)[inside[:-1]]).mean() > 0.999 and counts[-1] == 0
        # one long run of contiguous frames is cut up for the threads, and lands in order
        contiguous = np.arange(1000, 1000 + 300_000, dtype=np.uint64)
        with KpageFile(KPAGEFLAGS) as f:
            got = f.read(contiguous)
            whole = f.read_range(1000, 300_000)
            square = contiguous[:10_000].reshape(100, 100)
            into = np.zeros((100, 100), dtype=np.uint64).T  # not contiguous: filled all the same
            f.read(square, out=into)
        assert ((got & ~volatile) == (whole & ~volatile)).all()
        assert ((into & ~volatile) == (whole[:10_000].reshape(100, 100) & ~volatile)).all()
        # a frame past the end of memory first (device memory lies there) does not hide the rest
        with KpageFile(KPAGEFLAGS) as f:
            after_end = f.read(np.concatenate([[end + 5], np.arange(4000, 9000)]).astype(np.uint64))
        assert after_end[0] == 0 and ((after_end[1:] & ~volatile) == (whole_flags[4000:9000] & ~volatile)).all()


def memory_cgroup_dir(pid: int) -> str | None:
    """The directory of the memory cgroup a process is charged to (v1 or v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):
            return f"/sys/fs/cgroup/memory{path}"
    for _, controllers, path in lines:
        if controllers == "":
            return f"/sys/fs/cgroup{path}"
    return None


def test_cgroup_filter_and_column(specimen):
    specimen.run("a = mmap(200); write(a, 200)")
    pid = str(specimen.pid)
    directory = memory_cgroup_dir(specimen.pid)
    if directory is None or not os.path.isdir(directory):
        pytest.skip("no memory cgroup directory for the specimen")
    inode = os.stat(directory).st_ino
    anon = types_json("-p", pid, "-b", "anon")["total"]["pages"]
    assert anon >= 200
    # its anonymous pages are charged to its own memory cgroup: by path and by inode
    assert types_json("-p", pid, "-b", "anon", "-c", directory)["total"]["pages"] == anon
    assert types_json("-p", pid, "-b", "anon", "-c", f"@{inode}")["total"]["pages"] == anon
    assert types_json("-p", pid, "-c", f"@{inode + 1000003}")["total"]["pages"] == 0
    listed = cli("types", "-p", pid, "-b", "anon", "-L", "-C", "-N").stdout.splitlines()[1:]
    assert {line.split("\t")[1] for line in listed} == {f"@{inode}"}
