"""pagewalk: where every page of a Linux process lives.

pagewalk reads the kernel's own interfaces (``/proc/PID/maps``, ``/proc/PID/pagemap``
and its PAGEMAP_SCAN ioctl, ``/proc/kpageflags``, ``/proc/kpagecount``,
``/proc/kpagecgroup``) and decodes them exactly.  Everything a library user needs is
importable from here; the subpackages are the layers behind it (``kernel`` reads,
``core`` decides what a page is, ``analysis`` measures, ``output`` renders, ``cli`` is
the command).

One process::

    import pagewalk
    with pagewalk.Process(pid) as p:
        p.mappings()                      # [Mapping(start, end, perms, ..., path)]
        t = p.translate(0x7ffd1234)       # Translation: present? pfn, swap, zero page...
        report = p.counts()               # CountsReport: pages per state, per mapping
        table = p.page_table(start, end)  # PageTable: numpy arrays, every bit decoded

Several processes and the machine::

    pagewalk.measure([pid1, pid2], by="command")   # UsageReport: RSS, PSS, USS, swap
    pagewalk.shared_frames([pid1, pid2])           # SharedReport: frames both map
    pagewalk.who_maps([pfn], pagewalk.all_pids())  # WhoReport: who maps a frame
    pagewalk.file_residency("/usr/lib/libc.so.6")  # FileResidency: its cached pages
    pagewalk.walk_ram(by_cgroup=True)              # RamReport: every frame of RAM in one use
    pagewalk.walk_files(["/usr"])                  # FilesReport: the files the page cache holds

Over time::

    before = pagewalk.Snapshot.take(p); before.save("a.npz")
    pagewalk.diff_snapshots(before, pagewalk.Snapshot.load("b.npz"))
    method, samples, cost = pagewalk.track(pid, interval=1.0, count=5)  # working set

Every error is a :class:`PagewalkError` (see :mod:`pagewalk.errors` for the tree).
Importing the package is cheap: names are loaded on first use, and numpy only by the
calls that decode many pages at once.
"""

__version__ = "0.1.0"

# public name -> (module that defines it, its name there).  PEP 562 lazy attributes
# keep ``import pagewalk`` light: each module is imported on the first use of a name.
_EXPORTS = {
    # errors
    "PagewalkError": ("errors", "PagewalkError"), "NoSuchProcess": ("errors", "NoSuchProcess"),
    "ProcessGone": ("errors", "ProcessGone"), "NoAddressSpace": ("errors", "NoAddressSpace"),
    "AccessDenied": ("errors", "AccessDenied"), "Unsupported": ("errors", "Unsupported"),
    "MissingExtra": ("errors", "MissingExtra"), "NotMapped": ("errors", "NotMapped"),
    "InvalidArgument": ("errors", "InvalidArgument"), "BadSnapshot": ("analysis.snapshot_check", "BadSnapshot"),
    # one process
    "Process": ("core.process", "Process"), "Translation": ("core.translate", "Translation"),
    "PageTable": ("core.pagetable", "PageTable"), "PageCounts": ("core.counting", "PageCounts"),
    "MappingCounts": ("core.counting", "MappingCounts"), "CountsReport": ("core.counting", "CountsReport"),
    "Mapping": ("kernel.maps", "Mapping"), "read_maps": ("kernel.maps", "read_maps"),
    "parse_maps": ("kernel.maps", "parse_maps"), "load_maps": ("kernel.maps", "load_maps"),
    "PAGE_SIZE": ("kernel.pagemap", "PAGE_SIZE"), "all_pids": ("kernel.procfs", "all_pids"),
    # several processes, files, the machine
    "measure": ("analysis.usage", "measure"), "Usage": ("analysis.usage", "Usage"),
    "UsageReport": ("analysis.usage", "Report"),
    "shared_frames": ("analysis.sharing", "shared_frames"), "SharedReport": ("analysis.sharing", "SharedReport"),
    "who_maps": ("analysis.who", "who_maps"), "WhoReport": ("analysis.who", "WhoReport"),
    "file_residency": ("analysis.files", "file_residency"), "FileResidency": ("analysis.files", "FileResidency"),
    "walk_ram": ("analysis.ram", "walk_ram"), "RamReport": ("analysis.ram", "RamReport"),
    "walk_files": ("analysis.ram_files", "walk_files"), "FilesReport": ("analysis.ram_files", "FilesReport"),
    # over time
    "Snapshot": ("analysis.snapshot", "Snapshot"), "diff_snapshots": ("analysis.diff", "diff"),
    "track": ("analysis.wss", "track"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'pagewalk' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{where[0]}", __name__), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
