"""``pagewalk doctor``: what this kernel and user can see, and what each gap costs."""

from __future__ import annotations

import sys

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("doctor",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="what this kernel and user can see, and what each gap costs",
                       description="Checks every kernel interface pagewalk uses and says, for each one "
                                   "missing, which command degrades and how.")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    from . import _common

    _common.layout_arguments(p, "check,status")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.doctor import run_checks
    from ..output import doctor as render

    from . import _common

    layout = _common.layout(args, render.HEADERS)
    checks = run_checks()
    sys.stdout.write(render.checks_json(checks) if args.json else render.checks_text(checks, layout))
    return 0
