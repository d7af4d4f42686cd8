"""The words the analyses take as choices: usage's groupings and sort keys, wss's methods.

A module of their own, importing nothing, so that the command line builds its parsers
(``pagewalk --help``) without loading any analysis.
"""

__all__ = ["GROUPINGS", "SORT_FIELDS", "METHODS"]

GROUPINGS = ("process", "user", "command", "mapping", "cgroup")  # usage --by
SORT_FIELDS = ("rss", "pss", "uss", "swap")  # usage --sort: Usage fields, largest first
METHODS = ("referenced", "soft-dirty", "idle", "damon")  # wss --method (and "auto")
