"""``/proc/PID/smaps`` and ``smaps_rollup``: the kernel's own per-mapping and
per-process sums (Rss, Pss, Swap ...), in bytes.

pagewalk computes its figures from pagemap and the kpage files; it reads these
only where a reader cannot (no PFNs and no PAGEMAP_SCAN to tell the zero page,
PSS without kpagecount), and says so.  Reading smaps walks the process's page
tables in the kernel: it costs about what a pagemap read does.  Lines end at
``\\n`` only (a path may hold any other byte).
"""

from __future__ import annotations

import os

from ..errors import PagewalkError

from .oserrors import translating
from .maps import Mapping, parse_line
from .pagemap import PAGE_SIZE

KB = 1024


def _fields(lines, want: frozenset[str] | None):
    """``Name:   N kB`` lines as {name: bytes}."""
    out: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] == b"kB" and parts[0].endswith(b":"):
            name = parts[0][:-1].decode()
            if want is None or name in want:
                out[name] = int(parts[1]) * KB
    return out


def smaps_blocks(pid: int, fields: frozenset[str] | None = None) -> list[tuple[Mapping, dict[str, int]]]:
    """Each mapping of ``/proc/PID/smaps`` (parsed as its maps line) with its fields
    (all, or ``fields``) in bytes.  Errors as every /proc read raises them
    (:func:`pagewalk.errors.translating`)."""
    path = f"/proc/{pid}/smaps"
    with translating(pid, path, started=True), open(path, "rb") as f:
        data = f.read()
    out: list[tuple[Mapping, dict[str, int]]] = []
    block: list[bytes] = []
    mapping = None
    for line in data.split(b"\n"):
        head = line.split(b" ", 1)[0]
        if head and not head.endswith(b":"):  # a maps line opens a block
            if mapping is not None:
                out.append((mapping, _fields(block, fields)))
            mapping, block = parse_line(os.fsdecode(line)), []
        else:
            block.append(line)
    if mapping is not None:
        out.append((mapping, _fields(block, fields)))
    return out


def read_smaps(pid: int, fields: frozenset[str] | None = None) -> dict[tuple[int, int], dict[str, int]] | None:
    """Per mapping ``(start, end)``: the smaps fields (all, or ``fields``) in bytes.
    None where smaps cannot be read (another user's process, a process gone)."""
    try:
        return {(m.start, m.end): values for m, values in smaps_blocks(pid, fields)}
    except PagewalkError:
        return None


def shmem_swap_pages(blocks: dict[tuple[int, int], dict[str, int]], mapping: Mapping,
                     swap_entries: int | None) -> int | None:
    """Pages of ``mapping`` that are shared memory in swap, by smaps' ``Swap`` (from
    ``blocks``, :func:`read_smaps`) less the ``swap_entries`` pagemap holds there:
    for when the object cannot be opened.  None where smaps has no such mapping,
    the entries are unknown, or the two disagree (the mapping changed in between)."""
    swap = blocks.get((mapping.start, mapping.end), {}).get("Swap")
    if swap is None or swap_entries is None or swap // PAGE_SIZE < swap_entries:
        return None
    return swap // PAGE_SIZE - swap_entries


def vm_flags(pid: int, start: int) -> list[str]:
    """The ``VmFlags`` of the mapping starting at ``start`` ([] if none).  The kernel
    makes smaps one mapping at a time, so reading stops there."""
    try:
        with open(f"/proc/{pid}/smaps", "rb") as f:
            head = f"{start:x}-".encode()
            inside = False
            for line in f:  # binary: lines end at \n only
                if not inside:
                    inside = line.startswith(head)
                elif line.startswith(b"VmFlags:"):
                    return line.decode("ascii", "replace").split()[1:]
    except OSError:
        pass
    return []


def read_rollup(pid: int) -> dict[str, int] | None:
    """``/proc/PID/smaps_rollup`` in bytes, or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            fields = _fields(f.read().split(b"\n"), None)
    except OSError:
        return None
    return fields if "Pss" in fields else None

