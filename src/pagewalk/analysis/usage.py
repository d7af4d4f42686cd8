"""RSS, PSS, USS and swap per process: the kernel's own sums (smaps_rollup) where
they are exact (:func:`measure_one`, :func:`measure_rollups`), else from pagemap and
kpagecount, procrank's way (:func:`gather`), which the two agree on.

A present page that is not the zero page and not hugetlb adds a page to RSS;
with map count n it adds page_size / n to PSS (in smaps' fixed point, 12
fractional bits, so sums round as smaps_rollup's do) and to USS when n is 1.
Pages whose pagemap entry has the exclusive bit have map count 1 where the kernel keeps
per-page map counts (CONFIG_PAGE_MAPCOUNT; PM_MMAP_EXCLUSIVE in fs/proc/task_mmu.c), so only the others are
looked up in kpagecount (all of them on other kernels): once per
distinct frame for all processes together.  Swap counts real swap entries;
``swap_pss`` is the kernel's SwapPss (smaps_rollup), for processes with swap.

Without CAP_SYS_ADMIN frames are hidden and kpagecount is closed: PSS and USS
come from ``/proc/PID/smaps_rollup`` where it is readable (the caller's own
processes); elsewhere PSS is unknown (None) and USS counts the pages with the
exclusive bit, a lower bound (pages of a large folio that other processes map in
part lack the bit although mapped once).
"""

from __future__ import annotations

import functools
import pwd
from collections import namedtuple
from collections.abc import Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import numpy as np

from ..core.states import PSS_SHIFT, known_sum, pss_share, rss_pages_by_smaps, uss_page
from ..errors import NoSuchProcess, PagewalkError, ProcessGone
from ..kernel import config, probes, procfs
from ..kernel.maps import mapping_index
from ..kernel.pagemap import PAGE_SHIFT
from ..kernel.smaps import read_rollup, read_smaps, shmem_swap_pages
from .choices import GROUPINGS, SORT_FIELDS

__all__ = ["GROUPINGS", "SORT_FIELDS", "Usage", "Report", "measure_one", "measure_rollups", "measure", "gather",
           "Gathered"]



class Usage(namedtuple("Usage", "name processes rss pss uss swap swap_pss huge pid command user")):
    """Memory of one process or group, in bytes (None where unknown).  ``swap_pss``
    is swap shared out like PSS: pagemap gives no swap map counts, so it is the
    kernel's ``SwapPss`` from smaps_rollup, read only for processes with swap.
    ``huge`` is the part of ``rss`` mapped by transparent huge pages (smaps'
    ``AnonHugePages + ShmemPmdMapped + FilePmdMapped``); None where unknown (no
    PAGEMAP_SCAN)."""

    __slots__ = ()


class _Pages:
    """What one process contributes, per mapping label, before PSS is known."""

    def __init__(self, pid: int, command: str, user: str, cgroup: str, labels: list[str], rss: np.ndarray,
                 exclusive: np.ndarray, swap: np.ndarray, huge: np.ndarray | None, shared_pfns: np.ndarray | None,
                 shared_label: np.ndarray | None, rollup: dict[str, int] | None, swap_pss: int | None,
                 pages_read: int, shmem_records: list, shmem_unknown: int = 0,
                 shmem_note: str | None = None, changed: int = 0) -> None:
        self.pid, self.command, self.user, self.cgroup = pid, command, user, cgroup
        self.labels = labels  # per label index: rss, exclusive, swap and huge pages
        self.rss, self.exclusive, self.swap, self.huge = rss, exclusive, swap, huge
        self.pages_read = pages_read  # pagemap entries read
        self.shared_pfns, self.shared_label = shared_pfns, shared_label
        self.rollup = rollup  # smaps_rollup (bytes), read where frames are hidden
        self.swap_pss = swap_pss
        # shared memory in swap (pagewalk.kernel.shmem records): counted in ``swap`` as smaps
        # does, once per mapping; groups and totals count each object page once
        self.shmem_records = shmem_records
        self.shmem_pages = sum(r.pages for r in shmem_records)
        self.shmem_unknown = shmem_unknown  # shared-memory mappings whose swap could not be looked up
        self.shmem_note = shmem_note  # why
        self.changed = changed  # mappings that changed while the pages were read, after retries


