"""Machine snapshots (``pagewalk ram -o FILE.npz``) and what changed between two
(``pagewalk diff A.npz B.npz``).

Format (version 1): a NumPy ``.npz`` archive readable with numpy alone.  Members:

* ``ram_meta``: a 0-d string array holding JSON: ``format`` ("pagewalk-ram-snapshot"),
  ``version``, ``time`` (ISO 8601), ``unix_time``, ``kernel``, ``boot_id``,
  ``page_size``, ``frames``, ``ranges`` (``[first PFN, end PFN)`` pairs walked, in
  order), ``uses`` (the names of the use codes), ``cgroups`` (``[inode, path or
  null]``: the names of the cgroup codes), ``meminfo`` (every field after the walk).
* ``use_values``/``use_repeats``: the use code of every frame, run-length coded
  (``numpy.repeat(values, repeats)``; frame ``k`` is the ``k``-th of the ranges).
* ``cgroup_values``/``cgroup_repeats``: each frame's cgroup code, the same way.

A file is read as any snapshot is (:mod:`pagewalk.analysis.snapshot_check`): each
member's header checked before it is read, run lengths summing to the frames, codes
within their tables, memory charged to the load's budget before it is taken.
"""

from __future__ import annotations

import json
import time
import zipfile

import numpy as np

from ..core import frames as fr
from ..errors import PagewalkError
from ..kernel.outfile import write_private
from ..kernel.pagemap import PAGE_SIZE
from ..runs import merge_equal
from .npz import Members, narrow
from .snapshot_check import DAMAGE_ERRORS, BadSnapshot, Check, LoadBudget, detail

__all__ = ["FORMAT", "RamSnapshot", "save", "load", "is_ram_snapshot", "diff"]

FORMAT = "pagewalk-ram-snapshot"
VERSION = 1
MAX_FRAMES = 1 << 34  # 64 TiB of 4 KiB frames
MAX_CODES = 1 << 16  # cgroups a snapshot may name
MAX_RANGES = 1 << 16  # RAM ranges (a machine has a few)
MAX_META_CHARS = 16 << 20
META_BYTES_PER_CHAR = 16  # what parsing JSON may take, a character of it (objects, lists)
LOAD_BYTES_PER_FRAME = 1 + 4 + 8 + 8  # a use byte, a cgroup code, a comparison's pair, a count's temporary


class RamSnapshot:
    """A machine snapshot: ``meta`` (see the module doc), ``uses`` (uint8, the use
    code of each frame) and ``cgroups`` (uint32, each frame's cgroup code)."""

    def __init__(self, meta: dict, uses: np.ndarray, cgroups: np.ndarray) -> None:
        self.meta, self.uses, self.cgroups = meta, uses, cgroups

    def use_frames(self) -> dict[str, int]:
        """Frames per use."""
        counts = np.bincount(self.uses, minlength=len(self.meta["uses"]))
        return dict(zip(self.meta["uses"], counts.tolist()))

    def cgroup_frames(self) -> dict[str | None, int]:
        """Frames per cgroup path (None: charged to none)."""
        counts = np.bincount(self.cgroups, minlength=len(self.meta["cgroups"]))
        out: dict[str | None, int] = {}
        for (_, path), n in zip(self.meta["cgroups"], counts.tolist()):
            out[path] = out.get(path, 0) + n
        return out


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def save(report, path: str, force: bool = False) -> int:
    """Write the walk ``report`` (:func:`~pagewalk.analysis.ram.walk_ram` with
    ``keep_frames`` and ``by_cgroup``) to ``path`` (mode 0600); the bytes written."""
    import os

    kept = report.kept
    lengths = kept.lengths(report.frames)
    inodes = kept.cgroups if kept.cgroups is not None else np.zeros(len(lengths), dtype=np.uint64)
    codes, index = np.unique(inodes, return_inverse=True)  # (over runs: a few thousand values)
    names = {c.inode: c.path for c in report.cgroups or []}
    meta = {"format": FORMAT, "version": VERSION, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "unix_time": time.time(), "kernel": os.uname().release, "boot_id": _boot_id(), "page_size": PAGE_SIZE,
            "frames": int(report.frames), "ranges": [[r.start_pfn, r.end_pfn] for r in report.ranges],
            "uses": list(fr.USES), "cgroups": [[int(c), names.get(int(c))] for c in codes.tolist()],
            "meminfo": report.meminfo_after}
    arrays = {"ram_meta": np.array(json.dumps(meta))}
    for name, column in (("use", kept.uses), ("cgroup", index.astype(np.uint32))):
        _, (values,), repeats = merge_equal([column], lengths)
        arrays[f"{name}_values"], arrays[f"{name}_repeats"] = values, narrow(repeats)

    def write(f) -> None:
        np.savez_compressed(f, **arrays)

    return write_private(path, write, force)


