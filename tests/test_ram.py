"""``pagewalk ram``: every frame of RAM in one use, the uses agreeing with the kernel's
own totals, and the frames of known memory (a test process's anonymous pages, a THP,
a memfd, a file in the page cache, hugetlb pages) in the use they belong to.

Expected uses come from what the test made and from the kernel's accounting
(/proc/meminfo, /proc/zoneinfo), never from pagewalk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import cli, hugetlb_pool, memory_cgroup, requires_root, run_on_terminal
from specimen import PAGE, Specimen

from pagewalk.core import frames as fr

ANON, MMAP, LRU, SWAPBACKED, SLAB, BUDDY, HUGE, THP = 1 << 12, 1 << 11, 1 << 5, 1 << 14, 1 << 7, 1 << 10, 1 << 17, 1 << 22
FRAME = (1 << 55) - 1


def uses_of(values: list[int]) -> list[str]:
    return [fr.USES[u] for u in fr.classify(np.array(values, dtype=np.uint64))]


def test_each_frame_gets_the_first_use_whose_rule_holds():
    """Literal kpageflags values, as the kernel reports them (kernel.md 2.2)."""
    assert uses_of([
        0x101000000,  # the zero page: zero_page | reserved
        ANON | MMAP | LRU | SWAPBACKED | (1 << 3),  # a private anonymous page of a process
        ANON | LRU | SWAPBACKED | (1 << 13),  # anonymous, mapped by none, in the swap cache
        SLAB | ANON | (1 << 21),  # a slab page showing the anon and ksm bits (overlapping fields)
        SWAPBACKED | LRU | MMAP,  # tmpfs or shared anonymous memory
        LRU | (1 << 3),  # a file page in the cache, unmapped
        BUDDY, 0, HUGE | (1 << 15), 1 << 26, 1 << 32, 1 << 3, ANON | MMAP | (1 << 21), 1 << 19, 1 << 23,
    ]) == ["zero page", "anonymous", "swap cache", "slab", "shared memory", "page cache", "free", "no flags",
           "hugetlb", "page tables", "kernel reserved", "kernel other", "KSM", "hwpoison", "offline"]


def test_free_blocks_marked_on_their_first_page_only_are_found_by_alignment():
    """Older kernels mark only a free block's first page: a block of order k starts
    at a multiple of 2**k and its other pages have no flag."""
    flags = np.array([BUDDY, 0, 0, 0, BUDDY, 0, LRU, BUDDY, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.uint64)
    assert fr.free_tails(flags, 0).astype(int).tolist() == [0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    # from PFN 1: PFN 1 and 5 start blocks of one page; PFN 8 one of 8
    assert fr.free_tails(flags, 1).astype(int).tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0]


@requires_root
def test_every_frame_is_in_one_use_and_the_uses_agree_with_the_kernel():
    from pagewalk.analysis.ram import walk_ram
    from pagewalk.kernel.physmem import system_ram

    report = walk_ram()
    assert sum(report.uses.values()) == report.frames
    ram = sum(r.end_pfn - r.start_pfn for r in system_ram())
    assert report.frames == ram or not ram  # every System RAM frame, once
    disagree = [(r.name, r.size_bytes, r.before_bytes, r.after_bytes) for r in report.reconciled
                if r.within_target is False]
    assert disagree == [], "uses beyond 2% (or 8 MiB) of the kernel's counts"
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    assert report.frames * PAGE >= total_kb * 1024  # MemTotal leaves out what the kernel reserved at boot


@requires_root
def test_a_process_memory_is_where_it_belongs(specimen, tmp_path):
    """The frames of what a test process made, classed one by one: its anonymous
    pages and THP as anonymous, its memfd as shared memory, a file it read as page
    cache; the frames are found through its own pagemap (read by the test)."""
    data = tmp_path / "data"
    data.write_bytes(os.urandom(64 * PAGE))
    specimen.run(
        f"a = mmap(256); write(a, 256)\n"
        f"t = mmap(1024, align=2 << 20); madvise(t, 1024, MADV_HUGEPAGE); write(t, 1024)\n"
        f"fd = memfd('pagewalk-ram', 64); s = mmap(64, shared=True, fd=fd); write(s, 64)\n"
        f"f = open({str(data)!r}, 'rb'); fm = mmap(64, prot='r', shared=True, fd=f.fileno()); read(fm, 64)\n"
        f"result = (a, t, s, fm)")
    anon, thp, memfd, filemap = specimen.run("result = (a, t, s, fm)")
    classes = {}
    with open(f"/proc/{specimen.pid}/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
        for name, addr, pages in (("anon", anon, 256), ("thp", thp, 1024), ("memfd", memfd, 64),
                                  ("file", filemap, 64)):
            raw = np.frombuffer(os.pread(pm.fileno(), pages * 8, addr // PAGE * 8), dtype=np.uint64)
            present = raw[(raw >> np.uint64(63)) == 1]
            flags = [int.from_bytes(os.pread(kf.fileno(), 8, int(p & np.uint64(FRAME)) * 8), "little")
                     for p in present]
            classes[name] = set(uses_of(flags)), len(present), any(f & THP for f in flags)
    assert classes["anon"][:2] == ({"anonymous"}, 256)
    assert classes["thp"][0] == {"anonymous"} and classes["thp"][1] == 1024
    if classes["thp"][2]:  # (the kernel gave a transparent huge page): in the thp list of anonymous
        from pagewalk.analysis.ram import walk_ram

        with open("/proc/meminfo") as f:
            anon_huge = next(int(line.split()[1]) * 1024 for line in f if line.startswith("AnonHugePages:"))
        thp = walk_ram().lists["anonymous"]["thp"] * PAGE
        assert thp >= 2 << 20 and abs(thp - anon_huge) <= max(anon_huge // 50, 8 << 20), (thp, anon_huge)
    assert classes["memfd"][:2] == ({"shared memory"}, 64)
    assert classes["file"][:2] == ({"page cache"}, 64)


@requires_root
def test_hugetlb_pages_are_hugetlb_and_add_up_to_the_pool(specimen):
    """Two hugetlb pages the test reserves (and gives back): their frames are hugetlb,
    and the hugetlb use equals the pool meminfo reports (every frame of it, used or free)."""
    from pagewalk.analysis.ram import walk_ram

    with hugetlb_pool(2):
        try:
            a = specimen.run("a = mmap(512, align=2 << 20, extra_flags=MAP_HUGETLB); write(a, 512); result = a")
        except RuntimeError as exc:
            pytest.skip(f"no hugetlb page could be allocated: {exc}")
        with open(f"/proc/{specimen.pid}/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
            raw = np.frombuffer(os.pread(pm.fileno(), 512 * 8, a // PAGE * 8), dtype=np.uint64)
            flags = [int.from_bytes(os.pread(kf.fileno(), 8, int(p & np.uint64(FRAME)) * 8), "little") for p in raw]
        assert set(uses_of(flags)) == {"hugetlb"}
        report = walk_ram()
        line = next(r for r in report.reconciled if r.name == "hugetlb")
        assert line.size_bytes == line.before_bytes == line.after_bytes >= 2 * (2 << 20)
        with open("/proc/meminfo") as f:
            info = {ln.split(":")[0]: ln.split()[1] for ln in f}
        used = int(info["HugePages_Total"]) - int(info["HugePages_Free"])
        assert any(f"{used} in use" in note for note in report.notes), report.notes
        specimen.run(f"munmap({a}, 512)")


@requires_root
def test_the_command_prints_the_uses_and_the_kernels_counts():
    r = cli("ram", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert sum(u["frames"] for u in doc["uses"]) == doc["frames"] > 0
    assert {r["name"] for r in doc["reconciled"]} >= {"anonymous", "page cache + buffers", "shared memory", "slab",
                                                      "page tables", "hugetlb", "free"}
    text = cli("ram")
    assert text.returncode == 0 and text.stdout.startswith("USE") and "total" in text.stdout
    assert "AnonPages" in text.stdout and "Cached + Buffers - Shmem" in text.stdout


@requires_root
def test_both_ways_of_walking_count_every_frame_once(tmp_path):
    """The walk by distinct flag values (every page of a free block marked: Linux 6.18)
    and the walk frame by frame (older kernels, first pages marked), over one saved copy
    of kpageflags (the machine moves on between two reads of /proc): the same frames,
    and the same count for every use whose rule needs no neighbour."""
    from pagewalk.analysis.ram import _ram_ranges, _walk
    from pagewalk.kernel.kpage import KPAGEFLAGS, KpageFile

    copy = tmp_path / "kpageflags"
    with KpageFile(KPAGEFLAGS) as live, open(copy, "wb") as out:
        ranges = _ram_ranges(live)
        for r in ranges:  # (a sparse file: the RAM ranges only)
            out.seek(r.start_pfn * 8)
            out.write(live.read_range(r.start_pfn, r.end_pfn - r.start_pfn).tobytes())
    with KpageFile(KPAGEFLAGS, str(copy)) as f:
        value_walk, frame_walk = (_walk(f, ranges, heads_only=heads, progress=None) for heads in (False, True))
        (by_value, lists_v), (by_frame, lists_f) = value_walk.counts(), frame_walk.counts()
    assert value_walk.walked == frame_walk.walked == sum(by_value.values()) == sum(by_frame.values())
    # frame by frame, flagless frames after a free block count as free
    assert by_frame["free"] + by_frame["no flags"] == by_value["free"] + by_value["no flags"]
    assert by_frame["free"] >= by_value["free"]
    for use in set(fr.USES) - {"free", "no flags"}:
        assert by_frame[use] == by_value[use] and lists_f[use] == lists_v[use], use


# -- owners ----------------------------------------------------------------------

def memory_stat(path: str) -> dict[str, int]:
    """A memory cgroup's memory.stat, read by the test."""
    from pagewalk.kernel.memcg import find_hierarchy

    with open(f"{find_hierarchy().root}{path}/memory.stat") as f:
        return {k: int(v) for k, v in (line.split() for line in f)}


