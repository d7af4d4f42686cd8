"""Working-set size over time: how much of a process's memory it really uses.

Each sample resets what the method tracks, waits one interval and counts the
pages touched meanwhile.  Methods (fs/proc/task_mmu.c ``clear_refs_write``,
mm/page_idle.c, mm/damon/):

* ``referenced``: ``clear_refs`` 1 clears the accessed bits, then smaps
  ``Referenced`` counts the pages accessed since.  ``clear_refs`` 1 alone does not
  flush the TLB, so 4 is written right after it (which only flushes, where
  soft-dirty is off, and clears soft-dirty bits where it is on).  Disturbs the
  target: reclaim sees its pages as not recently used.
* ``soft-dirty``: ``clear_refs`` 4, then pagemap bit 55: pages *written* since
  (reads are not seen).  Disturbs: every page is write-protected, its next write
  faults once.  Needs CONFIG_MEM_SOFT_DIRTY.
* ``idle``: the frames are marked idle in ``/sys/kernel/mm/page_idle/bitmap`` and
  read back; pages no longer idle were accessed.  Disturbs reclaim like
  ``referenced``.  Needs CONFIG_IDLE_PAGE_TRACKING and root.
* ``damon``: the kernel's DAMON monitoring of virtual addresses (see
  :mod:`pagewalk.kernel.damon`): a kdamond samples one page a region every 5 ms; the
  resident pages inside regions accessed during the interval are counted.
  Region-based, so approximate at region edges.  Disturbs: the sampled pages'
  accessed bits are cleared, and (re)creating the kdamond directories drops
  settings left in stopped kdamonds.  Needs CONFIG_DAMON_VADDR, root, and no
  kdamond running.

``auto`` takes the first of idle, referenced, soft-dirty, damon this kernel and
user have.

Whose access?  The accessed bit of a page table entry is this process's own, but
the kernel also keeps per-page (per-folio) flags that say "referenced" for every
process mapping the page (mm/damon/ops-common.c, mm/swap.c): ``PG_referenced``, set by read(2) and
by any process unmapping or exiting with the page young, and the page_idle
"young" flag, set when a kdamond (DAMON) or a page_idle reader clears some
mapper's accessed bit.  smaps ``Referenced`` counts a page when any of the three
says so, and so do the idle and DAMON methods.  So only pages whose flags nobody
else can have set are counted in the working set (:func:`attributable`); what the
method saw on the others is reported apart, as ``unattributed_bytes``, never added
in.  smaps gives ``Referenced`` per mapping only, so for ``referenced`` a
mapping's working set is what remains of its Referenced bytes after every page
that could have been marked by someone else is taken off: a lower bound, exact
when those pages are all marked (the usual case: shared libraries).  soft-dirty
bits are the process's own page table's, so nothing is unattributed (None).
"""

from __future__ import annotations

import os
import time
from collections import namedtuple
from collections.abc import Iterator

from ..core.process import Process
from ..errors import AccessDenied, Denied, Unsupported
from ..kernel import damon, probes
from ..kernel.damon import Monitor
from ..kernel.idle import IDLE_BITMAP, IdleMarker
from ..kernel.kpage import KPAGEFLAGS, KpageFile
from ..kernel.maps import mapping_index
from ..kernel.pagemap import PAGE_SIZE
from ..kernel.smaps import clear_refs, smaps_blocks
from .choices import METHODS

__all__ = [
    "METHODS", "DISTURBS", "Sample", "Cost", "interference", "unattributed_reason", "attributable",
    "why_unavailable", "choose", "Tracker", "open_tracker", "track"
]

# numpy (and core.flags, which imports it) only where used: doctor imports this module
DISTURBS = {
    "referenced": "clears the accessed bits of every page, and the referenced flags of the pages it shares with "
                  "other processes (reclaim then sees them as not recently used)",
    "soft-dirty": "write-protects every page (each page's next write faults once)",
    "idle": "clears the accessed bits of every page it marks idle (reclaim then sees them as not recently used)",
    "damon": "runs a kdamond that clears the accessed bits of the pages it samples, and recreates DAMON's "
             "sysfs kdamond directories (settings left in stopped kdamonds are lost)",
}

# time: seconds from the start of the first interval to the end of this one;
# unattributed_bytes: seen accessed, but maybe by another process (None: the method
# sees only this process's own accesses); mappings: [(label, start, wss_bytes, unattributed_bytes)]
Sample = namedtuple("Sample", "time wss_bytes unattributed_bytes rss_bytes mappings")
Cost = namedtuple("Cost", "seconds pages_scanned")
PAGE_IDLE_BITMAP = IDLE_BITMAP
UNATTRIBUTED_WHY = ("referenced pages whose flags other processes set too (pages they also map, file pages "
                    "they read or unmap): the kernel keeps those flags per page, not per process")


