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
(:func:`pagewalk.infile.open_regular`), checks every part as it reads it (:class:`_Check`:
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
import math
import os
import zipfile
import zlib

import numpy as np

from .errors import PagewalkError, Unsupported
from .outfile import write_private
from .maps import Mapping, mapping_index
from .names import unicode_text
from .pagemap import PAGE_SHIFT, PAGE_SIZE, PM_PFRAME_MASK
from .states import empty_entry

FORMAT = "pagewalk-snapshot"
VERSION = 2
PAGE_COLUMNS = ("vpn_delta", "entry_delta", "zero", "huge", "kpageflags", "mapcount")
MAP_FIELDS = ("start", "end", "perms", "offset", "dev", "inode", "path")


class BadSnapshot(PagewalkError):
    """A file that is not a snapshot this pagewalk can read."""


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
            from .pagetable import PageTable

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
        page table as a :class:`pagewalk.process.ResidentRead` read it, if it was read
        already (the CLI reads it while numpy imports)."""
        from . import system

        if clear_soft_dirty and not system.soft_dirty_supported():
            raise Unsupported("cannot track written pages: this kernel has no soft-dirty bits "
                              "(CONFIG_MEM_SOFT_DIRTY is off)")

        pid = process.pid
        visible = process.pfn_visible
        frames = visible and os.access("/proc/kpageflags", os.R_OK) and os.access("/proc/kpagecount", os.R_OK)
        if not frames:
            table = process.resident_table(resident=resident, shmem_swap=True)
            kflags = mapcount = None
        else:
            from .kpage import KPAGECOUNT, KPAGEFLAGS, KpageFile

            with KpageFile(KPAGEFLAGS) as f:
                table = process.resident_table(kpageflags=f, resident=resident, shmem_swap=True)
            kflags = table.kpageflags
            present = table.present
            # The exclusive bit already says "map count 1" (kernel.md 1.1), except on a
            # kernel without per-page map counts and for hugetlb pages (huge or unknown)
            count = present.copy()
            if system.exclusive_means_mapped_once() and table.huge is not None:
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
                "cmdline": system.command_line(pid), "comm": system.command_name(pid),
                "pfn_visible": visible, "frames": frames, "huge_known": table.huge is not None,
                "zero_known": table.zero is not None, "soft_dirty_known": table.soft_dirty_known,
                "shmem_swap_unknown": [[m.start, m.end] for m in table.shmem_unknown_mappings],
                "pages": len(table),
                "mappings_changed": [[m.start, m.end] for m in table.changed_mappings]}
        if clear_soft_dirty:
            from .errors import translating

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
        before anything of that size is made: see :class:`_Check`).  Give snapshots
        that are to be held at once one budget (``diff`` does); None: a budget of
        this load's own (:class:`LoadBudget`)."""
        from . import parquet
        from .infile import NotRegularFile, open_regular

        check = _Check(path, LoadBudget() if budget is None else budget)
        try:
            # what the path names is looked at before it is opened: a FIFO would wait
            # for a writer, a device never end (or do something when opened)
            with open_regular(path) as f:
                snap = parquet.read(f, path, check) if parquet.is_parquet(f) else _read_npz(f, check)
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
        except _DAMAGE as exc:  # what the checks did not see first (a bad CRC, a cut zip) is damage
            raise check.damaged(_detail(exc)) from exc
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
# size is made.  All of it is in _Check, one place for both file forms.

MAX_META_BYTES = 128 << 20  # the metadata's JSON (cmdline; in Parquet also the maps list)
MAX_MAPPINGS = 1 << 22  # vm.max_map_count is 65530 by default
MAX_PAGES = 1 << 36  # 256 TiB of 4 KiB pages: beyond any process's populated pages
# What loading costs, measured (snapshot --load and diff of a 265,000-page snapshot,
# peak RSS less pagewalk's own), rounded up: the columns, their expansion, the page
# table made of them
LOAD_BYTES_PER_PAGE = {"npz": 96, "parquet": 256}
# What loads may allocate unless told otherwise: at most this, and at most half of
# the memory available here.  A snapshot's size says nothing of what it expands to
# (a few KB of run lengths can say a billion pages, and so can a genuine snapshot
# of a sparse process), so a genuine huge one needs the limit raised.
DEFAULT_LOAD_LIMIT = 2 << 30
LOAD_LIMIT_ENV = "PAGEWALK_LOAD_LIMIT"
_RAISE_IT = f"--max-load SIZE or {LOAD_LIMIT_ENV}=SIZE raises it"
MAX_NPY_HEADER = 64 << 10  # an .npy header pagewalk writes is about 100 bytes
_META_OBJECT_BYTES = 16  # Python objects made from each byte of JSON, at most about this
_MAPPING_BYTES = 512  # a Mapping with its ints and strings (its path counted apart)
_VPN_LIMIT = 1 << (64 - PAGE_SHIFT)  # page numbers of 64-bit addresses
_PERMS = ("r-", "w-", "x-", "ps")  # what each letter of a maps line's perms may be
_KINDS = {"b": "booleans", "i": "integers", "u": "unsigned integers", "U": "text"}
_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, IndexError, TypeError,
           NotImplementedError, RuntimeError, SyntaxError, RecursionError)


