"""The ``.npz`` form of a snapshot (the default; :mod:`.parquet` is the other).

Format (version 2): a NumPy ``.npz`` archive (a zip of ``.npy`` arrays, deflate
compressed), readable with nothing but numpy: ``numpy.load(path)``.  Members:

* ``meta``: a 0-d string array holding JSON: ``format`` ("pagewalk-snapshot"),
  ``version``, ``time`` (ISO 8601), ``unix_time``, ``kernel``, ``page_size``, ``pid``,
  ``cmdline`` (list), ``comm``, ``pfn_visible``, ``frames`` (whether ``kpageflags`` and
  ``mapcount`` were recorded), ``pages`` (populated pages recorded), ``mappings_changed``
  (``[start, end]`` of the mappings that changed while their pages were read, each
  time they were read: their pages mix the before and the after).
* ``map_start``, ``map_end``, ``map_offset``, ``map_inode`` (uint64), ``map_perms``,
  ``map_dev``, ``map_path`` (strings): one element per line of ``/proc/PID/maps``.
* One column per recorded page (present, swapped, or a marker; each inside one of
  the mappings; in address order; a recorded page whose entry is 0 is shared
  memory in swap, which has no page table entry; pages not listed were untouched,
  except in the mappings that ``meta["shmem_swap_unknown"]`` lists), each run-length coded as two
  members, ``NAME_values`` and ``NAME_repeats`` (an unsigned integer type as narrow
  as they allow, or int64): ``numpy.repeat(values, repeats)`` gives the column.  The columns:

  - ``vpn_delta`` (int64) and ``entry_delta`` (uint64, wrapping): the virtual page
    numbers and raw pagemap entries, each as the difference from the previous one
    (the first from 0), so that runs of consecutive pages and frames are runs of
    1s; ``numpy.cumsum`` gives them back (for the entries, in uint64);
  - ``zero``, ``huge`` (bool; ``huge`` all False when unknown: see
    ``meta["huge_known"]``);
  - where ``frames``: ``kpageflags`` (uint64) and ``mapcount`` (uint32) of each
    present page's frame (0 elsewhere).

Version 1 stored the same columns whole (``NAME`` instead of the two members);
:func:`read` reads both.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from ..kernel.pagemap import PAGE_SHIFT
from .snapshot_check import (KINDS, MAP_FIELDS, MAPPING_BYTES, MAX_MAPPINGS, MAX_META_BYTES, MAX_NPY_HEADER,
                             Check, detail, shown)

__all__ = ["PAGE_COLUMNS", "Members", "narrow", "read", "run_lengths", "write"]

PAGE_COLUMNS = ("vpn_delta", "entry_delta", "zero", "huge", "kpageflags", "mapcount")


def write(snap, f) -> None:
    """Write ``snap`` (a :class:`~pagewalk.analysis.snapshot.Snapshot`) to the binary file ``f`` as a version-2 ``.npz`` (see the module doc)."""
    arrays = {"meta": np.array(json.dumps(snap.meta))}
    for name in MAP_FIELDS:
        values = [getattr(m, name) for m in snap.mappings]
        arrays[f"map_{name}"] = np.array(values, dtype=np.uint64) if name in ("start", "end", "offset", "inode") \
            else np.array(values, dtype=str)
    # Run-length coded: a million pages of one mapping are a few runs, and deflate
    # then has almost nothing left to do (it cost more than the rest).
    delta = np.empty(len(snap.raw), dtype=np.uint64)  # one scratch array for both deltas
    if snap.runs is not None:  # straight from the runs of pages, no per-page pass
        arrays["vpn_delta_values"], arrays["vpn_delta_repeats"] = _vpn_delta_runs(*snap.runs)
    else:
        _delta(snap.vaddr, delta)
        delta.view(np.int64)[:] >>= PAGE_SHIFT  # exact: addresses are page-aligned
        arrays["vpn_delta_values"], arrays["vpn_delta_repeats"] = run_lengths(delta.view(np.int64))
    _delta(snap.raw, delta)  # uint64: wraps, and cumsum in uint64 undoes it
    arrays["entry_delta_values"], arrays["entry_delta_repeats"] = run_lengths(delta)
    del delta
    columns = {"zero": snap.zero, "huge": snap.huge}
    if snap.kpageflags is not None:
        columns["kpageflags"], columns["mapcount"] = snap.kpageflags, snap.mapcount
    for name, column in columns.items():
        arrays[f"{name}_values"], arrays[f"{name}_repeats"] = run_lengths(column)
    # What numpy.savez_compressed writes, at deflate level 1
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def run_lengths(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``column`` as (values, repeats): ``numpy.repeat(values, repeats)`` gives it back."""
    if len(column) == 0:
        return column, np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(column[1:] != column[:-1]) + 1
    first = np.concatenate(([0], first))
    return column[first], narrow(np.diff(np.append(first, len(column))))


