"""A specimen process with a memory layout the tests control.

The test side (:class:`Specimen`) starts a process that runs :func:`serve`: it
reads one JSON request per line (Python code to run in a namespace of memory
helpers) and answers one JSON line with the value of ``result``.  Between
requests the specimen only blocks on read(), so its memory holds still while a
test inspects it.

The helpers call libc directly (mmap, madvise, userfaultfd) so that addresses,
protections and flags are exactly what the test asked for.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")

PROT = {"": 0, "r": 1, "rw": 3, "rwx": 7, "none": 0}
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE, MAP_HUGETLB = 0x01, 0x02, 0x10, 0x20, 0x4000, 0x40000
MADV_DONTNEED, MADV_HUGEPAGE, MADV_DONTFORK, MADV_PAGEOUT, MADV_GUARD_INSTALL = 4, 14, 10, 21, 102


def _helpers() -> dict:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.syscall.restype = ctypes.c_long

    def check(ret: int, what: str) -> int:
        if ret == -1 or ret == ctypes.c_void_p(-1).value:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return ret

    def mmap(pages: int, prot: str = "rw", shared: bool = False, fd: int = -1, offset: int = 0,
             align: int = 0, noreserve: bool = False, extra_flags: int = 0) -> int:
        """Map ``pages`` pages; ``align`` (bytes) places the start on that boundary.
        The mapping sits between two pages of another protection, so it never merges
        with a neighbour: its maps line and smaps block cover exactly these pages."""
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | (MAP_ANONYMOUS if fd < 0 else 0)
        flags |= (MAP_NORESERVE if noreserve else 0) | extra_flags
        length = pages * PAGE
        if not align:
            edge_prot = PROT["r"] if PROT[prot] == 0 else 0
            span = check(libc.mmap(None, length + 2 * PAGE, edge_prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                                   -1, 0), "mmap")
            return check(libc.mmap(span + PAGE, length, PROT[prot], flags | MAP_FIXED, fd, offset), "mmap fixed")
        span = check(libc.mmap(None, length + align, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), "mmap")
        start = (span + align - 1) & ~(align - 1)
        addr = check(libc.mmap(start, length, PROT[prot], flags | MAP_FIXED, fd, offset), "mmap fixed")
        if start > span:
            libc.munmap(span, start - span)
        libc.munmap(start + length, span + align - start)
        return addr

    def write(addr: int, pages: int = 1, value: int = 0x5A) -> None:
        for i in range(pages):
            ctypes.memset(addr + i * PAGE, value, 1)

    def read(addr: int, pages: int = 1) -> int:
        total = 0
        for i in range(pages):
            total += ctypes.string_at(addr + i * PAGE, 1)[0]
        return total

    def madvise(addr: int, pages: int, advice: int) -> None:
        check(libc.madvise(addr, pages * PAGE, advice), f"madvise({advice})")

    def munmap(addr: int, pages: int) -> None:
        check(libc.munmap(addr, pages * PAGE), "munmap")

    def memfd(name: str, pages: int) -> int:
        fd = os.memfd_create(name)
        os.ftruncate(fd, pages * PAGE)
        return fd

    def set_anon_name(addr: int, pages: int, name: str) -> None:
        PR_SET_VMA, PR_SET_VMA_ANON_NAME = 0x53564D41, 0
        buf = ctypes.create_string_buffer(name.encode())
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_void_p]
        check(libc.prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, pages * PAGE, buf), "prctl(PR_SET_VMA)")

    uffds: list[int] = []

    def uffd_wp(addr: int, pages: int) -> None:
        """Register ``[addr, +pages)`` for async userfaultfd write-protect with markers on
        unpopulated pages, and write-protect it (Documentation/admin-guide/mm/userfaultfd.rst's workflow)."""
        import fcntl
        import struct

        fd = check(libc.syscall(323, os.O_CLOEXEC | 1, 0), "userfaultfd")  # UFFD_USER_MODE_ONLY: no privilege needed
        features = (1 << 13) | (1 << 15)  # WP_UNPOPULATED | WP_ASYNC
        fcntl.ioctl(fd, 0xC018AA3F, bytearray(struct.pack("<QQQ", 0xAA, features, 0)), True)
        reg = bytearray(struct.pack("<QQQQ", addr, pages * PAGE, 2, 0))  # MODE_WP
        fcntl.ioctl(fd, 0xC020AA00, reg, True)
        fcntl.ioctl(fd, 0xC018AA06, bytearray(struct.pack("<QQQ", addr, pages * PAGE, 1)), True)  # WP
        uffds.append(fd)

    children: list = []

    def fork() -> int:
        """Fork a copy of this specimen; ``child(code)`` runs code in it."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(to_child_w)
            os.close(from_child_r)
            serve(os.fdopen(to_child_r, "r"), os.fdopen(from_child_w, "w"))
            os._exit(0)
        os.close(to_child_r)
        os.close(from_child_w)
        children.append((pid, os.fdopen(to_child_w, "w"), os.fdopen(from_child_r, "r")))
        return pid

    def child(code: str, index: int = -1):
        _, w, r = children[index]
        w.write(json.dumps({"code": code}) + "\n")
        w.flush()
        reply = json.loads(r.readline())
        if not reply["ok"]:
            raise RuntimeError(reply["error"])
        return reply["result"]

    return {name: value for name, value in locals().items() if not name.startswith("_")} | {
        "PAGE": PAGE, "libc": libc, "os": os, "ctypes": ctypes,
        "MADV_DONTNEED": MADV_DONTNEED, "MADV_HUGEPAGE": MADV_HUGEPAGE, "MADV_DONTFORK": MADV_DONTFORK,
        "MADV_PAGEOUT": MADV_PAGEOUT, "MADV_GUARD_INSTALL": MADV_GUARD_INSTALL, "MAP_HUGETLB": MAP_HUGETLB,
    }


def serve(rfile, wfile) -> None:
    """Answer requests until the input closes."""
    namespace = _helpers()
    for line in rfile:
        request = json.loads(line)
        namespace["result"] = None
        try:
            exec(request["code"], namespace)  # noqa: S102 - the tests are the only client
            reply = {"ok": True, "result": namespace["result"]}
        except Exception as exc:  # reported to the test, which raises it
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        wfile.write(json.dumps(reply) + "\n")
        wfile.flush()


class Specimen:
    """Test-side handle: ``run(code)`` executes code in the specimen, returns ``result``.

    ``uid`` starts it as that user instead (forked from the test process, with
    privileges dropped and the dumpable flag set again so its owner may read it).
    """

    def __init__(self, uid: int | None = None) -> None:
        if uid is None:
            self._proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True)
            self.pid = self._proc.pid
            self._w, self._r = self._proc.stdin, self._proc.stdout
        else:
            self._proc = None
            to_r, to_w = os.pipe()
            from_r, from_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(to_w)
                    os.close(from_r)
                    drop_privileges(uid)
                    serve(os.fdopen(to_r, "r"), os.fdopen(from_w, "w"))
                finally:
                    os._exit(0)
            os.close(to_r)
            os.close(from_w)
            self.pid = pid
            self._w, self._r = os.fdopen(to_w, "w"), os.fdopen(from_r, "r")
        self.run("result = os.getpid()")

    def run(self, code: str):
        self._w.write(json.dumps({"code": code}) + "\n")
        self._w.flush()
        line = self._r.readline()
        if not line:
            raise RuntimeError("specimen died")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def close(self) -> None:
        try:
            self._w.close()
        except OSError:
            pass
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        else:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
        self._r.close()

    def __enter__(self) -> Specimen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def drop_privileges(uid: int) -> None:
    """Become ``uid`` for good, and dumpable again: a root process that changes its
    uid turns non-dumpable, which would hide even its own /proc/self/pagemap."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