def interference() -> str | None:
    """What on this machine marks pages accessed for every process that maps them
    (see the module's docstring), named; None if nothing is found."""
    spreads = "copies any mapper's accessed bit into the page's young flag, which every mapper's smaps reports"
    found = []
    try:
        found += [f"kdamond {k} runs (thread {pid}, {ops} operations) and {spreads}" for k, pid, ops in damon.running()]
    except OSError as exc:
        found.append(f"whether a kdamond runs cannot be read ({(exc.strerror or str(exc)).lower()})")
    if os.path.exists(PAGE_IDLE_BITMAP):
        found.append(f"the page_idle bitmap exists: a tool reading it {spreads}")
    return "; ".join(found) or None


def unattributed_reason(pfn_visible: bool) -> str:
    """Why a sample's ``unattributed_bytes`` are not in its working set, with what
    on this machine causes them."""
    why = UNATTRIBUTED_WHY
    if not pfn_visible:
        why += "; without root, every file page (the flags cannot be read)"
    found = interference()
    return why + (f"; here, {found}" if found else "")


def attributable(table, *, idle_proves_no_young: bool):  # numpy bool array
    """Per page of ``table`` (a resident table; with kpageflags where PFNs are
    visible): whether an access the kernel reports for it can only be this
    process's.  Three sources mark a page accessed:

    * this process's page table entry (or huge-page PMD): its own;
    * ``PG_referenced`` (kpageflags REFERENCED), per folio: set by read(2) and by
      any mapper's unmap or exit, so its own only on an anonymous page only this
      process maps (reclaim sets it from this process's accessed bit) whose folio
      is that page or is mapped by one PMD here;
    * the folio's "young" flag (invisible from user space), set by a kdamond or a
      page_idle reader from any mapper's accessed bit of any page of the folio: its
      own only where the page is exclusive and the folio is that page (or one PMD
      here).  A kdamond sets PG_idle with it, so with ``idle_proves_no_young`` (no
      page_idle bitmap on this kernel, and a method that does not mark pages idle
      itself) a page without IDLE has no young flag.

    Without kpageflags only exclusive anonymous pages are known to be its own."""
    import numpy as np

    from ..core.flags import COMPOUND, bit

    exclusive = table.exclusive
    if table.kpageflags is None:
        return exclusive & ~table.file
    flags = table.kpageflags
    folio_is_page = (flags & np.uint64(COMPOUND)) == 0
    if table.huge is not None:
        folio_is_page = folio_is_page | table.huge  # PMD-mapped: one accessed bit for the folio
    own_folio = exclusive & folio_is_page
    referenced = (flags & np.uint64(bit("referenced"))) != 0
    ref_is_own = ~referenced | (own_folio & ~table.file)
    young_is_own = own_folio
    if idle_proves_no_young:
        young_is_own = young_is_own | ((flags & np.uint64(bit("idle_page"))) == 0)
    return ref_is_own & young_is_own


def why_unavailable(method: str, pid: int) -> str | None:
    """Why this kernel or user cannot use ``method`` (None: it can); a
    :class:`~pagewalk.errors.Denied` reason where a privilege is what is missing."""
    if method == "soft-dirty" and not probes.soft_dirty_supported():
        return "this kernel has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY is off)"
    if method == "idle":
        if not os.path.exists(IDLE_BITMAP):
            return f"this kernel has no idle page tracking ({IDLE_BITMAP}: CONFIG_IDLE_PAGE_TRACKING)"
        if not (os.access(IDLE_BITMAP, os.W_OK) and probes.pfn_visible()):
            return Denied("idle page tracking needs root (the bitmap and the frames are root's only)")
    if method == "damon":
        return damon.why_unavailable()
    if method in ("referenced", "soft-dirty") and not os.access(f"/proc/{pid}/clear_refs", os.W_OK):
        return Denied(f"/proc/{pid}/clear_refs is writable by the process owner only")
    if method != "soft-dirty" and not os.access(f"/proc/{pid}/pagemap", os.R_OK):
        # Every other method sees other processes' accesses too: without the page
        # table's exclusive bits none can be told apart, and the sum is no working set.
        return Denied(f"/proc/{pid}/pagemap is unreadable, so this process's own accesses cannot be told from "
                      "other processes'")
    return None


