"""The compiled loops (pagewalk/native.c) give the answers of the numpy decoding.

``maps`` counts with :class:`pagewalk.core.counting.BatchCounter` (C, no numpy) and
``dump``, ``snapshot`` and the library's arrays decode with
:class:`pagewalk.core.pagetable.PageTable` (numpy): the same entries must give
the same counts, for every kind of entry (each combination of the top bits, swap
entries of every type with and without the guard-marker bit, zero-page frames),
with PFNs visible and hidden.
"""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest

from pagewalk import native
from pagewalk.core.counting import COUNT_COLUMNS, BatchCounter
from pagewalk.core.pagetable import PageTable
from pagewalk.kernel.pagemap import PM_PFRAME_MASK, PM_PRESENT, PTE_MARKER_GUARD, SWAP_TYPE_BITS, PagemapFile

ZERO_PFNS = frozenset([0x1234] + list(range(0x40000, 0x40200)))  # a zero page and a huge zero page


def crafted_entries(seed: int) -> np.ndarray:
    """Entries of every kind: each of the 512 top-bit values with random low bits,
    swap entries of each type with and without the marker's guard bit, zero frames."""
    rng = np.random.default_rng(seed)
    top = np.repeat(np.arange(512, dtype=np.uint64), 8) << np.uint64(55)
    low = rng.integers(0, 1 << 40, len(top), dtype=np.uint64)
    swap_type = np.arange(32, dtype=np.uint64).repeat(4)
    offset = rng.integers(0, 1 << 20, len(swap_type), dtype=np.uint64)
    offset[::2] |= np.uint64(PTE_MARKER_GUARD)
    swaps = (np.uint64(1 << 62) | (offset << np.uint64(SWAP_TYPE_BITS)) | swap_type
             | (rng.integers(0, 2, len(swap_type), dtype=np.uint64) << np.uint64(57)))
    zeros = np.uint64(PM_PRESENT) | np.array(sorted(ZERO_PFNS)[:50], dtype=np.uint64)
    raw = np.concatenate([top | low, swaps, zeros, np.zeros(100, dtype=np.uint64)])
    return raw[rng.permutation(len(raw))]


def numpy_counts(raw: np.ndarray, pfn_visible: bool) -> dict[str, int]:
    t = PageTable(0, raw, pfn_visible=pfn_visible, zero_pfns=ZERO_PFNS, soft_dirty_known=True)
    return {"pages": len(raw), "present": int(t.present.sum()), "file": int(t.file.sum()),
            "exclusive": int(t.exclusive.sum()), "soft_dirty": int(t.soft_dirty.sum()),
            "uffd_wp": int(t.uffd_wp.sum()), "guard": int(t.guard.sum()), "swapped": int(t.swapped.sum()),
            "zero": int(t.zero.sum()) if pfn_visible else 0, "ambiguous": int(t.swap_ambiguous.sum())}


@pytest.mark.parametrize("pfn_visible", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counts_in_c_equal_the_numpy_columns(pfn_visible, seed):
    raw = crafted_entries(seed)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(raw)), 40, replace=False))
    bounds = [0, *cuts.tolist(), len(raw)]
    rows = rng.integers(0, 7, len(bounds) - 1).tolist()  # segments of 7 mappings, in any order
    ranges = [(0x1234, 0x1234), (0x40000, 0x401FF)]
    counter = BatchCounter(7, 1024, pfn_visible=pfn_visible, zero_pfn_ranges=ranges)
    for row, a, b in zip(rows, bounds, bounds[1:]):
        at = a
        while at < b:  # through the counter's buffer, in the pieces it offers
            view = counter.reserve(b - at)
            n = len(view) // 8
            view[:] = raw[at : at + n].tobytes()
            counter.commit(row, n)
            at += n
    got = counter.finish()
    for mapping in range(7):
        parts = [raw[a:b] for row, a, b in zip(rows, bounds, bounds[1:]) if row == mapping]
        want = numpy_counts(np.concatenate(parts) if parts else raw[:0], pfn_visible)
        assert {name: got[name][mapping] for name in COUNT_COLUMNS} == want, mapping
    # the rules were exercised: every column counted something somewhere
    unknowable = {"ambiguous"} if pfn_visible else {"zero"}  # (hidden PFNs: no zero page by PFN)
    assert all(sum(got[name]) for name in COUNT_COLUMNS if name not in unknowable)


