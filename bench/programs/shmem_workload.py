"""1 GiB of shared anonymous memory, every page written, half of it paged out to swap:
the first half (LAYOUT ``half``) or every other page (any other LAYOUT, ``alternate``:
the worst case for finding the runs).  Paging out needs a swap device, made by the
benchmark.  Prints ``PID n`` and ``ready``, then sleeps until killed.

    python shmem_workload.py LAYOUT
"""
import mmap
import os
import signal
import sys

layout, size, page = sys.argv[1], 1 << 30, mmap.PAGESIZE
buf = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
for i in range(0, size, page):
    buf[i] = 1
if layout == "half":
    buf.madvise(21, 0, size // 2)  # MADV_PAGEOUT
else:
    for off in range(0, size, 2 * page):
        buf.madvise(21, off, page)
os.write(1, b"PID %d\nready\n" % os.getpid())
signal.pause()
