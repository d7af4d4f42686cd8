"""Names are data: process names and mapping paths, as each kind of output shows them.

Whoever starts a process or names a file chooses these names, often an unprivileged
user, and a name may hold anything but ``/`` and NUL (a comm not even that): escape
sequences that would rewrite the terminal of the root user reading pagewalk's output,
newlines that would forge lines, bytes that are not UTF-8 (read with
:func:`os.fsdecode`, they are surrogate escapes).  So:

* for people (tables, text, error messages): :func:`printable`, every character that
  is not printable escaped, as ``ps`` and ``ls`` do;
* for programs (JSON, CSV, Prometheus labels): :func:`unicode_text`, the exact value
  (their encoders quote it), with only the bytes that are not UTF-8 written ``\\xNN``.

No imports: every layer may use it.
"""

from __future__ import annotations

__all__ = ["printable", "unicode_text", "quoted"]


def printable(name: str) -> str:
    """``name`` safe to print to a terminal: each character that is not printable
    (controls such as ESC, newline, CR, tab, DEL, the C1 controls, line and paragraph
    separators, format characters) as a Python escape (``\\x1b``, ``\\n``, ``\\x85``,
    ``\\u2028``), and each byte that is not UTF-8 as ``\\xNN``.  Backslashes are left
    as they are (as ``ps`` leaves them), so the kernel's ``\\012`` in a maps path
    reads as it is."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else _escaped(c) for c in name)


def _escaped(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogate escape of a byte that is not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return c.encode("unicode_escape").decode("ascii")


def unicode_text(name: str) -> str:
    """``name`` exactly, as valid Unicode for JSON, CSV and other text formats: bytes
    that are not UTF-8 appear as ``\\xNN`` (the value read keeps them losslessly)."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no byte stands for (a foreign snapshot file, say)
        return name.encode("utf-8", "backslashreplace").decode("ascii")


def quoted(text: str, most: int = 60) -> str:
    """``text`` in quotes, escaped as :func:`printable` escapes names (a byte that is
    not UTF-8 as ``\\xNN``) and cut short: an error names what it refuses in one short line."""
    shown = printable(text)
    return f"'{shown}'" if len(shown) <= most else f"'{shown[: most - 3]}...'"