def test_count_entries_refuses_what_does_not_fit():
    table = bytearray(8 * 10)
    sel = bytes(512 * 8 * 8)
    with pytest.raises(ValueError):  # more entries claimed than given
        native.count_entries(table, bytes(8), [0], [2], sel, None, 5, 0, [])
    with pytest.raises(IndexError):  # a row outside the table
        native.count_entries(table, bytes(8), [1], [1], sel, None, 5, 0, [])
    with pytest.raises(ValueError):  # a selection table of another shape
        native.count_entries(table, bytes(8), [0], [1], sel[:-8], None, 5, 0, [])


def test_find_entry():
    raw = np.array([0, 1 << 63, (1 << 62) | 5, 1 << 62], dtype=np.uint64)
    assert native.find_entry(raw, 1 << 62, 1 << 62) == 2
    assert native.find_entry(raw, 1 << 61, 1 << 61) == -1


@pytest.mark.skipif(os.geteuid() != 0, reason="reading PFNs and /proc/kpageflags needs root")
def test_frame_histogram_equals_kpageflags_read_page_by_page():
    """The histogram of this process's own frames by kpageflags equals the one made
    from the same entries with numpy and KpageFile; swap entries come back by type."""
    from pagewalk.kernel.maps import read_maps

    held = np.ones(1 << 20, dtype=np.uint8)  # 1 MiB written: frames of our own  # noqa: F841
    with PagemapFile(os.getpid()) as pagemap:
        raw = np.concatenate([np.frombuffer(pagemap.read(m.start >> 12, (m.end - m.start) >> 12), dtype=np.uint64)
                              for m in read_maps(os.getpid()) if not m.is_vsyscall])
    swap = np.array([(1 << 62) | (8 << SWAP_TYPE_BITS) | 3, (1 << 62) | (1 << 58)], dtype=np.uint64)
    raw = np.concatenate([raw, swap])
    assert histogram_twice_agrees(raw), "five attempts: the C and numpy histograms differed each time"


def histogram_twice_agrees(raw: np.ndarray) -> bool:
    """Whether the C histogram equals the numpy one, in one of five attempts (a frame's
    LRU flags may change between the two reads: a real difference shows every time)."""
    from pagewalk.kernel.kpage import KPAGECGROUP, KPAGEFLAGS, KpageFile

    framed = ((raw & np.uint64(PM_PRESENT)) != 0) & ((raw & np.uint64(PM_PFRAME_MASK)) != 0)
    pfns = raw[framed] & np.uint64(PM_PFRAME_MASK)
    assert len(pfns) > 256
    kcgroup = KpageFile(KPAGECGROUP) if os.path.exists("/proc/kpagecgroup") else None
    try:
        with KpageFile(KPAGEFLAGS) as kflags:
            for _ in range(5):
                counts: dict = {}
                native.frame_histogram(raw, kflags.fd, kcgroup.fd if kcgroup else -1, SWAP_TYPE_BITS,
                                       PTE_MARKER_GUARD, counts)
                flags = kflags.read(pfns)
                groups = kcgroup.read(pfns) if kcgroup else np.zeros(len(pfns), dtype=np.uint64)
                want = collections.Counter(zip([0] * len(pfns), flags.tolist(),
                                               (raw[framed] >> np.uint64(55)).tolist(), groups.tolist()))
                want[(1 + (3 << 1), 0, 1 << 7, 0)] += 1  # type 3, no marker bit; top bits: swap
                want[(1, 0, (1 << 7) | (1 << 3), 0)] += 1  # type 0, with the guard-region bit
                if counts == dict(want):
                    return True
    finally:
        if kcgroup is not None:
            kcgroup.close()
    return False


