"""Snapshots: a process's mappings and the state of every populated page, in a file.

Two file forms: a NumPy ``.npz`` archive, readable with nothing but numpy (the
default; see :mod:`pagewalk.analysis.npz` for its members), and Parquet, one row per page with every
bit decoded, for data tools (extra ``pagewalk[parquet]``; see :mod:`pagewalk.analysis.parquet`).
:meth:`Snapshot.load` reads either.

A file to be read may come from anywhere: :meth:`Snapshot.load` never unpickles
(no ``np.load``, no object arrays), opens it only if it is a regular file
(:func:`pagewalk.kernel.infile.open_regular`), checks every part as it reads it (:class:`Check`:
the metadata's keys and types, the mappings, each size against the metadata's page
count and the mappings before anything that size is made, the memory loads may use:
:class:`LoadBudget`), reads each zip member to its end so that its CRC-32 is checked, and for
Parquet compares the checksum pagewalk stores of the metadata and the columns it
reads back (see :func:`pagewalk.analysis.parquet.checksum`).  Whatever is wrong is one
:class:`BadSnapshot`.

Files are written by :func:`pagewalk.kernel.outfile.write_private` (mode 0600: they hold
physical addresses): a regular file through a temporary file in the same directory,
renamed into place so that a reader never sees half a file; a device, a FIFO or
standard output as a stream.
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from ..core.pagetable import PageTable
from ..core.states import empty_entry
from ..errors import MissingExtra, Unsupported
from ..kernel import config, probes, procfs
from ..kernel.infile import NotRegularFile, open_regular
from ..kernel.kpage import KPAGECOUNT, KPAGEFLAGS, KpageFile
from ..kernel.maps import Mapping, mapping_index
from ..kernel.outfile import write_private
from ..kernel.pagemap import PAGE_SHIFT, PAGE_SIZE, PM_PFRAME_MASK
from ..kernel.smaps import clear_refs
from ..names import unicode_text
from . import npz, parquet
from .snapshot_check import DAMAGE_ERRORS, FORMAT, VERSION, BadSnapshot, Check, LoadBudget, detail

__all__ = ["Snapshot"]

class Snapshot:
    """One process's page table state at one moment (see the module doc for the file).

    ``meta``: the file's metadata (``pid``, ``time``, ``kernel``, ``page_size`` in bytes,
    ``pages`` recorded ...); ``mappings``: the :class:`Mapping` list as read for the walk;
    per recorded page, in address order: ``raw`` (the pagemap entry, uint64), ``zero``
    and ``huge`` (bool), ``kpageflags`` (uint64) and ``mapcount`` (uint32) where frames
    were visible, else None; ``notes``: what a reader should know about the file."""

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
    def runs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(first, pages)``: the first address (bytes) and length (pages) of each run of
        consecutive recorded pages, where the addresses are kept as runs; else None."""
        return self._runs if self._vaddr is None else None

    @property
    def pid(self) -> int:
        """The PID of the process recorded."""
        return self.meta["pid"]

    def table(self) -> PageTable:
        """The recorded pages as a page table (explicit ``vaddr``; one, kept)."""
        if self._table is None:
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
        already (the CLI reads it while numpy imports).

        Returns a :class:`Snapshot`.  Raises :class:`Unsupported` for
        ``clear_soft_dirty`` on a kernel without soft-dirty bits (CONFIG_MEM_SOFT_DIRTY),
        :class:`ProcessGone` if the process exits during the walk, and what
        :meth:`pagewalk.Process.resident_table` raises."""
        if clear_soft_dirty and not probes.soft_dirty_supported():
            raise Unsupported("cannot track written pages: this kernel has no soft-dirty bits "
                              "(CONFIG_MEM_SOFT_DIRTY is off)")

        pid = process.pid
        visible = process.pfn_visible
        frames = probes.frames_readable(counts=True)
        if not frames:
            table = process.resident_table(resident=resident, shmem_swap=True)
            kflags = mapcount = None
        else:
            with KpageFile(KPAGEFLAGS) as f:
                table = process.resident_table(kpageflags=f, resident=resident, shmem_swap=True)
            kflags = table.kpageflags
            present = table.present
            # The exclusive bit (PM_MMAP_EXCLUSIVE) already says "map count 1", except on a
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
            clear_refs(pid, "4")
            meta["soft_dirty_cleared"] = True
        zero = table.zero if table.zero is not None else np.zeros(len(table), dtype=bool)
        huge = table.huge if table.huge is not None else np.zeros(len(table), dtype=bool)
        # (the table's arrays are its own: no copies of a million entries; addresses
        # stay runs until asked for)
        return cls(meta, maps, None if table.runs is not None else table.vaddr.astype(np.uint64, copy=False), table.raw,
                   zero.astype(bool, copy=False), huge.astype(bool, copy=False), kflags, mapcount, runs=table.runs)

    # -- the file ------------------------------------------------------------------
    def save(self, path: str, file_format: str | None = None, force: bool = False) -> int:
        """Write the snapshot to ``path`` as :func:`pagewalk.kernel.outfile.write_private` does
        (a file atomically, mode 0600; ``force`` as there).  ``file_format`` is ``npz``
        (the default) or ``parquet`` (needs pyarrow: see :mod:`pagewalk.analysis.parquet`); None
        picks ``parquet`` for a ``.parquet`` name.

        Returns the bytes written.  Raises ValueError for another ``file_format``,
        :class:`MissingExtra` for parquet without pyarrow, and what
        :func:`~pagewalk.kernel.outfile.write_private` raises."""
        if file_format is None:
            file_format = "parquet" if path.endswith(".parquet") else "npz"
        if file_format == "parquet":
            parquet.require_pyarrow()  # a missing extra is said before any file is made
            return write_private(path, lambda f: parquet.write(self, f), force)
        if file_format != "npz":
            raise ValueError(f"unknown snapshot format {file_format!r}")
        return write_private(path, lambda f: npz.write(self, f), force)

    @classmethod
    def load(cls, path: str, *, budget: LoadBudget | None = None) -> Snapshot:
        """Read a snapshot; :class:`BadSnapshot` (one line) for anything that is not one
        this pagewalk can read: a truncated, damaged, foreign or hostile file, a newer
        format version, or one too large for ``budget``, the memory it may use (checked
        before anything of that size is made: see :class:`Check`).  Give snapshots
        that are to be held at once one budget (``diff`` does); None: a budget of
        this load's own (:class:`LoadBudget`).  Returns a :class:`Snapshot`; raises
        :class:`MissingExtra` for a Parquet file without pyarrow."""
        check = Check(path, LoadBudget() if budget is None else budget)
        try:
            # what the path names is looked at before it is opened: a FIFO would wait
            # for a writer, a device never end (or do something when opened)
            with open_regular(path) as f:
                snap = parquet.read(f, path, check, cls) if parquet.is_parquet(f) else npz.read(f, check, cls)
        except NotRegularFile as exc:
            raise BadSnapshot(f"{path}: not a snapshot file ({exc.kind}, not a regular file: "
                              "save it to one first)") from None
        except FileNotFoundError:
            raise BadSnapshot(f"no such snapshot file: {path}") from None
        except PermissionError:
            raise BadSnapshot(f"cannot read {path}: permission denied") from None
        except (BadSnapshot, MissingExtra, Unsupported):
            raise
        except MemoryError:  # (pyarrow's ArrowMemoryError too) the checks' estimate fell short
            raise BadSnapshot(f"{path}: cannot load this snapshot here: out of memory") from None
        except DAMAGE_ERRORS as exc:  # what the checks did not see first (a bad CRC, a cut zip) is damage
            raise check.damaged(detail(exc)) from exc
        return snap

    def summary(self) -> dict:
        """Per-mapping counts of what was recorded (for ``snapshot --load``): a dict with
        ``meta`` (the file's metadata) and ``mappings``, one dict per mapping with its
        ``start``/``end`` (bytes) and ``pages``, ``present``, ``zero``, ``swapped`` (pages;
        None where not known)."""
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

