"""Memory cgroups: where the hierarchy is mounted, which directory an inode number of
``/proc/kpagecgroup`` names, and each cgroup's ``memory.stat``.

``/proc/kpagecgroup`` gives, per frame, the inode number of the directory of the
memory cgroup the page is charged to (fs/proc/page.c ``kpagecgroup_read``, through
``page_cgroup_ino``: the nearest online ancestor; 0 where the page is charged to none).
That inode is the directory's ``st_ino`` in the memory hierarchy's mount: cgroup v1's
``memory`` controller mount, or the cgroup v2 mount (Documentation/admin-guide/cgroup-v1
/memory.rst, cgroup-v2.rst).

``memory.stat`` differs between the two: v1's ``rss``, ``cache``, ``shmem`` count the
cgroup's own pages (``total_*`` its subtree's), v2's ``anon``, ``file``, ``shmem`` count
its whole subtree (mm/memcontrol-v1.c ``memcg1_stat_format``, mm/memcontrol.c
``memory_stat_format``).
"""

from __future__ import annotations

import os
from collections import namedtuple

from . import procfs

__all__ = ["Hierarchy", "find_hierarchy", "cgroup_paths", "read_stat", "read_stats"]

MAX_CGROUPS = 1 << 16  # directories walked at most (a bound: a hostile tree cannot grow the walk unbounded)

class Hierarchy(namedtuple("Hierarchy", "version root")):
    """The memory cgroup hierarchy: cgroup ``version`` (1 or 2) and the ``root``
    directory it is mounted on."""

    __slots__ = ()


def find_hierarchy(entries: list[procfs.MountEntry] | None = None) -> Hierarchy | None:
    """Where this machine's memory cgroups are (None: no memory hierarchy mounted),
    from ``entries`` (default: this process's mounts): a v1 ``cgroup`` mount with the
    ``memory`` option first (v1 holds the controller where both are mounted), else a
    ``cgroup2`` mount."""
    v2 = None
    for m in procfs.mounts() if entries is None else entries:
        if m.fstype == "cgroup" and "memory" in m.options:
            return Hierarchy(1, m.point)
        if m.fstype == "cgroup2" and v2 is None:
            v2 = Hierarchy(2, m.point)
    return v2


def cgroup_paths(hierarchy: Hierarchy) -> dict[int, str]:
    """Inode number -> cgroup path (``/`` for the root, ``/a/b`` below it) of every
    directory of the hierarchy (at most :data:`MAX_CGROUPS`), not crossing into other
    mounts."""
    paths: dict[int, str] = {}
    root_dev = None
    stack = [""]
    while stack and len(paths) < MAX_CGROUPS:
        rel = stack.pop()
        try:
            st = os.stat(hierarchy.root + rel, follow_symlinks=False)
            if root_dev is None:
                root_dev = st.st_dev
            elif st.st_dev != root_dev:
                continue
            paths[st.st_ino] = rel or "/"
            with os.scandir(hierarchy.root + rel) as entries:
                stack.extend(f"{rel}/{e.name}" for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue  # a cgroup removed while we looked
    return paths


def read_stat(hierarchy: Hierarchy, path: str) -> dict[str, int] | None:
    """The ``memory.stat`` of the cgroup at ``path`` (None where it cannot be read)."""
    try:
        with open(f"{hierarchy.root}{'' if path == '/' else path}/memory.stat", "rb") as f:
            text = f.read(1 << 16)
    except OSError:
        return None
    stat = {}
    for line in text.split(b"\n"):
        name, _, value = line.partition(b" ")
        if value.isdigit():
            stat[name.decode("ascii", "replace")] = int(value)
    return stat


def read_stats(hierarchy: Hierarchy, paths) -> dict[str, dict[str, int] | None]:
    """:func:`read_stat` of each of ``paths`` (each once)."""
    return {path: read_stat(hierarchy, path) for path in set(paths)}
