"""Shared memory in swap, through every command (issue 12, section 1).

Swapped-out shmem pages have no pagemap entry (mm/shmem.c keeps them in the object, not the page table); smaps counts
them in ``Swap``.  Each command must count and name them as smaps does: maps,
usage (and its totals, which count an object's page once), dump, v2p, snapshot,
diff and picture.  Expected values come from smaps and smaps_rollup."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from conftest import PAGE, cli, cli_json, pagemap_entry, requires_root, smaps, smaps_of, swap_file
from specimen import MADV_PAGEOUT, Specimen

pytestmark = requires_root

SHARED_PAGES = 64
SWAPPED_PAGES = 40  # pages [8, 48) of the shared mapping are paged out

LAYOUT = f"""
s = mmap({SHARED_PAGES}, shared=True); write(s, {SHARED_PAGES})
p = mmap(16); write(p, 16)
result = [s, p]
"""


def page_out(specimen: Specimen, addr: int, first: int, pages: int) -> None:
    """Page out pages [first, first + pages) of the mapping at ``addr``; fail loudly
    (never pass vacuously) if the kernel keeps them."""
    specimen.run(f"madvise({addr} + {first} * PAGE, {pages}, {MADV_PAGEOUT}); result = 0")
    swapped = smaps_of(specimen.pid, addr)["Swap"] // PAGE
    assert swapped == pages, f"smaps Swap {swapped} pages after paging out {pages}: the test's premise failed"


@pytest.fixture
def swapped_shared():
    """A specimen with a shared anonymous mapping of which SWAPPED_PAGES are in swap,
    and a forked child that maps the same object (sharing the swap)."""
    with swap_file(64):
        with Specimen() as s:
            shared, private = s.run(LAYOUT)
            child = s.run("result = fork()")
            page_out(s, shared, 8, SWAPPED_PAGES)
            yield s, shared, private, child


def test_maps_counts_shared_memory_in_swap_as_smaps_does(swapped_shared):
    s, shared, private, _ = swapped_shared
    doc = cli_json("maps", s.pid)
    kernel = smaps(s.pid)
    for m in doc["mappings"]:
        if m["swapped"] is not None:
            assert m["swapped"] * PAGE == kernel[(m["start"], m["end"])]["Swap"], m
    row = next(m for m in doc["mappings"] if m["start"] == shared)
    assert row["swapped"] == row["shmem_swapped"] == SWAPPED_PAGES
    assert doc["totals"]["swapped"] * PAGE == sum(b.get("Swap", 0) for b in kernel.values())


def test_usage_counts_them_per_process_and_once_in_totals(swapped_shared):
    s, shared, private, child = swapped_shared
    doc = cli_json("usage", s.pid, child)
    rollup = {}
    for pid in (s.pid, child):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            rollup[pid] = {ln.split()[0][:-1]: int(ln.split()[1]) * 1024 for ln in f if ln.rstrip().endswith("kB")}
    for p in doc["processes"]:
        assert p["swap"] == rollup[p["pid"]]["Swap"], p
    # smaps charges the object's swapped pages to both processes; the total counts them once
    both = sum(rollup[pid]["Swap"] for pid in rollup)
    assert doc["totals"]["swap"] == both - SWAPPED_PAGES * PAGE
    # where the rows do not add up to the total, a note says why
    r = cli("usage", s.pid, child)
    assert r.returncode == 0 and "the total counts each page once" in r.stderr, r.stderr
    # a group holding both processes counts them once too
    for by in ("command", "user", "cgroup"):
        groups = cli_json("usage", s.pid, child, "--by", by)["groups"]
        assert len(groups) == 1 and groups[0]["swap"] == both - SWAPPED_PAGES * PAGE, (by, groups)


def test_dump_and_v2p_name_them(swapped_shared):
    s, shared, _, _ = swapped_shared
    r = cli("dump", s.pid, "--range", f"{shared:x}+{SHARED_PAGES * 4}K")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "swapped (shared memory)" in ln]
    assert len(lines) == 1 and f"{SWAPPED_PAGES} pages" in lines[0], r.stdout
    assert "untouched" not in r.stdout
    rows = [json.loads(ln) for ln in cli("dump", s.pid, "--format", "jsonl", "--range",
                                         f"{shared:x}+{SHARED_PAGES * 4}K").stdout.splitlines()]
    assert sum(r["swapped"] and r["shmem_swapped"] for r in rows) == SWAPPED_PAGES
    assert all(r["swap_type"] is None for r in rows if r["shmem_swapped"])
    where = cli("dump", s.pid, "--format", "csv", "--where", "swapped")
    assert len(where.stdout.splitlines()) - 1 == SWAPPED_PAGES
    t = cli_json("v2p", s.pid, f"{shared + 10 * PAGE:x}", f"{shared + 60 * PAGE:x}")
    assert t[0]["swapped"] is True and t[0]["shmem_swapped"] is True and t[0]["present"] is False
    assert t[1]["present"] is True and t[1]["shmem_swapped"] is False
    text = cli("v2p", s.pid, f"{shared + 10 * PAGE:x}").stdout
    assert "swapped out (shared memory" in text, text


def test_snapshot_diff_and_picture_see_them(swapped_shared, tmp_path):
    s, shared, _, _ = swapped_shared
    before = tmp_path / "before.npz"
    # a snapshot taken before more pages go out: diff sees them swapped out
    assert cli("snapshot", s.pid, "-o", before).returncode == 0
    loaded = cli_json("snapshot", "--load", before)
    row = next(m for m in loaded["mappings"] if m["start"] == shared)
    assert row["swapped"] == SWAPPED_PAGES
    s.run(f"madvise({shared}, 8, {MADV_PAGEOUT}); result = 0")
    assert smaps_of(s.pid, shared)["Swap"] == (SWAPPED_PAGES + 8) * PAGE
    d = cli_json("diff", before, s.pid)
    assert d["totals"]["swapped_out"] == 8 and d["totals"]["vanished"] == 0
    from pagewalk import Process
    from pagewalk.analysis.picture import AddressSpace

    with Process(s.pid) as p:
        totals = AddressSpace.take(p).totals()
    assert totals["shmem_swapped"] == SWAPPED_PAGES + 8


def test_unprivileged_reader_says_unknown_never_zero(tmp_path):
    """An unprivileged owner cannot open /proc/PID/map_files: maps takes the count
    from smaps (the owner may read it); dump and v2p say unknown, not untouched."""
    from test_unprivileged import NOBODY, run_as

    from concurrent.futures import ThreadPoolExecutor  # noqa: F401  (loaded before the child drops root)

    import datetime  # noqa: F401
    import resource  # noqa: F401  (a snapshot's load weighs its memory against the limits)
    import zipfile  # noqa: F401

    import pagewalk.cli.diff  # noqa: F401
    import pagewalk.cli.dump  # noqa: F401
    import pagewalk.cli.snapshot  # noqa: F401
    import pagewalk.analysis.diff  # noqa: F401
    import pagewalk.analysis.snapshot  # noqa: F401

    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros(1))
    buffer.seek(0)
    np.load(buffer)["x"]  # numpy's npz reading, loaded now
    import pagewalk.cli.maps  # noqa: F401
    import pagewalk.cli.v2p  # noqa: F401
    import pagewalk.kernel.shmem  # noqa: F401
    import pagewalk.kernel.smaps  # noqa: F401

    with swap_file(64):
        with Specimen(uid=NOBODY) as s:
            shared, _ = s.run(LAYOUT)
            page_out(s, shared, 8, SWAPPED_PAGES)
            code, out, err = run_as(NOBODY, ["maps", str(s.pid), "--json"])
            assert code == 0, err
            row = next(m for m in json.loads(out)["mappings"] if m["start"] == shared)
            assert row["swapped"] == SWAPPED_PAGES  # smaps' own count
            code, out, err = run_as(NOBODY, ["v2p", str(s.pid), f"{shared + 10 * PAGE:x}"])
            assert code == 0, err
            assert "never touched" not in out or "shared memory" in out, out
            code, out, err = run_as(NOBODY, ["dump", str(s.pid), "--range", f"{shared:x}+{SHARED_PAGES * 4}K"])
            assert code == 0, err
            assert "untouched" not in out.replace("untouched or swapped", ""), out
            assert "unknown" in out and "CAP_SYS_ADMIN" in err  # the reason, said once
            # the picture draws them unknown, not untouched (the process looks at itself)
            totals = s.run("from pagewalk.kernel import probes; from pagewalk import Process\n"
                           "probes.pfn_visible.cache_clear(); probes.zero_pfns.cache_clear()\n"
                           "from pagewalk.analysis.picture import AddressSpace\n"
                           "from pagewalk.output.picture_html import runs\n"
                           "import base64, numpy\n"
                           "with Process(os.getpid()) as p: space = AddressSpace.take(p)\n"
                           "r = runs(space)\n"
                           "state = numpy.frombuffer(base64.b64decode(r['state']), numpy.uint8)\n"
                           "length = numpy.frombuffer(base64.b64decode(r['length']), numpy.uint32)\n"
                           "result = dict(space.totals(), drawn_unknown=int(length[state == 8].sum()))")
            assert totals["unknown"] == SWAPPED_PAGES, totals
            assert totals["drawn_unknown"] == SWAPPED_PAGES, totals  # the HTML canvas colours them unknown too
            # a snapshot says where swap was unknown; diff then cannot call pages that left vanished
            where = tempfile.mkdtemp(prefix="pagewalk-test-")  # /tmp: the other user reaches it
            os.chmod(where, 0o777)
            before = os.path.join(where, "before.npz")
            code, out, err = run_as(NOBODY, ["snapshot", str(s.pid), "-o", before])
            assert code == 0, err
            s.run(f"madvise({shared}, 8, {MADV_PAGEOUT}); result = 0")
            assert smaps_of(s.pid, shared)["Swap"] == (SWAPPED_PAGES + 8) * PAGE
            code, out, err = run_as(NOBODY, ["diff", before, str(s.pid), "--json"])
            assert code == 0, err
            doc = json.loads(out)
            assert doc["totals"]["vanished"] is None and doc["totals"]["swapped_out"] is None, doc["totals"]
            shutil.rmtree(where)


def test_exporter_series_count_them(swapped_shared):
    """The exporter's per-process swap is smaps_rollup's; a cgroup's counts the
    object's swapped pages once although two of its processes map them."""
    pytest.importorskip("prometheus_client", reason="the test extra installs prometheus-client")
    from pagewalk.analysis.exporter import MemoryCollector

    s, shared, _, child = swapped_shared
    collector = MemoryCollector([s.pid, child])
    collector.scan()
    rollup = {p: smaps_rollup_swap(p) for p in (s.pid, child)}
    by_pid = {u.pid: u for u in collector.result[0]}
    for pid in (s.pid, child):
        assert by_pid[pid].swap == rollup[pid]
    cgroups = collector.result[1]
    if len(cgroups) == 1:  # both in one cgroup, as forked processes are
        assert cgroups[0].swap == sum(rollup.values()) - SWAPPED_PAGES * PAGE