def narrow(repeats: np.ndarray) -> np.ndarray:
    """Run lengths in the narrowest type that holds them: less for deflate to do."""
    most = int(repeats.max()) if len(repeats) else 0
    return repeats.astype(next((t for t in (np.uint8, np.uint16, np.uint32) if most <= np.iinfo(t).max), np.int64))


def _vpn_delta_runs(first: np.ndarray, pages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ``run_lengths`` makes of the virtual page numbers' deltas, from runs of
    consecutive pages (``first`` address, length in ``pages``): each run is a jump
    from the previous page, then ones."""
    keep = pages > 0
    vpn = (first[keep] >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    pages = pages[keep].astype(np.int64)
    if len(vpn) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    jump = vpn - np.concatenate(([0], vpn[:-1] + pages[:-1] - 1))
    values = np.stack([jump, np.ones_like(jump)], axis=1).ravel()
    repeats = np.stack([np.ones_like(pages), pages - 1], axis=1).ravel()
    values, repeats = values[repeats > 0], repeats[repeats > 0]
    # neighbours of equal value are one run (a jump of 1 followed by ones)
    head = np.concatenate(([True], values[1:] != values[:-1]))
    return values[head], narrow(np.add.reduceat(repeats, np.flatnonzero(head)))


def _delta(column: np.ndarray, out: np.ndarray) -> None:
    """``out`` (uint64) = each element of ``column`` (uint64) minus the one before
    it, the first minus 0: ``numpy.diff(column, prepend=0)`` without temporaries."""
    if len(column):
        out[0] = column[0]
        np.subtract(column[1:], column[:-1], out=out[1:])


# -- reading: a file may come from anywhere, so every part is checked (Check) before
# anything of the size it says is made

def read(f, check: Check, cls):
    """A ``cls`` (:class:`~pagewalk.analysis.snapshot.Snapshot`) from the open ``.npz`` file ``f`` (either version), checked as it is
    read; raises :class:`~pagewalk.analysis.snapshot_check.BadSnapshot` (by ``check``)
    for anything it will not read."""
    with zipfile.ZipFile(f) as zf:
        z = Members(zf, check)
        if "meta" not in z.infos:
            raise check.foreign("no metadata")
        meta = check.meta(z.read("meta", "U", scalar=True).item(), "npz")
        columns = {}
        for name in MAP_FIELDS:
            array = z.read(f"map_{name}", "U" if name in ("perms", "dev", "path") else "iu", most=MAX_MAPPINGS,
                           per_item=MAPPING_BYTES // 4)
            if array.dtype.kind == "i" and len(array) and array.min() < 0:
                raise check.bad(f"its map_{name} holds negative values")
            columns[name] = array.tolist() if array.dtype.kind == "U" else array.astype(np.uint64)
        mappings = check.mappings(columns)
        pages = check.page_count(meta, "npz")
        names = PAGE_COLUMNS if meta["frames"] else PAGE_COLUMNS[:4]  # (kpageflags, mapcount last)
        kinds = {"vpn_delta": "iu", "zero": "b", "huge": "b"}  # the rest: unsigned, as written
        page = {}
        for name in names:
            if meta["version"] < 2:  # each column whole
                values, repeats = z.read(name, kinds.get(name, "u"), length=pages), None
            else:
                values = z.read(f"{name}_values", kinds.get(name, "u"), most=pages)
                repeats = z.read(f"{name}_repeats", "iu", length=len(values))
            check.runs(name, values, repeats, pages)
            # (each array made here, the snapshot's own: version 1's are copied from the file's bytes)
            page[name] = np.array(values) if repeats is None else np.repeat(values, repeats)
            del values, repeats
    vaddr = page.pop("vpn_delta").astype(np.int64, copy=False)
    np.cumsum(vaddr, out=vaddr)  # (checked: increasing, below 2**52, no overflow)
    vaddr = vaddr.view(np.uint64)
    vaddr <<= np.uint64(PAGE_SHIFT)
    check.pages(vaddr, ordered=True)
    raw = page.pop("entry_delta").astype(np.uint64, copy=False)
    np.cumsum(raw, out=raw)  # wraps in uint64, as written
    zero, huge = page.pop("zero").astype(bool, copy=False), page.pop("huge").astype(bool, copy=False)
    kflags = page["kpageflags"].astype(np.uint64, copy=False) if meta["frames"] else None
    mapcount = page["mapcount"].astype(np.uint32, copy=False) if meta["frames"] else None
    return cls(meta, mappings, vaddr, raw, zero, huge, kflags, mapcount)


class Members:
    """The ``.npy`` members of an open ``.npz`` zip, each read only after its header
    says a shape and type the snapshot allows (np.load would make whatever a header
    says), and read to its end, so that the zip's CRC-32 is checked."""

    def __init__(self, zf: zipfile.ZipFile, check: Check) -> None:
        self.infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        self.zf, self.check = zf, check

    def read(self, name: str, kinds: str, *, scalar: bool = False, length: int | None = None,
             most: int | None = None, per_item: int = 0) -> np.ndarray:
        """Member ``name``: a 0-d array (``scalar``) or a 1-d one of exactly ``length``
        or at most ``most`` items, of a dtype kind in ``kinds``."""
        check = self.check
        info = self.infos.get(name)
        if info is None:
            raise check.bad(f"it has no {name} member")
        with self.zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise check.bad(f"its {name} is an .npy file of version {version}")
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            # the header's length (2 bytes, or 4 in version 2.0) before numpy reads that
            # many bytes: it checks its own limit only after (a header of 4 GB)
            width = 2 if version == (1, 0) else 4
            length_bytes = f.read(width)
            if len(length_bytes) < width:
                raise check.damaged(f"{name}'s header is cut short")
            header_bytes = int.from_bytes(length_bytes, "little")
            if header_bytes > MAX_NPY_HEADER:
                raise check.bad(f"its {name}'s .npy header is {header_bytes} bytes, more than the "
                                f"{MAX_NPY_HEADER} pagewalk reads")
            header = f.read(header_bytes)
            try:
                shape, _, dtype = reader(io.BytesIO(length_bytes + header), max_header_size=MAX_NPY_HEADER)
            except Exception as exc:  # noqa: BLE001 - a Python literal parsed (ast, tokenize): any of their errors
                raise check.damaged(f"{name}'s header: {detail(exc)}") from exc
            if dtype.hasobject or dtype.kind not in kinds or dtype.itemsize == 0:
                raise check.bad(f"its {name} holds {shown(dtype.str)} values, not "
                                + " or ".join(KINDS[k] for k in kinds))
            if scalar:
                if shape != ():
                    raise check.bad(f"its {name} is an array of shape {shown(shape)}, not a single value")
                count = 1
                if dtype.itemsize > 4 * MAX_META_BYTES:
                    raise check.bad(f"its {name} is {dtype.itemsize} bytes, more than pagewalk reads")
            else:
                if len(shape) != 1:
                    raise check.bad(f"its {name} is an array of shape {shown(shape)}, not a column")
                count = shape[0]
                if (length is not None and count != length) or (most is not None and count > most):
                    expected = length if length is not None else f"at most {most}"
                    raise check.bad(f"its {name} has {count} items, where it should have {expected}")
            nbytes = count * dtype.itemsize
            check.charge(nbytes + count * per_item, f"its {name}")
            data = f.read(nbytes)
            if len(data) != nbytes or f.read(1):
                raise check.damaged(f"{name} holds other than its header says")
        array = np.frombuffer(data, dtype=dtype)
        if not dtype.isnative:
            array = array.astype(dtype.newbyteorder("="))
        return array.reshape(()) if scalar else array
