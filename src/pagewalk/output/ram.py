"""``ram``: where the machine's RAM went, as a table (uses down, RAMMap's lists across,
a total) with meminfo's counts beside, the owners asked for (cgroups, processes, files),
and as JSON."""

from __future__ import annotations

from collections import namedtuple

from ..core.frames import LISTS
from ..kernel.pagemap import PAGE_SIZE
from ..names import printable, unicode_text
from .humanize import human_bytes
from .table import Layout, render_table, wrap_lines

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from ..analysis.ram import RamReport, Reconciled

__all__ = ["Owners", "USES_HEADERS", "as_text", "as_json", "diff_text", "diff_json"]

AGREE_NOTE = "AGREE: within 2% or 8 MiB (a cgroup: 4 MiB) of the kernel's count read before and after"


class Owners(namedtuple("Owners", "by processes files top")):
    """The owners shown beside the uses: ``by`` (use, cgroup, process, file); a usage
    :class:`~pagewalk.analysis.usage.Report` of every process, or a
    :class:`~pagewalk.analysis.ram_files.FilesReport`; ``top`` rows at most."""

    __slots__ = ()


def _size(frames: int | None) -> str:
    return human_bytes(None if frames is None else frames * PAGE_SIZE)


def _agree(lines: list[Reconciled]) -> str:
    """``yes``, the names that disagree, or ``-`` where the kernel's counts are unknown."""
    known = [line for line in lines if line.within_target is not None]
    if not known:
        return "-"
    wrong = [line.name for line in known if not line.within_target]
    return "no: " + ", ".join(wrong) if wrong else "yes"


USES_HEADERS = ("USE", "SIZE", "SHARE", *(name.upper() for name in LISTS))
# on a narrow terminal, the lists that give way (in this order): active, inactive, dirty and mapped stay
RARER_LISTS = ("UNEVICTABLE", "REFERENCED", "WRITEBACK", "THP")


def as_text(report: RamReport, owners: Owners | None = None, layout: Layout = Layout()) -> str:
    """The uses table, the reconciliation with meminfo, the owners, and how long it
    took; on a terminal ``layout.width`` columns wide, the rarer lists give way
    (:data:`RARER_LISTS`), names are cut and the last line wrapped.  ``layout.columns``
    picks columns of the uses table."""
    out = []
    width = layout.width
    fit = Layout(width)  # (the other tables: fitted, all their columns)
    if report.uses is not None:
        total = report.frames or 1
        rows = []
        for use, frames in report.uses.items():
            if not frames:
                continue
            lists = report.lists[use]
            rows.append([use, _size(frames), f"{100 * frames / total:.1f}%", *(_size(lists[name]) for name in LISTS)])
        rows.append(["total", _size(report.frames), "100.0%",
                     *(_size(sum(report.lists[u][name] for u in report.uses)) for name in LISTS)])
        out.append(render_table(list(USES_HEADERS), rows, right=set(range(1, 3 + len(LISTS))), layout=layout,
                                optional=RARER_LISTS))
        out.append("\n")
    rows = []
    for line in report.reconciled:
        rows.append([line.name, _size(line.frames), human_bytes(line.before_bytes), human_bytes(line.after_bytes),
                     _agree([line]), " + ".join(line.fields).replace("+ -", "- ")])
    out.append(render_table(["KERNEL'S COUNT", "FRAMES", "BEFORE", "AFTER", "AGREE", "MEMINFO"], rows,
                            right={1, 2, 3}, layout=fit, wrap_last=True))
    if report.cgroups is not None:
        out.append("\n" + _cgroups_text(report, fit))
    if owners is not None and owners.processes is not None:
        out.append("\n" + _processes_text(report, owners, fit))
    if owners is not None and owners.files is not None:
        out.append("\n" + _files_text(report, owners, fit))
    walked = f"{report.frames} frames ({_size(report.frames)}) walked in {report.seconds:.2f} s" if report.uses else \
        "no frame walked"
    out.append("\n" + wrap_lines(f"{walked}; {AGREE_NOTE}", width) + "\n")
    return "".join(out)