def smaps_rollup_swap(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("Swap:"))


def test_a_private_mapping_made_read_only_after_copies_agrees_everywhere(tmp_path):
    """A private mapping of a /dev/shm file, 4 of its pages copied on write, then
    made read-only, while the object's pages go to swap through a shared mapping:
    smaps counts all 64 of the object's pages as this mapping's swap, though 4 of
    its pages are the process's own copies, present.  Page by page, 60 are in swap:
    every command says 60, and a snapshot holds one row per page (diff used to fail
    on the repeated rows)."""
    import uuid

    path = f"/dev/shm/pagewalk-test-{uuid.uuid4().hex}"
    with swap_file(64), Specimen() as s:
        try:
            shared, private = s.run(
                f"fd = os.open({path!r}, os.O_RDWR | os.O_CREAT, 0o600); os.ftruncate(fd, 64 * PAGE)\n"
                "a = mmap(64, shared=True, fd=fd); write(a, 64)\n"
                "p = mmap(64, fd=fd); write(p, 4, 0x33)\n"
                "libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]\n"
                "assert libc.mprotect(p, 64 * PAGE, 1) == 0\n"
                "result = [a, p]")
            s.run(f"madvise({shared}, 64, {MADV_PAGEOUT}); result = 0")
            kernel = smaps_of(s.pid, private)
            if kernel["Swap"] != 64 * PAGE:
                pytest.fail(f"smaps Swap {kernel['Swap']} after paging the object out: the premise failed")
            own = [pagemap_entry(s.pid, private + i * PAGE) for i in range(64)]
            assert all(e >> 63 for e in own[:4]) and not any(own[4:])  # 4 copies present, 60 empty
            row = next(m for m in cli_json("maps", s.pid)["mappings"] if m["start"] == private)
            assert row["swapped"] == row["shmem_swapped"] == 60
            snap = tmp_path / "s.npz"
            assert cli("snapshot", s.pid, "-o", snap).returncode == 0
            loaded = next(m for m in cli_json("snapshot", "--load", snap)["mappings"] if m["start"] == private)
            assert loaded["swapped"] == 60 and loaded["present"] == 4
            rows = [json.loads(ln) for ln in cli("dump", s.pid, "--format", "jsonl", "--range",
                                                 f"{private:x}+256K").stdout.splitlines()]
            assert sum(r["shmem_swapped"] for r in rows) == 60
            d = cli("diff", snap, s.pid, "--json")
            assert d.returncode == 0 and "Traceback" not in d.stderr, d.stderr
            assert json.loads(d.stdout)["totals"]["vanished"] == 0
        finally:
            if os.path.exists(path):
                os.unlink(path)