class Report(namedtuple("Report", "by rows totals pfn_visible skipped notes changed source",
                        defaults=((), {}, "pagemap"))):
    """A :func:`measure`: ``by`` the grouping; ``rows``, one :class:`Usage` per process or
    group, sorted; ``totals`` a :class:`Usage` named ``total`` (shared memory in swap
    counted once); ``pfn_visible`` whether this reader saw PFNs (CAP_SYS_ADMIN), from
    whose map counts PSS and USS are worked out; ``skipped`` maps PID to why it was left out (gone, denied);
    ``notes`` say how shared memory in swap was counted, where that matters;
    ``changed`` maps PID to how many of its mappings changed while its pages were
    read (again and again: :meth:`pagewalk.Process.resident_table`), whose
    numbers mix the before and the after; ``source`` where the numbers come from:
    ``"pagemap"`` (every page, and kpagecount: :func:`gather`) or ``"smaps_rollup"``
    (the kernel's sums: :func:`measure_one`)."""

    __slots__ = ()


def measure_one(pid: int) -> Report:
    """Usage of one process from the kernel's own sums (``/proc/PID/smaps_rollup``,
    fs/proc/task_mmu.c ``show_smaps_rollup``), reading no page and importing no numpy:
    RSS (``Rss``), PSS (``Pss``), USS (``Private_Clean + Private_Dirty``: pages this
    process alone maps), swap (``Swap``: shared memory in swap included, as smaps
    charges it to each process mapping it), ``SwapPss``, and huge
    (``AnonHugePages + ShmemPmdMapped + FilePmdMapped``).  The kernel counts these as
    :func:`gather` does from pagemap and kpagecount (tests/test_usage.py compares the
    two), and where a reader cannot see frames these are still exact.

    Returns a :class:`Report` by process, in bytes.  Raises
    :class:`~pagewalk.errors.NoSuchProcess` (or its kind ``NoAddressSpace``) or
    :class:`~pagewalk.errors.AccessDenied` if the process cannot be read."""
    row = _rollup_row(pid)
    return Report("process", [row], _rollup_total([row]), probes.pfn_visible(), {}, source="smaps_rollup")


def measure_rollups(pids: Iterable[int], *, sort: str = "pss", explicit: bool = True,
                    progress=None) -> tuple[Report, dict[int, str]] | None:
    """Usage of several processes, one row each, from their smaps_rollup (as
    :func:`measure_one`), where those sums make exact totals too: when no process
    has swap.  smaps charges a shared-memory page in swap to every process mapping
    it, and only the page walk (:func:`gather`) can count such a page once in a
    total; a process without swap has none, and then the sums of the rows are the
    totals.  Returns ``(report, passed_over)`` (``passed_over``: {PID: why} of
    processes with no memory to read), or None where some process has swap (the
    caller walks the pages).  ``explicit``, ``progress`` and what it raises: as
    :func:`gather`."""
    def one(pid: int):
        try:
            return pid, _rollup_row(pid)
        except PagewalkError as exc:
            return pid, exc

    rows: list[Usage] = []
    skipped: dict[int, str] = {}
    passed_over: dict[int, str] = {}
    # In this thread: a rollup costs the kernel tens of microseconds a process (a
    # page-table walk), less than handing it to another thread (bench/HISTORY.md)
    for pid, got in map(one, dict.fromkeys(pids)):
        if isinstance(got, PagewalkError):
            if explicit:
                raise got
            (passed_over if isinstance(got, NoSuchProcess) else skipped)[pid] = str(got)
        elif got.swap:
            return None
        else:
            rows.append(got)
        if progress is not None:
            progress(1)
    rows.sort(key=lambda u: (-(getattr(u, sort) or 0), u.name))
    return Report("process", rows, _rollup_total(rows), probes.pfn_visible(), skipped, source="smaps_rollup"), \
        passed_over


