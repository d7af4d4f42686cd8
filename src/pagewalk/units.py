"""Sizes as people write them (``4G``, ``0x1000``), parsed exactly."""

from __future__ import annotations

from .errors import InvalidArgument
from .names import quoted

__all__ = ["parse_size"]


_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """A size: hex with ``0x``, or decimal, with an optional K, M, G or T suffix."""
    t = text.strip().lower()
    mult = 1
    if t and t[-1] in _SUFFIXES:
        mult, t = _SUFFIXES[t[-1]], t[:-1]
    hexadecimal = t.startswith("0x")
    digits = t[2:] if hexadecimal else t
    if not digits or not all(c in ("0123456789abcdef" if hexadecimal else "0123456789") for c in digits):
        raise InvalidArgument(f"not a size: {quoted(text)}")
    if len(digits.lstrip("0")) > 40:  # far beyond any address space (and int() refuses thousands of digits)
        raise InvalidArgument(f"size too large: {quoted(text)}")
    return int(digits, 16 if hexadecimal else 10) * mult
