"""Vectorised text formatting: many rows of numbers turned into bytes at once.

A row is a sequence of columns.  Each column is a character matrix ``chars``
(``uint8``, one row per output row) and a ``keep`` matrix saying which of those
characters are printed (for variable-width fields such as ``%x`` without
leading zeros).  Joining the columns and selecting ``chars[keep]`` in row-major
order yields the output text with no Python loop over rows.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "Column", "const", "dec_col", "hex_col", "hex_fixed", "bit_col", "choice_col", "bool_col", "nullable",
    "pad", "join", "render"
]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class Column:
    """A field of ``n`` rows: ``chars`` (n, w) uint8 and ``keep`` (n, w) bool or None (all kept)."""

    __slots__ = ("chars", "keep")

    def __init__(self, chars: np.ndarray, keep: np.ndarray | None = None) -> None:
        self.chars = chars
        self.keep = keep


def const(text: bytes | str, n: int) -> Column:
    """The same text on every row."""
    data = text.encode(errors="surrogateescape") if isinstance(text, str) else text  # paths may not be UTF-8
    row = np.frombuffer(data, dtype=np.uint8)
    return Column(np.broadcast_to(row, (n, len(row))))


def dec_col(values: np.ndarray) -> Column:
    """Non-negative integers in decimal."""
    v = values.astype(np.uint64, copy=False)
    top = int(v.max()) if len(v) else 0
    width = len(str(top))
    powers = np.array([10**k for k in range(width - 1, -1, -1)], dtype=np.uint64)
    d = (v[:, None] // powers[None, :]) % np.uint64(10)
    keep = np.logical_or.accumulate(d != 0, axis=1)
    keep[:, -1] = True
    return Column(_HEX[d], None if keep[:, 0].all() else keep)  # all as wide: a plain copy


# The two hex digits of each byte value, as one uint16: a row of hex is one take()
# of its bytes (about 8 times faster than shifting out digits).
_HEX_PAIRS = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1).view(np.uint16).ravel()


def _hex_chars(v: np.ndarray, width: int) -> np.ndarray:
    """The last ``width`` hex digits of each of ``v`` (uint64), zero-padded: (n, width) uint8."""
    n = len(v)
    nbytes = (width + 1) // 2
    # Little-endian: the low ``nbytes`` bytes, most significant first.
    pairs = np.take(_HEX_PAIRS, np.ascontiguousarray(v).view(np.uint8).reshape(n, 8)[:, nbytes - 1 :: -1])
    return pairs.view(np.uint8).reshape(n, 2 * nbytes)[:, 2 * nbytes - width :]


def hex_col(values: np.ndarray) -> Column:
    """Lower-case hex without leading zeros or prefix, like ``printf("%jx")``."""
    v = values.astype(np.uint64, copy=False)
    top = int(v.max()) if len(v) else 0
    width = max(1, (top.bit_length() + 3) // 4)
    chars = _hex_chars(v, width)
    if not len(v) or int(v.min()) >= 16 ** (width - 1):
        return Column(chars)  # every value as wide: a plain copy
    thresholds = np.array([16**k for k in range(1, width)], dtype=np.uint64)
    digits = np.searchsorted(thresholds, v, side="right") + 1
    return Column(chars, np.arange(width)[None, :] >= (width - digits)[:, None])


def hex_fixed(values: np.ndarray, width: int) -> Column:
    """Hex in exactly ``width`` digits (the caller knows every value needs that many):
    no keep mask, so rendering is a plain copy."""
    return Column(_hex_chars(values.astype(np.uint64, copy=False), width))


def bit_col(flags: np.ndarray) -> Column:
    """``0`` or ``1``."""
    return Column((flags.astype(np.uint8) + ord("0"))[:, None])


def choice_col(index: np.ndarray, words: list[bytes | str]) -> Column:
    """Row ``i`` prints ``words[index[i]]`` (a categorical column)."""
    encoded = [w.encode() if isinstance(w, str) else w for w in words]
    width = max((len(w) for w in encoded), default=0) or 1
    table = np.zeros((len(encoded), width), dtype=np.uint8)
    keep = np.zeros((len(encoded), width), dtype=bool)
    for i, w in enumerate(encoded):
        table[i, : len(w)] = np.frombuffer(w, dtype=np.uint8)
        keep[i, : len(w)] = True
    return Column(table[index], keep[index])


def bool_col(flags: np.ndarray, true: str = "true", false: str = "false") -> Column:
    """``true`` where ``flags`` is set, ``false`` elsewhere."""
    return choice_col(flags.astype(np.intp), [false, true])


def nullable(col: Column, null: np.ndarray, text: str) -> Column:
    """``col`` where ``null`` is False, else ``text`` (``null``, ``-``, or '')."""
    if not null.any():
        return col
    width = max(col.chars.shape[1], len(text), 1)
    n = len(null)
    chars = np.zeros((n, width), dtype=np.uint8)
    keep = np.zeros((n, width), dtype=bool)
    w = col.chars.shape[1]
    chars[:, :w] = col.chars
    keep[:, :w] = True if col.keep is None else col.keep
    filler = np.zeros(width, dtype=np.uint8)
    filler[: len(text)] = np.frombuffer(text.encode(), dtype=np.uint8)
    chars[null] = filler
    keep[null] = np.arange(width) < len(text)
    return Column(chars, keep)


def pad(col: Column, width: int, right: bool = False) -> Column:
    """Left-justify (or right-justify) a variable-width column to ``width`` spaces."""
    w = col.chars.shape[1]
    n = col.chars.shape[0]
    kept = col.keep if col.keep is not None else np.ones((n, w), dtype=bool)
    lengths = kept.sum(axis=1)
    spaces = np.maximum(width - lengths, 0)
    pad_width = max(width - int(lengths.min(initial=width)), 0) if n else 0
    blank = np.full((n, pad_width), ord(" "), dtype=np.uint8)
    pad_keep = np.arange(pad_width)[None, :] < spaces[:, None]
    if right:
        return Column(np.concatenate([blank, col.chars], axis=1), np.concatenate([pad_keep, kept], axis=1))
    return Column(np.concatenate([col.chars, blank], axis=1), np.concatenate([kept, pad_keep], axis=1))


def join(columns: list[Column]) -> Column:
    """Several columns side by side, as one column."""
    n = columns[0].chars.shape[0]
    chars = np.concatenate([np.broadcast_to(c.chars, (n, c.chars.shape[1])) for c in columns], axis=1)
    if all(c.keep is None for c in columns):
        return Column(chars)
    keep = np.concatenate(
        [np.ones((n, c.chars.shape[1]), dtype=bool) if c.keep is None else c.keep for c in columns], axis=1
    )
    return Column(chars, keep)


def render(columns: list[Column]) -> bytes:
    """Join the columns of every row and return the text of all rows."""
    if not columns or columns[0].chars.shape[0] == 0:
        return b""
    row = join(columns)
    return row.chars.tobytes() if row.keep is None else row.chars[row.keep].tobytes()