class _Check:
    """Everything a snapshot file is checked for, in the order it is read, so that
    a file that is not a snapshot pagewalk wrote is one :class:`BadSnapshot`, never
    an exception from deep inside, a wrong answer or a memory bomb:

    * the metadata: its size before it is parsed, its depth (RecursionError caught),
      the type of every key, the version an integer pagewalk knows;
    * the mappings: page-aligned, each ending after it starts, sorted, apart;
    * the page count: what every column must hold, no more than the mappings'
      pages, and (with the per-page cost) within the load's :class:`LoadBudget`;
    * each column before it is expanded: its ``.npy`` header's length before the
      header is read, its stored size from the header, its run
      lengths (1 or more) summing to the page count, page numbers that increase and
      stay in 64-bit address space;
    * the pages after: in address order, each inside a recorded mapping.
    """

    def __init__(self, path: str, budget: LoadBudget) -> None:
        self.path, self.budget = path, budget
        self.starts = self.ends = np.zeros(0, dtype=np.uint64)

    # -- what is said
    def bad(self, reason: str) -> BadSnapshot:
        return BadSnapshot(f"{self.path}: not a valid snapshot: {reason}")

    def damaged(self, detail: str) -> BadSnapshot:
        return self.bad(f"damaged or truncated ({detail})")

    def foreign(self, detail: str) -> BadSnapshot:
        return BadSnapshot(f"{self.path}: not a pagewalk snapshot ({detail})")

    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` about to be allocated against the load's budget."""
        self.budget.charge(nbytes, what, self.path)

    # -- the parts, as they are read
    def meta(self, text: str | bytes, form: str) -> dict:
        """The metadata from its JSON ``text``, every key checked."""
        if len(text) > MAX_META_BYTES:
            raise self.bad(f"its metadata is {len(text)} bytes, more than the {MAX_META_BYTES} pagewalk reads")
        self.charge(len(text) * _META_OBJECT_BYTES, "its metadata")
        try:
            meta = json.loads(text)
        except RecursionError:  # (the C parser's own depth limit) [[[[... 100,000 deep
            raise self.bad("its metadata nests too deeply") from None
        except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer of 5,000 digits
            raise self.bad(f"its metadata is not JSON ({_shown(str(exc))})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise self.foreign("no pagewalk metadata")
        version = meta.get("version")
        if type(version) is not int or version < 1:  # (True is an int to Python, not a version)
            raise self.bad(f"its format version is {_shown(version)}, not a version number "
                           f"(this pagewalk reads 1 to {VERSION})")
        if version > VERSION:
            raise BadSnapshot(f"{self.path}: written by a newer pagewalk (snapshot format version {version}; "
                              f"this one reads 1 to {VERSION}): upgrade pagewalk to read it")
        for key, required, ok, what in _META_KEYS:
            if key in meta:
                if not ok(meta[key]):
                    raise self.bad(f"its metadata's {key!r} is {_shown(meta[key])}, not {what}")
            elif required:
                raise self.bad(f"its metadata has no {key!r}")
        if meta["page_size"] != PAGE_SIZE:
            raise BadSnapshot(f"{self.path}: taken where pages are {meta['page_size']} bytes; here they are "
                              f"{PAGE_SIZE}, and pagewalk reads a snapshot only where its pages are the same size")
        if "live" in meta:  # (diff asks a live side's smaps) a file is never live
            raise self.bad("its metadata says 'live', which only a snapshot of a running process is")
        if form == "parquet" and not isinstance(meta.get("mappings"), list):
            raise self.bad("its metadata has no 'mappings' list")
        return meta

    def mappings(self, columns: dict) -> list[Mapping]:
        """The mappings from their columns (``start``, ``end``, ``offset``, ``inode``:
        uint64 arrays; ``perms``, ``dev``, ``path``: lists of str), checked."""
        n = len(columns["start"])
        if any(len(c) != n for c in columns.values()):
            raise self.bad("its mapping columns differ in length")
        if n > MAX_MAPPINGS:
            raise self.bad(f"it lists {n} mappings, more than the {MAX_MAPPINGS} pagewalk reads")
        starts, ends = columns["start"], columns["end"]
        if ((starts | ends) & np.uint64(PAGE_SIZE - 1)).any():
            raise self.bad("a mapping's start or end is not on a page boundary")
        if (ends <= starts).any():
            raise self.bad("a mapping ends where or before it starts")
        if (starts[1:] < ends[:-1]).any():
            raise self.bad("its mappings are out of address order or overlap")
        if not all(type(p) is str and len(p) == 4 and all(c in ok for c, ok in zip(p, _PERMS))
                   for p in columns["perms"]):
            raise self.bad("a mapping's permissions are not four letters as maps shows them (rwxp)")
        if not all(type(t) is str for name in ("dev", "path") for t in columns[name]):
            raise self.bad("a mapping's device or path is not text")
        self.starts, self.ends = starts, ends
        return [Mapping(*fields) for fields in zip(
            starts.tolist(), ends.tolist(), columns["perms"], columns["offset"].tolist(), columns["dev"],
            columns["inode"].tolist(), columns["path"])]

    def page_count(self, meta: dict, form: str, rows: int | None = None) -> int:
        """The pages every column must hold (``meta["pages"]``; ``rows``, the file's
        own count where it has one, must agree), checked against the mappings and
        the load's budget, before any column is read."""
        pages = meta["pages"]
        if rows is not None and rows != pages:
            raise self.bad(f"it holds {rows} pages, its metadata says {pages}")
        mapped = int(((self.ends - self.starts) >> np.uint64(PAGE_SHIFT)).sum())
        if pages > mapped:
            raise self.bad(f"its metadata says {pages} pages, more than its mappings span ({mapped})")
        if pages > MAX_PAGES:
            raise self.bad(f"it holds {pages} pages, more than the {MAX_PAGES} pagewalk reads")
        self.charge(pages * LOAD_BYTES_PER_PAGE[form], f"its {pages} pages")
        return pages

    def runs(self, name: str, values: np.ndarray, repeats: np.ndarray | None, pages: int) -> None:
        """A column stored as ``values`` each ``repeats`` times (None: once each),
        checked before it is expanded."""
        if repeats is None:
            if len(values) != pages:
                raise self.bad(f"its {name} column has {len(values)} pages, its metadata says {pages}")
        else:
            if len(repeats) != len(values):
                raise self.bad(f"its {name}_values and {name}_repeats differ in length")
            if len(repeats) and (repeats.min() < 1 or repeats.max() > pages):
                raise self.bad(f"{name}_repeats holds a run length that is not 1 to {pages}")
            # exact in uint64, and in float64 too, which cannot wrap round to the right total
            total = int(repeats.sum(dtype=np.uint64))
            if total != pages or abs(float(repeats.sum(dtype=np.float64)) - pages) > 1 + pages * 1e-9:
                raise self.bad(f"its {name} column's run lengths add up to {total} pages, its metadata says {pages}")
        if not len(values):
            return
        if name == "mapcount" and values.max() > np.iinfo(np.uint32).max:
            raise self.bad("its mapcount column holds counts beyond 32 bits")
        if name == "vpn_delta":
            # page numbers increase from the first (0 or more): each later delta is 1 or more
            # (the first run's too, if it repeats); their sum, the last page, is in 64-bit space
            first_repeats = 1 if repeats is None else int(repeats[0])
            if values.min() < 0 or values[1:].min(initial=1) < 1 or (values[0] < 1 and first_repeats > 1):
                raise self.bad("its page numbers are not in increasing order")
            counts = np.ones(len(values)) if repeats is None else repeats.astype(np.float64)
            if float(values.astype(np.float64) @ counts) >= _VPN_LIMIT:
                raise self.bad("its page numbers go beyond 64-bit addresses")

    def pages(self, vaddr: np.ndarray, *, ordered: bool = False) -> None:
        """The pages' addresses (uint64) after expansion: page-aligned, in increasing
        order (known already where ``ordered``: page numbers checked by :meth:`runs`),
        each inside a recorded mapping."""
        if not len(vaddr):
            return
        if not ordered and (vaddr & np.uint64(PAGE_SIZE - 1)).any():
            raise self.bad("a page's address is not on a page boundary")
        if not ordered and (vaddr[1:] <= vaddr[:-1]).any():
            raise self.bad("its pages are out of address order or repeat")
        # sorted and apart on both sides: the pages each mapping holds add up to all of
        # them exactly when none lies outside (no per-page index array)
        inside = np.searchsorted(vaddr, self.ends).astype(np.int64) - np.searchsorted(vaddr, self.starts)
        if int(inside.sum()) != len(vaddr):
            raise self.bad("a page lies in no recorded mapping")


def _is_int(v) -> bool:
    return type(v) is int


def _is_str(v) -> bool:
    return type(v) is str


def _is_bool(v) -> bool:
    return type(v) is bool


def _is_seconds(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _is_pairs(v) -> bool:
    return type(v) is list and len(v) <= MAX_MAPPINGS and all(
        type(r) is list and len(r) == 2 and all(type(x) is int and 0 <= x < 1 << 64 for x in r) for r in v)


_META_KEYS = (  # key, required, test, what it must be (the keys of version 1 are required)
    ("time", True, _is_str, "text"),
    ("unix_time", True, _is_seconds, "a number of seconds"),
    ("kernel", True, _is_str, "text"),
    ("page_size", True, lambda v: _is_int(v) and v > 0, "a number of bytes"),
    ("pid", True, lambda v: _is_int(v) and 0 < v < 1 << 32, "a process ID"),
    ("cmdline", True, lambda v: type(v) is list and all(map(_is_str, v)), "a list of text"),
    ("comm", True, _is_str, "text"),
    ("pfn_visible", True, _is_bool, "true or false"),
    ("frames", True, _is_bool, "true or false"),
    ("huge_known", True, _is_bool, "true or false"),
    ("pages", True, lambda v: _is_int(v) and v >= 0, "a number of pages"),
    ("zero_known", False, _is_bool, "true or false"),
    ("soft_dirty_known", False, _is_bool, "true or false"),
    ("soft_dirty_cleared", False, _is_bool, "true or false"),
    ("shmem_swap_unknown", False, _is_pairs, "a list of [start, end] addresses"),
)


def _detail(exc: BaseException) -> str:
    """An exception from reading a damaged file, for a message: its first line, short."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _shown(value) -> str:
    """A value from a file, for a message: short, whatever its size."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.1f} GiB"


def _size(nbytes: int) -> str:
    return _gib(nbytes) if nbytes >= 1 << 30 else f"{nbytes / (1 << 20):.1f} MiB"


class LoadBudget:
    """The memory snapshot loads may allocate between them, weighed before anything
    is made: one budget for every snapshot to be held at once (both sides of a
    ``diff``), not the whole amount again for each.

    ``limit_bytes`` is the most, when asked for (``source`` names who asked: it is
    said when a load is refused); None: the value of the environment variable
    ``PAGEWALK_LOAD_LIMIT`` if set (a size: ``4G``), else the default, the lesser of
    :data:`DEFAULT_LOAD_LIMIT` and half of the memory available here.  Never more
    than the memory available (``MemAvailable``) nor what is left under this
    process's own limits (``ulimit -v``, ``-d``): those are read at the first load."""

    def __init__(self, limit_bytes: int | None = None, source: str = "--max-load") -> None:
        if limit_bytes is None and os.environ.get(LOAD_LIMIT_ENV, "").strip():
            from .cli._common import parse_size
            from .errors import InvalidArgument

            try:
                limit_bytes, source = parse_size(os.environ[LOAD_LIMIT_ENV]), LOAD_LIMIT_ENV
            except InvalidArgument as exc:
                raise InvalidArgument(f"{LOAD_LIMIT_ENV}: {exc}") from None
        self.limit_bytes, self.source = limit_bytes, source
        self._left: int | None = None  # bytes the loads may still allocate,
        self._total, self._why = 0, ""  # of how many, and what sets that (for a message)
        self._paths: set[str] = set()  # the files loaded

    def charge(self, nbytes: int, what: str, path: str) -> None:
        """Count ``nbytes`` that loading ``path`` is about to allocate for ``what``
        ("its 1000 pages"); :class:`BadSnapshot` if they are more than is left."""
        if self._left is None:
            self._total, self._why = self._limit()
            self._left = self._total
        self._paths.add(path)
        if nbytes > self._left:
            # "left of" the total where other files took part of it, or where this
            # file's own metadata made the difference
            shared = len(self._paths) > 1 or nbytes <= self._total
            left = f"{_size(max(self._left, 0))} left of the " if shared else ""
            raise BadSnapshot(f"{path}: cannot load this snapshot here: {what} would need about {_size(nbytes)}, "
                              f"more than the {left}{_size(self._total)} {self._why}")
        self._left -= nbytes

    def _limit(self) -> tuple[int, str]:
        """The loads' total, and what sets it (words that follow the amount)."""
        import resource

        fields = {}
        for name in ("/proc/meminfo", "/proc/self/status"):
            with open(name) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if value.strip().endswith("kB"):
                        fields[key] = int(value.split()[0]) << 10
        # (MemAvailable is since Linux 3.14; free memory before it)
        available = fields.get("MemAvailable", fields.get("MemFree", 0))
        if self.limit_bytes is None:
            choices = [(DEFAULT_LOAD_LIMIT, f"snapshot loads may use by default ({_RAISE_IT})"),
                       (available // 2, f"snapshot loads may use by default here, half of the memory "
                                        f"available ({_RAISE_IT})")]
        else:
            choices = [(self.limit_bytes, f"that {self.source} allows"),
                       (available, "of memory available here (MemAvailable in /proc/meminfo)")]
        for res, used, what in ((resource.RLIMIT_AS, "VmSize", "address-space limit (ulimit -v)"),
                                (resource.RLIMIT_DATA, "VmData", "data limit (ulimit -d)")):
            soft = resource.getrlimit(res)[0]
            if soft != resource.RLIM_INFINITY:
                choices.append((soft - fields.get(used, 0), f"this process may still map under its {what}"))
        return min(choices, key=lambda c: c[0])


def _read_npz(f, check: _Check) -> Snapshot:
    """A snapshot from the open ``.npz`` file ``f`` (either version), checked as it is read."""
    with zipfile.ZipFile(f) as zf:
        z = _Members(zf, check)
        if "meta" not in z.infos:
            raise check.foreign("no metadata")
        meta = check.meta(z.read("meta", "U", scalar=True).item(), "npz")
        columns = {}
        for name in MAP_FIELDS:
            array = z.read(f"map_{name}", "U" if name in ("perms", "dev", "path") else "iu", most=MAX_MAPPINGS,
                           per_item=_MAPPING_BYTES // 4)
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

    def __init__(self, zf: zipfile.ZipFile, check: _Check) -> None:
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
                raise check.damaged(f"{name}'s header: {_detail(exc)}") from exc
            if dtype.hasobject or dtype.kind not in kinds or dtype.itemsize == 0:
                raise check.bad(f"its {name} holds {_shown(dtype.str)} values, not "
                                + " or ".join(_KINDS[k] for k in kinds))
            if scalar:
                if shape != ():
                    raise check.bad(f"its {name} is an array of shape {_shown(shape)}, not a single value")
                count = 1
                if dtype.itemsize > 4 * MAX_META_BYTES:
                    raise check.bad(f"its {name} is {dtype.itemsize} bytes, more than pagewalk reads")
            else:
                if len(shape) != 1:
                    raise check.bad(f"its {name} is an array of shape {_shown(shape)}, not a column")
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