def choose(method: str, pid: int) -> str:
    """The method to use: ``method`` itself or, for ``auto``, the best available.
    Raises :class:`~pagewalk.errors.AccessDenied` if ``method`` needs a privilege this
    user lacks, :class:`~pagewalk.errors.Unsupported` if the kernel cannot (or, for
    ``auto``, if no method works), with the reasons."""
    if method != "auto":
        why = why_unavailable(method, pid)
        if why:
            message = f"wss --method {method}: {why}"
            raise AccessDenied(f"/proc/{pid}", msg=message) if isinstance(why, Denied) else Unsupported(message)
        return method
    reasons = []
    for candidate in ("idle", "referenced", "soft-dirty", "damon"):
        why = why_unavailable(candidate, pid)
        if why is None:
            return candidate
        reasons.append(f"{candidate}: {why}")
    raise Unsupported("no working-set method works here (" + "; ".join(reasons) + ")")


def _smaps(pid: int, field: str) -> list[tuple[str, int, int, int, int]]:
    """Per mapping: (label, start, end, Rss bytes, ``field`` bytes)."""
    return [(m.path or "[anon]", m.start, m.end, values.get("Rss", 0), values[field])
            for m, values in smaps_blocks(pid, frozenset(("Rss", field))) if field in values]


class Tracker:
    """Samples the working set of ``pid`` with one method."""

    def __init__(self, pid: int, method: str, interval: float = 1.0) -> None:
        self.pid = pid
        self.method = method
        self.process = Process(pid)
        self.cost = Cost(0.0, 0)
        self._marked = None
        self.damon = None
        # Each frame's flags say whose access a page's mark can be (attributable()).
        self.kpageflags = None
        if method != "soft-dirty" and self.process.pfn_visible:
            self.kpageflags = KpageFile(KPAGEFLAGS)
        if method == "damon":
            self.damon = Monitor(pid, interval)
            self._kdamond_cpu = self.damon.cpu_seconds()

    def wait(self, interval: float) -> None:
        """Let the interval pass (DAMON: until its aggregation interval ends)."""
        if self.damon is not None:
            self.damon.wait()
        else:
            time.sleep(interval)

    def _spend(self, t0: float, pages: int) -> None:
        self.cost = Cost(self.cost.seconds + time.monotonic() - t0, self.cost.pages_scanned + pages)

    def reset(self) -> None:
        """Start an interval: clear what the method tracks (accessed bits, soft-dirty
        bits, idle marks); raises :class:`~pagewalk.errors.ProcessGone` if the process exited."""
        t0 = time.monotonic()
        pages = 0
        if self.method == "referenced":
            clear_refs(self.pid, "14")  # 4 right after 1: the TLB flush 1 lacks (fs/proc/task_mmu.c, clear_refs_write)
        elif self.method == "soft-dirty":
            clear_refs(self.pid, "4")
        elif self.method == "idle":
            import numpy as np

            table = self.process.resident_table()
            pfns = table.pfn[table.resident]
            self._marked = (table.vaddr[table.resident], np.asarray(pfns, dtype=np.uint64))
            marker = IdleMarker()
            try:
                marker.mark(self._marked[1])
            finally:
                marker.close()
            pages = len(table)
        self._spend(t0, pages)

    def measure(self, elapsed: float) -> Sample:
        """The pages touched since :meth:`reset`, as a :class:`Sample` stamped ``elapsed``
        (seconds since the first interval began)."""
        t0 = time.monotonic()
        regions = None
        if self.damon is not None:
            import numpy as np

            regions = np.array(self.damon.regions(), dtype=np.uint64).reshape(-1, 3)
        if self.method == "referenced":
            sample, pages = self._measure_referenced(elapsed)
        else:
            sample, pages = self._measure_frames(elapsed, regions)
        self._spend(t0, pages)
        return sample

    def _measure_referenced(self, elapsed: float) -> tuple[Sample, int]:
        """smaps' Referenced bytes of each mapping, less every page whose flags another
        process may have set (a lower bound of its own; the rest is unattributed)."""
        import numpy as np

        rows = _smaps(self.pid, "Referenced")
        # Read after smaps: the flags that make a page unattributable stay set, so a
        # page counted there is still seen here.
        table = self.process.resident_table(kpageflags=self.kpageflags)
        foreign = table.resident & ~attributable(table, idle_proves_no_young=not os.path.exists(PAGE_IDLE_BITMAP))
        vaddr = table.vaddr[foreign]  # in address order
        starts = np.array([r[1] for r in rows], dtype=np.uint64)
        ends = np.array([r[2] for r in rows], dtype=np.uint64)
        others = (np.searchsorted(vaddr, ends) - np.searchsorted(vaddr, starts)) * PAGE_SIZE
        mappings = []
        for (label, start, _, _, referenced), other in zip(rows, others.tolist()):
            if referenced:
                own = max(0, referenced - other)
                mappings.append((label, start, own, referenced - own))
        sample = Sample(elapsed, sum(m[2] for m in mappings), sum(m[3] for m in mappings),
                        sum(r[3] for r in rows), mappings)
        return sample, len(table)

    def _measure_frames(self, elapsed: float, regions) -> tuple[Sample, int]:
        """Pages used in the interval, from the frames' state (soft-dirty, idle) or
        from DAMON's ``regions`` (start, end, nr_accesses)."""
        import numpy as np

        from ..core.tables import rss_rows  # (numpy: see the imports above)

        table = self.process.resident_table(kpageflags=self.kpageflags)
        maps = table.mappings
        resident = table.resident
        scanned = len(table)
        if regions is not None:  # resident pages inside regions accessed during the interval
            vaddr = table.vaddr[resident]
            accessed = regions[regions[:, 2] > 0]
            inside = np.searchsorted(accessed[:, 0], vaddr, side="right") - 1
            hit = (inside >= 0) & (vaddr < accessed[np.maximum(inside, 0), 1]) if len(accessed) else \
                np.zeros(len(vaddr), dtype=bool)
            used_vaddr = vaddr[hit]
            cpu = self.damon.cpu_seconds()
            self.cost = Cost(self.cost.seconds + cpu - self._kdamond_cpu, self.cost.pages_scanned)
            self._kdamond_cpu = cpu
            scanned = len(regions) * self.damon.samples_per_interval  # the pages the kdamond checked
        elif self.method == "soft-dirty":
            used_vaddr = table.vaddr[resident & table.soft_dirty]
        else:  # idle: marked frames whose idle bit the kernel cleared
            from ..kernel.idle import read_idle

            vaddr, pfns = self._marked
            used_vaddr = vaddr[~read_idle(pfns)]
        def per_mapping(vaddr) -> list[int]:  # bytes
            return (np.bincount(mapping_index(maps, vaddr), minlength=len(maps)) * PAGE_SIZE).tolist()

        if self.method == "soft-dirty":  # the process's own page table's bits: nothing to attribute
            own, other = per_mapping(used_vaddr), [None] * len(maps)
        else:  # a page is seen used when any mapper used it: split by whose it can be
            foreign_vaddr = table.vaddr[resident & ~attributable(table, idle_proves_no_young=False)]
            foreign = np.isin(used_vaddr, foreign_vaddr, assume_unique=True)
            own, other = per_mapping(used_vaddr[~foreign]), per_mapping(used_vaddr[foreign])
        mappings = [(m.label(), m.start, o, x) for m, o, x in zip(maps, own, other) if o or x]
        return Sample(elapsed, sum(own), None if self.method == "soft-dirty" else sum(other),
                      int(rss_rows(self.process.pid, table, maps).sum()) * PAGE_SIZE, mappings), scanned

    def samples(self, interval: float, count: int) -> Iterator[Sample]:
        """``count`` samples of ``interval`` seconds each, as they are taken (none kept
        here).  Each sample's time is the end of its interval, in seconds from the
        start of the first."""
        start = time.monotonic()
        for _ in range(count):
            self.reset()
            self.wait(interval)
            yield self.measure(round(time.monotonic() - start, 3))

    def close(self) -> None:
        """Stop the kdamond this tracker started, if any."""
        if self.damon is not None:
            self.damon.close()
        if self.kpageflags is not None:
            self.kpageflags.close()
        self.process.close()


