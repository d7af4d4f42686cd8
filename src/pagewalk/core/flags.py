"""The page flag table, in one place: bit, name, page-types letter, kernel version.

Names and letters are those of the kernel's ``tools/mm/page-types`` (tools/mm/page-types.c:
``page_flag_names``), so output and ``-b`` expressions mean what they mean there.  Three kinds
of bits: ``stable`` (the kernel's ABI, bits 0-26), ``hacker`` (32-41, exported by the
same read but "subject to change"; raw mode only) and ``synthetic`` (47-63: page-types'
own, derived from overloaded bits and from the pagemap entry; raw mode only).
Functions that work per page take one value (an int) or many (a numpy array), with
the same expressions; numpy is imported only for arrays.
"""

from __future__ import annotations

from collections import namedtuple

from ..errors import InvalidArgument
from ..kernel.pagemap import PM_FILE, PM_MMAP_EXCLUSIVE, PM_SOFT_DIRTY, PM_SWAP
from ..kernel.u64file import U64_MAX as ALL_BITS

__all__ = [
    "FLAGS", "NAMES", "bit", "COMPOUND", "symbolic", "names", "transform", "strtoll0", "parse_number",
    "parse_unsigned", "parse_flag_name", "parse_flag_names", "parse_bits", "matches", "describe"
]

Flag = namedtuple("Flag", "bit name letter since kind")

FLAGS: tuple[Flag, ...] = tuple(Flag(*row) for row in (
    (0, "locked", "L", "2.6.25", "stable"),
    (1, "error", "E", "2.6.25", "stable"),  # never set since PG_error went (about 6.12)
    (2, "referenced", "R", "2.6.25", "stable"),
    (3, "uptodate", "U", "2.6.25", "stable"),
    (4, "dirty", "D", "2.6.25", "stable"),
    (5, "lru", "l", "2.6.25", "stable"),
    (6, "active", "A", "2.6.25", "stable"),
    (7, "slab", "S", "2.6.25", "stable"),
    (8, "writeback", "W", "2.6.25", "stable"),
    (9, "reclaim", "I", "2.6.25", "stable"),
    (10, "buddy", "B", "2.6.25", "stable"),  # the first page of a free block only
    (11, "mmap", "M", "2.6.31", "stable"),
    (12, "anonymous", "a", "2.6.31", "stable"),
    (13, "swapcache", "s", "2.6.31", "stable"),
    (14, "swapbacked", "b", "2.6.31", "stable"),
    (15, "compound_head", "H", "2.6.31", "stable"),
    (16, "compound_tail", "T", "2.6.31", "stable"),
    (17, "huge", "G", "2.6.31", "stable"),  # hugetlb
    (18, "unevictable", "u", "2.6.31", "stable"),
    (19, "hwpoison", "X", "2.6.31", "stable"),
    (20, "nopage", "n", "2.6.31", "stable"),
    (21, "ksm", "x", "2.6.32", "stable"),
    (22, "thp", "t", "3.4", "stable"),  # any large folio that is not hugetlb
    (23, "offline", "o", "3.18", "stable"),  # "balloon" until about 5.0
    (24, "zero_page", "z", "4.0", "stable"),
    (25, "idle_page", "i", "4.3", "stable"),
    (26, "pgtable", "g", "4.18", "stable"),
    (32, "reserved", "r", "2.6.31", "hacker"),
    (33, "mlocked", "m", "2.6.31", "hacker"),
    (34, "owner_2", "d", "6.12", "hacker"),  # PG_owner_2; on anonymous pages: anon_exclusive
    (35, "private", "P", "2.6.31", "hacker"),
    (36, "private_2", "p", "2.6.31", "hacker"),
    (37, "owner_private", "O", "2.6.31", "hacker"),
    (38, "arch", "h", "2.6.31", "hacker"),
    (40, "softdirty", "f", "3.11", "hacker"),  # from pagemap bit 55, by page-types
    (41, "arch_2", "H", "4.10", "hacker"),
    (47, "anon_exclusive", "d", "-", "synthetic"),
    (48, "readahead", "I", "-", "synthetic"),
    (50, "slub_frozen", "A", "-", "synthetic"),
    (51, "slub_debug", "E", "-", "synthetic"),
    (61, "file", "F", "-", "synthetic"),
    (62, "swap", "w", "-", "synthetic"),
    (63, "mmap_exclusive", "1", "-", "synthetic"),
))
BY_NAME = {f.name: f for f in FLAGS}
NAMES = tuple(f.name for f in FLAGS)
HACKER_BITS = 0xFFFF << 32


