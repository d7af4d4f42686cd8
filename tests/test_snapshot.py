"""Snapshots and diffs: the file (mode 0600, readable with numpy alone, clear errors
for damaged or foreign files) and diff against what the test itself did."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from conftest import PAGE, cli, kpageflags, pagemap_entry, requires_root, smaps_of, smaps_rollup, swap_file, without_module

pytestmark = requires_root  # frames and swap need root

FRAME = (1 << 55) - 1


def test_snapshot_file_round_trip_and_plain_numpy(specimen, tmp_path):
    a = specimen.run("a = mmap(40); write(a, 30); result = a")
    path = tmp_path / "snap.npz"
    r = cli("snapshot", specimen.pid, "-o", path)
    assert r.returncode == 0, r.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600  # it holds physical addresses
    z = np.load(path)  # no pagewalk needed to read it
    meta = json.loads(str(z["meta"]))
    assert meta["format"] == "pagewalk-snapshot" and meta["version"] == 2 and meta["pid"] == specimen.pid
    assert meta["pfn_visible"] is True and meta["page_size"] == PAGE

    def column(name):  # run-length coded, as the README says
        return np.repeat(z[f"{name}_values"], z[f"{name}_repeats"])

    vpn = np.cumsum(column("vpn_delta"))
    entries = np.cumsum(column("entry_delta"), dtype=np.uint64)
    mine = (vpn >= a // PAGE) & (vpn < a // PAGE + 40)
    with open(f"/proc/{specimen.pid}/pagemap", "rb") as f:
        f.seek(a // PAGE * 8)
        raw = np.frombuffer(f.read(40 * 8), dtype=np.uint64)
    assert vpn[mine].tolist() == list(range(a // PAGE, a // PAGE + 30))  # the written pages, in order
    assert entries[mine].tolist() == raw[:30].tolist()  # entry for entry
    assert a in z["map_start"].tolist()
    doc = json.loads(cli("snapshot", "--load", path, "--json").stdout)
    row = next(m for m in doc["mappings"] if m["start"] == a)
    assert row["present"] == 30 and row["pages"] == 40


def test_version_1_files_still_load(specimen, tmp_path):
    """Version 1 stored the per-page columns whole: a file written that way (here with
    numpy alone, from a version 2 one) loads to the same snapshot."""
    from pagewalk.analysis.npz import PAGE_COLUMNS
    from pagewalk.analysis.snapshot import Snapshot

    specimen.run("a = mmap(64); write(a, 50)")
    new = tmp_path / "v2.npz"
    assert cli("snapshot", specimen.pid, "-o", new).returncode == 0
    with np.load(new) as z:
        arrays = {k: z[k] for k in z.files if not k.endswith(("_values", "_repeats"))}
        for name in PAGE_COLUMNS:
            if f"{name}_values" in z.files:
                arrays[name] = np.repeat(z[f"{name}_values"], z[f"{name}_repeats"])
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = 1
    arrays["meta"] = np.array(json.dumps(meta))
    old = tmp_path / "v1.npz"
    np.savez_compressed(old, **arrays)
    a, b = Snapshot.load(str(new)), Snapshot.load(str(old))
    assert len(a.vaddr) > 50 and b.meta["version"] == 1
    for field in ("vaddr", "raw", "zero", "huge", "kpageflags", "mapcount"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.mappings == b.mappings


def test_damaged_and_foreign_files_are_one_line_errors(specimen, tmp_path):
    good = tmp_path / "good.npz"
    assert cli("snapshot", specimen.pid, "-o", good).returncode == 0
    data = good.read_bytes()
    half = tmp_path / "half.npz"
    half.write_bytes(data[: len(data) // 2])
    noise = tmp_path / "noise.npz"
    noise.write_bytes(os.urandom(4096))
    newer = tmp_path / "newer.npz"
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = 99
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(newer, **arrays)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    for path, words in ((half, "damaged"), (noise, "damaged"), (newer, "newer"), (foreign, "not a pagewalk")):
        for argv in (("snapshot", "--load", path), ("diff", path, specimen.pid)):
            r = cli(*argv)
            assert r.returncode == 1, (path, r.stderr)
            assert len(r.stderr.splitlines()) == 1 and words in r.stderr and "Traceback" not in r.stderr


def row_of(doc: dict, start: int) -> dict:
    return next((m for m in doc["mappings"] if m["start"] == start), {})


def test_diff_reports_exactly_what_the_process_did(specimen, tmp_path):
    with swap_file() as _:
        keep, gone, out, cow = specimen.run(
            "k = mmap(200); write(k, 100)\n"
            "g = mmap(30); write(g, 30)\n"
            "s = mmap(64); write(s, 64); madvise(s, 64, MADV_DONTFORK)\n"  # paged out only if not shared
            "c = mmap(40); write(c, 40)\n"
            "result = [k, g, s, c]")
        specimen.run("child_pid = fork()")  # the child shares c (and everything) copy-on-write
        before = tmp_path / "before.npz"
        assert cli("snapshot", specimen.pid, "-o", before).returncode == 0
        unchanged = json.loads(cli("diff", before, specimen.pid, "--json").stdout)
        assert unchanged["mappings_added"] == unchanged["mappings_removed"] == []
        assert {k: v for k, v in unchanged["totals"].items() if v} == {}, unchanged["totals"]

        new = specimen.run(f"write({keep + 100 * PAGE}, 50)\n"  # 50 new pages in a kept mapping
                           f"munmap({gone}, 30)\n"  # a mapping removed
                           "n = mmap(25); write(n, 25)\n"  # a mapping added
                           f"write({cow}, 10)\n"  # copy-on-write broken: 10 pages on new frames
                           "result = n")
        deadline = time.monotonic() + 5
        while smaps_of(specimen.pid, out).get("Swap", 0) == 0 and time.monotonic() < deadline:
            specimen.run(f"madvise({out}, 64, MADV_PAGEOUT)")
            time.sleep(0.2)
        swapped = smaps_of(specimen.pid, out).get("Swap", 0) // PAGE
        doc = json.loads(cli("diff", before, specimen.pid, "--json").stdout)

    assert row_of(doc, keep)["appeared"] == 50 and row_of(doc, keep)["vanished"] == 0
    assert row_of(doc, keep)["moved"] == 0
    assert row_of(doc, cow)["moved"] == 10 and row_of(doc, cow)["appeared"] == 0
    # (the specimen's empty guard pages around mappings may merge or split as they come and go)
    assert [(m["start"], m["present"]) for m in doc["mappings_removed"] if m["present"]] == [(gone, 30)]
    assert [(m["start"], m["present"]) for m in doc["mappings_added"] if m["present"]] == [(new, 25)]
    if swapped == 0:
        pytest.skip("MADV_PAGEOUT swapped nothing out within 5 s (the rest was checked)")
    assert row_of(doc, out)["swapped_out"] == swapped and row_of(doc, out)["vanished"] == 0
    assert doc["totals"]["written"] is None  # no soft-dirty here: unknown, never 0


def test_written_pages_need_soft_dirty(specimen, tmp_path):
    from pagewalk.kernel import probes

    r = cli("snapshot", specimen.pid, "-o", tmp_path / "s.npz", "--clear-soft-dirty")
    if not probes.soft_dirty_supported():
        assert r.returncode == 1 and "soft-dirty" in r.stderr and not (tmp_path / "s.npz").exists()
        pytest.skip("this kernel has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY): checked the message instead")
    assert r.returncode == 0, r.stderr
    a = specimen.run("a = mmap(20); write(a, 20); result = a")
    assert cli("snapshot", specimen.pid, "-o", tmp_path / "s.npz", "--clear-soft-dirty").returncode == 0
    specimen.run(f"write({a}, 7)")
    doc = json.loads(cli("diff", tmp_path / "s.npz", specimen.pid, "--json").stdout)
    assert row_of(doc, a)["written"] == 7


def test_parquet_snapshot_reads_in_pyarrow_and_back(specimen, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="the test extra installs pyarrow")
    a = specimen.run("a = mmap(40); write(a, 30); result = a")
    path = tmp_path / "snap.parquet"
    r = cli("snapshot", specimen.pid, "-o", path)
    assert r.returncode == 0, r.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600
    table = pq.read_table(path)  # pyarrow alone, no pagewalk
    meta = json.loads(table.schema.metadata[b"pagewalk"])
    assert meta["pid"] == specimen.pid and meta["frames"] is True
    assert a in [m["start"] for m in meta["mappings"]]
    rows = table.to_pydict()
    mine = [i for i, v in enumerate(rows["vaddr"]) if a <= v < a + 40 * PAGE]
    with open(f"/proc/{specimen.pid}/pagemap", "rb") as f:
        f.seek(a // PAGE * 8)
        raw = np.frombuffer(f.read(30 * 8), dtype=np.uint64).tolist()
    pfns = [e & FRAME for e in raw]
    flags = [kpageflags(pfn) for pfn in pfns]
    counts = [kpageflags(pfn, "/proc/kpagecount") for pfn in pfns]
    assert [rows["vaddr"][i] for i in mine] == [a + k * PAGE for k in range(30)]
    assert [rows["entry"][i] for i in mine] == raw
    assert [rows["pfn"][i] for i in mine] == pfns
    assert all(rows["present"][i] and not rows["swapped"][i] and rows["path"][i] is None for i in mine)
    assert [rows["mapcount"][i] for i in mine] == counts == [1] * 30
    # kpageflags may gain LRU/active bits between the two reads: the stable ones must agree
    stable = (1 << 4) | (1 << 11) | (1 << 12)  # dirty, mmap, anon
    assert [rows["kpageflags"][i] & stable for i in mine] == [f & stable for f in flags]
    not_present = [i for i, p in enumerate(rows["present"]) if not p]
    assert all(rows["pfn"][i] is None and rows["mapcount"][i] is None for i in not_present)
    rss = smaps_rollup(specimen.pid)["Rss"] // PAGE
    assert sum(p and not z for p, z in zip(rows["present"], rows["zero"])) == rss
    # read back by pagewalk: the same snapshot as the .npz form, and no change since
    doc = json.loads(cli("snapshot", "--load", path, "--json").stdout)
    assert row_of(doc, a)["present"] == 30
    unchanged = json.loads(cli("diff", path, specimen.pid, "--json").stdout)
    assert {k: v for k, v in unchanged["totals"].items() if v} == {}, unchanged["totals"]


def test_parquet_damaged_foreign_and_missing_pyarrow(specimen, tmp_path):
    pa = pytest.importorskip("pyarrow", reason="the test extra installs pyarrow")
    import pyarrow.parquet as pq

    good = tmp_path / "good.parquet"
    assert cli("snapshot", specimen.pid, "-o", good).returncode == 0
    half = tmp_path / "half.parquet"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), foreign)
    for path, words in ((half, "damaged"), (foreign, "not a pagewalk snapshot")):
        r = cli("snapshot", "--load", path)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and words in r.stderr, r.stderr
    # Without pyarrow: a one-line error naming the extra, and no file left behind.
    env = without_module(tmp_path, "pyarrow")
    r = cli("snapshot", specimen.pid, "-o", tmp_path / "none.parquet", env=env)
    assert r.returncode != 0 and "pagewalk[parquet]" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "none.parquet").exists()
    r = cli("snapshot", "--load", good, env=env)
    assert r.returncode != 0 and "pagewalk[parquet]" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_map_counts_recorded_for_shared_and_exclusive_pages(specimen, tmp_path):
    """Pages shared with a forked child have map count 2, pages written after the
    fork 1: as /proc/kpagecount says, whether read or known from the exclusive bit."""
    from pagewalk.analysis.snapshot import Snapshot

    a = specimen.run("a = mmap(40); write(a, 40); result = a")
    specimen.run("child_pid = fork()")
    specimen.run(f"write({a}, 10)")  # copy-on-write: the parent's first 10 pages are its own again
    path = tmp_path / "s.npz"
    assert cli("snapshot", specimen.pid, "-o", path).returncode == 0
    snap = Snapshot.load(str(path))
    pages = {int(v): i for i, v in enumerate(snap.vaddr.tolist())}
    recorded = [int(snap.mapcount[pages[a + k * PAGE]]) for k in range(40)]
    kernel = [kpageflags(pagemap_entry(specimen.pid, a + k * PAGE) & FRAME, "/proc/kpagecount") for k in range(40)]
    assert recorded == kernel == [1] * 10 + [2] * 30


def test_page_number_deltas_from_runs_are_what_the_pages_give():
    """A snapshot taken from a live process codes its page numbers straight from the
    runs of pages it read; the members must be exactly those the per-page coding
    gives (adjacent runs, empty runs, one-page runs, addresses high in user space)."""
    from pagewalk.runs import ramps
    from pagewalk.analysis.npz import _delta, _vpn_delta_runs, run_lengths

    rng = np.random.default_rng(7)
    for _ in range(50):
        k = int(rng.integers(1, 30))
        pages = rng.integers(0, 5, k)
        gaps = rng.integers(0, 3, k)  # 0: a run right after the previous one
        vpn = np.cumsum(gaps + np.concatenate(([int(rng.integers(0, 1 << 35))], pages[:-1])))
        first = (vpn * PAGE).astype(np.uint64)
        vaddr = ramps(first, pages, PAGE)
        delta = np.empty(len(vaddr), dtype=np.uint64)
        _delta(vaddr, delta)
        per_page = run_lengths((delta >> np.uint64(12)).view(np.int64)) if len(vaddr) else None
        from_runs = _vpn_delta_runs(first, pages)
        if per_page is None:
            assert len(from_runs[0]) == 0
            continue
        assert from_runs[0].tolist() == per_page[0].tolist() and from_runs[1].tolist() == per_page[1].tolist()
        assert from_runs[1].dtype == per_page[1].dtype


RESERVE = """
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x02, 0x10, 0x20, 0x4000
libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
def reserve(pages, room):
    # `pages` of rw anonymous memory with `room` free pages after them (then a guard page):
    # room to grow in place
    span = check(libc.mmap(None, (pages + room + 2) * PAGE, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), 'mmap')
    a = check(libc.mmap(span + PAGE, pages * PAGE, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), 'mmap')
    munmap(a + pages * PAGE, room)
    return a
