"""Type stubs of the compiled module (native.c): the per-page loops of the everyday
commands.  Buffers are of u64 entries in native byte order, 8-byte aligned."""

from collections.abc import Sequence

from typing_extensions import Buffer

__all__ = ["count_entries", "frame_histogram", "find_entry", "frame_runs", "find_frames"]

def count_entries(table: Buffer, raw: Buffer, segments: Sequence[int], lengths: Sequence[int], sel: Buffer,
                  kind: Buffer | None, type_bits: int, marker_guard: int,
                  zero_ranges: Sequence[tuple[int, int]]) -> None: ...
def frame_histogram(raw: Buffer, flags_fd: int, cgroup_fd: int, type_bits: int, marker_guard: int,
                    counts: dict[tuple[int, int, int, int], int],
                    segments: Sequence[tuple[int, int]] | None = None) -> None: ...
def find_entry(raw: Buffer, mask: int, value: int) -> int: ...
def frame_runs(raw: Buffer, keep: Buffer, flags_fd: int, count_fd: int) -> list[tuple[int, int, int, int]]: ...
def find_frames(raw: Buffer, targets: Buffer, segments: Sequence[tuple[int, int]]) -> list[int]: ...
