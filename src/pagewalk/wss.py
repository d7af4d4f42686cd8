"""Working-set size over time: how much of a process's memory it really uses.

Each sample resets what the method tracks, waits one interval and counts the
pages touched meanwhile.  Methods (kernel.md 6):

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
  :mod:`pagewalk.damon`): a kdamond samples one page a region every 5 ms; the
  resident pages inside regions accessed during the interval are counted.
  Region-based, so approximate at region edges.  Disturbs: the sampled pages'
  accessed bits are cleared, and (re)creating the kdamond directories drops
  settings left in stopped kdamonds.  Needs CONFIG_DAMON_VADDR, root, and no
  kdamond running.

``auto`` takes the first of idle, referenced, soft-dirty, damon this kernel and
user have.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple

from . import system
from .errors import Unsupported, translating
from .maps import parse_line
from .pagemap import PAGE_SIZE

METHODS = ("referenced", "soft-dirty", "idle", "damon")
DISTURBS = {
    "referenced": "clears the accessed bits of every page (reclaim then sees them as not recently used)",
    "soft-dirty": "write-protects every page (each page's next write faults once)",
    "idle": "clears the accessed bits of every page it marks idle (reclaim then sees them as not recently used)",
    "damon": "runs a kdamond that clears the accessed bits of the pages it samples, and recreates DAMON's "
             "sysfs kdamond directories (settings left in stopped kdamonds are lost)",
}

Sample = namedtuple("Sample", "time wss_bytes rss_bytes mappings")  # mappings: [(label, start, wss_bytes)]
Cost = namedtuple("Cost", "seconds pages_scanned")


def why_unavailable(method: str, pid: int) -> str | None:
    """Why this kernel or user cannot use ``method`` (None: it can)."""
    if method == "soft-dirty" and not system.soft_dirty_supported():
        return "this kernel has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY is off)"
    if method == "idle":
        if not os.path.exists("/sys/kernel/mm/page_idle/bitmap"):
            return "this kernel has no idle page tracking (/sys/kernel/mm/page_idle/bitmap: CONFIG_IDLE_PAGE_TRACKING)"
        if not (os.access("/sys/kernel/mm/page_idle/bitmap", os.W_OK) and system.pfn_visible()):
            return "idle page tracking needs root (the bitmap and the frames are root's only)"
    if method == "damon":
        from . import damon

        return damon.why_unavailable()
    if method in ("referenced", "soft-dirty") and not os.access(f"/proc/{pid}/clear_refs", os.W_OK):
        return f"/proc/{pid}/clear_refs is writable by the process owner only"
    return None


def choose(method: str, pid: int) -> str:
    """The method to use: ``method`` itself (Unsupported with the reason if it cannot
    run here) or, for ``auto``, the best available."""
    if method != "auto":
        why = why_unavailable(method, pid)
        if why:
            raise Unsupported(f"wss --method {method}: {why}")
        return method
    reasons = []
    for candidate in ("idle", "referenced", "soft-dirty", "damon"):
        why = why_unavailable(candidate, pid)
        if why is None:
            return candidate
        reasons.append(f"{candidate}: {why}")
    raise Unsupported("no working-set method works here (" + "; ".join(reasons) + ")")


def _clear_refs(pid: int, values: str) -> None:
    path = f"/proc/{pid}/clear_refs"
    with translating(pid, path, started=True):
        for value in values:
            with open(path, "w") as f:
                f.write(value)


def _smaps(pid: int, field: str) -> list[tuple[str, int, int, int]]:
    """Per mapping: (label, start, Rss bytes, ``field`` bytes)."""
    path = f"/proc/{pid}/smaps"
    out = []
    with translating(pid, path, started=True), open(path, "rb") as f:
        label, start, rss = "", 0, 0
        for line in f:
            head = line.split(None, 1)[0]
            if head.endswith(b":"):
                if head == b"Rss:":
                    rss = int(line.split()[1]) * 1024
                elif head == field.encode() + b":":
                    out.append((label, start, rss, int(line.split()[1]) * 1024))
            else:
                m = parse_line(os.fsdecode(line))  # the path as maps gives it, its own whitespace kept
                start, label = m.start, m.path or "[anon]"
    return out


class Tracker:
    """Samples the working set of ``pid`` with one method."""

    def __init__(self, pid: int, method: str, interval: float = 1.0) -> None:
        from .process import Process

        self.pid = pid
        self.method = method
        self.process = Process(pid)
        self.cost = Cost(0.0, 0)
        self._marked = None
        self.damon = None
        if method == "damon":
            from .damon import Monitor

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
        t0 = time.monotonic()
        pages = 0
        if self.method == "referenced":
            _clear_refs(self.pid, "14")  # 4 right after 1: the TLB flush 1 lacks (kernel.md 6.1)
        elif self.method == "soft-dirty":
            _clear_refs(self.pid, "4")
        elif self.method == "idle":
            import numpy as np

            from .pagetypes import IdleMarker

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
        t0 = time.monotonic()
        regions = None
        if self.damon is not None:
            import numpy as np

            regions = np.array(self.damon.regions(), dtype=np.uint64).reshape(-1, 3)
        if self.method == "referenced":
            rows = _smaps(self.pid, "Referenced")
            sample = Sample(elapsed, sum(r[3] for r in rows), sum(r[2] for r in rows),
                            [(label, start, ref) for label, start, _, ref in rows if ref])
            pages = sample.rss_bytes // PAGE_SIZE
        else:
            sample, pages = self._measure_frames(elapsed, regions)
        self._spend(t0, pages)
        return sample

    def _measure_frames(self, elapsed: float, regions) -> tuple[Sample, int]:
        """Pages used in the interval, from the frames' state (soft-dirty, idle) or
        from DAMON's ``regions`` (start, end, nr_accesses)."""
        import numpy as np

        from .maps import mapping_index

        maps = self.process.mappings()
        table = self.process.resident_table(maps)
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
            vaddr, pfns = self._marked
            words = pfns >> np.uint64(6)
            fd = os.open("/sys/kernel/mm/page_idle/bitmap", os.O_RDONLY)
            try:
                lo = int(words.min()) if len(words) else 0
                hi = int(words.max()) + 1 if len(words) else 0
                data = np.frombuffer(os.pread(fd, (hi - lo) * 8, lo * 8), dtype=np.uint64) if hi > lo else \
                    np.zeros(0, dtype=np.uint64)
            finally:
                os.close(fd)
            idle = (data[(words - np.uint64(lo)).astype(np.int64)] >> (pfns & np.uint64(63))) & np.uint64(1)
            used_vaddr = vaddr[idle == 0]
        per = np.bincount(mapping_index(maps, used_vaddr), minlength=len(maps))
        mappings = [(maps[i].label(), maps[i].start, int(n) * PAGE_SIZE) for i, n in enumerate(per.tolist()) if n]
        return Sample(elapsed, int(len(used_vaddr)) * PAGE_SIZE, int(resident.sum()) * PAGE_SIZE, mappings), scanned

    def close(self) -> None:
        if self.damon is not None:
            self.damon.close()
        self.process.close()


def track(pid: int, method: str = "auto", interval: float = 1.0, count: int = 1, on_sample=None
          ) -> tuple[str, list[Sample], Cost]:
    """``count`` samples of ``interval`` seconds each; returns (method used, samples, cost)."""
    chosen = choose(method, pid)
    tracker = Tracker(pid, chosen, interval)
    samples: list[Sample] = []
    first = None
    try:
        for _ in range(count):
            tracker.reset()
            tracker.wait(interval)
            now = time.monotonic()
            first = now if first is None else first
            sample = tracker.measure(round(now - first, 3))
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
    finally:
        tracker.close()
    return chosen, samples, tracker.cost