def _cgroup_name(path: str | None) -> str:
    return "(no cgroup)" if path is None else printable(path)


def _cgroups_text(report: RamReport, layout: Layout) -> str:
    rows = []
    for c in report.cgroups:
        u = c.uses
        rows.append([_size(sum(u.values())), _size(u["anonymous"] + u["KSM"]), _size(u["page cache"] + u["swap cache"]),
                     _size(u["shared memory"]), _size(sum(u.values()) - u["anonymous"] - u["KSM"] - u["page cache"]
                                                     - u["swap cache"] - u["shared memory"]),
                     _agree(c.reconciled), _cgroup_name(c.path)])
    return render_table(["TOTAL", "ANONYMOUS", "PAGE CACHE", "SHMEM", "OTHER", "AGREE", "CGROUP"], rows,
                        right={0, 1, 2, 3, 4}, layout=layout, names={6: None})


def _mapped_frames(report: RamReport) -> int | None:
    """Frames mapped by processes as PSS counts them (hugetlb is not in Pss)."""
    if report.lists is None:
        return None
    return sum(lists["mapped"] for use, lists in report.lists.items() if use != "hugetlb")


def _processes_text(report: RamReport, owners: Owners, layout: Layout) -> str:
    usage = owners.processes
    rows = [[str(u.pid), human_bytes(u.rss), human_bytes(u.pss), human_bytes(u.uss), human_bytes(u.swap),
             printable(u.command)] for u in usage.rows[:owners.top]]
    t = usage.totals
    rows.append([f"{len(usage.rows)}", human_bytes(t.rss), human_bytes(t.pss), human_bytes(t.uss), human_bytes(t.swap),
                 "total (all processes)"])
    text = render_table(["PID", "RSS", "PSS", "USS", "SWAP", "COMMAND"], rows, right={0, 1, 2, 3, 4}, layout=layout,
                        names={5: None})
    mapped = _mapped_frames(report)
    if mapped is not None:
        text += wrap_lines(f"processes' PSS adds up to {human_bytes(t.pss)}; frames mapped by processes "
                           f"(kpageflags, hugetlb aside): {_size(mapped)}", layout.width) + "\n"
    return text


def _files_text(report: RamReport, owners: Owners, layout: Layout) -> str:
    files = owners.files
    rows = [[human_bytes(f.cached_pages * PAGE_SIZE), human_bytes(None if f.dirty_pages is None
                                                                  else f.dirty_pages * PAGE_SIZE),
             human_bytes(None if f.mapped_pages is None else f.mapped_pages * PAGE_SIZE), human_bytes(f.size_bytes),
             printable(f.path)] for f in files.files]
    text = render_table(["CACHED", "DIRTY", "MAPPED", "SIZE", "FILE"], rows, right={0, 1, 2, 3}, layout=layout,
                        names={4: None}) if rows else \
        "no file walked has a page in the cache\n"
    cache = None if report.uses is None else report.uses["page cache"]
    share = f" = {100 * files.cached_pages / cache:.1f}% of the page cache ({_size(cache)})" if cache else ""
    roots = ", ".join(printable(r) for r in files.roots)
    return text + wrap_lines(f"{files.files_walked} files walked under {roots} in {files.seconds:.2f} s; "
                             f"{files.files_cached} hold {_size(files.cached_pages)} in the cache{share}",
                             layout.width) + "\n"


def _reconciled_doc(lines: list[Reconciled]) -> list[dict]:
    return [{"name": r.name, "uses": list(r.uses), "frames": r.frames, "bytes": r.size_bytes,
             "kernel_fields": list(r.fields), "before_bytes": r.before_bytes, "after_bytes": r.after_bytes,
             "within_target": r.within_target} for r in lines]


