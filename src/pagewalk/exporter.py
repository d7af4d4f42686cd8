"""Prometheus metrics of process memory (extra ``pagewalk[exporter]``).

The work is done on an interval, in the exporter's own loop: one :func:`usage.gather`
pass over the processes gives every per-process and per-cgroup number.  A scrape
only serialises the last pass's result, so it never waits for a pass (except for the
very first one, at most ``scrape_budget`` seconds); a process that is gone is simply
absent from the next result, so its series end with it.

Metrics (bytes unless named otherwise):

* ``pagewalk_process_{rss,pss,uss,swap,huge}_bytes{pid,command,user}``
* ``pagewalk_cgroup_{rss,pss,uss,swap}_bytes{cgroup}`` (memory cgroup path)
* ``pagewalk_scan_duration_seconds``: how long the last pass took;
  ``pagewalk_scan_pages_total``: pagemap entries read, a counter;
  ``pagewalk_scan_timestamp_seconds``: when the last pass ended (Unix time);
  ``pagewalk_scan_processes`` and ``pagewalk_scan_skipped_processes``: read and
  left out (denied) in the last pass; ``pagewalk_scan_failures_total``.

A value pagewalk cannot know (PSS of another user's process without root) has no
sample, rather than a 0.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import namedtuple

from .extras import require
from .names import printable, unicode_text

PROCESS_FIELDS = ("rss", "pss", "uss", "swap", "huge")
CGROUP_FIELDS = ("rss", "pss", "uss", "swap")

Result = namedtuple("Result", "processes cgroups duration_s ended skipped")


def _prometheus():
    client = require("prometheus_client", "exporter", "prometheus-client")
    core = require("prometheus_client.core", "exporter", "prometheus-client")
    return client, core.GaugeMetricFamily, core.CounterMetricFamily


class MemoryCollector:
    """A prometheus-client collector serving the last pass over ``pids`` (None: all)."""

    def __init__(self, pids: list[int] | None = None, scrape_budget: float = 1.0) -> None:
        _, self._gauge, self._counter = _prometheus()
        self.pids = pids
        self.scrape_budget = scrape_budget
        self.result: Result | None = None
        self.pages_total = 0
        self.failures = 0
        self._first = threading.Event()

    def scan(self) -> None:
        """One pass; its result replaces the served one."""
        from .usage import all_pids, gather

        t0 = time.monotonic()
        try:
            gathered = gather(self.pids if self.pids is not None else all_pids(), explicit=False)
        except Exception:
            self.failures += 1
            self._first.set()  # a scrape waits for the first attempt only, whatever its outcome
            raise
        self.pages_total += gathered.pages_read
        self.result = Result(gathered.report("process").rows, gathered.report("cgroup").rows,
                             time.monotonic() - t0, time.time(), len(gathered.skipped))
        self._first.set()

    def run(self, interval: float, stop: threading.Event) -> None:
        """Scan every ``interval`` seconds (start to start) until ``stop`` is set; a
        failed pass is reported on stderr and the last result kept."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.scan()
            except Exception as exc:  # keep serving: an exporter must outlive one bad pass
                sys.stderr.write(f"pagewalk: warning: a scan failed ({type(exc).__name__}: {printable(str(exc))}); "
                                 f"serving the previous result\n")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def collect(self):
        """prometheus-client's collector protocol: the metric families, from the last result."""
        if self.result is None:
            self._first.wait(self.scrape_budget)
        result = self.result
        gauge, counter = self._gauge, self._counter
        yield counter("pagewalk_scan_pages", "pagemap entries read by the exporter's scans", value=self.pages_total)
        yield counter("pagewalk_scan_failures", "scans that failed", value=self.failures)
        if result is None:
            return
        yield gauge("pagewalk_scan_duration_seconds", "how long the last scan took", value=result.duration_s)
        yield gauge("pagewalk_scan_timestamp_seconds", "when the last scan ended (Unix time)", value=result.ended)
        yield gauge("pagewalk_scan_processes", "processes read by the last scan", value=len(result.processes))
        yield gauge("pagewalk_scan_skipped_processes", "processes the last scan could not read (denied)",
                    value=result.skipped)
        for field in PROCESS_FIELDS:
            family = gauge(f"pagewalk_process_{field}_bytes", f"{field.upper()} of a process, in bytes",
                           labels=("pid", "command", "user"))
            for u in result.processes:
                value = getattr(u, field)
                if value is not None:
                    # label values exact (the client escapes them); bytes that are not UTF-8 as \xNN
                    family.add_metric((str(u.pid), unicode_text(u.command), unicode_text(u.user)), value)
            yield family
        for field in CGROUP_FIELDS:
            family = gauge(f"pagewalk_cgroup_{field}_bytes", f"{field.upper()} of a memory cgroup, in bytes",
                           labels=("cgroup",))
            for u in result.cgroups:
                value = getattr(u, field)
                if value is not None:
                    family.add_metric((unicode_text(u.name),), value)
            yield family


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; an empty host means loopback) to (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen wants HOST:PORT (for example 127.0.0.1:9105), not {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "127.0.0.1", int(port)


def serve(listen: tuple[str, int], pids: list[int] | None, interval: float, scrape_budget: float,
          stop: threading.Event, on_ready=None) -> None:
    """Serve ``/metrics`` on ``listen`` and scan every ``interval`` seconds until ``stop``."""
    prometheus_client, _, _ = _prometheus()
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    collector = MemoryCollector(pids, scrape_budget)
    registry.register(collector)
    server, _ = prometheus_client.start_http_server(listen[1], addr=listen[0], registry=registry)
    try:
        if on_ready is not None:
            on_ready(server.server_address)
        collector.run(interval, stop)
    finally:
        server.shutdown()
        server.server_close()