def _rollup_row(pid: int) -> Usage:
    """One process's row from its smaps_rollup (:func:`measure_one` says which fields)."""
    from ..kernel.smaps import rollup

    sums = rollup(pid)
    command, user, _ = _identity(pid, cgroup=False)
    huge = sum(sums.get(k, 0) for k in ("AnonHugePages", "ShmemPmdMapped", "FilePmdMapped"))
    return Usage(str(pid), 1, sums["Rss"], sums["Pss"], sums.get("Private_Clean", 0) + sums.get("Private_Dirty", 0),
                 sums.get("Swap", 0), sums.get("SwapPss", 0), huge, pid, command, user)


def _rollup_total(rows: list[Usage]) -> Usage:
    """The total of rows from smaps_rollup (no shared memory in swap to count once)."""
    return Usage("total", len(rows), *(sum(getattr(u, f) for u in rows) for f in
                                       ("rss", "pss", "uss", "swap", "swap_pss", "huge")), None, None, None)


def measure(pids: Iterable[int], *, by: str = "process", sort: str = "pss", explicit: bool = True,
            progress=None) -> Report:
    """Usage of ``pids`` grouped ``by`` one of :data:`GROUPINGS`, sorted by one of
    :data:`SORT_FIELDS`, largest first (:func:`gather`, then :meth:`Gathered.report`).

    Returns a :class:`Report` whose amounts are in bytes.  Raises what :func:`gather`
    raises (:class:`~pagewalk.errors.NoSuchProcess`, :class:`~pagewalk.errors.AccessDenied`
    for an ``explicit`` PID that cannot be read)."""
    return gather(pids, explicit=explicit, progress=progress).report(by, sort)


def gather(pids: Iterable[int], *, explicit: bool = True, progress=None) -> Gathered:
    """Read the pages of ``pids`` and the map counts of their shared frames, once,
    for any number of groupings.

    ``explicit``: the PIDs were named by the user, so one that cannot be read is
    an error; otherwise (``--all``) kernel threads and processes that exit before
    they are read are passed over, and those that refuse are listed in
    ``skipped`` with the reason.  ``progress(1)`` is called after each process.
    Processes are read from a thread per CPU: the kernel's reads release the GIL.

    Raises :class:`~pagewalk.errors.NoSuchProcess` (or its kind
    :class:`~pagewalk.errors.NoAddressSpace`) or :class:`~pagewalk.errors.AccessDenied`
    for an ``explicit`` PID that cannot be read."""
    from ..core.process import Process  # (here: usage of one process needs neither)
    from ..parallel import ordered_map

    probes.reuse_freed_memory()
    visible = probes.pfn_visible()
    collected: list[_Pages] = []
    skipped: dict[int, str] = {}
    passed_over: dict[int, str] = {}
    shmem_cache: dict = {}  # runs of shared memory in swap, per object range: found once

    def one(pid: int):
        try:
            with Process(pid) as proc:
                return pid, _collect(proc, visible, shmem_cache)
        except PagewalkError as exc:
            return pid, exc

    pids = list(dict.fromkeys(pids))  # a PID named twice is one process: counted once, as shared counts it
    # threads pay off over many processes; one or two are read in this thread
    for pid, got in (ordered_map(one, pids) if len(pids) > 2 else map(one, pids)):
        if isinstance(got, NoSuchProcess):  # (NoAddressSpace and ProcessGone too)
            if explicit:
                raise got
            passed_over[pid] = str(got)
        elif isinstance(got, PagewalkError):
            if explicit:
                raise got
            skipped[pid] = str(got)
        else:
            collected.append(got)
        if progress is not None:
            progress(1)
    return Gathered(collected, visible, skipped, passed_over)