"""


def row_at(doc: dict, addr: int) -> dict:
    """The diff row of the mapping holding ``addr`` (none: {})."""
    return next((m for m in doc["mappings"] if m["start"] <= addr < m["end"]), {})


def listed(doc: dict, addr: int) -> list[str]:
    """Where ``addr`` appears among the added and removed mappings."""
    return [what for what in ("mappings_added", "mappings_removed")
            for m in doc[what] if m["start"] <= addr < m["end"]]


def present_pages(pid: int, addr: int, pages: int) -> list[int]:
    """Which of the pages at ``addr`` are present, by the kernel's pagemap."""
    return [k for k in range(pages) if pagemap_entry(pid, addr + k * PAGE) >> 63]


def test_diff_follows_a_mapping_that_grew_or_shrank_in_place(specimen, tmp_path):
    """mremap grows a mapping in place, munmap cuts its tail: the same mapping, whose
    kept pages compare page by page; only the new part appears, only the cut part vanishes."""
    a = specimen.run(RESERVE + "a = reserve(10, 20); write(a, 10); result = a")
    before = tmp_path / "before.npz"
    assert cli("snapshot", specimen.pid, "-o", before).returncode == 0
    assert specimen.run(f"result = libc.mremap({a}, 10 * PAGE, 30 * PAGE, 0)") == a  # grown in place
    specimen.run(f"write({a + 10 * PAGE}, 5)")
    assert smaps_of(specimen.pid, a)["Size"] == 30 * PAGE and present_pages(specimen.pid, a, 30) == list(range(15))
    doc = json.loads(cli("diff", before, specimen.pid, "--json").stdout)
    assert listed(doc, a) == []
    row = row_at(doc, a)
    assert (row["start"], row["end"]) == (a, a + 30 * PAGE)
    assert (row["appeared"], row["vanished"], row["moved"]) == (5, 0, 0)

    grown = tmp_path / "grown.npz"
    assert cli("snapshot", specimen.pid, "-o", grown).returncode == 0
    specimen.run(f"munmap({a + 12 * PAGE}, 18)")  # cuts 3 present pages (12, 13, 14) and 15 untouched
    assert present_pages(specimen.pid, a, 30) == list(range(12))
    doc = json.loads(cli("diff", grown, specimen.pid, "--json").stdout)
    assert listed(doc, a) == []
    row = row_at(doc, a)
    assert (row["appeared"], row["vanished"], row["moved"]) == (0, 3, 0)


