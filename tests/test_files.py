"""``pagewalk file``: page-cache residency against what the test put in the cache
(and evicted), the partial last page included; flags and map counts as root; the
unprivileged fallback; errors."""

from __future__ import annotations

import json
import os
import stat

from conftest import PAGE, cli, requires_root
from test_types import cached_pages

DIRTY, MMAP = 1 << 4, 1 << 11


def make_file(directory: str, name: str, size: int) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    return path


def spans(pages: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for p in pages:
        if out and out[-1][0] + out[-1][1] == p:
            out[-1][1] += 1
        else:
            out.append([p, 1])
    return out


@requires_root
def test_cached_ranges_flags_and_map_counts(specimen):
    # /var/tmp: a disk file system (tmpfs pages are not evicted by fadvise)
    path = make_file("/var/tmp", f"pagewalk-file-{os.getpid()}", 9 * PAGE + 123)  # 10 pages, the last partial
    try:
        fd = os.open(path, os.O_RDWR)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for page in (0, 1, 2, 6, 9):
            os.pread(fd, 1, page * PAGE)
        os.pwrite(fd, b"dirty", 6 * PAGE)  # page 6 dirty (not synced)
        (before,) = json.loads(cli("file", path, "--json").stdout)
        assert {run["mapcount"] for run in before["runs"]} == {0}  # this reader's own mapping is not counted
        assert before["mapped"] == 0
        specimen.run(f"import mmap as m\nf = open({path!r}, 'rb')\nfm = m.mmap(f.fileno(), 0, prot=m.PROT_READ)\n"
                     "s = fm[2 * PAGE]")  # the specimen maps page 2
        expected = cached_pages(fd, 10)
        assert {0, 1, 2, 6, 9} <= set(expected) and len(expected) < 10
        r = cli("file", path, "--json")
        assert r.returncode == 0, r.stderr
        (doc,) = json.loads(r.stdout)
        assert doc["path"] == path and doc["size"] == 9 * PAGE + 123 and doc["pages"] == 10
        assert doc["ranges"] == spans(expected) and doc["cached"] == len(expected)
        runs = {p: run for run in doc["runs"] for p in range(run["first"], run["first"] + run["count"])}
        assert sorted(runs) == expected  # every cached page has its frame's flags
        assert runs[6]["flags"] & DIRTY and not runs[0]["flags"] & DIRTY
        assert runs[2]["mapcount"] >= 1 and runs[2]["flags"] & MMAP
        assert doc["mapped"] >= 1
        text = cli("file", path).stdout
        assert text.startswith(f"{path}: 10 pages") and "dirty" in text
    finally:
        os.close(fd)
        os.unlink(path)


@requires_root
def test_directories_and_errors(tmp_path):
    a = make_file(str(tmp_path), "a", 100)
    os.makedirs(tmp_path / "sub")
    b = make_file(str(tmp_path / "sub"), "b", 3 * PAGE)
    os.symlink(a, tmp_path / "link")
    doc = json.loads(cli("file", str(tmp_path), "--json").stdout)
    assert [d["path"] for d in doc] == [a, b]  # the symbolic link is not followed
    assert [d["pages"] for d in doc] == [1, 3]
    r = cli("file", str(tmp_path / "missing"))
    assert r.returncode == 2 and "missing" in r.stderr and len(r.stderr.splitlines()) == 1


@requires_root
def test_unprivileged_reader_gets_residency_and_clear_errors():
    import pathlib
    import shutil
    import tempfile

    from specimen import Specimen
    from test_unprivileged import preload_pagewalk

    preload_pagewalk()  # the specimen drops to another user: what it imports is loaded first

    tmp_path = pathlib.Path(tempfile.mkdtemp(dir="/var/tmp"))  # reachable by another user
    os.chmod(tmp_path, 0o755)
    try:
        unprivileged_checks(tmp_path, Specimen)
    finally:
        shutil.rmtree(tmp_path)


def unprivileged_checks(tmp_path, Specimen) -> None:  # noqa: N803
    path = make_file(str(tmp_path), "open", 3 * PAGE)
    os.chmod(path, 0o644)
    os.pread(fd := os.open(path, os.O_RDONLY), 3 * PAGE, 0)
    expected = cached_pages(fd, 3)
    os.close(fd)
    closed = tmp_path / "closed"
    closed.mkdir()
    make_file(str(closed), "secret", PAGE)
    os.chmod(closed, stat.S_IRWXU)  # root's only
    with Specimen(uid=65534) as other:
        code = ("import io, contextlib, json\nfrom pagewalk.kernel import probes\nfrom pagewalk.cli import main\n"
                "probes.pfn_visible.cache_clear()\n"
                "def call(*argv):\n"
                "    out, err = io.StringIO(), io.StringIO()\n"
                "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
                "        rc = main(list(argv))\n"
                "    return rc, out.getvalue(), err.getvalue()\n"
                "import sys\n"
                f"result = [call('file', {path!r}, '--json'), call('file', {str(closed)!r})]")
        (rc, out, err), (rc2, _, err2) = other.run(code)
    assert rc == 0 and "residency only" in err
    (doc,) = json.loads(out)
    assert doc["ranges"] == spans(expected) and "runs" not in doc and doc["mapped"] is None
    errors = [line for line in err2.splitlines() if line.startswith("pagewalk: error:")]
    assert rc2 == 1 and len(errors) == 1 and "closed: permission denied" in errors[0] and "Traceback" not in err2


REFERENCED, ACTIVE, LRU = 1 << 2, 1 << 6, 1 << 5
# What reading the cache must leave alone (IDLE is left out: a kdamond flips it).
RECLAIM_STATE = REFERENCED | ACTIVE | LRU


def cached_frames_by_loads(fd: int, pages: int) -> dict[int, int]:
    """{page: PFN} of a file's cached pages, found as page-types -f finds them: mincore
    on a MADV_RANDOM mapping, one plain load from each cached page, this process's
    pagemap, MADV_SEQUENTIAL and munmap (mm/filemap.c, mm/memory.c)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    addr = libc.mmap(None, pages * PAGE, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
    vec = (ctypes.c_ubyte * pages)()
    try:
        assert libc.madvise(addr, pages * PAGE, 1) == 0  # MADV_RANDOM
        assert libc.mincore(addr, pages * PAGE, vec) == 0
        cached = [i for i in range(pages) if vec[i] & 1]
        for i in cached:
            ctypes.c_char.from_address(addr + i * PAGE).value  # noqa: B018 (the load)
        with open("/proc/self/pagemap", "rb", buffering=0) as pm:
            data = os.pread(pm.fileno(), pages * 8, addr // PAGE * 8)
        assert libc.madvise(addr, pages * PAGE, 2) == 0  # MADV_SEQUENTIAL
    finally:
        libc.munmap(addr, pages * PAGE)
    entries = [int.from_bytes(data[i * 8:i * 8 + 8], "little") for i in range(pages)]
    return {i: entries[i] & ((1 << 55) - 1) for i in cached if entries[i] >> 63}


def kpageflags_of(pfns) -> list[int]:
    with open("/proc/kpageflags", "rb", buffering=0) as f:
        return [int.from_bytes(os.pread(f.fileno(), 8, pfn * 8), "little") for pfn in pfns]


def drain_lru_batches() -> None:
    """Put the folios waiting in every CPU's LRU batches on the LRU lists, so that their
    LRU and ACTIVE bits stop changing on their own: fadvise DONTNEED on a page this
    process maps cannot drop it, and that failure makes the kernel drain every CPU
    (lru_add_drain_all in mm/fadvise.c generic_fadvise)."""
    import mmap
    import tempfile

    with tempfile.TemporaryFile(dir="/var/tmp") as f:
        f.write(b"x" * PAGE)
        f.flush()
        with mmap.mmap(f.fileno(), PAGE, prot=mmap.PROT_READ) as m:
            assert m[0] == ord("x")
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


@requires_root
def test_reading_the_page_cache_marks_nothing_accessed_and_reads_nothing_in():
    # /var/tmp: a disk file system, whose clean pages fadvise can evict
    path = make_file("/var/tmp", f"pagewalk-quiet-{os.getpid()}", 2048 * PAGE)  # 8 MiB
    fd = os.open(path, os.O_RDWR)
    try:
        for attempt in range(3):  # reclaim (a kdamond's pageout) may move a page meanwhile: never every time
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            for page in range(1024):  # one page a write: small folios, each mapped by its own PTE
                os.pwrite(fd, os.urandom(PAGE), page * PAGE)
            os.fsync(fd)  # the first half cached, clean, never read: not referenced
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead around the reads
            for page in range(512):
                os.pread(fd, 1, page * PAGE)  # read once: referenced, still inactive
            drain_lru_batches()
            frames = cached_frames_by_loads(fd, 2048)
            before = [f & RECLAIM_STATE for f in kpageflags_of(frames.values())]
            cached_before = cached_pages(fd, 2048)
            # the situation the test means: half cached, a quarter referenced, none active
            assert cached_before == list(range(1024)) and sorted(frames) == cached_before
            assert before == [REFERENCED | LRU] * 512 + [LRU] * 512
            for command in (["file", path], ["types", "-f", path, "-L"]):
                r = cli(*command)
                assert r.returncode == 0 and not r.stderr, r.stderr
            drain_lru_batches()
            after = [f & RECLAIM_STATE for f in kpageflags_of(frames.values())]
            unchanged = cached_pages(fd, 2048) == cached_before and cached_frames_by_loads(fd, 2048) == frames
            if unchanged and after == before:
                break
        changed = [page for page, a, b in zip(frames, after, before) if a != b]
        assert not changed, f"{len(changed)} pages changed, e.g. page {changed[0]}: {before[changed[0]]:#x} -> " \
                            f"{after[changed[0]]:#x}"
        assert unchanged  # no page read in, none replaced
    finally:
        os.close(fd)
        os.unlink(path)


@requires_root
def test_a_symbolic_link_named_on_the_command_line_is_followed(tmp_path):
    target = make_file(str(tmp_path), "target", 3 * PAGE)
    os.makedirs(tmp_path / "dir")
    inside = make_file(str(tmp_path / "dir"), "inside", PAGE)
    os.symlink(target, tmp_path / "dir" / "link-in-dir")
    os.symlink(target, tmp_path / "link")
    os.symlink(tmp_path / "dir", tmp_path / "dir-link")
    fd = os.open(target, os.O_RDONLY)
    expected = cached_pages(fd, 3)
    os.close(fd)
    r = cli("file", str(tmp_path / "link"), "--json")
    assert r.returncode == 0, r.stderr
    (doc,) = json.loads(r.stdout)
    assert doc["path"] == str(tmp_path / "link")  # named as given, as fincore does
    assert doc["pages"] == 3 and doc["ranges"] == spans(expected)
    # a link to a directory is followed too; links inside a directory still are not
    docs = json.loads(cli("file", str(tmp_path / "dir-link"), "--json").stdout)
    assert [d["path"] for d in docs] == [os.path.join(str(tmp_path / "dir-link"), "inside")]
    assert docs[0]["pages"] == 1 and os.path.samefile(docs[0]["path"], inside)


@requires_root
def test_loading_pages_reads_back_only_what_left_the_cache_and_survives_a_shrunk_file():
    """The loads behind ``file`` and ``types -f``: a page evicted after mincore saw it
    is read back alone (no readahead) and counted; a page past the end of a file that
    shrank meanwhile fails the load instead of killing the reader with SIGBUS."""
    import mmap
    from array import array

    import numpy as np

    from pagewalk.kernel.pagecache import load_pages

    path = make_file("/var/tmp", f"pagewalk-load-{os.getpid()}", 64 * PAGE)
    fd = os.open(path, os.O_RDWR)
    m = mmap.mmap(fd, 64 * PAGE, prot=mmap.PROT_READ)
    try:
        m.madvise(mmap.MADV_RANDOM)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        os.pread(fd, PAGE, 0)  # only page 0 cached
        assert cached_pages(fd, 64) == [0]
        base = np.frombuffer(m, dtype=np.uint8).ctypes.data
        loaded, read_back = load_pages(array("Q", [base, base + 10 * PAGE, base + 40 * PAGE]))
        assert list(loaded) == [1, 1, 1]
        assert read_back >= 2  # pages 10 and 40 came from disk
        assert cached_pages(fd, 64) == [0, 10, 40]  # and nothing around them
        os.ftruncate(fd, 20 * PAGE)
        loaded, _ = load_pages(array("Q", [base + 5 * PAGE, base + 30 * PAGE, base + 19 * PAGE]))
        assert list(loaded) == [1, 0, 1]
    finally:
        m.close()
        os.close(fd)
        os.unlink(path)
