"""Snapshots: a process's mappings and the state of every populated page, in a file.

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
:meth:`Snapshot.load` reads both.

The same snapshot can be written as Parquet instead, one row per page with every
bit decoded, for data tools (extra ``pagewalk[parquet]``; see :mod:`pagewalk.parquet`).
:meth:`Snapshot.load` reads either.

A file to be read may come from anywhere: :meth:`Snapshot.load` never unpickles
(no ``np.load``, no object arrays), opens it only if it is a regular file
(:func:`pagewalk.infile.open_regular`), checks every part as it reads it (:class:`Check`:
the metadata's keys and types, the mappings, each size against the metadata's page
count and the mappings before anything that size is made, the memory loads may use:
:class:`LoadBudget`), reads each zip member to its end so that its CRC-32 is checked, and for
Parquet compares the checksum pagewalk stores of the metadata and the columns it
reads back (see :func:`pagewalk.parquet.checksum`).  Whatever is wrong is one
:class:`BadSnapshot`.

Files are written by :func:`pagewalk.outfile.write_private` (mode 0600: they hold
physical addresses): a regular file through a temporary file in the same directory,
renamed into place so that a reader never sees half a file; a device, a FIFO or
standard output as a stream.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import zipfile

import numpy as np

from ..errors import Unsupported
from ..kernel.outfile import write_private
from ..kernel.maps import Mapping, mapping_index
from ..names import unicode_text
from ..kernel.pagemap import PAGE_SHIFT, PAGE_SIZE, PM_PFRAME_MASK
from ..core.states import empty_entry
from .snapshot_check import (DAMAGE_ERRORS, FORMAT, KINDS, MAP_FIELDS, MAPPING_BYTES, MAX_MAPPINGS, MAX_META_BYTES,
                             MAX_NPY_HEADER, VERSION, BadSnapshot, Check, LoadBudget, detail, shown)

PAGE_COLUMNS = ("vpn_delta", "entry_delta", "zero", "huge", "kpageflags", "mapcount")


class Snapshot:
    """One process's page table state at one moment (see the module doc for the file)."""

    def __init__(self, meta: dict, mappings: list[Mapping], vaddr: np.ndarray | None, raw: np.ndarray,
                 zero: np.ndarray, huge: np.ndarray, kpageflags: np.ndarray | None = None,
                 mapcount: np.ndarray | None = None, *, runs: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """``vaddr`` is each page's address, or None with ``runs``: ``(first, pages)``,
        the first address and the length of each run of consecutive pages."""
        self.meta = meta
        self.mappings = mappings
        self._vaddr, self._runs = vaddr, runs
        self.raw, self.zero, self.huge = raw, zero, huge
        self.kpageflags, self.mapcount = kpageflags, mapcount
        self._table = None
        self.notes: list[str] = []  # what a reader should know about the file it came from

    @property
    def vaddr(self) -> np.ndarray:
        """Each recorded page's virtual address (uint64): the table's, made once."""
        return self._vaddr if self._vaddr is not None else self.table().vaddr

    @property
    def pid(self) -> int:
        return self.meta["pid"]

    def table(self):  # -> pagewalk.pagetable.PageTable
        """The recorded pages as a page table (explicit ``vaddr``; one, kept)."""
        if self._table is None:
            from ..core.pagetable import PageTable

            self._table = PageTable(0, self.raw, pfn_visible=self.meta["pfn_visible"], zero=self.zero,
                                    huge=self.huge if self.meta.get("huge_known") else None, vaddr=self._vaddr,
                                    runs=self._runs if self._vaddr is None else None,
                                    soft_dirty_known=self.meta.get("soft_dirty_known"))
            # a recorded page with an empty entry is shared memory in swap (take())
            empty = empty_entry(self.raw)
            if empty.any():
                self._table.shmem_swapped = empty
        return self._table

    # -- taking --------------------------------------------------------------------
    @classmethod
    def take(cls, process, *, clear_soft_dirty: bool = False, resident=None) -> Snapshot:
        """Record ``process`` (a :class:`pagewalk.Process`) now.  ``clear_soft_dirty``
        then clears its soft-dirty bits (``clear_refs`` 4), so that a later snapshot's
        soft-dirty pages are the pages written since: this write-protects every page
        of the target, whose next write to each then faults once.  ``resident`` is its
        page table as a :class:`pagewalk.core.reading.ResidentRead` read it, if it was read
        already (the CLI reads it while numpy imports)."""
        from ..kernel import config, probes, procfs

        if clear_soft_dirty and not probes.soft_dirty_supported():
            raise Unsupported("cannot track written pages: this kernel has no soft-dirty bits "
                              "(CONFIG_MEM_SOFT_DIRTY is off)")

        pid = process.pid
        visible = process.pfn_visible
        frames = visible and os.access("/proc/kpageflags", os.R_OK) and os.access("/proc/kpagecount", os.R_OK)
        if not frames:
            table = process.resident_table(resident=resident, shmem_swap=True)
            kflags = mapcount = None
        else:
            from ..kernel.kpage import KPAGECOUNT, KPAGEFLAGS, KpageFile

            with KpageFile(KPAGEFLAGS) as f:
                table = process.resident_table(kpageflags=f, resident=resident, shmem_swap=True)
            kflags = table.kpageflags
            present = table.present
            # The exclusive bit already says "map count 1" (kernel.md 1.1), except on a
            # kernel without per-page map counts and for hugetlb pages (huge or unknown)
            count = present.copy()
            if config.exclusive_means_mapped_once() and table.huge is not None:
                count &= ~(table.exclusive & ~table.huge)
            mapcount = (present & ~count).astype(np.uint32)
            if count.any():
                with KpageFile(KPAGECOUNT) as c:
                    mapcount[count] = c.read(table.raw[count] & np.uint64(PM_PFRAME_MASK))
            process.check_alive("the snapshot")
        maps = table.mappings  # every recorded page lies inside one of them
        now = datetime.datetime.now().astimezone()
        meta = {"format": FORMAT, "version": VERSION, "time": now.isoformat(timespec="seconds"),
                "unix_time": now.timestamp(), "kernel": os.uname().release, "page_size": PAGE_SIZE, "pid": pid,
                "cmdline": procfs.command_line(pid), "comm": procfs.command_name(pid),
                "pfn_visible": visible, "frames": frames, "huge_known": table.huge is not None,
                "zero_known": table.zero is not None, "soft_dirty_known": table.soft_dirty_known,
                "shmem_swap_unknown": [[m.start, m.end] for m in table.shmem_unknown_mappings],
                "pages": len(table),
                "mappings_changed": [[m.start, m.end] for m in table.changed_mappings]}
        if clear_soft_dirty:
            from ..kernel.oserrors import translating

            path = f"/proc/{pid}/clear_refs"
            with translating(pid, path, started=True), open(path, "w") as f:
                f.write("4")
            meta["soft_dirty_cleared"] = True
        zero = table.zero if table.zero is not None else np.zeros(len(table), dtype=bool)
        huge = table.huge if table.huge is not None else np.zeros(len(table), dtype=bool)
        # (the table's arrays are its own: no copies of a million entries; addresses
        # stay runs until asked for)
        return cls(meta, maps, None if table.runs is not None else table.vaddr.astype(np.uint64, copy=False), table.raw,
                   zero.astype(bool, copy=False), huge.astype(bool, copy=False), kflags, mapcount, runs=table.runs)

    # -- the file ------------------------------------------------------------------
    def save(self, path: str, file_format: str | None = None, force: bool = False) -> int:
        """Write the snapshot to ``path`` as :func:`pagewalk.outfile.write_private` does
        (a file atomically, mode 0600; ``force`` as there); return the bytes written.
        ``file_format`` is ``npz`` (the default) or ``parquet`` (needs pyarrow: see
        :mod:`pagewalk.parquet`); None picks ``parquet`` for a ``.parquet`` name."""
        if file_format is None:
            file_format = "parquet" if path.endswith(".parquet") else "npz"
        if file_format == "parquet":
            from . import parquet

            parquet._pyarrow()  # a missing extra is said before any file is made
            return write_private(path, lambda f: parquet.write(self, f), force)
        if file_format != "npz":
            raise ValueError(f"unknown snapshot format {file_format!r}")
        return write_private(path, self._write_npz, force)

    def _write_npz(self, f) -> None:
        arrays = {"meta": np.array(json.dumps(self.meta))}
        for name in MAP_FIELDS:
            values = [getattr(m, name) for m in self.mappings]
            arrays[f"map_{name}"] = np.array(values, dtype=np.uint64) if name in ("start", "end", "offset", "inode") \
                else np.array(values, dtype=str)
        # Run-length coded: a million pages of one mapping are a few runs, and deflate
        # then has almost nothing left to do (it cost more than the rest).
        delta = np.empty(len(self.raw), dtype=np.uint64)  # one scratch array for both deltas
        if self._runs is not None:  # straight from the runs of pages, no per-page pass
            arrays["vpn_delta_values"], arrays["vpn_delta_repeats"] = _vpn_delta_runs(*self._runs)
        else:
            _delta(self.vaddr, delta)
            delta.view(np.int64)[:] >>= PAGE_SHIFT  # exact: addresses are page-aligned
            arrays["vpn_delta_values"], arrays["vpn_delta_repeats"] = _runs(delta.view(np.int64))
        _delta(self.raw, delta)  # uint64: wraps, and cumsum in uint64 undoes it
        arrays["entry_delta_values"], arrays["entry_delta_repeats"] = _runs(delta)
        del delta
        columns = {"zero": self.zero, "huge": self.huge}
        if self.kpageflags is not None:
            columns["kpageflags"], columns["mapcount"] = self.kpageflags, self.mapcount
        for name, column in columns.items():
            arrays[f"{name}_values"], arrays[f"{name}_repeats"] = _runs(column)
        # What numpy.savez_compressed writes, at deflate level 1
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, array in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    @classmethod
    def load(cls, path: str, *, budget: LoadBudget | None = None) -> Snapshot:
        """Read a snapshot; :class:`BadSnapshot` (one line) for anything that is not one
        this pagewalk can read: a truncated, damaged, foreign or hostile file, a newer
        format version, or one too large for ``budget``, the memory it may use (checked
        before anything of that size is made: see :class:`Check`).  Give snapshots
        that are to be held at once one budget (``diff`` does); None: a budget of
        this load's own (:class:`LoadBudget`)."""
        from . import parquet
        from ..kernel.infile import NotRegularFile, open_regular

        check = Check(path, LoadBudget() if budget is None else budget)
        try:
            # what the path names is looked at before it is opened: a FIFO would wait
            # for a writer, a device never end (or do something when opened)
            with open_regular(path) as f:
                snap = parquet.read(f, path, check, cls) if parquet.is_parquet(f) else _read_npz(f, check)
        except NotRegularFile as exc:
            raise BadSnapshot(f"{path}: not a snapshot file ({exc.kind}, not a regular file: "
                              "save it to one first)") from None
        except FileNotFoundError:
            raise BadSnapshot(f"no such snapshot file: {path}") from None
        except PermissionError:
            raise BadSnapshot(f"cannot read {path}: permission denied") from None
        except (BadSnapshot, Unsupported):
            raise
        except MemoryError:  # (pyarrow's ArrowMemoryError too) the checks' estimate fell short
            raise BadSnapshot(f"{path}: cannot load this snapshot here: out of memory") from None
        except DAMAGE_ERRORS as exc:  # what the checks did not see first (a bad CRC, a cut zip) is damage
            raise check.damaged(detail(exc)) from exc
        return snap

    def summary(self) -> dict:
        """Per-mapping counts of what was recorded (for ``snapshot --load``)."""
        table = self.table()
        vaddr = self.vaddr
        index = mapping_index(self.mappings, vaddr)
        n = len(self.mappings)
        # pages outside every mapping (files of older versions, which recorded pages of
        # mappings made during the walk) belong to none: not to the mapping before
        ends = np.array([m.end for m in self.mappings], dtype=np.uint64)
        inside = (index >= 0) & (vaddr < ends[np.maximum(index, 0)]) if n else np.zeros(len(vaddr), dtype=bool)
        # the words and rules of ``maps``: present includes the zero page, which
        # is counted apart; [vsyscall] has no entries, so no counts
        present = np.bincount(index[table.present & inside], minlength=n).tolist()
        zero = np.bincount(index[table.present & self.zero & inside], minlength=n).tolist()
        swapped = np.bincount(index[table.swapped & inside], minlength=n).tolist()
        zero_known = self.meta.get("zero_known", True)
        unknown_swap = {tuple(r) for r in self.meta.get("shmem_swap_unknown", [])}
        rows = [{"start": m.start, "end": m.end, "perms": m.perms, "path": m.text_path or None,
                 "pages": None if m.is_vsyscall else (m.end - m.start) >> PAGE_SHIFT,
                 "present": None if m.is_vsyscall else present[i],
                 "zero": None if m.is_vsyscall or not zero_known else zero[i],
                 "swapped": None if m.is_vsyscall or (m.start, m.end) in unknown_swap else swapped[i]}
                for i, m in enumerate(self.mappings)]
        # the names as every format shows them: bytes that are not UTF-8 as \xNN
        names = {"comm": unicode_text(self.meta.get("comm", "")),
                 "cmdline": [unicode_text(a) for a in self.meta.get("cmdline", [])]}
        return {"meta": {**self.meta, **names}, "mappings": rows}


def _runs(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``column`` as (values, repeats): ``numpy.repeat(values, repeats)`` gives it back."""
    if len(column) == 0:
        return column, np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(column[1:] != column[:-1]) + 1
    first = np.concatenate(([0], first))
    return column[first], _narrow(np.diff(np.append(first, len(column))))


def _narrow(repeats: np.ndarray) -> np.ndarray:
    """Run lengths in the narrowest type that holds them: less for deflate to do."""
    most = int(repeats.max()) if len(repeats) else 0
    return repeats.astype(next((t for t in (np.uint8, np.uint16, np.uint32) if most <= np.iinfo(t).max), np.int64))


def _vpn_delta_runs(first: np.ndarray, pages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ``_runs`` makes of the virtual page numbers' deltas, from runs of
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
    return values[head], _narrow(np.add.reduceat(repeats, np.flatnonzero(head)))


def _delta(column: np.ndarray, out: np.ndarray) -> None:
    """``out`` (uint64) = each element of ``column`` (uint64) minus the one before
    it, the first minus 0: ``numpy.diff(column, prepend=0)`` without temporaries."""
    if len(column):
        out[0] = column[0]
        np.subtract(column[1:], column[:-1], out=out[1:])


# -- reading, and what a file must pass to be read ----------------------------------
# A snapshot file may come from anywhere (a damaged disk, a colleague, an attacker):
# it is checked as it is read, each size against what its metadata and mappings
# allow, and against the memory loads may use (LoadBudget), before anything that
# size is made.  All of it is in Check, one place for both file forms.

# What loading costs, measured (snapshot --load and diff of a 265,000-page snapshot,
# peak RSS less pagewalk's own), rounded up: the columns, their expansion, the page
# table made of them
# What loads may allocate unless told otherwise: at most this, and at most half of
# the memory available here.  A snapshot's size says nothing of what it expands to
# (a few KB of run lengths can say a billion pages, and so can a genuine snapshot
# of a sparse process), so a genuine huge one needs the limit raised.


def _read_npz(f, check: Check) -> Snapshot:
    """A snapshot from the open ``.npz`` file ``f`` (either version), checked as it is read."""
    with zipfile.ZipFile(f) as zf:
        z = _Members(zf, check)
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
    return Snapshot(meta, mappings, vaddr, raw, zero, huge, kflags, mapcount)


class _Members:
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
