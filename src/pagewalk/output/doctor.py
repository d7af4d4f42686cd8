"""``doctor``: what this machine and reader can tell, as a table or JSON."""

from __future__ import annotations

import json

from ..analysis.doctor import Check
from .table import render_table

__all__ = ["checks_text", "checks_json"]


def checks_text(checks: list[Check]) -> str:
    """A row a check: its name, ok or MISSING, what was found and what a gap costs."""
    rows = [[c.name, "ok" if c.ok else "MISSING", c.value + (f"  -> {c.cost}" if c.cost else "")] for c in checks]
    return render_table(["CHECK", "STATUS", "FOUND / WHAT IT COSTS"], rows)


def checks_json(checks: list[Check]) -> str:
    """``doctor --json``: ``{"checks": [...]}``, each check's fields."""
    return json.dumps({"checks": [c.as_dict() for c in checks]}, indent=1) + "\n"