class Gathered:
    """One pass over processes, before grouping.  ``skipped``: {PID: why} of the
    processes that refused to be read; ``passed_over``: {PID: why} of those with no
    memory to read (gone, a kernel thread, a zombie)."""

    def __init__(self, collected: list[_Pages], visible: bool, skipped: dict[int, str],
                 passed_over: dict[int, str] | None = None) -> None:
        self.collected, self.pfn_visible, self.skipped = collected, visible, skipped
        self.passed_over = passed_over or {}
        self._pss, self._uss = _proportional(collected, visible)

    @property
    def pages_read(self) -> int:
        """Pagemap entries read in the pass."""
        return sum(p.pages_read for p in self.collected)

    def report(self, by: str = "process", sort: str = "pss") -> Report:
        """The usage grouped ``by`` process, user, command, mapping or cgroup, sorted
        by ``sort`` (largest first), with totals."""
        rows = _group(self.collected, self._pss, self._uss, by)
        rows.sort(key=lambda u: (-(getattr(u, sort) or 0), u.name))
        swap_once = _swap_once(self.collected)
        totals = Usage("total", sum(u.processes for u in rows) if by != "mapping" else len(self.collected),
                       sum(u.rss for u in rows), known_sum(u.pss for u in rows),
                       known_sum(u.uss for u in rows), swap_once << PAGE_SHIFT, known_sum(u.swap_pss for u in rows),
                       known_sum(u.huge for u in rows), None, None, None)
        changed = {p.pid: p.changed for p in self.collected if p.changed}
        return Report(by, rows, totals, self.pfn_visible, self.skipped, self._notes(by, rows, swap_once), changed)

    def _notes(self, by: str, rows: list[Usage], swap_once: int) -> list[str]:
        """How shared memory in swap was counted, where the reader would wonder."""
        notes = []
        if sum(u.swap for u in rows) != swap_once << PAGE_SHIFT:
            rows_are = "processes" if by in ("process", "mapping") else f"{by} groups"
            notes.append(f"shared memory in swap is charged to every {'mapping' if by == 'mapping' else 'process'} "
                         f"that maps it, as smaps does; the total counts each page once"
                         + (f", and so do the {rows_are}" if by in ("user", "command", "cgroup") else ""))
        unknown = [p for p in self.collected if p.shmem_unknown]
        if unknown:
            n = sum(p.shmem_unknown for p in unknown)
            notes.append(f"{unknown[0].shmem_note} (in {n} mapping(s) of {len(unknown)} process(es)): "
                         "counted from smaps' Swap, once per process mapping it, totals included")
        return notes


def _swap_once(collected: list[_Pages]) -> int:
    """Swap pages of several processes with each shared-memory object's page in
    swap counted once (smaps charges it to every mapping of the object)."""
    from ..kernel.shmem import unique_pages  # (the page walk's paths only, as below)

    total = sum(int(p.swap.sum()) - p.shmem_pages for p in collected)
    return total + unique_pages(r for p in collected for r in p.shmem_records)