def close_to(value: int, expected: int, min_bytes: int) -> bool:
    return abs(value - expected) <= max(expected // 50, min_bytes)


def dropped(path) -> None:
    """The file written out and dropped from the page cache (nothing maps it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@requires_root
def test_a_cgroups_memory_is_its_own_and_agrees_with_memory_stat(tmp_path):
    """A process in a memory cgroup of its own makes 64 MiB of anonymous memory and
    reads 16 MiB of a file: --by cgroup puts those frames under that cgroup, and its
    anonymous and page-cache frames agree with the cgroup's memory.stat (read by the
    test) within 2% or 4 MiB."""
    data = tmp_path / "data"
    data.write_bytes(os.urandom(16 << 20))
    dropped(data)
    with Specimen() as s, memory_cgroup(s.pid) as cgroup:
        s.run(f"a = mmap(16384); write(a, 16384)\n"
              f"fd = os.open({str(data)!r}, os.O_RDONLY)\n"
              "while os.read(fd, 1 << 20): pass\n"
              "os.close(fd); result = a")
        r = cli("ram", "--by", "cgroup", "--json")
        stat = memory_stat(cgroup)
    assert r.returncode == 0, r.stderr
    row = next(c for c in json.loads(r.stdout)["cgroups"] if c["cgroup"] == cgroup)
    anon = (row["uses"].get("anonymous", 0) + row["uses"].get("KSM", 0)) * PAGE
    cache = sum(row["uses"].get(u, 0) for u in ("page cache", "shared memory", "swap cache")) * PAGE
    anon_kernel, cache_kernel = (stat["total_rss"], stat["total_cache"]) if "total_rss" in stat else \
        (stat["anon"], stat["file"])
    assert anon >= 64 << 20 and close_to(anon, anon_kernel, 4 << 20), (anon, anon_kernel)
    # (reclaim may have taken a few of the file's pages meanwhile: DAMON runs here)
    assert cache >= 12 << 20 and close_to(cache, cache_kernel, 4 << 20), (cache, cache_kernel)
    assert all(line["within_target"] for line in row["memory_stat"]), row["memory_stat"]
    text = cli("ram", "--by", "cgroup")
    assert text.returncode == 0 and "CGROUP" in text.stdout


@requires_root
@pytest.mark.skipif(shutil.which("fincore") is None, reason="fincore is not installed (Debian package util-linux)")
def test_files_cached_pages_equal_fincores(tmp_path):
    """Files partly read into the cache: --files counts each one's cached pages as
    fincore does, and walks every regular file of the tree."""
    tree = tmp_path / "tree"
    (tree / "nested").mkdir(parents=True)
    sizes = {"whole": 1 << 20, "ends": 3 << 20, "empty": 0, "nested/untouched": 2 << 20, "nested/middle": 2 << 20}
    for name, size in sizes.items():
        (tree / name).write_bytes(os.urandom(size))
        dropped(tree / name)
    for name, offset, length in (("whole", 0, 1 << 20), ("ends", 0, 256 << 10), ("ends", (3 << 20) - 4096, 4096),
                                 ("nested/middle", 1 << 20, 64 << 10)):
        with open(tree / name, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: these pages only
            os.pread(f.fileno(), length, offset)
    os.mkfifo(tree / "fifo")  # no writer: a walk that opened it to read would wait for one
    os.symlink("/dev/zero", tree / "link")  # never followed

    def fincore() -> dict[str, int]:
        out = subprocess.run(["fincore", "--raw", "--noheadings", "--output", "PAGES,FILE",
                              *(str(tree / n) for n in sizes)], capture_output=True, text=True, check=True).stdout
        return {path: int(pages) for pages, path in (line.split(" ", 1) for line in out.splitlines())}

    # The cache may lose a page to reclaim at any time (a DAMON reclaims here): fincore
    # before and after pagewalk, and a try counts only where the two agree
    for _ in range(5):
        before = fincore()
        r = cli("ram", "--files", tree, "--json", "--top", "100")
        expected = fincore()
        if expected == before:
            break
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    got = {f["path"]: f["cached_pages"] for f in doc["files"]}
    assert got == {p: n for p, n in expected.items() if n}, (got, expected)
    assert expected[str(tree / "whole")] > 128 and expected[str(tree / "ends")] > 0
    walked = doc["files_walked"]
    assert walked["files"] == len(sizes) and walked["cached_pages"] == sum(expected.values())  # (no FIFO, no link)
    assert walked["files_cached"] == sum(1 for n in expected.values() if n)


@requires_root
def test_processes_are_listed_with_their_own_sums(specimen):
    """--by process: a test process's RSS and USS as its smaps_rollup says."""
    specimen.run("a = mmap(8192); write(a, 8192)")
    r = cli("ram", "--by", "process", "--json", "--top", "100000")
    with open(f"/proc/{specimen.pid}/smaps_rollup") as f:
        rollup = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.endswith("kB\n")}
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    row = next(p for p in doc["processes"] if p["pid"] == specimen.pid)
    # (its PSS and USS moved when pagewalk, which shared its libraries, exited: what
    # pagewalk mapped too became the specimen's alone)
    uss = rollup["Private_Clean"] + rollup["Private_Dirty"]
    assert row["rss"] == rollup["Rss"] >= 32 << 20 and row["uss"] <= row["pss"] <= row["rss"]
    assert 32 << 20 <= row["uss"] <= uss <= row["uss"] + (4 << 20), (row["uss"], uss)
    assert doc["processes_total"]["pss"] >= row["pss"]