def bit(name: str) -> int:
    """The mask of the flag called ``name`` (a name of :data:`NAMES`).  Raises KeyError for
    any other name."""
    return 1 << BY_NAME[name].bit


COMPOUND = bit("compound_head") | bit("compound_tail")
KNOWN_BITS = sum(1 << f.bit for f in FLAGS)

# raw mode adds pagemap entry bits PM_SOFT_DIRTY, PM_MMAP_EXCLUSIVE, PM_FILE, PM_SWAP (tools/mm/page-types.c)


def symbolic(flags: int) -> str:
    """page-types' short form: one character per named bit, ``_`` where clear."""
    return "".join(f.letter if flags >> f.bit & 1 else "_" for f in FLAGS)


def names(flags: int) -> list[str]:
    """The names of the set bits, in bit order; ``bitN`` for a set bit without a name."""
    out = [f.name for f in FLAGS if flags >> f.bit & 1]
    out += [f"bit{b}" for b in range(64) if flags >> b & 1 and not KNOWN_BITS >> b & 1]
    return out


def _unit(values):
    """The type constants take beside ``values``: Python ints stay ints; numpy arrays
    take uint64 (the same expressions then serve one value and a million)."""
    if isinstance(values, int):
        return int
    import numpy as np

    return np.uint64


def transform(flags, pme, raw: bool):
    """page-types' ``kpageflags_flags``, on one value (an int, with ``pme`` an int) or
    many (a uint64 array; ``pme`` an array or an int).  Default mode hides the hacker
    bits and the compound bits of pages that are not hugetlb; raw mode keeps
    everything, untangles overloaded bits and adds the pagemap-derived bits."""
    u = _unit(flags)
    f = flags if u is int else u(flags)  # (never changed in place: the caller's buffer stays as read)

    def where(cond, bits: int):  # ``bits`` where ``cond`` holds, else 0
        return cond * u(bits)

    if not raw:
        f = f & u(~HACKER_BITS & ALL_BITS)
        lone = ((f & u(COMPOUND)) != 0) & ((f & u(bit("huge"))) == 0)
        return f & ~where(lone, COMPOUND)

    has = lambda name: (f & u(bit(name))) != 0  # noqa: E731 - reads the current f
    f = f ^ where(has("anonymous") & has("owner_2"), bit("owner_2") | bit("anon_exclusive"))
    slab = has("slab")
    f = f ^ where(slab & has("active"), bit("active") | bit("slub_frozen"))
    f = f ^ where(slab & has("error"), bit("error") | bit("slub_debug"))
    f = f ^ where((f & u(bit("reclaim") | bit("writeback"))) == u(bit("reclaim")), bit("reclaim") | bit("readahead"))
    p = pme if u is int else u(pme)
    for pm_bit, name in ((PM_SOFT_DIRTY, "softdirty"), (PM_FILE, "file"), (PM_SWAP, "swap"),
                         (PM_MMAP_EXCLUSIVE, "mmap_exclusive")):
        f = f | where((p & u(pm_bit)) != 0, bit(name))
    return f


# -- numbers and expressions, exactly as page-types reads them ------------------------