def _collect(proc, visible: bool, shmem_cache: dict | None = None) -> _Pages:
    # numpy here, not at the top: the CLI imports this module to build usage's parser
    import numpy as np

    from ..core.tables import rss_rows, shmem_rows

    table = proc.resident_table()
    maps = table.mappings
    labels = sorted({m.label() for m in maps})
    label_of = {name: i for i, name in enumerate(labels)}
    map_index = mapping_index(maps, table.vaddr)
    map_label = np.array([label_of[m.label()] for m in maps], dtype=np.int64)
    label = map_label[map_index] if len(maps) else np.zeros(0, dtype=np.int64)
    resident = rss_rows(proc.pid, table, maps, map_index)
    n = len(labels)
    smaps = None  # the kernel's own per-mapping sums, read only where pagemap cannot tell
    if table.zero is None:  # no PFNs and no PAGEMAP_SCAN: the zero page is told apart by smaps' Rss
        smaps = _read_smaps(proc.pid)
        rss = np.zeros(n, dtype=np.int64)
        present = np.bincount(map_index[table.present], minlength=len(maps)).tolist()
        for m, p in zip(maps, present):
            block = smaps.get((m.start, m.end))
            rss[label_of[m.label()]] += rss_pages_by_smaps(None if block is None else block.get("Rss", 0), p)
    else:
        rss = np.bincount(label[resident], minlength=n)
    # Pages whose map count 1 is known from pagemap alone (PM_MMAP_EXCLUSIVE); as root the
    # others are read from kpagecount, unprivileged they are the USS lower bound's rest.
    once = table.exclusive if not visible or config.exclusive_means_mapped_once() else np.zeros(len(table), bool)
    exclusive = np.bincount(label[resident & once], minlength=n)
    swap = np.bincount(label[table.swapped], minlength=n)
    # shared memory in swap: no entry in pagemap (mm/shmem.c keeps it); one lookup per object
    # range for all processes (shmem_cache), counted where this process has no entry
    found = proc.shmem_swap(maps, cache=shmem_cache)
    records, _ = shmem_rows(table, found)
    shmem_records = []
    for i, record in records.items():
        m = maps[i]
        if record is not None:
            swap[label_of[m.label()]] += record.pages
            shmem_records.append(record)
            continue
        # not looked up: smaps' Swap less the swap entries the table holds
        smaps = smaps if smaps is not None else _read_smaps(proc.pid)
        inside = (table.vaddr >= np.uint64(m.start)) & (table.vaddr < np.uint64(m.end))
        swap[label_of[m.label()]] += shmem_swap_pages(smaps, m, int((table.swapped & inside).sum())) or 0
    huge = None if table.huge is None else np.bincount(label[resident & table.huge], minlength=n)
    shared = resident & ~once
    command, user, cgroup = _identity(proc.pid)
    rollup = None if visible else read_rollup(proc.pid)
    swap_pss = 0
    if swap.any():
        rollup = rollup or read_rollup(proc.pid)
        swap_pss = rollup.get("SwapPss") if rollup else None
    return _Pages(proc.pid, command, user, cgroup, labels, rss, exclusive, swap, huge,
                  table.pfn[shared] if visible else None, label[shared] if visible else None,
                  None if visible else rollup, swap_pss, len(table), shmem_records, len(found.why), found.note,
                  len(table.changed_mappings))


@functools.lru_cache(maxsize=256)
def _user_name(uid: int | None) -> str:
    """The name of ``uid`` (``?`` for None), looked up once: each lookup reads the
    passwd database, and 200 processes are mostly a few users."""
    try:
        return "?" if uid is None else pwd.getpwuid(uid).pw_name
    except KeyError:  # a UID without a name
        return str(uid)


def _read_smaps(pid: int) -> dict:
    """smaps' Rss and Swap per mapping; a process whose pagemap was just read but
    whose smaps cannot be read has exited."""
    blocks = read_smaps(pid, frozenset(("Rss", "Swap")))
    if blocks is None:
        raise ProcessGone(pid)
    return blocks


def _proportional(collected: list[_Pages], visible: bool) -> tuple[list, list]:
    """Per process, per label: PSS in fixed point and USS pages, from one kpagecount
    read of every distinct shared frame."""
    import numpy as np

    from ..kernel.kpage import KPAGECOUNT, KpageFile

    if not visible:
        return [None] * len(collected), [p.exclusive for p in collected]

    every = [p.shared_pfns for p in collected]
    with KpageFile(KPAGECOUNT) as f:
        counts = f.read(np.concatenate(every)) if every else np.zeros(0, dtype=np.uint64)
    pss_parts, uss_parts = [], []
    at = 0
    for p in collected:
        n = len(p.labels)
        c = counts[at : at + len(p.shared_pfns)].astype(np.int64)
        at += len(p.shared_pfns)
        c = np.maximum(c, 1)  # mapped meanwhile by nobody else: counts as its own
        share = np.bincount(p.shared_label, weights=pss_share(c), minlength=n).astype(np.int64)
        pss_parts.append(p.exclusive * pss_share(1) + share)
        uss_parts.append(p.exclusive + np.bincount(p.shared_label[uss_page(c)], minlength=n))
    return pss_parts, uss_parts