def test_diff_follows_areas_merged_by_mprotect_and_a_mapping_grown_by_a_neighbour(specimen, tmp_path):
    a = specimen.run(RESERVE + "a = reserve(20, 10); write(a, 20); libc.mprotect(a + 10 * PAGE, 10 * PAGE, 1)\n"
                     "result = a")
    assert smaps_of(specimen.pid, a)["Size"] == 10 * PAGE  # two areas: rw and r
    before = tmp_path / "before.npz"
    assert cli("snapshot", specimen.pid, "-o", before).returncode == 0
    specimen.run(f"libc.mprotect({a + 10 * PAGE}, 10 * PAGE, 3)\n"  # merged again
                 f"check(libc.mmap({a + 20 * PAGE}, 10 * PAGE, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), 'm')\n"
                 f"write({a + 25 * PAGE}, 2)")  # a neighbour the kernel merges, two of its pages written
    assert smaps_of(specimen.pid, a)["Size"] == 30 * PAGE  # one area now
    assert present_pages(specimen.pid, a, 30) == list(range(20)) + [25, 26]
    doc = json.loads(cli("diff", before, specimen.pid, "--json").stdout)
    assert listed(doc, a) == listed(doc, a + 15 * PAGE) == []
    row = row_at(doc, a)
    assert (row["start"], row["end"]) == (a, a + 30 * PAGE)
    assert (row["appeared"], row["vanished"], row["moved"]) == (2, 0, 0)


