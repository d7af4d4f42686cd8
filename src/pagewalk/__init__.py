"""pagewalk: where every page of a Linux process lives.

The library reads the kernel's own interfaces (``/proc/PID/maps``,
``/proc/PID/pagemap`` and its PAGEMAP_SCAN ioctl) and decodes them exactly::

    import pagewalk
    p = pagewalk.Process(pid)
    report = p.counts()                 # per-mapping page counts
    t = p.translate(0x7ffd1234)         # virtual -> physical
    table = p.page_table(start, end)    # numpy arrays, every bit decoded

Importing the package is cheap: names are loaded on first use, and numpy only
by the calls that decode many pages at once.
"""

__version__ = "0.1.0"

# name -> module that defines it (PEP 562 lazy attributes keep start-up light)
_EXPORTS = {
    "AccessDenied": "errors", "InvalidArgument": "errors", "NoAddressSpace": "errors",
    "NoSuchProcess": "errors", "NotMapped": "errors", "PagewalkError": "errors",
    "ProcessGone": "errors", "Unsupported": "errors",
    "Mapping": "kernel.maps", "load_maps": "kernel.maps", "parse_maps": "kernel.maps", "read_maps": "kernel.maps",
    "PAGE_SIZE": "kernel.pagemap",
    "Process": "core.process",
    "Translation": "core.translate",
    "PageTable": "core.pagetable", "PageCounts": "core.pagetable", "CountsReport": "core.pagetable",
    "MappingCounts": "core.pagetable",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pagewalk' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