class _Group:
    """The sums of one group as :func:`_group` adds its processes: pages (PSS in
    smaps' fixed point), None where one member's value is unknown."""

    __slots__ = ("members", "processes", "rss", "pss", "uss", "swap", "swap_pss", "huge")

    def __init__(self) -> None:
        self.members: list[_Pages] = []  # the first names the group when it is one process
        self.processes = self.rss = self.uss = self.swap = 0
        self.pss: int | None = 0
        self.swap_pss: int | None = 0
        self.huge: int | None = 0

    def add(self, p: _Pages, rss: int, pss: int | None, uss: int, swap: int, swap_pss: int | None,
            huge: int | None) -> None:
        self.members.append(p)
        self.processes += 1
        self.rss += rss
        self.pss = None if self.pss is None or pss is None else self.pss + pss
        self.uss += uss
        self.swap += swap
        self.swap_pss = None if self.swap_pss is None or swap_pss is None else self.swap_pss + swap_pss
        self.huge = None if self.huge is None or huge is None else self.huge + huge

    def usage(self, name: str, single: bool) -> Usage:
        """The group in bytes; ``single`` (grouped by process) names its process."""
        first = self.members[0]
        return Usage(name, self.processes, self.rss << PAGE_SHIFT, None if self.pss is None else self.pss >> PSS_SHIFT,
                     self.uss << PAGE_SHIFT, self.swap << PAGE_SHIFT, self.swap_pss,
                     None if self.huge is None else self.huge << PAGE_SHIFT,
                     first.pid if single else None, first.command if single else None,
                     first.user if single else None)


def _group(collected: list[_Pages], pss_parts: list, uss_parts: list, by: str) -> list[Usage]:
    groups: dict[str, _Group] = {}

    def add(key: str, *sums) -> None:
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group()
        g.add(*sums)

    for p, pss, uss in zip(collected, pss_parts, uss_parts):
        if by == "mapping":
            for i, name in enumerate(p.labels):
                if p.rss[i] or p.swap[i]:
                    add(name, p, int(p.rss[i]), None if pss is None else int(pss[i]), int(uss[i]), int(p.swap[i]),
                        0 if not p.swap[i] else None,  # SwapPss exists per process only
                        None if p.huge is None else int(p.huge[i]))
            continue
        uss_total = int(uss.sum())
        if pss is not None:
            pss_total = int(pss.sum())
        elif p.rollup is not None:  # the kernel's own numbers, exact, where readable
            pss_total = p.rollup["Pss"] << PSS_SHIFT
            uss_total = (p.rollup["Private_Clean"] + p.rollup["Private_Dirty"]) >> PAGE_SHIFT
        else:
            pss_total = None
        key = {"process": str(p.pid), "user": p.user, "command": p.command, "cgroup": p.cgroup}[by]
        add(key, p, int(p.rss.sum()), pss_total, uss_total, int(p.swap.sum()), p.swap_pss,
            None if p.huge is None else int(p.huge.sum()))
    if by in ("user", "command", "cgroup"):  # a group's swap counts each shared-memory page once
        for g in groups.values():
            g.swap = _swap_once(g.members)
    single = by == "process"
    return [g.usage(name, single) for name, g in groups.items()]


def _identity(pid: int, cgroup: bool = True) -> tuple[str, str, str]:
    """Command name, user name and memory cgroup of a process (``?`` without ``cgroup``)."""
    command = procfs.command_name(pid)
    user = _user_name(procfs.owner_uid(pid))
    if not cgroup:
        return command, user, "?"
    cgroup = "?"
    for entry in procfs.read_cgroup(pid):
        if "memory" in entry.controllers:
            cgroup = entry.path
            break
        if not entry.controllers:
            cgroup = entry.path  # cgroup v2 (kept unless a v1 memory line follows)
    return command, user, cgroup