def test_diff_follows_a_mapping_that_grows_down(specimen, tmp_path):
    """A MAP_GROWSDOWN mapping keeps its end as a fault below it extends it down."""
    # placed at the top of a freed 2 MiB hole: the kernel grows it only where no other
    # mapping lies within its guard gap (1 MiB) below, and a write there would land in it
    g = specimen.run(RESERVE + "MAP_GROWSDOWN = 0x100\n"
                     "hole = check(libc.mmap(None, 512 * PAGE, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), 'mmap')\n"
                     "libc.munmap(hole, 512 * PAGE)\n"
                     "g = check(libc.mmap(hole + 508 * PAGE, 4 * PAGE, 3, "
                     "MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED, -1, 0), 'mmap')\n"
                     "write(g, 4); result = g")
    before = tmp_path / "before.npz"
    assert cli("snapshot", specimen.pid, "-o", before).returncode == 0
    specimen.run(f"write({g - 3 * PAGE})")  # grows down by three pages, one of them written
    assert smaps_of(specimen.pid, g)["Size"] == 7 * PAGE and "gd" in smaps_vmflags(specimen.pid, g)
    assert present_pages(specimen.pid, g - 3 * PAGE, 7) == [0, 3, 4, 5, 6]
    doc = json.loads(cli("diff", before, specimen.pid, "--json").stdout)
    assert listed(doc, g) == []
    row = row_at(doc, g)
    assert (row["start"], row["end"]) == (g - 3 * PAGE, g + 4 * PAGE)
    assert (row["appeared"], row["vanished"], row["moved"]) == (1, 0, 0)


