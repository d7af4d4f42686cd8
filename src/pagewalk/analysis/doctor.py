"""What this kernel and this user can see, and what each gap costs.

Every check asks the kernel directly (opening the file, calling the ioctl) rather
than inferring from the version number.  Used by ``pagewalk doctor``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..kernel import probes, procfs, scan
from ..kernel.idle import IDLE_BITMAP
from ..kernel.maps import vma_page_size
from ..kernel.pagemap import PAGE_SIZE, PagemapFile

__all__ = ["Check", "run_checks"]


@dataclass
class Check:
    """One capability: ``ok`` says whether it is there; ``value`` what was found;
    ``cost`` what its absence costs the user (empty when present)."""

    name: str
    ok: bool
    value: str
    cost: str = ""

    def as_dict(self) -> dict[str, object]:
        """The check as ``doctor --json`` prints it."""
        return {"name": self.name, "ok": self.ok, "value": self.value, "cost": self.cost}


def run_checks() -> list[Check]:
    """What this kernel and user allow pagewalk, one :class:`Check` each (never raises
    for a missing feature: that is a check that is not ok)."""
    checks: list[Check] = [Check("kernel", True, probes.kernel_release()), Check("page size", True, f"{PAGE_SIZE} bytes")]

    visible = probes.pfn_visible()
    checks.append(Check("physical frame numbers", visible, "visible (CAP_SYS_ADMIN)" if visible else "hidden",
                        "" if visible else "PFNs, physical addresses and swap offsets show as unknown; v2p gives "
                        "no physical address; swap and migration entries cannot be told apart by type"))

    ok, how = probes.readable("/proc/self/pagemap")
    checks.append(Check("/proc/PID/pagemap", ok, how, "" if ok else "nothing works: pagemap is the source of every count"))

    if ok:  # (PAGEMAP_SCAN is asked of an open pagemap)
        with PagemapFile(os.getpid()) as own:
            cats = scan.categories_supported(own.fd)
        names = [name for bit, name in scan.CATEGORY_NAMES.items() if cats & bit]
        checks.append(Check("PAGEMAP_SCAN ioctl", bool(cats),
                            " ".join(names) if cats else "absent (kernel before 6.7)",
                            "" if cats else "maps shows huge pages as unknown and, without PFNs, zero pages too; "
                            "scans read every entry instead of skipping untouched ranges"))
    else:
        checks.append(Check("PAGEMAP_SCAN ioctl", False, "unknown: pagemap cannot be opened to ask", ""))

    for path, cost in (("/proc/kpageflags", "no per-frame flags: the physical-side commands (types, who, file flags) cannot run"),
                       ("/proc/kpagecount", "no map counts: PSS falls back to smaps_rollup, USS to the exclusive bit"),
                       ("/proc/kpagecgroup", "no memory-cgroup grouping or filtering")):
        ok, how = probes.readable(path)
        checks.append(Check(path, ok, how, "" if ok else cost + " (run as root)"))

    sd = probes.soft_dirty_supported()
    checks.append(Check("soft-dirty bits", sd, "CONFIG_MEM_SOFT_DIRTY on" if sd else "not built in",
                        "" if sd else "soft_dirty is unknown (- or null) everywhere; wss --method soft-dirty "
                                      "and diff's 'written' are unavailable"))

    idle = os.path.exists(IDLE_BITMAP)
    checks.append(Check("idle page tracking", idle, "present" if idle else f"no {IDLE_BITMAP}",
                        "" if idle else "wss --method idle and types -i are unavailable"))

    thp = probes.bracketed_choice("/sys/kernel/mm/transparent_hugepage/enabled")
    checks.append(Check("transparent huge pages", thp not in (None, "never"), thp or "absent",
                        "" if thp not in (None, "never") else "no THP: huge counts only hugetlb"))

    swaps = procfs.swap_devices()
    checks.append(Check("swap devices", bool(swaps), f"{len(swaps)} active" if swaps else "none",
                        "" if swaps else "nothing can be swapped out: swapped counts are 0 by fact, not by blindness"))

    from ..kernel.shmem import why_unavailable as shmem_gap

    gap = shmem_gap()
    checks.append(Check("swapped shared memory (cachestat, map_files)", gap is None,
                        "cachestat(2) and /proc/PID/map_files work" if gap is None else gap,
                        "" if gap is None else "swapped shared memory is counted from smaps only, or unknown"))

    ok, how = probes.uffd_wp_async()
    checks.append(Check("userfaultfd write-protect (async)", ok, how,
                        "" if ok else "no uffd-wp markers to report; PAGEMAP_SCAN written-page tracking unavailable"))

    ok = vma_page_size(os.getpid(), id(checks) & ~(PAGE_SIZE - 1)) is not None
    checks.append(Check("PROCMAP_QUERY ioctl", ok, "present" if ok else "absent (kernel before 6.11)",
                        "" if ok else "hugetlb mappings are recognised by name only"))

    from ..kernel.damon import why_unavailable

    why = why_unavailable()
    checks.append(Check("DAMON virtual-address monitoring", why is None, "available" if why is None else why,
                        "" if why is None else "wss --method damon is unavailable"))

    from .wss import interference

    found = interference()  # what marks pages accessed for every process mapping them
    checks.append(Check("undisturbed accessed bits", found is None, found or "no kdamond runs, no page_idle bitmap",
                        "" if found is None else "wss cannot attribute referenced pages other processes may have "
                        "marked (shared with them, or file pages): it reports them apart, as unattributed"))

    from importlib.util import find_spec  # whether installed, without importing it

    for extra, module, package, commands in (("pictures", "matplotlib", "matplotlib", "picture -o FILE.png/.svg"),
                                              ("exporter", "prometheus_client", "prometheus-client", "exporter"),
                                              ("parquet", "pyarrow", "pyarrow", "snapshot -o FILE.parquet")):
        ok = find_spec(module) is not None
        checks.append(Check(f"extra pagewalk[{extra}]", ok, f"{package} installed" if ok else f"no {package}",
                            "" if ok else f"{commands} unavailable: pip install 'pagewalk[{extra}]'"))
    return checks
