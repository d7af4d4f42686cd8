"""``/proc/PID/maps``: one :class:`Mapping` per line.

Line format (``fs/proc/task_mmu.c`` ``show_map_vma``)::

    start-end perms offset major:minor inode        path

``path`` is everything after the inode and its padding, so it may contain
spaces, and any other character but a newline: the kernel escapes a newline
in it as ``\\012`` (and nothing else: ``\\r``, ``\\x0b``, ``\\x1c``, ``\\x85``
and escape sequences stay raw), so lines end at ``\\n`` only; it appends
`` (deleted)`` to files that were unlinked.  Names in brackets are kernel
areas (``[heap]``, ``[stack]``, ``[vdso]``, ``[vvar]``, ``[vsyscall]``) or
user-named anonymous memory (``[anon:NAME]``, ``[anon_shmem:NAME]``, set with
``prctl(PR_SET_VMA_ANON_NAME)``).  Shared anonymous memory shows as
``/dev/zero (deleted)``, memfd as ``/memfd:NAME (deleted)``, SysV shared memory
as ``/SYSV<key> (deleted)``.

Paths are decoded with ``os.fsdecode`` (surrogate escapes), so bytes that are
not UTF-8 survive a round trip through :func:`os.fsencode`.
"""

from __future__ import annotations

import os
import struct
from collections import namedtuple
from collections.abc import Sequence

from ..errors import InvalidArgument
from ..names import unicode_text
from .oserrors import translating
from .pagemap import PAGE_SIZE

__all__ = [
    "Mapping", "mapping_index", "parse_line", "parse_maps", "load_maps", "read_maps_text", "read_maps",
    "PROCMAP_QUERY", "vma_page_size", "is_hugetlb"
]

DELETED_SUFFIX = " (deleted)"

class Mapping(namedtuple("Mapping", "start end perms offset dev inode path")):
    """One virtual memory area, as one line of ``/proc/PID/maps`` shows it.

    ``start`` and ``end`` are byte addresses (end exclusive); ``offset`` is the
    file offset in bytes; ``dev`` is ``"major:minor"`` in hex as the kernel
    prints it; ``path`` is the text after the inode ('' for anonymous memory).
    Immutable and hashable (a named tuple: no dataclasses import on start-up).
    """

    __slots__ = ()

    @property
    def size_bytes(self) -> int:
        """The mapping's length in bytes."""
        return self.end - self.start

    @property
    def deleted(self) -> bool:
        """The file behind the mapping was unlinked (memfd and SysV shm always are)."""
        return self.path.endswith(DELETED_SUFFIX)

    @property
    def name(self) -> str:
        """The path without the `` (deleted)`` suffix."""
        return self.path[: -len(DELETED_SUFFIX)] if self.deleted else self.path

    @property
    def text_path(self) -> str:
        """The path as valid Unicode for JSON and other text formats: bytes that are
        not UTF-8 appear as ``\\xNN`` escapes (``path`` keeps them losslessly)."""
        return unicode_text(self.path)

    @property
    def shared(self) -> bool:
        """Mapped MAP_SHARED (``s`` in perms) rather than private copy-on-write."""
        return self.perms[3:4] == "s"

    @property
    def on_internal_mount(self) -> bool:
        """Its device has major 0 and is not 00:00 (no file): tmpfs or a kernel-internal
        mount, where shared memory (shmem) lives; disk filesystems have a real major."""
        return self.dev.startswith("00:") and self.dev != "00:00"

    @property
    def kind(self) -> str:
        """What backs the mapping: ``anon``, ``anon_shared``, ``file``, ``memfd``,
        ``sysv``, or a kernel area name without brackets (``heap``, ``stack``,
        ``vdso``, ``vvar``, ``vsyscall`` ...)."""
        name = self.name
        if not name:
            return "anon_shared" if self.shared else "anon"
        if name.startswith("[anon:"):
            return "anon"
        if name.startswith("[anon_shmem:"):
            return "anon_shared"
        if name.startswith("["):
            return name.strip("[]")
        if self.deleted:
            if name == "/dev/zero":
                return "anon_shared"
            if name.startswith("/memfd:"):
                return "memfd"
            if name.startswith("/SYSV"):
                return "sysv"
        return "file"

    @property
    def is_vsyscall(self) -> bool:
        """The legacy vsyscall page: listed in maps, but above the end of user space,
        so pagemap has no entries for it (a read there returns 0 bytes)."""
        return self.path == "[vsyscall]"

    @property
    def scan_skips(self) -> bool:
        """Probably a VM_PFNMAP area (``[vvar]``, a device file): PAGEMAP_SCAN does not
        walk those, while pagemap still gives their entries (soft-dirty ones, on
        kernels with soft-dirty), so their entries are always read."""
        return self.kind in ("vvar", "vvar_vclock") or self.path.startswith("/dev/")

    def contains(self, vaddr: int) -> bool:
        """Whether the byte address ``vaddr`` lies in the mapping."""
        return self.start <= vaddr < self.end

    def label(self) -> str:
        """A short human name: the path, or ``[anon]`` for unnamed anonymous memory."""
        if self.path:
            return self.path
        return "[anon shared]" if self.shared else "[anon]"

    def as_maps_line(self) -> str:
        """The line as the kernel formats it (path column padded like the kernel's)."""
        head = f"{self.start:08x}-{self.end:08x} {self.perms} {self.offset:08x} {self.dev} {self.inode} "
        if not self.path:
            return head.rstrip(" ")
        return head.ljust(_PATH_COLUMN) + " " + self.path