def test_frame_histogram_raises_oserror_where_a_read_fails():
    raw = np.array([(1 << 63) | 5], dtype=np.uint64)
    with pytest.raises(OSError):
        native.frame_histogram(raw, -1, -1, SWAP_TYPE_BITS, PTE_MARKER_GUARD, {})


def test_find_frames_finds_present_entries_of_the_frames_asked_inside_the_segments():
    from array import array

    present = 1 << 63
    raw = np.array([present | 5, present | 9, 9, (1 << 62) | 5, present | 5, present | 7], dtype=np.uint64)
    targets = array("Q", [5, 9])
    assert native.find_frames(raw, targets, [(0, 6)]) == [0, 1, 4]  # not the swap entry, not an empty one
    assert native.find_frames(raw, targets, [(1, 2), (4, 1)]) == [1, 4]
    assert native.find_frames(raw, array("Q"), [(0, 6)]) == []
    with pytest.raises(IndexError):
        native.find_frames(raw, targets, [(5, 2)])


def test_hostile_arguments_are_refused_not_obeyed():
    """Arguments no caller passes (found by a review with ASan): refused with an
    exception, never read past a buffer or looped on."""
    from array import array

    sel = bytes(512 * 8 * 8)
    table = bytearray(8 * 10 * 2)
    with pytest.raises(ValueError):  # lengths whose sum overflows
        native.count_entries(table, bytes(8), [0, 1], [1 << 32, (1 << 63) - (1 << 32) + 1], sel, None, 5, 0, [])
    with pytest.raises(ValueError):  # a swap type past the kinds table
        native.count_entries(table, ((1 << 62) | 255).to_bytes(8, "little"), [0], [1], sel, bytes(64), 8, 0, [])
    with pytest.raises(ValueError):  # entries not on an 8-byte boundary
        native.find_entry(memoryview(bytes(16))[1:9], 1, 1)
    raw = np.array([1 << 63], dtype=np.uint64)
    for bad in ([[0, 1]], [(0,)], [("0", 1)], [(-1, 1)]):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            native.find_frames(raw, array("Q", [0]), bad)
        with pytest.raises((TypeError, ValueError, OverflowError)):
            native.frame_histogram(raw, -1, -1, SWAP_TYPE_BITS, PTE_MARKER_GUARD, {}, bad)


def test_a_short_file_reads_as_zeros_and_ends(tmp_path):
    """A saved copy that ends inside an entry: that entry reads as 0 (no endless re-read)."""
    path = tmp_path / "flags"
    path.write_bytes(b"\x01" * 20)  # entries 0 and 1 whole, entry 2 cut short
    with open(path, "rb") as f:
        raw = np.array([(1 << 63) | 1, (1 << 63) | 2], dtype=np.uint64)
        counts: dict = {}
        native.frame_histogram(raw, f.fileno(), -1, SWAP_TYPE_BITS, PTE_MARKER_GUARD, counts)
    assert counts == {(0, 0x0101010101010101, 256, 0): 1, (0, 0, 256, 0): 1}


def test_value_counts_of_values_and_of_pairs_equal_pythons_counter():
    rng = np.random.default_rng(5)
    values = np.repeat(rng.integers(0, 40, 3000).astype(np.uint64), rng.integers(1, 9, 3000))
    groups = (values * np.uint64(7) + rng.integers(0, 2, len(values)).astype(np.uint64)) % np.uint64(5)
    counts: dict = {}
    native.value_counts(values, counts)
    assert counts == collections.Counter(values.tolist())
    native.value_counts(values[:100], counts)  # adds to what the dict holds
    assert counts == collections.Counter(values.tolist()) + collections.Counter(values[:100].tolist())
    pairs: dict = {}
    native.value_counts(values, pairs, groups)
    assert pairs == collections.Counter(zip(values.tolist(), groups.tolist()))
    with pytest.raises(ValueError):
        native.value_counts(values, {}, groups[:-1])
    with pytest.raises(TypeError):
        native.value_counts(values, [], groups)
