"""One meaning for each word in every command and format (issue 12, section 4):
unknown is never 0, the same names everywhere, the same counts for the same pages."""

from __future__ import annotations

import json

import pytest

from conftest import PAGE, cli, cli_json, requires_root, smaps_of
from test_unprivileged import NOBODY
from specimen import Specimen

pytestmark = requires_root

LAYOUT = """
a = mmap(40); write(a, 40)       # present, private
z = mmap(30); read(z, 30)        # the shared zero page
result = [a, z]
"""


def soft_dirty_supported() -> bool:
    from pagewalk.kernel import probes

    return probes.soft_dirty_supported()


def test_soft_dirty_is_unknown_in_every_format_where_the_kernel_has_none(specimen):
    if soft_dirty_supported():
        pytest.skip("this kernel has soft-dirty bits: nothing is unknown")
    a, z = specimen.run(LAYOUT)
    doc = cli_json("maps", specimen.pid)
    assert all(m["soft_dirty"] is None for m in doc["mappings"]) and doc["totals"]["soft_dirty"] is None
    r = cli("dump", specimen.pid, "--format", "csv", "--range", f"{a:x}+4K")
    header, row = r.stdout.splitlines()[:2]
    assert row.split(",")[header.split(",").index("soft_dirty")] == ""
    r = cli("dump", specimen.pid, "--format", "jsonl", "--range", f"{a:x}+4K")
    assert json.loads(r.stdout.splitlines()[0])["soft_dirty"] is None
    assert cli_json("v2p", specimen.pid, f"{a:x}")[0]["soft_dirty"] is None
    r = cli("dump", specimen.pid, "--format", "csv", "--where", "soft_dirty")
    assert r.returncode == 1 and r.stdout == "" and "soft_dirty" in r.stderr and "Traceback" not in r.stderr


def test_snapshot_load_counts_as_maps_does(specimen, tmp_path):
    a, z = specimen.run(LAYOUT)
    path = tmp_path / "s.npz"
    assert cli("snapshot", specimen.pid, "-o", path).returncode == 0
    loaded = cli_json("snapshot", "--load", path)["mappings"]
    live = {(m["start"], m["end"]): m for m in cli_json("maps", specimen.pid)["mappings"]}
    by_start = {m["start"]: m for m in loaded}
    # present includes the zero page, which is counted apart, as in maps and smaps
    assert by_start[z]["present"] == 30 and by_start[z]["zero"] == 30 and smaps_of(specimen.pid, z)["Rss"] == 0
    assert by_start[a]["present"] == 40 and by_start[a]["zero"] == 0
    for m in loaded:
        mine = live[(m["start"], m["end"])]
        for key in ("pages", "present", "zero", "swapped"):
            assert m[key] == mine[key], (m, mine)
    vsyscall = [m for m in loaded if m["path"] == "[vsyscall]"]
    assert vsyscall and vsyscall[0]["present"] is None and vsyscall[0]["pages"] is None
    text = cli("snapshot", "--load", path).stdout
    assert [line for line in text.splitlines() if line.endswith("[vsyscall]")][0].split()[3:7] == ["-"] * 4


def test_parquet_names_its_columns_as_every_other_format(specimen, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    specimen.run(LAYOUT)
    path = tmp_path / "s.parquet"
    assert cli("snapshot", specimen.pid, "-o", path).returncode == 0
    names = set(pq.read_schema(path).names)
    csv_names = set(cli("dump", specimen.pid, "--format", "csv").stdout.splitlines()[0].split(","))
    assert "file" in names and "file_shared" not in names
    assert csv_names - {"mapping"} <= names
    if not soft_dirty_supported():
        assert pq.read_table(path).column("soft_dirty").null_count == pq.read_metadata(path).num_rows


def test_unprivileged_without_scan_tells_the_zero_page_apart_from_smaps():
    """Without PFNs and PAGEMAP_SCAN (kernels before 6.7) pagemap cannot tell the
    zero page from a page of the process: maps takes the count from smaps (which
    the process's owner may read), RSS is smaps' own, and v2p does not call the
    zero page anonymous memory."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: F401  (the child drops to a user who cannot load them)

    import pagewalk.cli.maps  # noqa: F401
    import pagewalk.cli.v2p  # noqa: F401
    import pagewalk.kernel.smaps  # noqa: F401
    from test_unprivileged import run_as

    with Specimen(uid=NOBODY) as other:
        a, z = other.run(LAYOUT)
        env_code, out, err = run_as(NOBODY, ["maps", str(other.pid), "--json", "--no-scan"])
        assert env_code == 0, err
        doc = json.loads(out)
        row = next(m for m in doc["mappings"] if m["start"] == z)
        assert row["present"] == 30 and row["zero"] == 30 and row["rss"] == smaps_of(other.pid, z)["Rss"] == 0
        row = next(m for m in doc["mappings"] if m["start"] == a)
        assert row["zero"] == 0 and row["rss"] == 40 * PAGE
        code, out, err = run_as(NOBODY, ["v2p", str(other.pid), f"{z:x}", "--no-scan"])
        assert code == 0, err
        assert "present (anonymous," not in out or "zero page" in out, out
