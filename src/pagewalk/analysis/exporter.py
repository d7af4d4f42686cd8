"""Prometheus metrics of process memory (extra ``pagewalk[exporter]``).

The work is done on an interval, in the exporter's own loop: one :func:`usage.gather`
pass over the processes gives every per-process and per-cgroup number.  A scrape
only serialises the last pass's result, so it never waits for a pass (except for the
very first one, at most ``scrape_budget`` seconds); a process that is gone is simply
absent from the next result, so its series end with it.

Metrics (bytes unless named otherwise):

* ``pagewalk_process_{rss,pss,uss,swap,huge}_bytes{pid,command,user}``
* ``pagewalk_cgroup_{rss,pss,uss,swap}_bytes{cgroup}`` (memory cgroup path)
* with ``ram``: ``pagewalk_ram_bytes{use}``, every frame of RAM by use, and
  ``pagewalk_ram_cgroup_bytes{cgroup,use}`` as ``pagewalk ram --by cgroup`` counts
  them (``cgroup`` "" for frames charged to none); ``pagewalk_ram_scan_duration_seconds``:
  what that walk cost in the last scan (about 0.5 s on 24 GiB)
* ``pagewalk_scan_duration_seconds``: how long the last pass took;
  ``pagewalk_scan_pages_total``: pagemap entries read, a counter;
  ``pagewalk_scan_timestamp_seconds``: when the last pass ended (Unix time);
  ``pagewalk_scan_processes`` and ``pagewalk_scan_skipped_processes``: read and
  left out (denied) in the last pass; ``pagewalk_scan_failures_total``.

A value pagewalk cannot know (PSS of another user's process without root) has no
sample, rather than a 0.

:mod:`pagewalk.output.metrics_server` serves them.
"""

from __future__ import annotations

import threading
import time
from collections import namedtuple

from ..errors import PagewalkError
from ..extras import require
from ..names import unicode_text

__all__ = ["CGROUP_FIELDS", "PROCESS_FIELDS", "MemoryCollector", "Result"]

PROCESS_FIELDS = ("rss", "pss", "uss", "swap", "huge")
CGROUP_FIELDS = ("rss", "pss", "uss", "swap")
FIELD_WORDS = {"rss": "Resident memory (RSS)", "pss": "Proportional set size (PSS: shared pages divided among "
               "their mappers)", "uss": "Unique set size (USS: pages mapped by this process alone)",
               "swap": "Memory in swap",
               "huge": "Memory in huge pages (transparent, shared memory and file)"}

# processes, cgroups: usage.Usage rows; duration_s: the pass's length (seconds);
# ended: its end (Unix time); skipped: processes it could not read; ram: the frames'
# walk (analysis.ram.RamReport) where asked
Result = namedtuple("Result", "processes cgroups duration_s ended skipped ram", defaults=(None,))


def _prometheus():
    """prometheus_client and its gauge and counter families; raises
    :class:`pagewalk.errors.MissingExtra` without the ``exporter`` extra."""
    client = require("prometheus_client", "exporter", "prometheus-client")
    core = require("prometheus_client.core", "exporter", "prometheus-client")
    return client, core.GaugeMetricFamily, core.CounterMetricFamily


