"""Snapshots as Parquet, for pandas, polars, DuckDB and Spark (extra ``pagewalk[parquet]``).

One row per recorded page, every pagemap bit decoded, so a data tool needs no
knowledge of pagemap: ``SELECT mapping, count(*) FROM 'snap.parquet' WHERE present
GROUP BY mapping``.  Columns:

* ``vaddr`` (uint64), ``mapping`` (int32, index into the mappings list below) and
  ``path`` (the mapping's path, ``[heap]`` ..., null for anonymous memory);
* ``entry`` (uint64): the raw pagemap entry, from which pagewalk rebuilds the rest;
* ``present``, ``swapped``, ``file``, ``exclusive``, ``soft_dirty`` (null on kernels without it),
  ``uffd_wp``, ``guard``, ``zero`` (bool), ``huge`` (bool, null when the kernel
  could not tell);
* ``pfn`` (uint64; null where not present or hidden from the reader),
  ``swap_type``, ``swap_offset`` (null unless swapped and visible);
* ``kpageflags`` (uint64) and ``mapcount`` (uint32) of each present frame, null
  where not recorded.

The snapshot's metadata (the same keys as the ``.npz`` form's ``meta``, plus
``mappings``: one object per line of ``/proc/PID/maps``) is the JSON value of the
file's key-value metadata ``pagewalk``; pyarrow gives it with
``pyarrow.parquet.read_schema(path).metadata[b"pagewalk"]``.  Columns are
zstd-compressed.  pyarrow is imported only here, only when a Parquet file is
written or read.

Parquet has no checksum of its own that readers check (delta coding then spreads
one flipped byte over thousands of values), so the key-value metadata
``pagewalk.crc32`` holds one (:func:`checksum`): the CRC-32 of the ``pagewalk``
metadata's bytes and of the columns pagewalk reads back.  A file whose contents
do not match is refused; a file without it (written before pagewalk wrote one)
loads with a note.
"""

from __future__ import annotations

import json
import zlib

import numpy as np

from ..extras import require
from ..kernel.maps import mapping_index
from .snapshot_check import MAP_FIELDS, Check, detail, shown

__all__ = ["require_pyarrow", "is_parquet", "write", "COLUMNS", "NUMBERS", "checksum", "read"]

MAGIC = b"PAR1"
METADATA_KEY = b"pagewalk"
CHECKSUM_KEY = b"pagewalk.crc32"  # checksum(): the metadata's bytes and the columns read back


def require_pyarrow():
    """pyarrow and pyarrow.parquet; raises :class:`pagewalk.errors.MissingExtra`
    without the ``parquet`` extra."""
    return require("pyarrow", "parquet", "pyarrow"), require("pyarrow.parquet", "parquet", "pyarrow")


def is_parquet(f) -> bool:
    """Whether the open binary file ``f`` starts as a Parquet file does (read from its start)."""
    f.seek(0)
    return f.read(4) == MAGIC


