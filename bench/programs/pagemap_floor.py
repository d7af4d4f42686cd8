"""A floor for ``usage --all``, doing less than usage does and nothing else: every mapped
pagemap entry of every process (procrank's reads, kpagecount left out), from a thread
per CPU, while the main thread imports numpy.  Nothing is decoded.

    python pagemap_floor.py
"""
import os
import threading

pids = [pid for pid in os.listdir("/proc") if pid.isdigit()]
def read(mine):
    for pid in mine:
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                lines = f.read().splitlines()
            fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        except OSError:
            continue
        for line in lines:
            start, end = (int(x, 16) for x in line.split(b" ", 1)[0].split(b"-"))
            if start < 1 << 47:
                try:
                    os.preadv(fd, [bytearray((end - start) >> 9)], (start >> 12) * 8)
                except OSError:
                    break
        os.close(fd)
n = len(os.sched_getaffinity(0))
threads = [threading.Thread(target=read, args=(pids[i::n],)) for i in range(n)]
for t in threads:
    t.start()
import numpy

del numpy  # imported for its cost only
for t in threads:
    t.join()
