"""The checks every snapshot file passes as it is loaded, whatever its form (npz or
Parquet), and the memory budget loads share: a file may come from anyone, so each
size it states is weighed before anything of that size is made."""

from __future__ import annotations

import json
import math
import os
import resource
import zipfile
import zlib

import numpy as np

from ..errors import InvalidArgument, PagewalkError
from ..kernel.maps import Mapping
from ..kernel.pagemap import PAGE_SHIFT, PAGE_SIZE
from ..kernel.procfs import read_meminfo, read_status
from ..units import parse_size

__all__ = [
    "FORMAT", "VERSION", "MAP_FIELDS", "BadSnapshot", "MAX_META_BYTES", "MAX_MAPPINGS", "MAX_NPY_HEADER",
    "MAPPING_BYTES", "KINDS", "DAMAGE_ERRORS", "Check", "detail", "shown", "LoadBudget"
]

FORMAT = "pagewalk-snapshot"


VERSION = 2
MAP_FIELDS = ("start", "end", "perms", "offset", "dev", "inode", "path")


class BadSnapshot(PagewalkError):
    """A file that is not a snapshot this pagewalk can read."""


MAX_META_BYTES = 128 << 20  # the metadata's JSON (cmdline; in Parquet also the maps list)


MAX_MAPPINGS = 1 << 22  # vm.max_map_count is 65530 by default


MAX_PAGES = 1 << 36  # 256 TiB of 4 KiB pages: beyond any process's populated pages


# What loading costs per page (bytes, peak RSS measured, rounded up): the columns,
# their expansion, the page table made of them
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


MAPPING_BYTES = 512  # a Mapping with its ints and strings (its path counted apart)


_VPN_LIMIT = 1 << (64 - PAGE_SHIFT)  # page numbers of 64-bit addresses


_PERMS = ("r-", "w-", "x-", "ps")  # what each letter of a maps line's perms may be


KINDS = {"b": "booleans", "i": "integers", "u": "unsigned integers", "U": "text"}


DAMAGE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, IndexError, TypeError,
           NotImplementedError, RuntimeError, SyntaxError, RecursionError)


class Check:
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
        """The error (to raise) for a file that is not a valid snapshot: ``reason`` says why."""
        return BadSnapshot(f"{self.path}: not a valid snapshot: {reason}")

    def damaged(self, detail: str) -> BadSnapshot:
        """The error (to raise) for a damaged or truncated file."""
        return self.bad(f"damaged or truncated ({detail})")

    def foreign(self, detail: str) -> BadSnapshot:
        """The error (to raise) for a file that is not a pagewalk snapshot at all."""
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
            raise self.bad(f"its metadata is not JSON ({shown(str(exc))})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise self.foreign("no pagewalk metadata")
        version = meta.get("version")
        if type(version) is not int or version < 1:  # (True is an int to Python, not a version)
            raise self.bad(f"its format version is {shown(version)}, not a version number "
                           f"(this pagewalk reads 1 to {VERSION})")
        if version > VERSION:
            raise BadSnapshot(f"{self.path}: written by a newer pagewalk (snapshot format version {version}; "
                              f"this one reads 1 to {VERSION}): upgrade pagewalk to read it")
        for key, required, ok, what in _META_KEYS:
            if key in meta:
                if not ok(meta[key]):
                    raise self.bad(f"its metadata's {key!r} is {shown(meta[key])}, not {what}")
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


def detail(exc: BaseException) -> str:
    """An exception from reading a damaged file, for a message: its first line, short."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def shown(value) -> str:
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
        meminfo, status = read_meminfo(), read_status("self")
        # (MemAvailable is since Linux 3.14; free memory before it)
        available = meminfo.available_bytes if meminfo.available_bytes is not None else meminfo.free_bytes or 0
        used_bytes = {"VmSize": status and status.vm_size_bytes, "VmData": status and status.vm_data_bytes}
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
                choices.append((soft - (used_bytes[used] or 0), f"this process may still map under its {what}"))
        return min(choices, key=lambda c: c[0])