def is_ram_snapshot(path: str) -> bool:
    """Whether ``path`` is a zip with a machine snapshot's metadata (nothing else read)."""
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            return "ram_meta.npy" in zf.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _checked_meta(text: str, check: Check) -> dict:
    if len(text) > MAX_META_CHARS:
        raise check.bad(f"its metadata is {len(text)} characters, more than the {MAX_META_CHARS} pagewalk reads")
    check.charge(len(text) * META_BYTES_PER_CHAR, "its metadata")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        raise check.bad("its metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise check.foreign("no machine-snapshot metadata")
    version = meta.get("version")
    if type(version) is not int or version < 1:
        raise check.bad("its format version is not a version number")
    if version > VERSION:
        raise BadSnapshot(f"{check.path}: written by a newer pagewalk (machine snapshot version {version}; this "
                          f"one reads 1 to {VERSION}): upgrade pagewalk to read it")

    def ints(value, n=None) -> bool:
        return isinstance(value, list) and (n is None or len(value) == n) and all(
            type(v) is int and v >= 0 for v in value)

    check_meta = (
        ("page_size", lambda v: v == PAGE_SIZE, f"{PAGE_SIZE} (this machine's page size)"),
        ("frames", lambda v: type(v) is int and 0 <= v <= MAX_FRAMES, f"a count of frames up to {MAX_FRAMES}"),
        ("time", lambda v: type(v) is str and len(v) <= 64, "a time"),
        ("ranges", lambda v: isinstance(v, list) and len(v) <= MAX_RANGES and all(ints(r, 2) and r[0] < r[1]
                                                                                for r in v), "PFN ranges"),
        ("uses", lambda v: isinstance(v, list) and 0 < len(v) <= 64 and len(set(v)) == len(v) and all(
            type(u) is str and 0 < len(u) <= 64 for u in v), "a list of distinct use names"),
        ("cgroups", lambda v: isinstance(v, list) and len(v) <= MAX_CODES and all(
            isinstance(c, list) and len(c) == 2 and type(c[0]) is int and (c[1] is None or type(c[1]) is str)
            for c in v), "a list of [inode, path]"),
        ("meminfo", lambda v: isinstance(v, dict) and all(type(x) is int for x in v.values()), "meminfo's fields"),
    )
    for key, ok, what in check_meta:
        if key not in meta or not ok(meta[key]):
            raise check.bad(f"its metadata's {key!r} is missing or not {what}")
    if sum(end - start for start, end in meta["ranges"]) != meta["frames"]:
        raise check.bad("its ranges do not add up to its frames")
    if meta["frames"] and not meta["cgroups"]:
        raise check.bad("it names no cgroup code for its frames")
    return meta


def load(path: str, *, budget: LoadBudget | None = None) -> RamSnapshot:
    """Read a machine snapshot, checked as it is read; :class:`BadSnapshot` (one
    line) for anything else (see :meth:`pagewalk.analysis.snapshot.Snapshot.load`)."""
    from ..kernel.infile import NotRegularFile, open_regular

    check = Check(path, LoadBudget() if budget is None else budget)
    try:
        with open_regular(path) as f, zipfile.ZipFile(f) as zf:
            z = Members(zf, check)
            if "ram_meta" not in z.infos:
                raise check.foreign("no machine-snapshot metadata")
            meta = _checked_meta(z.read("ram_meta", "U", scalar=True).item(), check)
            frames = meta["frames"]
            check.charge(frames * LOAD_BYTES_PER_FRAME, f"its {frames} frames")
            columns = {}
            for name, codes, dtype in (("use", len(meta["uses"]), np.uint8),
                                       ("cgroup", len(meta["cgroups"]), np.uint32)):
                values = z.read(f"{name}_values", "u", most=frames)
                repeats = z.read(f"{name}_repeats", "iu", length=len(values))
                check.runs(name, values, repeats, frames)
                if len(values) and int(values.max()) >= codes:
                    raise check.bad(f"its {name} codes go beyond the {codes} its metadata names")
                columns[name] = np.repeat(values.astype(dtype), repeats)  # (narrow first: a byte or 4 a frame)
    except NotRegularFile as exc:
        raise BadSnapshot(f"{path}: not a snapshot file ({exc.kind}, not a regular file)") from None
    except FileNotFoundError:
        raise BadSnapshot(f"no such snapshot file: {path}") from None
    except PermissionError:
        raise BadSnapshot(f"cannot read {path}: permission denied") from None
    except (BadSnapshot, PagewalkError):
        raise
    except MemoryError:
        raise BadSnapshot(f"{path}: cannot load this snapshot here: out of memory") from None
    except DAMAGE_ERRORS as exc:
        raise check.damaged(detail(exc)) from exc
    return RamSnapshot(meta, columns["use"], columns["cgroup"])


def diff(a: RamSnapshot, b: RamSnapshot) -> dict:
    """What changed from ``a`` to ``b``: frames per use and per cgroup in each and the
    difference (largest change first); where both walked the same frames of one boot,
    how many frames went from each use to each other (``moved``)."""
    uses_a, uses_b = a.use_frames(), b.use_frames()
    by_use = [{"use": u, "a_frames": uses_a.get(u, 0), "b_frames": uses_b.get(u, 0),
               "change_frames": uses_b.get(u, 0) - uses_a.get(u, 0)} for u in dict.fromkeys([*uses_a, *uses_b])]
    cg_a, cg_b = a.cgroup_frames(), b.cgroup_frames()
    by_cgroup = [{"cgroup": c, "a_frames": cg_a.get(c, 0), "b_frames": cg_b.get(c, 0),
                  "change_frames": cg_b.get(c, 0) - cg_a.get(c, 0)} for c in dict.fromkeys([*cg_a, *cg_b])]
    by_cgroup.sort(key=lambda r: -abs(r["change_frames"]))
    notes = []
    moved = None
    same_frames = a.meta["ranges"] == b.meta["ranges"] and a.meta["uses"] == b.meta["uses"]
    same_boot = a.meta.get("boot_id") is not None and a.meta.get("boot_id") == b.meta.get("boot_id")
    if same_frames and same_boot:
        n = len(a.meta["uses"])
        pairs = np.bincount(a.uses.astype(np.int64) * n + b.uses, minlength=n * n).reshape(n, n)
        names = a.meta["uses"]
        moved = [{"from": names[i], "to": names[j], "frames": int(pairs[i, j])}
                 for i, j in zip(*np.nonzero(pairs)) if i != j]
        moved.sort(key=lambda r: -r["frames"])
    else:
        notes.append("the two snapshots are of different frames or boots: uses and cgroups are compared as "
                     "totals, frames one by one not")
    return {"a_time": a.meta.get("time"), "b_time": b.meta.get("time"), "page_size": PAGE_SIZE,
            "by_use": by_use, "by_cgroup": by_cgroup, "moved": moved, "notes": notes}
