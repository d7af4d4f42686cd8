"""Runs: sorted values, masks and page numbers turned into ``[first, end)`` runs and back.

A foundation module (stdlib only): every layer may use it.  The pure-Python helpers
(:func:`runs_of`, :func:`merge_runs`) are on the ``v2p`` path, so the numpy ones
import numpy when called, never at import time.

Runs are half-open ``(first, end)`` pairs unless a docstring says otherwise.
Helpers elsewhere that look alike but differ on purpose:
``kernel/kpage._merge`` merges *overlapping, unsorted-by-end* runs and returns
where each lands in one buffer; ``analysis/npz.run_lengths`` is run-length
encoding of equal values, not runs of positions; ``output/types`` groups pages
of equal flags (page-types' ``-l``).
"""

from __future__ import annotations

import bisect

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

__all__ = ["runs_of", "merge_runs", "merge_equal", "byte_runs", "consecutive_runs", "paint", "pages_within", "ramps",
           "run_arrays"]


def runs_of(values: Sequence[int], gap: int) -> list[tuple[int, int]]:
    """Sorted distinct ``values`` grouped into runs whose neighbours are at most
    ``gap`` apart (one read instead of one per value).

    Returns inclusive ``(first, last)`` pairs (the last value, not one past it):
    its callers look up the values themselves, not a range."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def merge_runs(lo: Sequence[int], hi: Sequence[int], gap: int = 0) -> list[tuple[int, int]]:
    """Sorted, disjoint runs ``[lo, hi)`` with neighbours at most ``gap`` apart joined
    (one read each).  Returns ``(first, end)`` pairs."""
    out: list[tuple[int, int]] = []
    for a, b in zip(lo, hi):
        if out and a - out[-1][1] <= gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def byte_runs(mask: bytes) -> list[tuple[int, int]]:
    """The runs of non-zero bytes in ``mask`` (bytes of 0 and 1, such as mincore's
    answer): ``(first, end)`` indices.  A step per run, none per byte."""
    runs = []
    start = mask.find(1)
    while start >= 0:
        end = mask.find(0, start)
        if end < 0:
            end = len(mask)
        runs.append((start, end))
        start = mask.find(1, end)
    return runs


def consecutive_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """Sorted distinct integers (an array, e.g. page numbers) as ``(first, end)`` runs
    of consecutive values: :func:`runs_of` with gap 1, vectorised and half-open."""
    import numpy as np

    if len(values) == 0:
        return []
    cut = np.flatnonzero(np.diff(values) != 1) + 1
    firsts = values[np.concatenate(([0], cut))].tolist()
    ends = (values[np.concatenate((cut - 1, [len(values) - 1]))] + 1).tolist()
    return list(zip(firsts, ends))


def paint(n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A boolean array of length ``n``, True inside each ``[lo, hi)`` (clipped to
    ``[0, n)``): the inverse of :func:`byte_runs` (as booleans)."""
    import numpy as np

    delta = np.zeros(n + 1, dtype=np.int32)
    np.add.at(delta, np.clip(lo, 0, n), 1)
    np.add.at(delta, np.clip(hi, 0, n), -1)
    return np.cumsum(delta[:n]) > 0


def pages_within(runs: Sequence[tuple[int, int]], bounds: Sequence[tuple[int, int]]) -> list[int]:
    """For sorted, disjoint runs ``[first, end)`` and sorted, disjoint ``bounds``
    ``[start, end)`` (mappings, in pages): how many members of the runs lie inside
    each bound.  A run may straddle several bounds (PAGEMAP_SCAN joins equal
    neighbours across adjacent mappings).  A step per run and per bound it meets."""
    starts = [a for a, _ in bounds]
    counts = [0] * len(bounds)
    for first, end in runs:
        i = max(bisect.bisect_right(starts, first) - 1, 0)
        while i < len(bounds) and bounds[i][0] < end:
            inside = min(end, bounds[i][1]) - max(first, bounds[i][0])
            if inside > 0:
                counts[i] += inside
            i += 1
    return counts


def ramps(starts: np.ndarray, lengths: np.ndarray, step: int = 1) -> np.ndarray:
    """``numpy.arange(start, start + length * step, step)`` for each start and length,
    one after another, in ``starts``' dtype (exact for unsigned starts past 2**53):
    built in one array by a cumulative sum in place (per-run temporaries of a
    million entries page-fault slowly)."""
    import numpy as np

    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    out = np.full(int(lengths.sum()), step, dtype=starts.dtype)
    if len(out):
        lasts = starts + (lengths - 1).astype(starts.dtype) * starts.dtype.type(step)
        out[np.cumsum(lengths) - lengths] = starts - np.concatenate((np.zeros(1, starts.dtype), lasts[:-1]))
        np.cumsum(out, out=out)  # unsigned starts wrap and come back: the sums are exact
    return out


def run_arrays(runs) -> tuple[np.ndarray, np.ndarray]:
    """``(first, end)`` runs (a list of pairs, or already two arrays) as two int64
    arrays: their firsts and their ends."""
    import numpy as np

    if isinstance(runs, tuple) and len(runs) == 2 and isinstance(runs[0], np.ndarray):
        return runs
    pairs = np.array(runs, dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def merge_equal(columns: list[np.ndarray], lengths: np.ndarray | None = None
                ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Runs (each ``lengths`` long, or 1 where None; their values in ``columns``) with
    neighbours whose values are all equal joined: ``(index of each joined run's first,
    its values in each column, its length)``."""
    import numpy as np

    n = len(columns[0])
    keep = np.ones(n, dtype=bool)
    if n:
        same = np.ones(n - 1, dtype=bool)
        for c in columns:
            same &= c[1:] == c[:-1]
        keep[1:] = ~same
    heads = np.flatnonzero(keep)
    if lengths is None:
        joined = np.diff(np.append(heads, n))
    else:
        joined = np.add.reduceat(lengths, heads) if len(heads) else lengths[:0]
    return heads, [c[heads] for c in columns], joined
