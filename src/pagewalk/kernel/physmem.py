"""The machine's physical memory layout: the ``System RAM`` ranges of ``/proc/iomem``
(kernel/resource.c ``r_show``; addresses shown as zeros to all but root) and the
memory blocks sysfs assigns to each NUMA node (``/sys/devices/system/memory/
block_size_bytes`` and ``/sys/devices/system/node/nodeN/memoryM``, drivers/base/memory.c
and drivers/base/node.c).  Addresses become PFNs here.
"""

from __future__ import annotations

import os
import re
from collections import namedtuple

from .pagemap import PAGE_SIZE

__all__ = ["NodeBlock", "PfnRange", "node_blocks", "parse_iomem_ram", "system_ram"]

NODE_DIR = "/sys/devices/system/node"
BLOCK_SIZE_FILE = "/sys/devices/system/memory/block_size_bytes"


class PfnRange(namedtuple("PfnRange", "start_pfn end_pfn")):
    """Frames ``[start_pfn, end_pfn)``."""

    __slots__ = ()


class NodeBlock(namedtuple("NodeBlock", "start_pfn end_pfn node")):
    """A memory block's frames ``[start_pfn, end_pfn)`` and the NUMA node they are on."""

    __slots__ = ()


def parse_iomem_ram(text: str) -> list[PfnRange]:
    """The top-level ``System RAM`` ranges of ``/proc/iomem``'s text as PFN ranges
    (the inclusive end address made exclusive; empty ranges left out)."""
    out = []
    for line in text.split("\n"):
        found = re.match(r"([0-9a-f]+)-([0-9a-f]+) : System RAM$", line)
        if found:  # top-level lines only: nested ones are not indented this way
            start, end = int(found.group(1), 16), int(found.group(2), 16) + 1
            if end > start:
                out.append(PfnRange(start // PAGE_SIZE, end // PAGE_SIZE))
    return out


def system_ram() -> list[PfnRange]:
    """``/proc/iomem``'s RAM (:func:`parse_iomem_ram`); empty where unreadable."""
    try:
        with open("/proc/iomem") as f:
            return parse_iomem_ram(f.read())
    except OSError:
        return []


def node_blocks() -> list[NodeBlock]:
    """The memory blocks sysfs assigns to nodes, sorted; empty where sysfs does not
    say (no ``block_size_bytes``, no node directories)."""
    try:
        with open(BLOCK_SIZE_FILE) as f:
            block_pages = int(f.read().strip(), 16) // PAGE_SIZE
        nodes = [d for d in os.listdir(NODE_DIR) if re.fullmatch(r"node\d+", d)]
    except (OSError, ValueError):
        return []
    blocks = []
    for node in nodes:
        for entry in os.listdir(f"{NODE_DIR}/{node}"):
            found = re.fullmatch(r"memory(\d+)", entry)
            if found:
                b = int(found.group(1))
                blocks.append(NodeBlock(b * block_pages, (b + 1) * block_pages, int(node[4:])))
    return sorted(blocks)
