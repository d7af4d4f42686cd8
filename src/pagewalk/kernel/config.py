"""The kernel's build configuration (``/proc/config.gz``, or ``/boot/config-RELEASE``)."""

from __future__ import annotations

import functools
import os


@functools.cache
def kernel_config() -> frozenset[str] | None:
    """The options this kernel was built with as ``=y``, from ``/proc/config.gz`` or
    ``/boot/config-RELEASE``; None where neither is readable."""
    import gzip

    for path, opener in (("/proc/config.gz", gzip.open), (f"/boot/config-{os.uname().release}", open)):
        try:
            with opener(path, "rt") as f:
                return frozenset(line.split("=", 1)[0] for line in f if line.endswith("=y\n"))
        except (OSError, EOFError, ValueError):
            continue
    return None


def exclusive_means_mapped_once() -> bool:
    """Whether pagemap's exclusive bit (56) says "map count 1" of a page
    (CONFIG_PAGE_MAPCOUNT, kernel.md 1.1), so that its kpagecount need not be read.
    Without per-page map counts the bit means only "mapped by no other process"
    (maybe several times in this one); with the configuration unknown, assume that."""
    config = kernel_config()
    return config is not None and "CONFIG_PAGE_MAPCOUNT" in config
