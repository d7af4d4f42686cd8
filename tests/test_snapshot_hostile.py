"""Hostile and damaged snapshot files (issue 13, items 6 and 7): each is one line on
stderr starting "pagewalk:", exit status 1 or 2, no traceback, in bounded memory,
from ``snapshot --load`` and ``diff`` alike.  The files are made from real snapshots
of a specimen (or crafted directly, for the memory bombs); a seeded fuzz of byte
flips and truncations checks the library's own answer: BadSnapshot, or the very
snapshot that was written.  Without a ulimit, the default limit on what loads take
refuses the bombs (``--max-load`` raises it, for both sides of a diff together);
a FIFO or device named as a file to read is never opened."""

from __future__ import annotations

import ctypes
import io
import json
import os
import stat
import struct
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import PAGE, cli, measured
from specimen import Specimen

pa = pytest.importorskip("pyarrow", reason="the test extra installs pyarrow")
pq = pytest.importorskip("pyarrow.parquet", reason="the test extra installs pyarrow")

AS_LIMIT = 2 << 30  # a normal load: ~0.1 GiB of address space (npz), ~1.5 GiB with pyarrow's arenas
RSS_MOST = 256 << 20  # a normal load peaks at ~30 MiB (npz) to ~150 MiB (Parquet)
NUMBERS = ("start", "end", "offset", "inode")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real snapshot of a specimen, in both forms: ``{"npz": path, "parquet": path}``."""
    where = tmp_path_factory.mktemp("good")
    with Specimen() as s:
        s.run("a = mmap(64); write(a, 40)")
        paths = {form: where / f"good.{form}" for form in ("npz", "parquet")}
        for path in paths.values():
            r = cli("snapshot", s.pid, "-o", path)
            assert r.returncode == 0, r.stderr
    return paths


# -- making hostile files ------------------------------------------------------------

def npz_arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def meta_of(arrays: dict) -> dict:
    return json.loads(str(arrays["meta"]))


def write_npz(path, arrays: dict, meta: dict | str | None = None) -> None:
    if meta is not None:
        arrays = dict(arrays, meta=np.array(meta if isinstance(meta, str) else json.dumps(meta)))
    np.savez_compressed(path, **arrays)


def parquet_table(path):
    return pq.read_table(path)


def write_parquet(path, table, meta: dict | bytes | None = None) -> None:
    kv = dict(table.schema.metadata)
    if meta is not None:
        kv[b"pagewalk"] = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata(kv), path)


def one_mapping(arrays: dict, start: int, pages: int) -> dict:
    """``arrays`` with its maps replaced by one anonymous mapping of ``pages`` pages."""
    out = dict(arrays)
    for name, value in (("start", start), ("end", start + pages * PAGE), ("offset", 0), ("inode", 0)):
        out[f"map_{name}"] = np.array([value], dtype=np.uint64)
    for name, value in (("perms", "rw-p"), ("dev", "00:00"), ("path", "")):
        out[f"map_{name}"] = np.array([value], dtype=str)
    return out


def constant_runs(arrays: dict, meta: dict, pages: int, entry_values=None) -> dict:
    """Page columns of ``pages`` pages from 1 << 28 on, every column a run or two,
    except the entries if ``entry_values`` (repeated evenly) are given."""
    out = {k: v for k, v in arrays.items() if not k.endswith(("_values", "_repeats"))}
    runs = {"vpn_delta": ([1 << 28, 1], [1, pages - 1]), "entry_delta": ([1 << 63, 0], [1, pages - 1]),
            "zero": ([False], [pages]), "huge": ([False], [pages])}
    if entry_values is not None:
        runs["entry_delta"] = (entry_values, [pages // len(entry_values)] * len(entry_values))
    if meta["frames"]:
        runs.update(kpageflags=([0], [pages]), mapcount=([0], [pages]))
    dtypes = {"vpn_delta": np.int64, "entry_delta": np.uint64, "zero": bool, "huge": bool,
              "kpageflags": np.uint64, "mapcount": np.uint32}
    for name, (values, repeats) in runs.items():
        out[f"{name}_values"] = np.array(values, dtype=dtypes[name])
        out[f"{name}_repeats"] = np.array(repeats, dtype=np.uint32)
    return out


def npz_with_member(src, dst, name: str, member: bytes) -> None:
    """``src`` with the .npy member ``name`` replaced by the bytes ``member``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, member if info.filename == f"{name}.npy" else zin.read(info))


