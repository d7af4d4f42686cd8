"""A forked family: a parent writes MIB MiB of private memory and forks N - 1 children,
each writing 16 pages of its own; every process prints ``PID n``, the parent then
``ready``, and all sleep until killed (as a process group).

    python family.py N MIB
"""
import mmap
import os
import signal
import sys

n, mib = int(sys.argv[1]), int(sys.argv[2])
buf = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, mib << 20, 4096):
    buf[i] = 1
for k in range(n - 1):
    if os.fork() == 0:
        for i in range(16):  # 16 pages of its own: copy-on-write breaks
            buf[((k * 16 + i) * 4096) % (mib << 20)] = 2
        os.write(1, b"PID %d\n" % os.getpid())  # one write: the children's lines must not interleave
        signal.pause()
        os._exit(0)
os.write(1, b"PID %d\nready\n" % os.getpid())
signal.pause()
