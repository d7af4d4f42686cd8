"""A process that runs exec while it is dumped has not exited: the same process (PID
and start time) has a new program and new memory.  dump prints what it had and says
the process changed its program, exit 1."""

from __future__ import annotations

import signal
import subprocess
import sys

# On SIGUSR1 it becomes a shell that says so once exec is done, then sleeps.  Its
# 64 MiB mapping lies below its libraries and stack.
EXECS_WHEN_SIGNALLED = """
import mmap, os, signal
m = mmap.mmap(-1, 64 << 20)
signal.signal(signal.SIGUSR1, lambda *_: os.execv("/bin/sh", ["sh", "-c", "echo execd; exec sleep 120"]))
print("ready", flush=True)
while True:
    signal.pause()
"""


def test_a_process_that_execs_during_a_dump_changed_its_program():
    target = subprocess.Popen([sys.executable, "-c", EXECS_WHEN_SIGNALLED], stdout=subprocess.PIPE, text=True)
    dump = None
    try:
        assert target.stdout.readline() == "ready\n"
        # One csv row a page: the big mapping's rows (written as soon as its pages are
        # read, unlike small mappings' rows, which are gathered) are far more than a pipe
        # holds, so once the first rows are read, dump is blocked writing the next ones,
        # with the libraries and the stack still to read.
        dump = subprocess.Popen([sys.executable, "-m", "pagewalk", "dump", str(target.pid), "--format", "csv"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head = dump.stdout.read(4096)
        assert head.startswith(b"vaddr,")
        target.send_signal(signal.SIGUSR1)
        assert target.stdout.readline() == "execd\n"  # the old memory is gone
        out, err = dump.communicate(timeout=120)
        assert dump.returncode == 1, err
        lines = err.decode().splitlines()
        assert len(lines) == 1 and "Traceback" not in lines[0], err
        assert lines[0] == (f"pagewalk: error: process {target.pid} changed its program (exec) during the dump; "
                            "the output above is partial")
        assert len(head + out) > 65536  # what was read before is there
    finally:
        target.kill()
        target.wait()
        if dump is not None and dump.poll() is None:
            dump.kill()
            dump.wait()