class Unpickled:
    """Pickled, creates the file ``path`` when unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def parquet_bomb(path, meta: dict, rows_per_group: int, groups: int) -> None:
    """A Parquet file whose footer lists ``groups`` row groups, all the same
    ``rows_per_group`` constant rows stored once: a few hundred KB that pyarrow
    expands to every row."""
    n = rows_per_group
    table = pa.table({"vaddr": pa.array(np.full(n, 1 << 40, dtype=np.uint64)),
                      "entry": pa.array(np.zeros(n, dtype=np.uint64)), "zero": pa.array(np.zeros(n, dtype=bool)),
                      "huge": pa.array(np.zeros(n, dtype=bool)),
                      "kpageflags": pa.array(np.zeros(n, dtype=np.uint64)),
                      "mapcount": pa.array(np.zeros(n, dtype=np.uint32))})
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata({b"pagewalk": json.dumps(meta).encode()}), buf, compression="zstd")
    data = buf.getvalue()
    body = data[: len(data) - 8 - int.from_bytes(data[-8:-4], "little")]
    footer = pq.ParquetFile(io.BytesIO(data)).metadata
    one = pq.ParquetFile(io.BytesIO(data)).metadata
    for _ in range(groups - 1):
        footer.append_row_groups(one)  # each pointing at the same column chunks
    out = io.BytesIO()
    footer.write_metadata_file(out)
    with open(path, "wb") as f:
        f.write(body + out.getvalue()[4:])  # (the metadata file's own leading PAR1 dropped)


def varint(n: int) -> bytes:
    """``n`` (0 or more) as Thrift's compact protocol writes it: 7 bits a byte, low first."""
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def thrift_i64(field_delta: int, n: int) -> bytes:
    """A compact-protocol i64 field (``field_delta`` after the previous field) holding ``n``."""
    return bytes([field_delta << 4 | 6]) + varint(n << 1 ^ n >> 63)


def patch_footer(path, old: bytes, new: bytes) -> None:
    """Replace the one ``old`` in the Parquet footer of ``path`` by ``new`` (its length
    at the end updated): what the footer says, changed without the data."""
    data = path.read_bytes()
    start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    footer = data[start:-8]
    assert footer.count(old) == 1, footer.count(old)
    footer = footer.replace(old, new)
    path.write_bytes(data[:start] + footer + len(footer).to_bytes(4, "little") + b"PAR1")


def memory_bombs(good: dict, where) -> dict[str, os.PathLike]:
    """The issue's memory bombs, by name: run lengths that expand to 7.4 GB from a
    file of a few KB (with the metadata and mappings made to agree, and without),
    1.9 MB of entries to 2 GB, 40 M pages in 4 KB (a load of 3 GB), and a Parquet
    file of 300 M constant rows in 175 KB."""
    files = {}
    arrays = npz_arrays(good["npz"])
    meta = meta_of(arrays)

    def npz(name: str, arrays: dict, meta: dict | None = None):
        files[name] = where / f"{name}.npz"
        write_npz(files[name], arrays, meta)

    for name, pages in (("bomb-7GB", 250_000_000), ("bomb-40M", 40_000_000)):
        npz(name, constant_runs(one_mapping(arrays, 1 << 40, pages), meta, pages), dict(meta, pages=pages))
    npz("bomb-7GB-lying", constant_runs(arrays, meta, 250_000_000))
    rng = np.random.default_rng(13)
    pages = 1 << 26
    entries = rng.integers(0, 1 << 63, 1 << 18, dtype=np.uint64)
    npz("bomb-2GB", constant_runs(one_mapping(arrays, 1 << 40, pages), meta, pages, entries), dict(meta, pages=pages))
    pmeta = json.loads(pq.read_schema(good["parquet"]).metadata[b"pagewalk"])
    rows, groups = 1 << 20, 287
    files["pq-bomb-300M"] = where / "pq-bomb-300M.parquet"
    parquet_bomb(files["pq-bomb-300M"], dict(pmeta, pages=rows * groups, mappings=[anonymous(rows * groups)]),
                 rows, groups)
    return files


