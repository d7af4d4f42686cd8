"""pagewalk.runs: the one home of the runs helpers, checked against literal values."""

import numpy as np

from pagewalk import runs


def test_runs_of_groups_values_at_most_gap_apart_inclusive():
    assert runs.runs_of([1, 2, 5, 9, 10], 1) == [(1, 2), (5, 5), (9, 10)]
    assert runs.runs_of([1, 2, 5, 9, 10], 3) == [(1, 5), (9, 10)]
    assert runs.runs_of([], 512) == []


def test_merge_runs_joins_half_open_runs_at_most_gap_apart():
    assert runs.merge_runs([0, 4, 10], [3, 6, 12]) == [(0, 3), (4, 6), (10, 12)]
    assert runs.merge_runs([0, 3, 10], [3, 6, 12]) == [(0, 6), (10, 12)]
    assert runs.merge_runs([0, 4, 10], [3, 6, 12], gap=4) == [(0, 12)]


def test_byte_runs_and_paint_are_inverse():
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 1], dtype=bool)
    assert runs.byte_runs(mask.tobytes()) == [(1, 3), (5, 6), (7, 8)]
    assert runs.byte_runs(b"\x01\x01") == [(0, 2)] and runs.byte_runs(b"\x00") == runs.byte_runs(b"") == []
    assert runs.paint(8, np.array([1, 5, 7]), np.array([3, 6, 8])).tolist() == mask.tolist()
    assert runs.paint(4, np.array([-2, 3]), np.array([1, 9])).tolist() == [True, False, False, True]


def test_consecutive_runs_are_half_open():
    assert runs.consecutive_runs(np.array([3, 4, 5, 9, 11, 12])) == [(3, 6), (9, 10), (11, 13)]
    assert runs.consecutive_runs(np.zeros(0, dtype=np.int64)) == []


def test_pages_within_counts_members_inside_each_bound():
    found = [(2, 5), (10, 20), (30, 31)]
    assert runs.pages_within(found, [(0, 3), (3, 12), (12, 13), (25, 40), (50, 60)]) == [1, 4, 1, 1, 0]
    assert runs.pages_within([], [(0, 3)]) == [0]
    assert runs.pages_within([(0, 5)], []) == []


def test_ramps_and_run_arrays():
    assert runs.ramps(np.array([10, 0, 7]), np.array([3, 0, 2])).tolist() == [10, 11, 12, 7, 8]
    assert runs.ramps(np.array([4096], dtype=np.uint64), np.array([3]), 4096).tolist() == [4096, 8192, 12288]
    lo, hi = runs.run_arrays([(1, 4), (8, 9)])
    assert lo.tolist() == [1, 8] and hi.tolist() == [4, 9] and lo.dtype == np.int64
