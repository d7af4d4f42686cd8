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
        code = ("import io, contextlib, json\nfrom pagewalk import system\nfrom pagewalk.cli import main\n"
                "system.pfn_visible.cache_clear()\n"
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
