"""A Python process holding MIB MiB of memory it wrote (a program people inspect every
day: an interpreter, its libraries and a heap); prints ``PID n`` and ``ready``, then
sleeps until killed.

    python resident.py MIB
"""
import mmap
import os
import signal
import sys

mib = int(sys.argv[1])
heap = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, mib << 20, 4096):
    heap[i] = 1
os.write(1, b"PID %d\nready\n" % os.getpid())
signal.pause()