def anonymous(pages: int) -> dict:
    """One anonymous mapping of ``pages`` pages from 1 << 40, as Parquet's metadata lists it."""
    return {"start": 1 << 40, "end": (1 << 40) + pages * PAGE, "perms": "rw-p", "offset": 0, "dev": "00:00",
            "inode": 0, "path": ""}


def hostile_files(good: dict, where) -> dict[str, os.PathLike]:
    """Every case of the issue, by name."""
    files = {}
    arrays = npz_arrays(good["npz"])
    meta = meta_of(arrays)

    def npz(name: str, arrays=arrays, meta=None):
        files[name] = where / f"{name}.npz"
        write_npz(files[name], arrays, meta)

    # damaged: bytes of the largest member's deflate stream flipped (zlib.error)
    data = bytearray(good["npz"].read_bytes())
    with zipfile.ZipFile(good["npz"]) as z:
        info = max(z.infolist(), key=lambda i: i.compress_size)
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 32  # (extra: as the local header's)
    data[at:at + 8] = bytes(b ^ 0xFF for b in data[at:at + 8])
    files["flipped-npz"] = where / "flipped-npz.npz"
    files["flipped-npz"].write_bytes(bytes(data))

    # metadata: keys missing, nested 100,000 deep, strings for numbers, versions not integers
    for key in ("pfn_visible", "pid", "comm"):
        npz(f"no-{key}", meta={k: v for k, v in meta.items() if k != key})
    npz("nested", meta='{"format": "pagewalk-snapshot", "version": 2, "cmdline": ' + "[" * 100_000 + "]" * 100_000 + "}")
    npz("pid-string", meta=dict(meta, pid=str(meta["pid"])))
    npz("pages-string", meta=dict(meta, pages=str(meta["pages"])))
    npz("version-float", meta=dict(meta, version=2.0))
    npz("version-true", meta=dict(meta, version=True))
    npz("page-size-16k", meta=dict(meta, page_size=PAGE * 4))  # (page numbers would mean other addresses)
    npz("live", meta=dict(meta, live=True))  # (diff would ask the smaps of whatever has its PID now)

    # mappings: none, out of order, one ending before it starts, starts as strings
    npz("maps-empty", {**arrays, **{f"map_{k}": arrays[f"map_{k}"][:0] for k in
                                    ("start", "end", "perms", "offset", "dev", "inode", "path")}})
    npz("maps-unsorted", {**arrays, **{f"map_{k}": arrays[f"map_{k}"][::-1] for k in
                                       ("start", "end", "perms", "offset", "dev", "inode", "path")}})
    start, end = arrays["map_start"].copy(), arrays["map_end"].copy()
    start[1], end[1] = end[1], start[1]
    npz("map-end-before-start", dict(arrays, map_start=start, map_end=end))
    npz("map-start-strings", dict(arrays, map_start=arrays["map_start"].astype(str)))

    # pages: a negative and a huge page number, page numbers as strings
    for name, first in (("vpn-negative", -5), ("vpn-huge", 1 << 60)):
        values = arrays["vpn_delta_values"].copy()
        values[0] = first
        npz(name, dict(arrays, vpn_delta_values=values))
    npz("vpn-strings", dict(arrays, vpn_delta_values=arrays["vpn_delta_values"].astype(str)))

    # a pickle where text belongs: never run (it would create the file PICKLE_RAN)
    member = io.BytesIO()
    np.lib.format.write_array(member, np.array([Unpickled(str(where / "PICKLE_RAN"))], dtype=object),
                              allow_pickle=True)
    files["pickle"] = where / "pickle.npz"
    npz_with_member(good["npz"], files["pickle"], "map_path", member.getvalue())

    # an .npy header claiming 10**12 page numbers (np.load allocates 8 TB first)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    files["npy-header-1e12"] = where / "npy-header-1e12.npz"
    npz_with_member(good["npz"], files["npy-header-1e12"], "vpn_delta_values", header.getvalue() + b"\0" * 64)

    # an .npy header (version 2.0: a 4-byte length) of 300 MiB of spaces, 1.4 MB
    # compressed: numpy reads a header whole before its own limit on its size
    files["npy-header-300M"] = where / "npy-header-300M.npz"
    with zipfile.ZipFile(good["npz"]) as zin, zipfile.ZipFile(files["npy-header-300M"], "w", zipfile.ZIP_DEFLATED,
                                                               compresslevel=1) as zout:
        for info in zin.infolist():
            with zout.open(info.filename, "w", force_zip64=True) as member:
                if info.filename != "map_start.npy":
                    member.write(zin.read(info))
                    continue
                member.write(b"\x93NUMPY\x02\x00" + (300 << 20).to_bytes(4, "little"))
                for _ in range(300):
                    member.write(b" " * (1 << 20))

    files.update(memory_bombs(good, where))

    # Parquet: starts out of range, metadata missing or nested, a decoded column changed
    # (a flip the delta coding spreads: item 6), row groups and a column chunk that
    # say more than the footer's row count
    table = parquet_table(good["parquet"])
    pmeta = json.loads(table.schema.metadata[b"pagewalk"])

    def parquet(name: str, table=table, meta=None):
        files[name] = where / f"{name}.parquet"
        write_parquet(files[name], table, meta)

    for name, value in (("pq-start-2-70", 1 << 70), ("pq-start-negative", -5)):
        maps = [dict(m) for m in pmeta["mappings"]]
        maps[0]["start"] = value
        parquet(name, meta=dict(pmeta, mappings=maps))
    parquet("pq-no-pid", meta={k: v for k, v in pmeta.items() if k != "pid"})
    parquet("pq-nested", meta=b'{"format": "pagewalk-snapshot", "version": 2, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    parquet("pq-version-float", meta=dict(pmeta, version=2.0))
    entry = table.column("entry").to_numpy().copy()
    entry[len(entry) // 2:] += np.uint64(1 << 12)  # half the frames "moved"
    parquet("pq-entries-changed", table.set_column(table.schema.get_field_index("entry"), "entry", pa.array(entry)))
    # 20 row groups of 1 M rows under a footer whose row count (FileMetaData field 3,
    # after the schema) says 20,480: pyarrow decodes every group's rows
    rows, groups, said = 1 << 20, 20, 20 * 1024
    files["pq-row-groups-lying"] = where / "pq-row-groups-lying.parquet"
    parquet_bomb(files["pq-row-groups-lying"], dict(pmeta, pages=said, mappings=[anonymous(said)]), rows, groups)
    patch_footer(files["pq-row-groups-lying"], thrift_i64(1, rows * groups), thrift_i64(1, said))
    # a column chunk that says it decodes to 1 TiB (ColumnMetaData field 6, then 7:
    # total_uncompressed_size, total_compressed_size)
    files["pq-chunk-1TiB"] = where / "pq-chunk-1TiB.parquet"
    files["pq-chunk-1TiB"].write_bytes(good["parquet"].read_bytes())
    chunk = pq.ParquetFile(good["parquet"]).metadata.row_group(0).column(table.schema.get_field_index("entry"))
    assert chunk.path_in_schema == "entry"
    sizes = thrift_i64(1, chunk.total_uncompressed_size) + thrift_i64(1, chunk.total_compressed_size)
    patch_footer(files["pq-chunk-1TiB"], sizes, thrift_i64(1, 1 << 40) + sizes[len(thrift_i64(1, chunk.total_uncompressed_size)):])
    return files


# -- running the CLI on them -------------------------------------------------------

def run_limited(argv: list) -> tuple[int, str, int]:
    """(exit status, stderr, peak RSS in bytes) of ``pagewalk ARGV`` under AS_LIMIT."""
    r, peak = measured(*argv, as_limit=AS_LIMIT, timeout=120)
    return r.returncode, r.stderr.decode(), peak


SAYS = {  # what each case's one line must say
    "flipped-npz": "damaged", "no-pfn_visible": "no 'pfn_visible'", "no-pid": "no 'pid'", "no-comm": "no 'comm'",
    "nested": "nests too deeply", "pid-string": "not a process ID", "pages-string": "not a number of pages",
    "version-float": "format version is 2.0, not a version number",
    "version-true": "format version is True, not a version number",
    "page-size-16k": f"taken where pages are {PAGE * 4} bytes", "live": "says 'live'", "maps-empty": "more than its mappings span",
    "maps-unsorted": "out of address order", "map-end-before-start": "ends where or before it starts",
    "map-start-strings": "map_start holds", "vpn-negative": "not in increasing order",
    "vpn-huge": "beyond 64-bit addresses", "vpn-strings": "vpn_delta_values holds",
    "pickle": "map_path holds '|O' values", "npy-header-1e12": "1000000000000 items", "bomb-7GB": "would need about", "bomb-7GB-lying": "run length",
    "bomb-2GB": "would need about", "pq-start-2-70": "not a 64-bit number", "pq-start-negative": "not a 64-bit number",
    "pq-no-pid": "no 'pid'", "pq-nested": "nests too deeply", "pq-version-float": "not a version number",
    "pq-entries-changed": "checksum", "pq-bomb-300M": "would need about", "bomb-40M": "would need about",
    "npy-header-300M": "map_start's .npy header is 314572800 bytes", "pq-row-groups-lying": "row groups hold",
    "pq-chunk-1TiB": "entry column in row group 0 would decode to 1099511627776 bytes",
}


def test_hostile_files_are_one_line_errors_in_bounded_memory(good, tmp_path):
    files = hostile_files(good, tmp_path)
    assert set(files) == set(SAYS)
    runs = [(name, kind, argv) for name, path in files.items()
            for kind, argv in (("load", ["snapshot", "--load", path]), ("diff", ["diff", good["npz"], path]))]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda r: run_limited(r[2]), runs))
    failures = []
    for (name, kind, _), (status, stderr, rss) in zip(runs, results):
        lines = stderr.splitlines()
        ok = (status in (1, 2) and len(lines) == 1 and lines[0].startswith("pagewalk:")
              and "Traceback" not in stderr and 0 < rss < RSS_MOST
              # refused for what the file says, not because an allocation failed
              and "MemoryError" not in stderr and "out of memory" not in stderr)
        ok = ok and SAYS[name] in stderr  # what is wrong, in words (not "damaged" for all)
        if not ok:
            failures.append(f"{name} ({kind}): exit {status}, peak RSS {rss >> 20} MiB, stderr {stderr[-300:]!r}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "PICKLE_RAN").exists()


def test_files_written_before_the_checksum_load_with_a_note(good, tmp_path):
    """A Parquet snapshot without the checksum (pagewalk before it wrote one) still
    loads, and says that damage to it would go unnoticed."""
    table = parquet_table(good["parquet"])
    old = tmp_path / "old.parquet"
    pq.write_table(table.replace_schema_metadata({b"pagewalk": table.schema.metadata[b"pagewalk"]}), old)
    r = cli("snapshot", "--load", old)
    assert r.returncode == 0 and r.stderr.startswith("pagewalk: note:") and "no checksum" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1


# -- the library on flipped and truncated files ---------------------------------------

def same_snapshot(a, b) -> bool:
    arrays = ("vaddr", "raw", "zero", "huge", "kpageflags", "mapcount")
    return a.meta == b.meta and a.mappings == b.mappings and all(
        (getattr(a, k) is None and getattr(b, k) is None) or np.array_equal(getattr(a, k), getattr(b, k))
        for k in arrays)


@pytest.mark.parametrize("form", ["npz", "parquet"])
def test_flipped_and_truncated_files_are_refused_or_unchanged(good, tmp_path, form):
    """150 seeded mutations of a real snapshot (1 to 4 bytes flipped anywhere, or the
    file cut short): each loads as BadSnapshot or as exactly the snapshot written
    (the zip's CRC-32, the Parquet checksum of the metadata and decoded columns)."""
    from pagewalk.analysis.snapshot import BadSnapshot, Snapshot

    original = Snapshot.load(str(good[form]))
    data = good[form].read_bytes()
    rng = np.random.default_rng(6 if form == "npz" else 7)
    path = tmp_path / f"fuzz.{form}"
    outcomes = {"refused": 0, "unchanged": 0}
    for i in range(150):
        mutated = bytearray(data)
        if i % 5 == 4:
            del mutated[int(rng.integers(0, len(data))):]
        else:
            for at in rng.integers(0, len(data), int(rng.integers(1, 5))):
                mutated[at] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(mutated))
        try:
            loaded = Snapshot.load(str(path))
        except BadSnapshot:
            outcomes["refused"] += 1
            continue
        assert same_snapshot(loaded, original), f"mutation {i} loaded as another snapshot"
        outcomes["unchanged"] += 1
    assert outcomes["refused"] > 50, outcomes  # (most bytes matter)