# -- snapshots, diff, pictures -----------------------------------------------------

def own_memory_cgroup(pid: int) -> str | None:
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    v1 = [path for _, controllers, path in lines if "memory" in controllers.split(",")]
    return v1[0] if v1 else next((path for hierarchy, _, path in lines if hierarchy == "0"), None)


@requires_root
def test_two_machine_snapshots_say_what_grew(tmp_path):
    """Snapshots before and after a process in a cgroup of its own makes 64 MiB of
    anonymous memory: the diff shows anonymous grown by that much, frames moved into
    anonymous, and the cgroup grown by it; the files are 0600; bad files are one-line
    errors."""
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    with Specimen() as specimen, memory_cgroup(specimen.pid) as cgroup:
        assert cli("ram", "-o", a).returncode == 0
        specimen.run("m = mmap(16384); write(m, 16384)")
        r = cli("ram", "-o", b)
        assert r.returncode == 0, r.stderr
        pid = specimen.pid
    assert os.stat(a).st_mode & 0o777 == os.stat(b).st_mode & 0o777 == 0o600
    r = cli("diff", a, b, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    anon = next(u for u in doc["by_use"] if u["use"] == "anonymous")
    assert anon["change_frames"] >= (60 << 20) // PAGE, anon
    into_anon = sum(m["frames"] for m in doc["moved"] if m["to"] == "anonymous")
    assert into_anon >= (60 << 20) // PAGE  # (a few frames were anonymous before, of another process)
    grown = next(c for c in doc["by_cgroup"] if c["cgroup"] == cgroup)
    assert (64 << 20) // PAGE <= grown["change_frames"] <= (68 << 20) // PAGE, grown
    text = cli("diff", a, b)
    assert text.returncode == 0 and "anonymous" in text.stdout and "FROM" in text.stdout
    # a cut file, and a machine snapshot against a process's
    cut = tmp_path / "cut.npz"
    cut.write_bytes(b.read_bytes()[: os.path.getsize(b) // 2])
    for args in (("diff", a, cut), ("diff", a, pid)):
        r = cli(*args)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def anon_frame(pid: int, addr: int) -> int:
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        entry = int.from_bytes(os.pread(pm.fileno(), 8, addr // PAGE * 8), "little")
    assert entry >> 63
    return entry & FRAME


@requires_root
def test_pictures_of_physical_memory(specimen, tmp_path, browser):
    """PNG and SVG are drawn (0600); the HTML page zooms to single frames and names a
    test process's frame as the kernel does: anonymous, mapped once, in its cgroup."""
    pytest.importorskip("matplotlib", reason="the test extra installs matplotlib")
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    for name in ("ram.png", "ram.svg"):
        r = cli("ram", "-o", tmp_path / name)
        assert r.returncode == 0, r.stderr
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o600 and os.path.getsize(tmp_path / name) > 10000
    assert (tmp_path / "ram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    addr = specimen.run("m = mmap(16); write(m, 16); result = m")
    pfn = anon_frame(specimen.pid, addr)
    page = tmp_path / "ram.html"
    r = cli("ram", "-o", page)
    assert r.returncode == 0, r.stderr
    assert os.stat(page).st_mode & 0o777 == 0o600
    with open("/proc/kpagecount", "rb") as f:
        count = int.from_bytes(os.pread(f.fileno(), 8, pfn * 8), "little")
    browser.get(page.as_uri())
    assert browser.execute_script("return window.pagewalk && window.pagewalk.ready") is True
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    frame = browser.execute_script(f"return window.pagewalk.frameInfo({pfn})")
    assert frame["use"] == "anonymous" and "anonymous" in frame["flags"] and frame["map_count"] == count == 1
    assert frame["cgroup"] == own_memory_cgroup(specimen.pid)
    assert browser.execute_script(f"return window.pagewalk.zoomTo({pfn})") is True
    x, y = browser.execute_script(
        f"const p = window.pagewalk, d = document.getElementById('detail'), r = d.getBoundingClientRect();"
        f"const i = p.view.index({pfn}); const sx = r.width / d.width, sy = r.height / d.height;"
        "return [r.left + d.clientLeft + ((i % p.cols) + 0.5) * p.cell * sx, r.top + d.clientTop + (Math.floor(i / p.cols) + 0.5) * p.cell * sy];")
    action = ActionBuilder(browser)
    action.pointer_action.move_to_location(int(x), int(y))
    action.perform()
    tip = browser.find_element("id", "tip").text
    assert f"PFN {pfn:#x}" in tip and "use: anonymous" in tip and "map count: 1" in tip, tip


@requires_root
def test_progress_shows_on_a_terminal():
    on_tty, stdout = run_on_terminal(["ram"], "stderr")
    assert b"pagewalk ram" in on_tty and b"frames" in on_tty
    assert stdout.startswith(b"USE")


@requires_root
def test_a_machine_snapshot_is_anybodys_file(tmp_path):
    """A snapshot's names and times are printed escaped; a file that claims more than
    it holds, or codes it does not name, is one line of error, never a traceback nor a
    memory bomb."""
    good = tmp_path / "good.npz"
    assert cli("ram", "-o", good).returncode == 0
    arrays = dict(np.load(good))
    meta = json.loads(arrays["ram_meta"].item())

    def variant(name: str, **changes) -> str:
        path = tmp_path / name
        np.savez(path, **{**arrays, "ram_meta": np.array(json.dumps({**meta, **changes}))})
        return str(path)

    hostile = variant("hostile.npz", time="\x1b]0;owned\x07\x1b[2J", uses=["\x1b[31mfree\r", *meta["uses"][1:]])
    r = cli("diff", good, hostile)
    assert r.returncode == 0 and "\x1b" not in r.stdout and "\\x1b]0;owned" in r.stdout, r.stdout
    for bad in (variant("big.npz", frames=1 << 34, ranges=[[0, 1 << 34]]), variant("nocg.npz", cgroups=[]),
                variant("dup.npz", uses=["free"] * len(meta["uses"])), variant("time.npz", time={"a": [1]}),
                variant("ranges.npz", ranges=[[i, i + 1] for i in range(1 << 17)], frames=1 << 17)):
        r = cli("diff", good, bad)
        assert r.returncode in (1, 2) and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


@requires_root
def test_a_file_reached_twice_is_counted_once(tmp_path):
    """A hard link, and roots that overlap: each file's pages once; a root that does
    not exist is an error."""
    (tmp_path / "t").mkdir()
    data = tmp_path / "t" / "a"
    data.write_bytes(os.urandom(1 << 20))
    os.link(data, tmp_path / "t" / "b")
    data.read_bytes()
    single = tmp_path / "t" / "c"  # one link, named as a root and met in the tree
    single.write_bytes(b"c" * PAGE)
    r = cli("ram", "--files", tmp_path / "t", data, single, tmp_path, "--json")
    assert r.returncode == 0, r.stderr
    walked = json.loads(r.stdout)["files_walked"]
    assert walked["files"] == 2 and 0 < walked["cached_pages"] <= 257, walked  # (counted twice: more)
    r = cli("ram", "--files", tmp_path / "missing")
    assert r.returncode == 2 and "no such file" in r.stderr and len(r.stderr.splitlines()) <= 3, r.stderr


def test_the_picture_grid_from_runs_is_the_grid_from_frames():
    """Each pixel the use most of its frames have, counted from runs, as counting the
    frames one by one gives it (ties to the lower use)."""
    from pagewalk.analysis.ram import KeptFrames
    from pagewalk.output.ram_picture import raster

    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 40, 5000)
    uses = rng.integers(0, len(fr.USES), 5000).astype(np.uint8)
    frames = int(lengths.sum())
    kept = KeptFrames(np.concatenate(([0], np.cumsum(lengths)[:-1])), uses, None, None, None)
    for width, rows in ((64, 64), (100, 2000), (7, 3)):
        grid, per = raster(kept, frames, width, rows)
        per_frame = np.repeat(uses, lengths)
        padded = np.full(-(-frames // per) * per, 255, dtype=np.int64)
        padded[:frames] = per_frame
        blocks = padded.reshape(-1, per)
        counts = np.stack([(blocks == k).sum(axis=1) for k in range(len(fr.USES))], axis=1)
        expected = counts.argmax(axis=1)
        assert grid.reshape(-1)[: len(expected)].tolist() == expected.tolist()
        assert (grid.reshape(-1)[len(expected):] == 255).all()


@requires_root
def test_the_table_fits_an_80_column_terminal_and_wide_or_piped_has_every_list():
    narrow, _ = run_on_terminal(["ram"], "stdout", {"COLUMNS": "80", "NO_COLOR": "1"})
    lines = narrow.decode().replace("\r\n", "\n").splitlines()
    # the lists most asked for stay; the rarer give way, named on a line of their own
    assert lines[0].split()[:7] == ["USE", "SIZE", "SHARE", "ACTIVE", "INACTIVE", "DIRTY", "MAPPED"], lines[0]
    hidden = [line for line in lines if line.startswith("(hidden to fit 80 columns")]
    assert len(lines[0].split()) < 3 + len(fr.LISTS) and len(hidden) == 1, lines
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    wide, _ = run_on_terminal(["ram", "--wide"], "stdout", {"COLUMNS": "80", "NO_COLOR": "1"})
    piped = cli("ram").stdout
    for text in (wide.decode(), piped):
        assert text.split("\n")[0].split() == ["USE", "SIZE", "SHARE", *(name.upper() for name in fr.LISTS)]