def as_json(report: RamReport, owners: Owners | None = None) -> str:
    """One JSON document: sizes in bytes, frames as counts."""
    import json

    doc = {
        "frames": report.frames, "page_size": PAGE_SIZE, "seconds": round(report.seconds, 3),
        "free_marks": report.free_marks, "ranges": [[r.start_pfn, r.end_pfn] for r in report.ranges],
        "uses": None if report.uses is None else [
            {"use": use, "frames": frames, "bytes": frames * PAGE_SIZE, "lists": report.lists[use]}
            for use, frames in report.uses.items()],
        "reconciled": _reconciled_doc(report.reconciled),
        "meminfo_before": report.meminfo_before, "meminfo_after": report.meminfo_after, "notes": report.notes,
    }
    if report.cgroups is not None:
        doc["cgroups"] = [{"cgroup": None if c.path is None else unicode_text(c.path), "inode": c.inode,
                           "frames": sum(c.uses.values()), "uses": {u: n for u, n in c.uses.items() if n},
                           "memory_stat": _reconciled_doc(c.reconciled)} for c in report.cgroups]
    if owners is not None and owners.processes is not None:
        usage = owners.processes
        doc["processes"] = [{"pid": u.pid, "command": unicode_text(u.command), "rss": u.rss, "pss": u.pss,
                             "uss": u.uss, "swap": u.swap} for u in usage.rows[:owners.top]]
        doc["processes_total"] = {"processes": len(usage.rows), "rss": usage.totals.rss, "pss": usage.totals.pss,
                                  "uss": usage.totals.uss, "swap": usage.totals.swap}
        mapped = _mapped_frames(report)
        doc["mapped_frames"] = mapped
    if owners is not None and owners.files is not None:
        files = owners.files
        doc["files"] = [{"path": unicode_text(f.path), "size_bytes": f.size_bytes, "cached_pages": f.cached_pages,
                         "dirty_pages": f.dirty_pages, "writeback_pages": f.writeback_pages,
                         "mapped_pages": f.mapped_pages} for f in files.files]
        doc["files_walked"] = {"roots": [unicode_text(r) for r in files.roots], "files": files.files_walked,
                               "files_cached": files.files_cached, "cached_pages": files.cached_pages,
                               "dirty_pages": files.dirty_pages, "unreadable": files.unreadable,
                               "seconds": round(files.seconds, 3), "notes": files.notes}
    return json.dumps(doc, indent=1) + "\n"


def diff_text(doc: dict, width: int | None = None) -> str:
    """``diff`` of two machine snapshots for people: uses, cgroups, and frames that
    changed use; cgroups' names cut to a terminal ``width``."""
    # (every name and time here comes from the files: anybody's to write)
    rows = [[printable(r["use"]), _size(r["a_frames"]), _size(r["b_frames"]), _signed(r["change_frames"])]
            for r in doc["by_use"] if r["a_frames"] or r["b_frames"]]
    out = [f"A {printable(str(doc['a_time']))}  ->  B {printable(str(doc['b_time']))}\n",
           render_table(["USE", "A", "B", "CHANGE"], rows, right={1, 2, 3})]
    rows = [[_size(r["a_frames"]), _size(r["b_frames"]), _signed(r["change_frames"]), _cgroup_name(r["cgroup"])]
            for r in doc["by_cgroup"] if r["change_frames"]]
    out.append("\n" + (render_table(["A", "B", "CHANGE", "CGROUP"], rows, right={0, 1, 2}, layout=Layout(width),
                                     names={3: None}) if rows
                       else "no cgroup changed\n"))
    if doc["moved"] is not None:
        rows = [[printable(r["from"]), printable(r["to"]), _size(r["frames"])] for r in doc["moved"][:20]]
        out.append("\n" + (render_table(["FROM", "TO", "FRAMES"], rows, right={2}) if rows
                           else "no frame changed use\n"))
    return "".join(out)


def _signed(frames: int) -> str:
    return ("+" if frames > 0 else "-" if frames < 0 else "") + _size(abs(frames))


def diff_json(doc: dict) -> str:
    """``diff --json`` of two machine snapshots: the document, cgroups' names as text."""
    import json

    return json.dumps({**doc, "by_cgroup": [{**r, "cgroup": None if r["cgroup"] is None else unicode_text(r["cgroup"])}
                                            for r in doc["by_cgroup"]]}, indent=1) + "\n"