def smaps_vmflags(pid: int, addr: int) -> list[str]:
    """The VmFlags of the mapping holding ``addr``, from smaps."""
    inside = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    raise KeyError(hex(addr))


def test_diff_says_when_the_two_sides_are_different_processes(specimen, tmp_path):
    """A snapshot compared with another PID, or with its own PID now running another
    command, is said so in one line on stderr; with its own process, nothing is said."""
    import subprocess
    import sys

    snap = tmp_path / "s.npz"
    assert cli("snapshot", specimen.pid, "-o", snap).returncode == 0
    same = cli("diff", snap, specimen.pid)
    assert same.returncode == 0 and same.stderr == ""
    other = subprocess.Popen([sys.executable, "-c", "import os, sys; sys.stdin.readline(); "
                              "os.execvp('sleep', ['sleep', '1000'])"], stdin=subprocess.PIPE, text=True)
    try:
        r = cli("diff", snap, other.pid)
        assert r.returncode == 0 and len(r.stderr.splitlines()) == 1, r.stderr
        assert str(specimen.pid) in r.stderr and str(other.pid) in r.stderr and "different process" in r.stderr
        r = cli("diff", snap, other.pid, "--json")
        assert r.returncode == 0 and len(r.stderr.splitlines()) == 1 and json.loads(r.stdout)["totals"]
        before = tmp_path / "before-exec.npz"
        assert cli("snapshot", other.pid, "-o", before).returncode == 0
        other.stdin.write("go\n")
        other.stdin.flush()
        deadline = time.monotonic() + 10
        while open(f"/proc/{other.pid}/comm").read().strip() != "sleep":  # the exec, as the kernel shows it
            assert time.monotonic() < deadline, "the process did not exec"
            time.sleep(0.01)
        r = cli("diff", before, other.pid)
        assert r.returncode == 0 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "sleep" in r.stderr and "python" in r.stderr and "different command" in r.stderr
    finally:
        other.kill()
        other.wait()


def test_diff_with_a_live_process_says_when_its_mappings_changed_during_the_walk(specimen, tmp_path):
    """``diff FILE PID`` walks the process as ``snapshot`` does, and says as it does
    when the process's mappings changed during the walk (their pages mix the before
    and the after): a target that maps and unmaps all the time."""
    from test_walk_bounds import NO_SCAN, RACER

    specimen.run("w = mmap(64); write(w, 64)")
    before = tmp_path / "before.npz"
    assert cli("snapshot", specimen.pid, "-o", before).returncode == 0
    quiet = cli("diff", before, specimen.pid)
    assert quiet.returncode == 0 and "changed during the scan" not in quiet.stderr, quiet.stderr
    specimen.run(RACER)
    said = []
    try:
        for env in ({}, NO_SCAN, {}, NO_SCAN):
            r = cli("diff", before, specimen.pid, env=env)
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
            said.append("mapping(s) changed during the scan (e.g. " in r.stderr)
    finally:
        specimen.run("stop.set(); racer.join()")
    assert any(said), "the mappings changed all along, and diff never said so"
