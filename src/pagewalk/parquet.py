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
"""

from __future__ import annotations

import json

import numpy as np

from .extras import require
from .maps import Mapping, mapping_index

MAGIC = b"PAR1"
METADATA_KEY = b"pagewalk"


def _pyarrow():
    return require("pyarrow", "parquet", "pyarrow"), require("pyarrow.parquet", "parquet", "pyarrow")


def is_parquet(path: str) -> bool:
    """Whether ``path`` starts as a Parquet file does."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def write(snapshot, f) -> None:
    """Write ``snapshot`` (a :class:`pagewalk.snapshot.Snapshot`) to the open binary file ``f``."""
    pa, pq = _pyarrow()
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
    meta = dict(snapshot.meta, mappings=[m._asdict() for m in maps])
    arrow = pa.table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    # Addresses and frames mostly step by one: delta coding stores such runs in a few bits
    deltas = ("vaddr", "entry", "pfn", "kpageflags")
    pq.write_table(arrow, f, compression="zstd", use_dictionary=["path"],
                   column_encoding={name: "DELTA_BINARY_PACKED" for name in deltas})


def read(path: str):
    """The parts of a snapshot from a Parquet file: ``(meta, mappings, vaddr, raw,
    zero, huge, kpageflags, mapcount)``.  Raises what pyarrow raises for a damaged
    file and KeyError for a Parquet file without pagewalk's metadata; the caller
    turns those into :class:`pagewalk.snapshot.BadSnapshot`."""
    _, pq = _pyarrow()
    arrow = pq.read_table(path)
    raw_meta = (arrow.schema.metadata or {}).get(METADATA_KEY)
    if raw_meta is None:
        raise KeyError("pagewalk metadata")
    meta = json.loads(raw_meta)
    if not isinstance(meta, dict):
        raise KeyError("pagewalk metadata")
    mappings = [Mapping(**m) for m in meta.pop("mappings")]

    def column(name: str, dtype) -> np.ndarray:
        return arrow.column(name).to_numpy(zero_copy_only=False).astype(dtype)

    frames = meta.get("frames")
    return (meta, mappings, column("vaddr", np.uint64), column("entry", np.uint64), column("zero", bool),
            column("huge", bool) if meta.get("huge_known") else np.zeros(arrow.num_rows, dtype=bool),
            arrow.column("kpageflags").fill_null(0).to_numpy().astype(np.uint64) if frames else None,
            arrow.column("mapcount").fill_null(0).to_numpy().astype(np.uint32) if frames else None)
