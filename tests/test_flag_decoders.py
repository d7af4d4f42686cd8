"""pagewalk.core.flags on literal values: page-types' flag names, letters, default and
raw transformations, and its number and expression syntax (tools/mm/page-types.c:
page_flag_names, kpageflags_flags, expand_overloaded_flags, parse_number, parse_bits)."""

from __future__ import annotations

import numpy as np
import pytest

from pagewalk.core import flags as fl

LRU, ACTIVE, SLAB, RECLAIM, WRITEBACK, MMAP, ANON = 1 << 5, 1 << 6, 1 << 7, 1 << 9, 1 << 8, 1 << 11, 1 << 12
HEAD, HUGE, MLOCKED, OWNER_2, ERROR = 1 << 15, 1 << 17, 1 << 33, 1 << 34, 1 << 1


def test_letters_and_names():
    assert fl.symbolic(0) == "_" * len(fl.FLAGS)
    assert fl.symbolic(LRU | MMAP) == "_____l_____M" + "_" * (len(fl.FLAGS) - 12)
    assert fl.names(LRU | MMAP | 1 << 30) == ["lru", "mmap", "bit30"]  # bit 30 has no name
    assert fl.names(1 << 63) == ["mmap_exclusive"]


def test_default_view_hides_hacker_bits_and_lone_compound_bits():
    """Hacker bits (32-47) go; compound bits stay only on hugetlb pages."""
    got = fl.transform(np.array([MLOCKED | LRU, HEAD | LRU, HEAD | HUGE], dtype=np.uint64), 0, raw=False)
    assert got.tolist() == [LRU, LRU, HEAD | HUGE]


@pytest.mark.parametrize("flags, pme, expect", [
    (ANON | OWNER_2, 0, ANON | 1 << 47),                    # anon + owner_2 is anon_exclusive
    (SLAB | ACTIVE, 0, SLAB | 1 << 50),                     # slab + active is slub_frozen
    (SLAB | ERROR, 0, SLAB | 1 << 51),                      # slab + error is slub_debug
    (RECLAIM, 0, 1 << 48),                                  # reclaim without writeback is readahead
    (RECLAIM | WRITEBACK, 0, RECLAIM | WRITEBACK),          # with writeback it is reclaim
    (LRU, 1 << 61, LRU | 1 << 61),                          # pagemap's file bit
    (LRU, 1 << 62, LRU | 1 << 62),                          # pagemap's swap bit
    (LRU, 1 << 55, LRU | 1 << 40),                          # pagemap's soft-dirty is softdirty (40)
    (LRU, 1 << 56, LRU | 1 << 63),                          # pagemap's exclusive is mmap_exclusive (63)
    (MLOCKED | HEAD, 0, MLOCKED | HEAD),                    # raw keeps what default hides
])
def test_raw_view(flags, pme, expect):
    got = fl.transform(np.array([flags], dtype=np.uint64), np.array([pme], dtype=np.uint64), raw=True)
    assert got.tolist() == [expect]


def test_numbers_as_strtoll_reads_them():
    assert fl.strtoll0("012") == 0o12                  # a leading 0 is octal
    assert fl.strtoll0(" 0x1fz") == 0x1F               # the longest valid prefix
    assert fl.strtoll0("-1") == (1 << 64) - 1          # as an unsigned 64-bit value
    assert fl.strtoll0("abc") is None


def test_bit_expressions():
    """(mask, bits) as page-types' parse_bits_mask makes them; bits all ones means
    "any bit of mask set" (bit_mask_ok), else "flags & mask == bits"."""
    ALL = (1 << 64) - 1
    assert fl.parse_bits("lru,~active") == (LRU | ACTIVE, LRU)  # lru set and active clear
    assert fl.parse_bits("0x20") == (LRU, ALL)
    assert fl.parse_bits("anonymous,mmap") == (ANON | MMAP, ALL)   # either
    assert fl.parse_bits("anonymous,mmap=mmap") == (ANON | MMAP, MMAP)
    assert fl.parse_bits("=lru") == (ALL, LRU)                     # exactly these flags
    kept = fl.matches(np.array([LRU, LRU | ACTIVE, ACTIVE], dtype=np.uint64), [fl.parse_bits("lru,~active")])
    assert kept.tolist() == [True, False, False]


def test_transform_and_matches_give_one_answer_for_one_value_and_for_arrays():
    """types -p counts distinct values with Python ints (no numpy), the lists and the
    machine walk whole arrays: each value must come out the same either way."""
    import random

    import numpy as np

    from pagewalk.core import flags as fl

    rng = random.Random(7)
    overloaded = [(1 << 12) | (1 << 34), (1 << 7) | (1 << 6), (1 << 7) | (1 << 1), 1 << 9, (1 << 9) | (1 << 8),
                  1 << 15, (1 << 15) | (1 << 17), 1 << 16]
    values = overloaded + [rng.getrandbits(42) for _ in range(3000)]
    pmes = [rng.getrandbits(9) << 55 for _ in values]
    filters = [(fl.bit("mmap"), fl.bit("mmap")), (fl.bit("lru") | fl.bit("slab"), fl.ALL_BITS)]
    for raw in (False, True):
        many = fl.transform(np.array(values, dtype=np.uint64), np.array(pmes, dtype=np.uint64), raw)
        one = [fl.transform(v, p, raw) for v, p in zip(values, pmes)]
        assert many.tolist() == one
        assert fl.matches(many, filters).tolist() == [fl.matches(v, filters) for v in one]
    assert fl.transform(1 << 15, 0, False) == 0  # a compound page that is not hugetlb: bits hidden
    assert fl.transform((1 << 15) | (1 << 17), 0, False) == (1 << 15) | (1 << 17)