def strtoll0(text: str) -> int | None:
    """C's ``strtoll(text, NULL, 0)`` as an unsigned 64-bit value, and whether any
    digit was read: leading space, a sign, ``0x`` hex, ``0`` octal, else decimal;
    the longest valid prefix counts (``12abc`` is 12).  None if nothing parsed."""
    s = text.lstrip(" \t\n\r\f\v")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    base, digits = 10, "0123456789"
    if s[:2].lower() == "0x" and s[2:3].lower() in set("0123456789abcdef") and s[2:3]:
        base, digits, s = 16, "0123456789abcdef", s[2:]
    elif s[:1] == "0":
        base, digits = 8, "01234567"
    n = 0
    for i, c in enumerate(s.lower()):
        if c not in digits:
            if i == 0:
                return None
            break
        n = n * base + digits.index(c)
    else:
        if not s:
            return None
    n = min(n, (1 << 63) - 1) if sign > 0 else min(n, 1 << 63)  # strtoll clamps
    return (sign * n) & ALL_BITS


def parse_number(text: str, what: str = "name or number") -> int:
    """page-types' ``parse_number``: 0 from text that does not start with ``0`` is an error."""
    n = strtoll0(text)
    if not n and not text.startswith("0"):
        raise InvalidArgument(f"invalid {what}: {text!r}")
    return n or 0


def parse_unsigned(text: str, what: str) -> int:
    """:func:`parse_number` for what is never negative nor near 2**63 (a page, a count,
    a PID, an inode): strtoll wraps ``-5`` to 2**64 - 5 and clamps 2**64 to 2**63 - 1,
    values that would match nothing and count 0 pages without a word; refused instead."""
    n = parse_number(text, what)
    if n and text.lstrip(" \t\n\r\f\v").startswith("-"):
        raise InvalidArgument(f"{what} {text!r} is negative")
    if n >= (1 << 63) - 1:
        raise InvalidArgument(f"{what} {text!r} is out of range")
    return n


def parse_flag_name(token: str) -> int:
    """One token of a flag expression: a prefix of ``compound`` (both compound
    bits), else the first flag (in bit order) whose name starts with it, else a
    number (a mask value, C syntax)."""
    if not token:
        return 0
    if len(token) <= 8 and "compound".startswith(token):
        return COMPOUND
    for f in FLAGS:
        if f.name.startswith(token):
            return 1 << f.bit
    n = strtoll0(token)
    if not n and not token.startswith("0"):
        raise InvalidArgument(f"unknown flag name or number {token!r} (flag names: {', '.join(NAMES)}; "
                              "any prefix of a name will do, or a number such as 0x10)")
    return n or 0


def parse_flag_names(text: str, with_negated: bool) -> int:
    """The OR of the comma-separated tokens up to the first ``=``.  Tokens written
    ``~name`` count only ``with_negated`` (they belong to the mask, not the bits)."""
    out = 0
    for token in text.split("=", 1)[0].split(","):
        if token.startswith("~"):
            if with_negated:
                out |= parse_flag_name(token[1:])
        else:
            out |= parse_flag_name(token)
    return out


def parse_bits(expr: str) -> tuple[int, int]:
    """A ``-b`` expression as ``(mask, bits)``, as tools/mm/page-types.c ``parse_bits_mask``: ``a,b`` any of
    (bits = ALL_BITS), ``a,b=a`` and ``a,~b`` masked equality, ``=a,b`` exact."""
    if expr.startswith("="):
        return ALL_BITS, parse_flag_names(expr[1:], False)
    if "=" in expr:
        head, tail = expr.split("=", 1)
        return parse_flag_names(head, False), parse_flag_names(tail, False)
    if "~" in expr:
        return parse_flag_names(expr, True), parse_flag_names(expr, False)
    return parse_flag_names(expr, False), ALL_BITS


def matches(flags, filters: list[tuple[int, int]]):
    """Which ``flags`` (an int, or a uint64 array) pass every ``(mask, bits)`` filter:
    a bool or a bool array (None: no filters, all pass)."""
    keep = None
    u = _unit(flags)
    for mask, bits in filters:
        masked = flags & u(mask)
        ok = masked != 0 if bits == ALL_BITS else masked == u(bits)
        keep = ok if keep is None else keep & ok
    return keep


def describe(expr: str) -> str:
    """``types -d EXPR``: the flags value, short and long form, as page-types prints it."""
    value = parse_flag_names(expr, False)
    return f"0x{value:016x}\t{symbolic(value)}\t{','.join(names(value))}"