# -- what a load may take, without any ulimit ------------------------------------------

def test_memory_bombs_are_refused_without_a_ulimit_in_little_time_and_memory(good, tmp_path):
    """With no ulimit (the test above has one), loads may take by default at most 2 GiB
    or half the memory available: the issue's bombs, which this machine's memory and
    swap would allow, are refused at once, and the message says how to raise it."""
    files = memory_bombs(good, tmp_path)
    del files["bomb-7GB-lying"]  # (its mappings hold too few pages: refused for that)
    runs = [["snapshot", "--load", path] for path in files.values()] + [["diff", files["bomb-2GB"], good["npz"]]]
    env = {"PAGEWALK_LOAD_LIMIT": ""}  # (the default, whatever the environment says)
    for argv in runs:
        started = time.monotonic()
        r, peak = measured(*argv, env=env, timeout=60)
        seconds = time.monotonic() - started
        stderr = r.stderr.decode()
        assert r.returncode == 1 and len(stderr.splitlines()) == 1 and "would need about" in stderr, stderr
        assert "by default" in stderr and "--max-load SIZE or PAGEWALK_LOAD_LIMIT=SIZE" in stderr, stderr
        assert 0 < peak < RSS_MOST and seconds < 20, (argv, peak >> 20, seconds)


def big_npz(good, path, pages: int) -> None:
    """A snapshot of ``pages`` pages of one mapping, a few runs each column."""
    arrays = npz_arrays(good["npz"])
    meta = meta_of(arrays)
    write_npz(path, constant_runs(one_mapping(arrays, 1 << 40, pages), meta, pages), dict(meta, pages=pages))