def mapping_index(mappings: Sequence[Mapping], vaddr):  # numpy array in and out
    """For each address of ``vaddr`` (a uint64 array), the index of the mapping among
    ``mappings`` (sorted, as maps lists them) that starts at or below it: the one that
    holds it, for addresses inside mappings."""
    import numpy as np

    starts = np.array([m.start for m in mappings], dtype=np.uint64)
    return np.searchsorted(starts, vaddr, side="right") - 1


# The kernel pads a line to this column (the space after the inode included), then
# writes one more space before the path (fs/proc/task_mmu.c: seq_setwidth(m, 25 +
# sizeof(void *) * 6 - 1), then seq_pad(m, ' ')): the path starts one past the
# larger of this and the header's length, and may itself start with spaces.
_PATH_COLUMN = 72


def parse_line(line: str) -> Mapping:
    """Parse one line of ``/proc/PID/maps``; raises InvalidArgument if it is not one.
    Only the line's final newline is removed: whitespace, ``\\r`` and other
    characters at either end of the path belong to it."""
    text = line[:-1] if line.endswith("\n") else line
    parts = text.split(" ", 5)
    try:
        if len(parts) < 5 or "" in parts[:5]:
            parts = text.split(None, 5)  # not the kernel's single spaces: a hand-made copy
            path = parts[5] if len(parts) > 5 else ""
        elif len(parts) > 5:
            rest = parts[5]
            column = len(text) - len(rest)
            # the kernel pads the header with spaces up to the path's column (an
            # anonymous mapping's line ends in them): the common case, tested first
            skip = (column if column > _PATH_COLUMN else _PATH_COLUMN) + 1 - column
            path = rest[skip:] if not rest[:skip].strip(" ") else _path_after_header(rest, column)
        else:
            path = ""
        lo, _, hi = parts[0].partition("-")
        # positional: a named tuple built from keywords costs twice as much (10,000 mappings)
        return Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), parts[3], int(parts[4]), path)
    except (IndexError, ValueError):
        raise InvalidArgument(f"not a /proc/PID/maps line: {text!r}") from None


def _path_after_header(rest: str, column: int) -> str:
    """The path in ``rest``, the text after the inode's space, which starts at ``column``."""
    skip = max(column, _PATH_COLUMN) + 1 - column
    if rest[:skip].strip(" "):
        return rest.lstrip(" ")  # not padded as the kernel pads: the path starts after the spaces
    return rest[skip:]


def parse_maps(text: str) -> list[Mapping]:
    """Parse the whole text of a maps file (blank lines ignored).  Lines end at
    ``\\n`` only (not at the other characters :meth:`str.splitlines` takes as line
    ends, which a file name may hold).  Returns the mappings in the text's order;
    raises :class:`InvalidArgument` on a line that is not a maps line."""
    return [parse_line(line) for line in text.split("\n") if line.strip()]


def load_maps(path: str | os.PathLike[str]) -> list[Mapping]:
    """Parse a saved copy of a maps file.  Raises OSError where it cannot be read,
    :class:`InvalidArgument` on a line that is not a maps line."""
    with open(path, "rb") as f:
        return parse_maps(os.fsdecode(f.read()))


def read_maps_text(pid: int, *, started: bool = False) -> str:
    """The text of ``/proc/PID/maps`` of a live process ('' for a kernel thread or
    zombie).  Raises :class:`pagewalk.errors.PagewalkError` as
    :func:`pagewalk.kernel.oserrors.translating` translates the OSError."""
    path = f"/proc/{pid}/maps"
    with translating(pid, path, started=started):
        with open(path, "rb") as f:
            return os.fsdecode(f.read())


def read_maps(pid: int, *, started: bool = False) -> list[Mapping]:
    """Read and parse ``/proc/PID/maps`` of a live process (:func:`read_maps_text`,
    :func:`parse_maps`).  Returns the mappings in address order ([] for a kernel thread
    or zombie).  Raises :class:`~pagewalk.errors.NoSuchProcess`,
    :class:`~pagewalk.errors.AccessDenied` and the other
    :class:`~pagewalk.errors.PagewalkError` kinds :func:`read_maps_text` raises."""
    return parse_maps(read_maps_text(pid, started=started))


PROCMAP_QUERY = 0xC0686611  # _IOWR('f', 17, struct procmap_query), Linux 6.11+


_PROCMAP_QUERY = struct.Struct("<9Q4I2Q")  # 104 bytes


def vma_page_size(pid: int, vaddr: int) -> int | None:
    """The page size of the VMA at ``vaddr`` (larger than PAGE_SIZE for hugetlb),
    asked with PROCMAP_QUERY on ``/proc/PID/maps``; None where the kernel lacks it."""
    import fcntl  # (here: one address's start-up does not need it)

    arg = bytearray(_PROCMAP_QUERY.pack(_PROCMAP_QUERY.size, 0, vaddr, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    try:
        with open(f"/proc/{pid}/maps", "rb", buffering=0) as f:
            fcntl.ioctl(f.fileno(), PROCMAP_QUERY, arg, True)
    except OSError:
        return None
    return _PROCMAP_QUERY.unpack(arg)[6]


def is_hugetlb(pid: int, mapping: Mapping) -> bool:
    """Whether a mapping is backed by hugetlbfs (its pages are not in smaps ``Rss``).

    Asked of the kernel with PROCMAP_QUERY where it exists (6.11+); otherwise
    told from the name the kernel gives anonymous hugetlb memory."""
    if not mapping.path or mapping.path.startswith("["):
        return False
    size = vma_page_size(pid, mapping.start)
    if size is not None:
        return size > PAGE_SIZE
    return mapping.name == "/anon_hugepage"
