"""The kernel's DAMON, driven through its sysfs interface to monitor one process.

``/sys/kernel/mm/damon/admin/kdamonds`` (kernel ABI ``sysfs-kernel-mm-damon``,
admin guide ``mm/damon/usage``).  A kdamond with one context of ``vaddr``
operations targets the process; a scheme with the ``stat`` action and an
access pattern that matches everything makes the kernel list its regions, each
with ``nr_accesses``: in how many of the aggregation interval's samples the
region's sampled page had been accessed.  With the aggregation interval set to
pagewalk's interval, writing ``update_schemes_tried_regions`` to ``state`` waits
for the end of the next interval and lists the regions as they were over it.
Approximate by design: each region is judged by one sampled page per sample, and
before the listing DAMON merges neighbours whose counts differ little (averaged by
size), so a lightly used region can read as unused and the other way round.

The directories are shared by every DAMON user on the machine, and writing
``nr_kdamonds`` recreates all of them (the kernel refuses while one runs).  So
pagewalk takes DAMON only when no kdamond runs, adds its own, and puts the count
back when it is done; settings left in stopped kdamonds are lost, which
``--help`` says.
"""

from __future__ import annotations

import errno
import os
import time
from collections import namedtuple

from ..errors import AccessDenied, Denied, PagewalkError, Unsupported
from .procfs import proc_stat
from .u64file import U64_MAX

__all__ = ["ROOT", "Kdamond", "DamonRegion", "parse_region", "running", "why_unavailable", "Monitor"]

ROOT = "/sys/kernel/mm/damon/admin/kdamonds"
SAMPLE_US = 5000  # DAMON's default sampling interval
MIN_REGIONS, MAX_REGIONS = 200, 10000  # finer than the defaults (10, 1000): page counts, not trends
UINT_MAX = (1 << 32) - 1


class Kdamond(namedtuple("Kdamond", "index pid operations")):
    """A running kdamond: its directory's ``index`` under ``kdamonds/``, its thread's
    ``pid`` and its first context's ``operations`` (``vaddr``, ``paddr`` ...), as the
    files say them (``?`` where unreadable)."""

    __slots__ = ()


class DamonRegion(namedtuple("DamonRegion", "start end nr_accesses")):
    """One of a scheme's ``tried_regions``: addresses ``[start, end)`` in bytes, and in
    how many samples of the aggregation interval it was found accessed."""

    __slots__ = ()


def parse_region(start: str, end: str, nr_accesses: str) -> DamonRegion:
    """Decode the ``start``, ``end`` and ``nr_accesses`` files of a tried region
    (decimal text, mm/damon/sysfs-schemes.c).  Raises ValueError on other text."""
    return DamonRegion(int(start), int(end), int(nr_accesses))


def _read(path: str) -> str:
    """A sysfs file's text, stripped.  Raises OSError."""
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: object, tries: int = 50) -> None:
    """Write, retrying while DAMON's sysfs lock is held elsewhere: every store
    takes it with a trylock and fails with EBUSY meanwhile (another DAMON user, a
    blocked ``update_schemes_tried_regions``)."""
    for attempt in range(tries):
        try:
            with open(path, "w") as f:
                f.write(str(value))
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == tries - 1:
                raise
            time.sleep(0.01)


def _kdamonds() -> list[str]:
    return sorted((d for d in os.listdir(ROOT) if d.isdigit()), key=int)


def running() -> list[Kdamond]:
    """Every kdamond that runs; empty where DAMON's sysfs interface is absent.
    Raises OSError where it cannot be read."""
    if not os.path.isdir(ROOT):
        return []
    out = []
    for k in _kdamonds():
        if _read(f"{ROOT}/{k}/state") == "on":
            out.append(Kdamond(k, _read_or_none(f"{ROOT}/{k}/pid") or "?",
                        _read_or_none(f"{ROOT}/{k}/contexts/0/operations") or "?"))
    return out


def why_unavailable() -> str | None:
    """Why DAMON cannot monitor a process here (None: it can)."""
    if not os.path.isdir(ROOT):
        return "this kernel has no DAMON sysfs interface (CONFIG_DAMON_SYSFS)"
    if not os.access(f"{ROOT}/nr_kdamonds", os.W_OK):
        return Denied("driving DAMON needs root")
    try:
        kdamonds = running()
        running_ids = [k for k, _, _ in kdamonds]
        ops = _available_operations(running_ids)
    except OSError as exc:
        return f"cannot use DAMON's sysfs interface: {exc.strerror or exc}"
    if ops is not None and "vaddr" not in ops:
        return (f"this kernel's DAMON cannot monitor virtual addresses (operations: {' '.join(ops) or 'none'}; "
                f"CONFIG_DAMON_VADDR)")
    if kdamonds:
        k, pid, _ = kdamonds[0]
        return (f"DAMON is in use: kdamond {k} runs (thread {pid}), and the kernel lets no kdamond be "
                f"added while one runs; pagewalk does not take over someone else's")
    return None


