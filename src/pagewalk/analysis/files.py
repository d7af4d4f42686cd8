"""What the page cache holds of files (``pagewalk file``): cached pages, and with
frames visible, their kpageflags and map counts, read without disturbing them.
No numpy: the frames are looked up by :func:`pagewalk.native.frame_runs`."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .. import native
from ..core import flags as fl
from ..kernel.kpage import KPAGECOUNT, KPAGEFLAGS, KpageFile
from ..kernel.pagecache import cached_frames, file_pages, open_file, regular_files, residency
from ..kernel.pagemap import PagemapFile
from ..runs import byte_runs

__all__ = ["FileResidency", "file_residency", "files_residency", "residency_of"]


class FileResidency:
    """What the page cache holds of one file.

    ``path``; ``size_bytes``, the file's size in bytes; ``pages``, its length in pages;
    ``cached``, how many of them are in the page cache (mm/mincore.c);
    ``ranges``: ``(first page, count)`` of cached pages.  With frames visible,
    ``runs``: ``(first page, count, flags, map count)`` of cached pages whose
    kpageflags (page-types' default view) and map count are the same; ``mapped``
    counts cached pages that some process maps.  Without frames both are None."""

    def __init__(self, path: str, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.pages = file_pages(size_bytes)
        self.cached = 0
        self.ranges: list[tuple[int, int]] = []
        self.runs: list[tuple[int, int, int, int]] | None = None
        self.mapped: int | None = None
        self.read_back = 0  # pages reading brought back into the cache (read_back_note)

    def _add_ranges(self, first: int, cached: bytes) -> None:
        for a, b in byte_runs(cached):
            if self.ranges and self.ranges[-1][0] + self.ranges[-1][1] == first + a:
                start, n = self.ranges[-1]
                self.ranges[-1] = (start, n + b - a)
            else:
                self.ranges.append((first + a, b - a))
        self.cached += cached.count(1)


def file_residency(path: str, own_pagemap: PagemapFile | None = None, follow_symlink: bool = False
                   ) -> FileResidency:
    """Residency of one regular file (``mincore`` of it mapped in chunks, read-only;
    mm/mincore.c); with ``own_pagemap`` (this process's pagemap, PFNs visible) also the
    flags and map counts of its cached pages, from ``/proc/kpageflags`` and
    ``/proc/kpagecount``.  A symbolic link is refused unless ``follow_symlink``.

    Returns a :class:`FileResidency` (pages of the file's page size).  Raises
    :class:`InvalidArgument` for a missing file or a symbolic link not followed,
    :class:`AccessDenied` where it (or a kpage file) cannot be read, and
    :class:`PagewalkError` where it cannot be mapped."""
    fd = open_file(path, follow_symlink)
    try:
        return residency_of(fd, path, own_pagemap)
    finally:
        os.close(fd)


def residency_of(fd: int, path: str, own_pagemap: PagemapFile | None = None) -> FileResidency:
    """:func:`file_residency` of the file open as ``fd`` (named ``path``)."""
    report = FileResidency(path, os.fstat(fd).st_size)
    if own_pagemap is None:
        for first, cached in residency(fd, 0, report.pages, path):
            report._add_ranges(first, cached)
        return report
    report.runs, report.mapped = [], 0
    with KpageFile(KPAGEFLAGS) as kflags, KpageFile(KPAGECOUNT) as kcount:
        for first, cached, entries, read_back in cached_frames(fd, 0, report.pages, path, own_pagemap):
            report.read_back += read_back
            report._add_ranges(first, cached)
            try:
                runs = native.frame_runs(entries, cached, kflags.fd, kcount.fd)
            except OSError as exc:
                raise kflags.read_error(exc) from None
            for page, n, flags, count in runs:  # runs of equal raw flags: shown as page-types shows them
                run = (first + page, n, fl.transform(flags, 0, False), count)
                report.mapped += n if count > 0 else 0
                last = report.runs[-1] if report.runs else None
                if last and last[0] + last[1] == run[0] and last[2:] == run[2:]:
                    report.runs[-1] = (last[0], last[1] + n, last[2], last[3])
                else:
                    report.runs.append(run)
    return report


def files_residency(paths: Iterable[str], frames: bool) -> list[FileResidency]:
    """:func:`file_residency` of every regular file ``paths`` name: a file, or every
    regular file under a directory.  A symbolic link named in ``paths`` is followed
    (as fincore does), links inside directories are not.  ``frames``: also the flags
    and map counts of the cached pages (root: :func:`pagewalk.kernel.probes.frames_readable`)."""
    own = PagemapFile(os.getpid()) if frames else None
    try:
        return [file_residency(path, own, follow_symlink=path == arg)
                for arg in paths for path, _ in regular_files(arg, follow_symlink=True)]
    finally:
        if own is not None:
            own.close()
