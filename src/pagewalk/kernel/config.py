"""The kernel's build configuration: ``/proc/config.gz`` (kernel/configs.c,
CONFIG_IKCONFIG_PROC), or ``/boot/config-RELEASE`` as distributions install it."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

__all__ = ["kernel_config", "parse_config", "exclusive_means_mapped_once"]


@functools.cache
def kernel_config() -> frozenset[str] | None:
    """The options this kernel was built with as ``=y``, from ``/proc/config.gz`` or
    ``/boot/config-RELEASE`` (:func:`parse_config`); None where neither is readable."""
    import gzip  # (gzip, zlib and their imports: only where the configuration is asked)

    for path, opener in (("/proc/config.gz", gzip.open), (f"/boot/config-{os.uname().release}", open)):
        try:
            with opener(path, "rt") as f:
                return parse_config(f)
        except (OSError, EOFError, ValueError):
            continue
    return None


def parse_config(lines: Iterable[str]) -> frozenset[str]:
    """The options set ``=y`` in the lines of a kernel configuration (``CONFIG_X=y``;
    ``=m``, values and ``# CONFIG_X is not set`` lines are left out)."""
    return frozenset(line.split("=", 1)[0] for line in lines if line.endswith("=y\n"))


def exclusive_means_mapped_once() -> bool:
    """Whether pagemap's exclusive bit (56) says "map count 1" of a page
    (CONFIG_PAGE_MAPCOUNT; fs/proc/task_mmu.c ``pagemap_pte_hole``/``pte_to_pagemap_entry``), so that its kpagecount need not be read.
    Without per-page map counts the bit means only "mapped by no other process"
    (maybe several times in this one); with the configuration unknown, assume that."""
    config = kernel_config()
    return config is not None and "CONFIG_PAGE_MAPCOUNT" in config
