"""``types``: page-types' summary table, and the summary as JSON (the lists of ``-l``
and ``-L``, which need numpy, are :mod:`pagewalk.output.types_list`)."""

from __future__ import annotations

import os
import time

from ..core import flags as fl
from ..names import printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from ..analysis.pagetypes import TypesCounter

__all__ = ["summary", "file_header", "summary_json"]


def summary(counter: TypesCounter, page_size: int) -> str:
    """page-types' summary table, rows sorted by page count: flags, pages, MiB
    (pages * ``page_size`` >> 20, rounded down as page-types does), the names."""
    mb = lambda pages: pages * page_size >> 20  # noqa: E731
    lines = ["             flags\tpage-count       MB  symbolic-flags\t\t\tlong-symbolic-flags"]
    for f, n in counter.rows():
        lines.append(f"0x{f:016x}\t{n:10d} {mb(n):8d}  {fl.symbolic(f)}\t{','.join(fl.names(f))}")
    lines.append(f"             total\t{counter.total:10d} {mb(counter.total):8d}")
    return "\n".join(lines) + "\n"


def file_header(path: str, st: os.stat_result, page_size: int) -> str:
    """What page-types prints of the path given to -f (``st``: its stat; a directory
    in directory mode): inode, size, and modification and access times."""
    now = int(time.time())
    stamp = lambda t: time.strftime("%c", time.localtime(t))  # noqa: E731
    pages = (st.st_size + page_size - 1) // page_size
    return (f"{printable(path)}\tInode: {st.st_ino}\tSize: {st.st_size} ({pages} pages)\n"
            f"Modify: {stamp(st.st_mtime)} ({now - int(st.st_mtime)} seconds ago)\n"
            f"Access: {stamp(st.st_atime)} ({now - int(st.st_atime)} seconds ago)\n")


def summary_json(counter: TypesCounter) -> str:
    """``types --json``: every (flags, pages) row with the flags' names, and the total."""
    import json  # (here: json imports re, which the table does not need)

    rows = [{"flags": f, "pages": n, "symbolic": fl.symbolic(f), "names": fl.names(f)} for f, n in counter.rows()]
    return json.dumps({"rows": rows, "total": {"pages": counter.total}}, indent=1) + "\n"