def write(snapshot, f) -> None:
    """Write ``snapshot`` (a :class:`pagewalk.analysis.snapshot.Snapshot`) to the open binary file ``f``."""
    pa, pq = require_pyarrow()
    table = snapshot.table()
    maps = snapshot.mappings
    index = mapping_index(maps, snapshot.vaddr).astype(np.int32)
    # ``path`` is dictionary-encoded (one string a distinct path); anonymous memory is null
    names = sorted({m.text_path for m in maps if m.text_path})
    code_of = {name: i for i, name in enumerate(names)}
    map_code = np.array([code_of.get(m.text_path, -1) for m in maps] or [-1], dtype=np.int32)
    page_code = map_code[np.maximum(index, 0)]
    present = table.present

    def nullable(values: np.ndarray, valid: np.ndarray, type_):
        return pa.array(values, type=type_, mask=~valid)

    pfn_valid = present & snapshot.meta["pfn_visible"]
    swap_valid = table.swapped & snapshot.meta["pfn_visible"]
    frames = snapshot.kpageflags is not None
    columns = {
        "vaddr": pa.array(snapshot.vaddr, type=pa.uint64()),
        "mapping": pa.array(index, type=pa.int32()),
        "path": pa.DictionaryArray.from_arrays(pa.array(np.maximum(page_code, 0), mask=page_code < 0),
                                               pa.array(names, type=pa.string())),
        "entry": pa.array(snapshot.raw, type=pa.uint64()),
        "present": pa.array(present),
        "swapped": pa.array(table.swapped),
        "shmem_swapped": pa.array(table.shmem_swapped if table.shmem_swapped is not None
                                  else np.zeros(len(table), dtype=bool)),
        "file": pa.array(table.file),
        "exclusive": pa.array(table.exclusive),
        "soft_dirty": pa.array(table.soft_dirty) if table.soft_dirty is not None
        else pa.nulls(len(table), type=pa.bool_()),
        "uffd_wp": pa.array(table.uffd_wp),
        "guard": pa.array(table.guard),
        "zero": pa.array(snapshot.zero),
        "huge": pa.array(snapshot.huge) if snapshot.meta.get("huge_known")
        else pa.nulls(len(table), type=pa.bool_()),
        "pfn": nullable(np.maximum(table.pfn, 0).astype(np.uint64), pfn_valid, pa.uint64()),
        "swap_type": nullable(np.maximum(table.swap_type, 0).astype(np.uint32), swap_valid, pa.uint32()),
        "swap_offset": nullable(np.maximum(table.swap_offset, 0).astype(np.uint64), swap_valid, pa.uint64()),
        "kpageflags": nullable(snapshot.kpageflags, present, pa.uint64()) if frames
        else pa.nulls(len(table), type=pa.uint64()),
        "mapcount": nullable(snapshot.mapcount, present, pa.uint32()) if frames
        else pa.nulls(len(table), type=pa.uint32()),
    }
    meta = json.dumps(dict(snapshot.meta, mappings=[m._asdict() for m in maps])).encode()
    # the checksum of what a reader decodes: as it reads the frame columns, 0 where null
    loaded = {"vaddr": snapshot.vaddr, "entry": snapshot.raw, "zero": snapshot.zero, "huge": snapshot.huge}
    if frames:
        loaded["kpageflags"] = np.where(present, snapshot.kpageflags, 0)
        loaded["mapcount"] = np.where(present, snapshot.mapcount, 0)
    crc = checksum(meta, loaded, snapshot.meta)
    arrow = pa.table(columns).replace_schema_metadata({METADATA_KEY: meta, CHECKSUM_KEY: crc.encode()})
    # Addresses and frames mostly step by one: delta coding stores such runs in a few bits
    deltas = ("vaddr", "entry", "pfn", "kpageflags")
    pq.write_table(arrow, f, compression="zstd", use_dictionary=["path"],
                   column_encoding={name: "DELTA_BINARY_PACKED" for name in deltas})


# What pagewalk reads back, and the Arrow type each must have
COLUMNS = {"vaddr": "uint64", "entry": "uint64", "zero": "bool", "huge": "bool", "kpageflags": "uint64",
           "mapcount": "uint32"}
_DTYPES = {"vaddr": "<u8", "entry": "<u8", "zero": "u1", "huge": "u1", "kpageflags": "<u8", "mapcount": "<u4"}
NUMBERS = ("start", "end", "offset", "inode")  # the mappings' numeric fields
FOOTER_BYTES_MOST = (128 << 20) + (64 << 20)  # the metadata's most, and row groups' statistics
# A column chunk's bytes once decompressed, at most: 8 a value (PLAIN; delta coding
# at worst a little more than that), its null bits, and its pages' headers
CHUNK_BYTES_PER_ROW = 10
CHUNK_BYTES_MORE = 1 << 20


def checksum(meta: bytes, columns: dict[str, np.ndarray], snapshot_meta: dict) -> str:
    """The CRC-32 (8 hex digits) of the metadata's JSON bytes, then of each column
    pagewalk reads, in the order of :data:`COLUMNS` (``huge`` only where known,
    ``kpageflags`` and ``mapcount`` only where recorded, their nulls as 0), as
    little-endian bytes of the types :data:`_DTYPES` names (booleans one byte, 0 or 1)."""
    crc = zlib.crc32(meta)
    for name in _read_columns(snapshot_meta):
        column = np.ascontiguousarray(columns[name])
        column = column.view(np.uint8) if column.dtype == bool else column
        crc = zlib.crc32(column.astype(_DTYPES[name], copy=False).data, crc)
    return f"{crc:08x}"


def _read_columns(meta: dict) -> list[str]:
    """The columns pagewalk reads back from a snapshot with this metadata."""
    return ["vaddr", "entry", "zero"] + (["huge"] if meta["huge_known"] else []) + (
        ["kpageflags", "mapcount"] if meta["frames"] else [])


def _check_row_groups(info, names: list[str], rows: int, size: int, check) -> None:
    """What the footer says of each row group agrees with its row count ``rows``
    (checked already): pyarrow decodes every row of every group whatever that
    says.  Each column chunk pagewalk reads is within the file, and says no more
    bytes decoded than its rows can take (:data:`CHUNK_BYTES_PER_ROW`)."""
    where = {info.schema.column(j).path: j for j in range(info.num_columns)}
    total = 0
    for i in range(info.num_row_groups):
        group = info.row_group(i)
        if group.num_rows < 0:
            raise check.bad(f"its row group {i} holds {group.num_rows} rows")
        total += group.num_rows
        if total > rows:
            break
        for name in names:
            chunk = group.column(where[name])
            most = group.num_rows * CHUNK_BYTES_PER_ROW + CHUNK_BYTES_MORE
            if not 0 <= chunk.total_compressed_size <= size:
                raise check.bad(f"its {name} column in row group {i} is {chunk.total_compressed_size} bytes, "
                                f"in a file of {size}")
            if not 0 <= chunk.total_uncompressed_size <= most:
                raise check.bad(f"its {name} column in row group {i} would decode to "
                                f"{chunk.total_uncompressed_size} bytes, more than its {group.num_rows} rows take")
    if total != rows:
        raise check.bad(f"its row groups hold {total}{' or more' if total > rows else ''} rows, "
                        f"its footer says {rows}")