def _available_operations(running: list[str]) -> list[str] | None:
    """The operation sets this kernel's DAMON offers, read from an existing context;
    None where no context exists and none may be made (a kdamond runs)."""
    for k in _kdamonds():
        for c in os.listdir(f"{ROOT}/{k}/contexts"):
            if c.isdigit():
                return _read(f"{ROOT}/{k}/contexts/{c}/avail_operations").split()
    if running:
        return None
    # No context anywhere: make one to ask, then put the count back.
    before = int(_read(f"{ROOT}/nr_kdamonds"))
    _write(f"{ROOT}/nr_kdamonds", before + 1)
    try:
        _write(f"{ROOT}/{before}/contexts/nr_contexts", 1)
        return _read(f"{ROOT}/{before}/contexts/0/avail_operations").split()
    finally:
        _write(f"{ROOT}/nr_kdamonds", before)


class Monitor:
    """A kdamond of pagewalk's own watching ``pid``, one aggregation an interval."""

    def __init__(self, pid: int, interval_s: float) -> None:
        why = why_unavailable()
        if why:
            raise AccessDenied(f"{ROOT}/nr_kdamonds", msg=why) if isinstance(why, Denied) else Unsupported(why)
        self.before = int(_read(f"{ROOT}/nr_kdamonds"))
        self.dir = f"{ROOT}/{self.before}"
        self.samples_per_interval = max(1, round(interval_s * 1e6 / SAMPLE_US))
        try:
            _write(f"{ROOT}/nr_kdamonds", self.before + 1)
            ctx = f"{self.dir}/contexts/0"
            _write(f"{self.dir}/contexts/nr_contexts", 1)
            _write(f"{ctx}/operations", "vaddr")
            attrs = f"{ctx}/monitoring_attrs"
            _write(f"{attrs}/intervals/sample_us", SAMPLE_US)
            _write(f"{attrs}/intervals/aggr_us", self.samples_per_interval * SAMPLE_US)
            # The regions follow new mappings only at each update (60 s by default): every interval.
            _write(f"{attrs}/intervals/update_us", self.samples_per_interval * SAMPLE_US)
            _write(f"{attrs}/nr_regions/min", MIN_REGIONS)
            _write(f"{attrs}/nr_regions/max", MAX_REGIONS)
            _write(f"{ctx}/targets/nr_targets", 1)
            _write(f"{ctx}/targets/0/pid_target", pid)
            _write(f"{ctx}/schemes/nr_schemes", 1)
            scheme = f"{ctx}/schemes/0"
            _write(f"{scheme}/action", "stat")
            for name, top in (("sz", U64_MAX), ("nr_accesses", UINT_MAX), ("age", UINT_MAX)):
                _write(f"{scheme}/access_pattern/{name}/min", 0)
                _write(f"{scheme}/access_pattern/{name}/max", top)
            _write(f"{self.dir}/state", "on")
            self.kdamond_pid = int(_read(f"{self.dir}/pid"))
        except OSError as exc:
            self.close()
            raise PagewalkError(f"DAMON refused pagewalk's kdamond: {exc.strerror or exc}") from None
        except BaseException:  # Ctrl-C or SIGTERM mid-setup: no kdamond left running
            self.close()
            raise
        self._cpu = 0.0
        self._cpu = self.cpu_seconds()

    def wait(self) -> None:
        """Wait for the end of the current interval and have its regions listed (the
        kernel applies the scheme once an aggregation interval)."""
        try:
            _write(f"{self.dir}/state", "update_schemes_tried_regions")
        except OSError as exc:
            state = _read_or_none(f"{self.dir}/state")
            if state != "on":  # the kdamond stops when its target exits
                raise PagewalkError("DAMON stopped monitoring: the process exited") from None
            raise PagewalkError(f"DAMON did not list its regions: {exc.strerror or exc}") from None

    def regions(self) -> list[DamonRegion]:
        """Every region over the interval that :meth:`wait` waited for, in the
        kernel's order.  Raises OSError (and ValueError) as the files do."""
        base = f"{self.dir}/contexts/0/schemes/0/tried_regions"
        return [parse_region(_read(f"{base}/{r}/start"), _read(f"{base}/{r}/end"), _read(f"{base}/{r}/nr_accesses"))
                for r in sorted((d for d in os.listdir(base) if d.isdigit()), key=int)]

    def cpu_seconds(self) -> float:
        """CPU time the kdamond thread has used (utime + stime); the last value read
        once the thread is gone.  (Its PID is the host's: inside another PID
        namespace it cannot be found, and this stays 0.)"""
        stat = proc_stat(getattr(self, "kdamond_pid", -1))
        if stat is not None:
            self._cpu = (stat.utime_ticks + stat.stime_ticks) / os.sysconf("SC_CLK_TCK")
        return self._cpu

    def close(self) -> None:
        """Stop the kdamond and give the directories back as they were counted
        (their settings come back as the kernel's defaults)."""
        try:
            if _read(f"{self.dir}/state") == "on":
                _write(f"{self.dir}/state", "off")  # synchronous: the thread is stopped on return
        except OSError:
            pass
        try:
            _write(f"{ROOT}/nr_kdamonds", self.before)
        except OSError:
            pass


def _read_or_none(path: str) -> str | None:
    try:
        return _read(path)
    except OSError:
        return None