def open_tracker(pid: int, method: str = "auto", interval: float = 1.0) -> Tracker:
    """A :class:`Tracker` of ``pid`` with ``method`` (``auto``: the best this kernel
    and user have); :meth:`Tracker.samples` then samples it.  Close it when done."""
    with Process(pid) as process:
        process.mappings()  # a missing process, a kernel thread or a zombie fails here, as in every command
    return Tracker(pid, choose(method, pid), interval)


def track(pid: int, method: str = "auto", interval: float = 1.0, count: int = 1, on_sample=None
          ) -> tuple[str, list[Sample], Cost]:
    """The working set of ``pid``: ``count`` samples of ``interval`` seconds each, by
    ``method`` (one of :data:`METHODS`, or ``auto``: the best this kernel and user have).
    ``on_sample(sample)`` is called as each sample is taken.

    Returns ``(method used, samples, cost)``: each :class:`Sample` has ``time``, the
    end of its interval in seconds from the start of the first, and ``wss_bytes``,
    ``unattributed_bytes`` and ``rss_bytes`` in bytes; :class:`Cost` is ``seconds``
    spent and ``pages_scanned``.  (Every sample is kept: for many, iterate
    :meth:`Tracker.samples` instead.)  Raises :class:`~pagewalk.errors.Unsupported`
    when ``method`` cannot run here (with the reason), and what
    :meth:`pagewalk.Process.mappings` raises for ``pid``."""
    tracker = open_tracker(pid, method, interval)
    samples: list[Sample] = []
    try:
        for sample in tracker.samples(interval, count):
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
    finally:
        tracker.close()
    return tracker.method, samples, tracker.cost