def test_the_sides_of_a_diff_share_one_limit_that_can_be_raised(good, tmp_path):
    """``--max-load`` (or PAGEWALK_LOAD_LIMIT) is what loads may take together: each of
    two snapshots of 1 M pages (about 92 MiB each to load) fits in 150 MiB, both do
    not; the refusal names the limit; a larger one lets both load."""
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    big_npz(good, a, 1 << 20)
    big_npz(good, b, 1 << 20)
    no_env = {"PAGEWALK_LOAD_LIMIT": ""}
    for path in (a, b):
        r = cli("snapshot", "--load", path, "--max-load", "150M", env=no_env)
        assert r.returncode == 0, r.stderr
    r = cli("diff", a, b, "--max-load", "150M", env=no_env)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert f"{b}: cannot load this snapshot here: its {1 << 20} pages would need about 96.0 MiB" in r.stderr
    assert "left of the 150.0 MiB that --max-load allows" in r.stderr, r.stderr
    r = cli("diff", a, b, env={"PAGEWALK_LOAD_LIMIT": "150M"})
    assert r.returncode == 1 and "left of the 150.0 MiB that PAGEWALK_LOAD_LIMIT allows" in r.stderr, r.stderr
    # the flag before the environment; the default (2 GiB) holds both
    assert cli("diff", a, b, "--max-load", "250M", env={"PAGEWALK_LOAD_LIMIT": "150M"}).returncode == 0
    assert cli("diff", a, b, env=no_env).returncode == 0
    r = cli("snapshot", "--load", a, "--max-load", "1M", env=no_env)
    assert r.returncode == 1 and "more than the 1.0 MiB that --max-load allows" in r.stderr, r.stderr
    for argv, env, says in ((["--max-load", "lots"], no_env, "--max-load: not a size: 'lots'"),
                            ([], {"PAGEWALK_LOAD_LIMIT": "2Q"}, "PAGEWALK_LOAD_LIMIT: not a size: '2Q'")):
        r = cli("snapshot", "--load", a, *argv, env=env)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and says in r.stderr, r.stderr


