"""``v2p``'s answers: a line an address, or the objects of a JSON list (no numpy)."""

from __future__ import annotations

from ..kernel.pagemap import PAGE_SIZE
from ..names import printable

__all__ = ["text", "json_objects"]


def text(results, notes: dict[int, str]) -> str:
    """One line an address: ``VADDR -> PADDR pfn PFN  STATE  MAPPING`` (``-`` where
    unknown or hidden); ``notes`` (index -> note) add words to that line's state."""
    lines = []
    # What a line says of its page is worked out once a page (addresses often share pages).
    pages: dict[tuple, tuple[int | None, bool, str]] = {}
    for i, r in enumerate(results):
        key = (r.entry, id(r.mapping), r.zero, r.shmem_swapped)
        page = pages.get(key)
        if page is None or i in notes:
            where = printable(r.mapping.label()) if r.mapping else "-"
            state = f"{r.state} ({printable(notes[i])})" if i in notes else r.state
            page = (r.pfn, r.present, f"  {state}  {where}\n")
            if i not in notes:
                pages[key] = page
        pfn, present, rest = page
        if pfn is not None:
            phys = f"0x{pfn * PAGE_SIZE + r.vaddr % PAGE_SIZE:x} pfn 0x{pfn:x}"
        elif present:
            phys = "- pfn -"
        else:
            phys = "-"
        lines.append(f"0x{r.vaddr:x} -> {phys}{rest}")
    return "".join(lines)


def json_objects(results, notes: dict[int, str]) -> str:
    """The batch's objects exactly as the inside of ``json.dumps(all, indent=1)`` shows
    them (batches joined by ``,\\n`` between ``[\\n`` and ``\\n]`` make that document),
    but from the C encoder, which json uses only without ``indent``: 5 times faster."""
    import json  # (here: json imports re, which one address's start-up does not need)

    answers = [r.as_dict() for r in results]
    for i, note in notes.items():
        answers[i]["note"] = note
    # [{"k": v,\n  "k": v},\n  {...}]: the objects' keys already indented as indent=1 puts
    # them; the objects are flat and strings escape newlines, so "},\n  {" is only ever
    # the gap between two objects.
    text = json.dumps(answers, separators=(",\n  ", ": "))
    return " {\n  " + text[2:-2].replace("},\n  {", "\n },\n {\n  ") + "\n }"
