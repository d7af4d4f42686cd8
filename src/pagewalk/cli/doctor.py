"""``pagewalk doctor``: what this kernel and user can see, and what each gap costs."""

from __future__ import annotations

import sys

NAMES = ("doctor",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="what this kernel and user can see, and what each gap costs",
                       description="Checks every kernel interface pagewalk uses and says, for each one "
                                   "missing, which command degrades and how.")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.doctor import run_checks
    from ..output.table import render_table

    checks = run_checks()
    if args.json:
        import json

        sys.stdout.write(json.dumps({"checks": [c.as_dict() for c in checks]}, indent=1) + "\n")
        return 0
    rows = [[c.name, "ok" if c.ok else "MISSING", c.value + (f"  -> {c.cost}" if c.cost else "")] for c in checks]
    sys.stdout.write(render_table(["CHECK", "STATUS", "FOUND / WHAT IT COSTS"], rows))
    return 0