class MemoryCollector:
    """A prometheus-client collector serving the last pass over ``pids`` (None: all;
    a PID given twice is read once, as :func:`usage.gather` reads it)."""

    def __init__(self, pids: list[int] | None = None, ram: bool = False) -> None:
        _, self._gauge, self._counter = _prometheus()
        self.pids = None if pids is None else list(pids)
        self.ram = ram
        self.ram_failures = 0
        self.result: Result | None = None
        self.pages_total = 0
        self.failures = 0
        self.generation = 0  # counts the passes, failed or not: what collect() yields changes only with it
        self.scanned = threading.Event()  # set once the first pass is over, whatever its outcome
        self.on_scan = None  # called after each pass (the server's wake-up)

    def scan(self) -> None:
        """One pass; its result replaces the served one."""
        from ..kernel.procfs import all_pids
        from .usage import gather

        t0 = time.monotonic()
        try:
            gathered = gather(self.pids if self.pids is not None else all_pids(), explicit=False)
        except Exception:
            self.failures += 1
            self._scanned()  # a scrape waits for the first attempt only, whatever its outcome
            raise
        self.pages_total += gathered.pages_read
        ram = None
        if self.ram:
            try:
                ram = self._walk_ram()
            except PagewalkError:  # the processes' series stand; the frames' are absent this scan
                self.ram_failures += 1
        self.result = Result(gathered.report("process").rows, gathered.report("cgroup").rows,
                             time.monotonic() - t0, time.time(), len(gathered.skipped), ram)
        self._scanned()

    @staticmethod
    def _walk_ram():
        import os

        from .ram import walk_ram

        return walk_ram(by_cgroup=os.path.exists("/proc/kpagecgroup"), cgroup_stats=False)

    def _scanned(self) -> None:
        self.generation += 1
        self.scanned.set()
        if self.on_scan is not None:
            self.on_scan()

    def run(self, interval: float, stop: threading.Event, on_failure) -> None:
        """Scan every ``interval`` seconds (start to start) until ``stop`` is set; a
        failed pass is given to ``on_failure(exception)`` and the last result kept."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.scan()
            except Exception as exc:  # keep serving: an exporter must outlive one bad pass
                on_failure(exc)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def collect(self):
        """prometheus-client's collector protocol: the metric families, from the last result
        (none before the first pass: the server waits for it, not this)."""
        result = self.result
        gauge, counter = self._gauge, self._counter
        yield counter("pagewalk_scan_pages", "Pagemap entries the exporter's scans have read, in entries (one a "
                      "page).", value=self.pages_total)
        yield counter("pagewalk_scan_failures", "Scans that failed.", value=self.failures)
        if self.ram:
            yield counter("pagewalk_ram_scan_failures", "Walks of every frame (--ram) that failed.",
                          value=self.ram_failures)
        if result is None:
            return
        yield gauge("pagewalk_scan_duration_seconds", "How long the last scan took, in seconds.",
                    value=result.duration_s)
        yield gauge("pagewalk_scan_timestamp_seconds", "When the last scan ended, in seconds since the Unix epoch.",
                    value=result.ended)
        yield gauge("pagewalk_scan_processes", "Processes the last scan read.", value=len(result.processes))
        yield gauge("pagewalk_scan_skipped_processes", "Processes the last scan could not read (access denied).",
                    value=result.skipped)
        for field in PROCESS_FIELDS:
            family = gauge(f"pagewalk_process_{field}_bytes", f"{FIELD_WORDS[field]} of a process, in bytes.",
                           labels=("pid", "command", "user"))
            for u in result.processes:
                value = getattr(u, field)
                if value is not None:
                    # label values exact (the client escapes them); bytes that are not UTF-8 as \xNN
                    family.add_metric((str(u.pid), unicode_text(u.command), unicode_text(u.user)), value)
            yield family
        for field in CGROUP_FIELDS:
            family = gauge(f"pagewalk_cgroup_{field}_bytes",
                           f"{FIELD_WORDS[field]} of the processes of a memory cgroup, in bytes.",
                           labels=("cgroup",))
            for u in result.cgroups:
                value = getattr(u, field)
                if value is not None:
                    family.add_metric((unicode_text(u.name),), value)
            yield family
        if result.ram is not None and result.ram.uses is not None:
            yield from self._ram_families(result.ram)

    def _ram_families(self, ram):
        from ..kernel.pagemap import PAGE_SIZE

        gauge = self._gauge
        yield gauge("pagewalk_ram_scan_duration_seconds", "How long the last scan's walk of every frame took, in "
                    "seconds.", value=ram.seconds)
        family = gauge("pagewalk_ram_bytes", "Physical memory in one use (every frame of RAM counted once), in "
                       "bytes.", labels=("use",))
        for use, frames in ram.uses.items():
            family.add_metric((use,), frames * PAGE_SIZE)
        yield family
        if ram.cgroups is not None:
            family = gauge("pagewalk_ram_cgroup_bytes", "Physical memory charged to a memory cgroup, by use, in "
                           "bytes (cgroup \"\": charged to none).", labels=("cgroup", "use"))
            for c in ram.cgroups:
                for use, frames in c.uses.items():
                    if frames:
                        family.add_metric(("" if c.path is None else unicode_text(c.path), use), frames * PAGE_SIZE)
            yield family
