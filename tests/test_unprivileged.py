"""An unprivileged reader: PFNs hidden (never shown as 0), flags still right, the
note said once; another user's process: a clear permission error."""

from __future__ import annotations

import io
import json
import os
import traceback
from contextlib import redirect_stderr, redirect_stdout

import pytest

from conftest import PAGE, pagemap_entry, requires_root
from specimen import Specimen, drop_privileges

NOBODY = 65534


def as_user(uid: int, work) -> dict:
    """``work()`` (returning JSON-able data) run in a forked child that dropped to
    ``uid`` for good: ``{"value": ...}``, or ``{"error": traceback}``.  Load every
    module the work needs before calling: once it is uid 65534, the interpreter's own
    library may be out of reach (it can live under /root), and the child inherits
    what is loaded."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        answer: dict = {"error": "the child did not answer"}
        try:
            os.close(r)
            drop_privileges(uid)
            answer = {"value": work()}
        except BaseException:  # noqa: BLE001 - reported to the test
            answer = {"error": traceback.format_exc()}
        finally:
            os.write(w, json.dumps(answer).encode())
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def preload_pagewalk() -> None:
    """Import every pagewalk module (and so numpy and the standard library modules they
    use) in this process: a child that drops to another user inherits them, where that
    user may not reach this interpreter's library (it can live under /root)."""
    import importlib
    import pkgutil

    import pagewalk

    for info in pkgutil.walk_packages(pagewalk.__path__, "pagewalk."):
        if not info.name.endswith("__main__"):  # (which would run the command)
            importlib.import_module(info.name)


def run_as(uid: int, argv: list[str]) -> tuple[int, str, str]:
    """Run the pagewalk CLI in a forked child that dropped to ``uid`` (the venv's
    interpreter may not be reachable by that user, so no exec): exit status, stdout,
    stderr (status 70 and the traceback if it failed outright)."""
    preload_pagewalk()
    from pagewalk.cli import main
    from pagewalk.kernel import probes

    def work() -> list:
        probes.pfn_visible.cache_clear()  # the cache was filled while we were root
        probes.zero_pfns.cache_clear()
        out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
        out.flush()
        return [status, out.buffer.getvalue().decode(), err.getvalue()]

    answer = as_user(uid, work)
    return tuple(answer["value"]) if "value" in answer else (70, "", answer["error"])


@pytest.fixture
def nobody_specimen():
    with Specimen(uid=NOBODY) as s:
        yield s


@requires_root
def test_unprivileged_reader_sees_flags_not_frames(nobody_specimen):
    s = nobody_specimen
    addr = s.run("a = mmap(8); write(a, 3); read(a + 4 * PAGE, 2); result = a")
    status, out, err = run_as(NOBODY, ["maps", str(s.pid), "--json"])
    assert status == 0, err
    assert err.count("physical frame numbers are hidden") == 1
    doc = json.loads(out)
    assert doc["pfn_visible"] is False
    row = next(m for m in doc["mappings"] if m["start"] == addr)
    # the same counts root sees (from the raw entries, read here as root)
    entries = [pagemap_entry(s.pid, addr + i * PAGE) for i in range(8)]
    assert row["present"] == sum(e >> 63 for e in entries) == 5
    assert row["exclusive"] == sum(e >> 56 & 1 for e in entries) == 3
    assert row["zero"] == 2  # told apart without PFNs, through PAGEMAP_SCAN
    assert row["rss"] == 3 * PAGE

    status, out, err = run_as(NOBODY, ["v2p", str(s.pid), hex(addr), "--json"])
    assert status == 0, err
    assert err.count("hidden") == 1
    answer = json.loads(out)[0]
    assert answer["present"] is True and answer["exclusive"] is True
    assert answer["pfn"] is None and answer["paddr"] is None

    status, out, err = run_as(NOBODY, ["dump", str(s.pid), "--range", f"{addr:x}+8K", "--format", "jsonl"])
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["pfn"] for r in rows] == [None, None] and all(r["present"] for r in rows)
    status, out, err = run_as(NOBODY, ["dump", str(s.pid), "--range", f"{addr:x}+4K"])
    assert "pfn -" in out and "pfn 0" not in out


@requires_root
def test_another_users_process_is_permission_denied(specimen):
    """The specimen runs as root; nobody may not read its pagemap."""
    status, out, err = run_as(NOBODY, ["maps", str(specimen.pid)])
    assert status == 1
    assert err.startswith("pagewalk: error: cannot read /proc/") and "permission denied" in err
    assert err.count("\n") == 1


@requires_root
def test_unprivileged_swap_of_write_protected_pages_is_unknown_not_zero():
    """Without PFNs the swap type is hidden: a swapped-out page under uffd-wp has the
    same bits as a uffd-wp marker.  Root counts it exactly (smaps Swap); nobody must
    report it as unknown, never as 0 (cli.md: "never shown as 0")."""
    from conftest import smaps_of, swap_file

    with swap_file() as _, Specimen(uid=NOBODY) as s:
        addr = s.run("a = mmap(64); write(a, 64); uffd_wp(a, 64); result = a")
        s.run(f"madvise({addr}, 64, MADV_PAGEOUT)")
        swapped_bytes = smaps_of(s.pid, addr).get("Swap", 0)
        if not swapped_bytes:
            pytest.skip("the kernel paged nothing out")
        status, out, err = run_as(NOBODY, ["maps", str(s.pid), "--json"])
        assert status == 0, err
        row = next(m for m in json.loads(out)["mappings"] if m["start"] == addr)
        assert row["swapped"] is None and row["uffd_wp"] >= swapped_bytes // PAGE
        import pagewalk

        with pagewalk.Process(s.pid) as p:  # root: the swap type tells them apart
            root_row = next(mc for mc in p.counts().mappings if mc.mapping.start == addr)
        assert root_row.counts.swapped * PAGE == swapped_bytes
        swapped_page = next(addr + i * PAGE for i in range(64)
                            if pagemap_entry(s.pid, addr + i * PAGE) >> 62 & 1)
        status, out, err = run_as(NOBODY, ["v2p", str(s.pid), hex(swapped_page), "--json"])
        answer = json.loads(out)[0]
        assert answer["swapped"] is None and "needs CAP_SYS_ADMIN" in answer["state"]


def test_ram_without_root_gives_meminfo_and_says_the_uses_are_unknown():
    """kpageflags is root's only: ``ram`` shows the kernel's totals alone, the uses
    unknown (null), and one note why; never zeros."""
    import json

    status, out, err = run_as(NOBODY, ["ram", "--json"])
    assert status == 0, err
    doc = json.loads(out)
    assert doc["uses"] is None and doc["frames"] == 0
    assert all(r["frames"] is None and r["within_target"] is None for r in doc["reconciled"])
    assert doc["meminfo_after"]["MemTotal"] > 0
    assert "root's only" in err and err.count("\n") == 1
    # owners: the cgroups unknown too; the caller's own processes; files it may read
    status, out, err = run_as(NOBODY, ["ram", "--by", "cgroup", "--json"])
    assert status == 0 and "cgroups'" in err and "cgroups" not in json.loads(out), err
    status, out, err = run_as(NOBODY, ["ram", "--files", "/usr/bin", "--json", "--top", "3"])
    assert status == 0, err
    walked = json.loads(out)["files_walked"]
    assert walked["files"] > 0 and all(f["mapped_pages"] is None for f in json.loads(out)["files"])
    status, out, err = run_as(NOBODY, ["ram", "-o", "/tmp/never.npz"])
    assert status == 2 and "root's only" in err and not os.path.exists("/tmp/never.npz"), err
