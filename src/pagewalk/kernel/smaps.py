"""``/proc/PID/smaps`` and ``smaps_rollup``: the kernel's own per-mapping and
per-process sums (Rss, Pss, Swap ...), in bytes; and ``/proc/PID/clear_refs``,
which resets what smaps' ``Referenced`` and pagemap's soft-dirty bit report.
The kernel writes all three in fs/proc/task_mmu.c (``show_smap``,
``show_smaps_rollup``, ``clear_refs_write``).

pagewalk computes its figures from pagemap and the kpage files; it reads these
only where a reader cannot (no PFNs and no PAGEMAP_SCAN to tell the zero page,
PSS without kpagecount), and says so.  Reading smaps walks the process's page
tables in the kernel: it costs about what a pagemap read does.  Lines end at
``\\n`` only (a path may hold any other byte).
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Iterable

from ..errors import PagewalkError
from .maps import Mapping, parse_line
from .oserrors import explain_no_mm, translating
from .pagemap import PAGE_SIZE

__all__ = [
    "KB", "SmapsBlock", "parse_smaps", "smaps_blocks", "read_smaps", "shmem_swap_pages", "vm_flags",
    "parse_vm_flags", "parse_rollup", "read_rollup", "rollup", "clear_refs"
]

KB = 1024


class SmapsBlock(namedtuple("SmapsBlock", "mapping fields_bytes")):
    """One mapping of ``/proc/PID/smaps``: its maps line decoded (:class:`Mapping`)
    and its ``Name: N kB`` fields as {name: bytes}."""

    __slots__ = ()


def _fields(lines: Iterable[bytes], want: frozenset[str] | None) -> dict[str, int]:
    """``Name:   N kB`` lines as {name: bytes} (all, or those named in ``want``)."""
    out: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] == b"kB" and parts[0].endswith(b":"):
            name = parts[0][:-1].decode()
            if want is None or name in want:
                out[name] = int(parts[1]) * KB
    return out


def parse_smaps(data: bytes, fields: frozenset[str] | None = None) -> list[SmapsBlock]:
    """Decode the text of ``/proc/PID/smaps``: each mapping with its fields (all, or
    those named in ``fields``) in bytes.  Raises :class:`pagewalk.errors.InvalidArgument`
    on a maps line that is not one."""
    out: list[SmapsBlock] = []
    block: list[bytes] = []
    mapping = None
    for line in data.split(b"\n"):
        head = line.split(b" ", 1)[0]
        if head and not head.endswith(b":"):  # a maps line opens a block
            if mapping is not None:
                out.append(SmapsBlock(mapping, _fields(block, fields)))
            mapping, block = parse_line(os.fsdecode(line)), []
        else:
            block.append(line)
    if mapping is not None:
        out.append(SmapsBlock(mapping, _fields(block, fields)))
    return out


def smaps_blocks(pid: int, fields: frozenset[str] | None = None) -> list[SmapsBlock]:
    """``/proc/PID/smaps`` decoded (:func:`parse_smaps`).  Raises
    :class:`pagewalk.errors.PagewalkError` as :func:`pagewalk.kernel.oserrors.translating`
    translates the OSError (the process was seen alive before)."""
    path = f"/proc/{pid}/smaps"
    with translating(pid, path, started=True), open(path, "rb") as f:
        data = f.read()
    return parse_smaps(data, fields)


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
    """The ``VmFlags`` of the mapping of ``/proc/PID/smaps`` starting at address
    ``start`` ([] if none, or unreadable).  The kernel makes smaps one mapping at a
    time, so reading stops there."""
    try:
        with open(f"/proc/{pid}/smaps", "rb") as f:
            return parse_vm_flags(f, start)  # binary: lines end at \n only
    except OSError:
        return []


def parse_vm_flags(lines: Iterable[bytes], start: int) -> list[str]:
    """The ``VmFlags`` among smaps ``lines`` of the mapping starting at address
    ``start`` (two-letter codes, fs/proc/task_mmu.c ``show_smap_vma_flags``); []
    if there is no such mapping or line."""
    head = f"{start:08x}-".encode()  # the kernel's %08lx: 00400000 below 2**32
    inside = False
    for line in lines:
        if not inside:
            inside = line.startswith(head)
        elif line.startswith(b"VmFlags:"):
            return line.decode("ascii", "replace").split()[1:]
    return []


def parse_rollup(data: bytes) -> dict[str, int] | None:
    """Decode the text of ``/proc/PID/smaps_rollup``: its ``Name: N kB`` fields as
    {name: bytes}; None where it has no ``Pss`` (not a rollup, or empty: a process
    with no memory)."""
    fields = _fields(data.split(b"\n"), None)
    return fields if "Pss" in fields else None


def read_rollup(pid: int) -> dict[str, int] | None:
    """``/proc/PID/smaps_rollup`` decoded (:func:`parse_rollup`), or None where it
    cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return parse_rollup(data)


def rollup(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` decoded (:func:`parse_rollup`): the kernel's sums over
    every mapping, in bytes.  Raises as every /proc read does
    (:func:`pagewalk.kernel.oserrors.translating`: NoSuchProcess, AccessDenied), and
    :class:`~pagewalk.errors.NoAddressSpace` for a process without memory (its rollup
    is empty)."""
    path = f"/proc/{pid}/smaps_rollup"
    with translating(pid, path), open(path, "rb") as f:
        fields = parse_rollup(f.read())
    if fields is None:
        raise explain_no_mm(pid)
    return fields


def clear_refs(pid: int, values: str) -> None:
    """Write each character of ``values`` to ``/proc/PID/clear_refs`` in a write of
    its own (``1``: clear the accessed bits, so smaps' ``Referenced`` counts from
    now; ``4``: clear the soft-dirty bits, pagemap bit 55).  Raises
    :class:`pagewalk.errors.PagewalkError` as :func:`pagewalk.kernel.oserrors.translating`
    translates the OSError (the process was seen alive before)."""
    path = f"/proc/{pid}/clear_refs"
    with translating(pid, path, started=True):
        for value in values:
            with open(path, "w") as f:
                f.write(value)