# -- what a path names is looked at before it is opened ---------------------------------

IN_OPEN = 0x20


def opened_by(paths: list, argv: list) -> list[str]:
    """Run ``pagewalk ARGV``; the ``paths`` that were opened meanwhile (by anyone:
    inotify's IN_OPEN, queued as the open happens), and its stderr."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        watches = {}
        for path in paths:
            wd = libc.inotify_add_watch(fd, os.fsencode(path), IN_OPEN)
            assert wd >= 0, os.strerror(ctypes.get_errno())
            watches[wd] = str(path)
        r = cli(*argv)
        events = b""
        try:
            while chunk := os.read(fd, 65536):
                events += chunk
        except BlockingIOError:
            pass
        opened, at = [], 0
        while at < len(events):  # struct inotify_event: wd, mask, cookie, len, name
            wd, _, _, length = struct.unpack_from("iIII", events, at)
            opened.append(watches[wd])
            at += 16 + length
        return opened, r.stderr
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_device_named_as_a_file_to_read_is_never_opened(tmp_path, kind):
    """Opening a device can do something (a tape rewinds, /dev/watchdog arms) and
    opening a FIFO wakes a writer waiting: snapshot --load, diff and types -F look
    at what a path names and refuse it unopened.  (A private node: nobody else
    opens it while the test watches.)"""
    node = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(node)
    else:
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    for argv, status, says in ((["snapshot", "--load", node], 1, "not a snapshot file"),
                               (["diff", node, node], 1, "not a snapshot file"),
                               (["types", "-F", node, "-a", "0,16"], 2, "not a regular file")):
        opened, stderr = opened_by([node], argv)
        assert not opened, f"{argv[0]} opened the {kind}"
        lines = stderr.splitlines()
        assert len(lines) == 1 and says in lines[0] and f"a {'FIFO' if kind == 'fifo' else 'character device'}" in lines[0], stderr
        assert cli(*argv).returncode == status
