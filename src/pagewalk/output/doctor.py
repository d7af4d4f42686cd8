"""``doctor``: what this machine and reader can tell, as a table or JSON."""

from __future__ import annotations

import json

from ..analysis.doctor import Check
from .table import Layout, render_table

__all__ = ["HEADERS", "checks_text", "checks_json"]

HEADERS = ("CHECK", "STATUS", "FOUND / WHAT IT COSTS")


def checks_text(checks: list[Check], layout: Layout = Layout()) -> str:
    """A row a check: its name, ok or MISSING, what was found and what a gap costs
    (on a terminal, wrapped under itself)."""
    rows = [[c.name, "ok" if c.ok else "MISSING", c.value + (f"  -> {c.cost}" if c.cost else "")] for c in checks]
    return render_table(list(HEADERS), rows, layout=layout, wrap_last=True)


def checks_json(checks: list[Check]) -> str:
    """``doctor --json``: ``{"checks": [...]}``, each check's fields."""
    return json.dumps({"checks": [c.as_dict() for c in checks]}, indent=1) + "\n"