def read(f, path: str, check: Check, make):
    """A snapshot from the open Parquet file ``f`` (named ``path``), made by ``make`` (the
    :class:`pagewalk.analysis.snapshot.Snapshot` constructor) and checked as it is read by ``check``: the footer's size before pyarrow parses it,
    the metadata and mappings, the row count before any column is read, the column
    types, each row group's rows and column sizes (:func:`_check_row_groups`), then
    the checksum of what was read (files without one, from pagewalk before it wrote
    one, load with a note saying so)."""
    pa, pq = require_pyarrow()
    size = f.seek(0, 2)
    f.seek(max(size - 8, 0))
    tail = f.read(8)
    footer = int.from_bytes(tail[:4], "little")
    if len(tail) < 8 or tail[4:] != MAGIC or footer > size - 12:
        raise check.damaged("no Parquet footer")
    if footer > FOOTER_BYTES_MOST:
        raise check.bad(f"its Parquet footer is {footer} bytes, more than pagewalk reads")
    check.charge(footer * 16, "its Parquet footer")  # (thrift objects made of it)
    pf = None
    try:
        pf = pq.ParquetFile(f)
        info = pf.metadata
        kv = info.metadata or {}
        if METADATA_KEY not in kv:
            raise check.foreign("a Parquet file without pagewalk's metadata")
        text = kv[METADATA_KEY]
        meta = check.meta(text, "parquet")
        columns: dict = {name: [] for name in MAP_FIELDS}
        for i, m in enumerate(meta.pop("mappings")):
            if type(m) is not dict or set(m) != set(MAP_FIELDS):
                raise check.bad(f"mapping {i} in its metadata is {shown(m)}, not the fields of a maps line")
            for name in MAP_FIELDS:
                value = m[name]
                if name in NUMBERS and not (type(value) is int and 0 <= value < 1 << 64):
                    raise check.bad(f"mapping {i} in its metadata has {name} {shown(value)}, not a 64-bit number")
                columns[name].append(value)
        for name in NUMBERS:
            columns[name] = np.array(columns[name], dtype=np.uint64)
        mappings = check.mappings(columns)
        rows = info.num_rows
        if info.num_row_groups > 1 + rows // 1024:
            raise check.bad(f"its {rows} rows are in {info.num_row_groups} row groups")
        pages = check.page_count(meta, "parquet", rows)
        names = _read_columns(meta)
        schema = pf.schema_arrow
        for name in names:
            kind = str(schema.field(name).type) if name in schema.names else None
            if kind != COLUMNS[name]:
                raise check.bad(f"its {name} column is {kind or 'missing'}, not {COLUMNS[name]}")
        _check_row_groups(info, names, rows, size, check)
        table = pf.read(columns=names, use_threads=False)
        if table.num_rows != pages:
            raise check.bad(f"it holds {table.num_rows} rows, its metadata says {pages}")
        loaded = {}
        for name in names:
            column = table.column(name)
            if name in ("kpageflags", "mapcount"):
                column = column.fill_null(0)  # (not present: no frame)
            elif column.null_count:
                raise check.bad(f"its {name} column has nulls")
            array = column.to_numpy()
            # (zero-copy where it can be, then read-only: a snapshot's arrays are its own)
            loaded[name] = array if array.flags.writeable else array.copy()
            del column, array
        del table
    except pa.lib.ArrowException as exc:  # (a damaged file: pyarrow's errors have this base)
        raise check.damaged(detail(exc)) from exc
    finally:
        if pf is not None:
            pf.close()
    notes = []
    crc = kv.get(CHECKSUM_KEY)
    if crc is None:
        notes.append(f"{path} has no checksum (written by an older pagewalk): damage to it cannot be told")
    elif crc != checksum(text, loaded, meta).encode():
        raise check.bad("damaged: its contents do not match its checksum")
    vaddr = loaded.pop("vaddr")
    check.pages(vaddr)
    huge = loaded.pop("huge") if meta["huge_known"] else np.zeros(pages, dtype=bool)
    snap = make(meta, mappings, vaddr, loaded.pop("entry"), loaded.pop("zero"), huge,
                    loaded.get("kpageflags"), loaded.get("mapcount"))
    snap.notes = notes
    return snap
