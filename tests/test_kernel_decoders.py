"""Literal-value tests of every decoder in ``pagewalk.kernel``: a literal input, the
exact record out.  Each decoder is a pure function over text or bytes that its
reader calls, so these need no process, no root and no particular kernel."""

from __future__ import annotations

import errno
import os
import struct

import numpy as np
import pytest

from pagewalk.errors import AccessDenied, InvalidArgument, PagewalkError, Unsupported
from pagewalk.kernel import config, damon, idle, maps, pagecache, pagemap, probes, procfs, scan, shmem, smaps
from pagewalk.kernel.kpage import KPAGEFLAGS, KpageFile, _translate
from pagewalk.kernel.oserrors import from_oserror
from pagewalk.kernel.u64file import U64_MAX


# -- /proc/PID/maps -------------------------------------------------------------------

def test_maps_line_with_spaces_in_the_path():
    line = "7f0000001000-7f0000003000 r-xp 00002000 fd:01 131090                     /opt/my app/lib x.so\n"
    assert maps.parse_line(line) == maps.Mapping(0x7F0000001000, 0x7F0000003000, "r-xp", 0x2000, "fd:01", 131090,
                                                 "/opt/my app/lib x.so")


def test_maps_line_of_a_deleted_file():
    m = maps.parse_line("00400000-00401000 rw-s 00000000 00:01 2048                       /memfd:buf (deleted)")
    assert (m.start, m.end, m.perms, m.offset, m.dev, m.inode) == (0x400000, 0x401000, "rw-s", 0, "00:01", 2048)
    assert m.path == "/memfd:buf (deleted)"
    assert (m.deleted, m.name, m.kind, m.shared, m.size_bytes) == (True, "/memfd:buf", "memfd", True, 4096)


def test_maps_line_of_vsyscall_and_anonymous_memory():
    m = maps.parse_line("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]")
    assert m == maps.Mapping(0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, "--xp", 0, "00:00", 0, "[vsyscall]")
    assert (m.kind, m.is_vsyscall) == ("vsyscall", True)
    anon = maps.parse_line("7ffd1000-7ffd3000 rw-p 00000000 00:00 0 \n")
    assert (anon.path, anon.kind, anon.label()) == ("", "anon", "[anon]")


def test_maps_line_keeps_leading_spaces_of_a_path_past_the_padding():
    head = "7f0000001000-7f0000003000 r--p 00000000 fd:01 5 "
    line = head.ljust(73) + "  spaced"  # the kernel's column, its one space, then the name's own two
    assert maps.parse_line(line).path == "  spaced"
    assert maps.parse_line(maps.parse_line(line).as_maps_line()).path == "  spaced"


def test_maps_text_splits_at_newline_only():
    text = ("00400000-00401000 r--p 00000000 fd:01 7                                  /a\rb\n"
            "00401000-00402000 r--p 00000000 fd:01 8                                  /c\n")
    assert [m.path for m in maps.parse_maps(text)] == ["/a\rb", "/c"]


def test_maps_line_that_is_not_one():
    with pytest.raises(InvalidArgument, match="not a /proc/PID/maps line"):
        maps.parse_line("hello world")


# -- /proc/PID/pagemap ----------------------------------------------------------------

def test_pagemap_bits_are_the_kernels():
    assert (pagemap.PM_PRESENT, pagemap.PM_SWAP, pagemap.PM_FILE, pagemap.PM_GUARD_REGION, pagemap.PM_UFFD_WP,
            pagemap.PM_MMAP_EXCLUSIVE, pagemap.PM_SOFT_DIRTY, pagemap.PM_PFRAME_MASK) == (
        1 << 63, 1 << 62, 1 << 61, 1 << 58, 1 << 57, 1 << 56, 1 << 55, 0x7FFFFFFFFFFFFF)
    assert U64_MAX == 0xFFFFFFFFFFFFFFFF


def test_read_entries_into_a_saved_u64_file(tmp_path):
    path = tmp_path / "kpageflags"
    path.write_bytes(struct.pack("<4Q", 7, 0x400, U64_MAX, 1 << 40))
    with KpageFile(KPAGEFLAGS, str(path)) as f:
        assert f.end_pfn() == 4
        assert f.read_range(1, 10).tolist() == [0x400, U64_MAX, 1 << 40]
        assert f.read(np.array([3, 0, 3, 9], dtype=np.uint64)).tolist() == [1 << 40, 7, 1 << 40, 0]
    assert f.fd == -1


# -- PAGEMAP_SCAN ---------------------------------------------------------------------

def test_page_region_records():
    data = struct.pack("<6Q", 0x7F0000000000, 0x7F0000004000, scan.PAGE_IS_PRESENT | scan.PAGE_IS_FILE,
                       0x7F0000004000, 0x7F0000200000, scan.PAGE_IS_PFNZERO)
    assert list(scan.iter_page_regions(data)) == [(0x7F0000000000, 0x7F0000004000, 0b1100),
                                                  (0x7F0000004000, 0x7F0000200000, 0b100000)]
    cats = np.array([scan.PAGE_IS_PFNZERO | scan.PAGE_IS_PRESENT, scan.PAGE_IS_HUGE | scan.PAGE_IS_PRESENT,
                     scan.PAGE_IS_HUGE | scan.PAGE_IS_PFNZERO | scan.PAGE_IS_PRESENT], dtype=np.uint64)
    assert scan.zero_page(cats).tolist() == [True, False, True]
    assert scan.huge_page(cats).tolist() == [False, True, False]


def test_pm_scan_arg_layout():
    assert (scan.ARG.size, scan.WALK_END_OFFSET, scan.PAGEMAP_SCAN) == (96, 32, 0xC0606610)


# -- /proc/PID/smaps, smaps_rollup ----------------------------------------------------

SMAPS = (b"00400000-00402000 r-xp 00000000 fd:01 42                                 /usr/bin/my prog\n"
         b"Size:                  8 kB\n"
         b"Rss:                   8 kB\n"
         b"Pss:                   4 kB\n"
         b"Swap:                  0 kB\n"
         b"THPeligible:    0\n"
         b"VmFlags: rd ex mr mw me dw\n"
         b"7ffd1000-7ffd3000 rw-p 00000000 00:00 0                                  [stack]\n"
         b"Rss:                   4 kB\n"
         b"Swap:                  4 kB\n"
         b"VmFlags: rd wr mr mw me gd ac\n")


def test_smaps_blocks():
    blocks = smaps.parse_smaps(SMAPS)
    assert [(b.mapping.start, b.mapping.end, b.mapping.path) for b in blocks] == [
        (0x400000, 0x402000, "/usr/bin/my prog"), (0x7FFD1000, 0x7FFD3000, "[stack]")]
    assert [b.fields_bytes for b in blocks] == [{"Size": 8192, "Rss": 8192, "Pss": 4096, "Swap": 0},
                                                {"Rss": 4096, "Swap": 4096}]
    assert [b.fields_bytes for b in smaps.parse_smaps(SMAPS, frozenset(("Swap",)))] == [{"Swap": 0}, {"Swap": 4096}]


def test_smaps_vm_flags():
    lines = SMAPS.split(b"\n")
    assert smaps.parse_vm_flags(lines, 0x7FFD1000) == ["rd", "wr", "mr", "mw", "me", "gd", "ac"]
    assert smaps.parse_vm_flags(lines, 0x400000) == ["rd", "ex", "mr", "mw", "me", "dw"]
    assert smaps.parse_vm_flags(lines, 0x500000) == []


def test_smaps_rollup():
    text = (b"00400000-7ffd3000 ---p 00000000 00:00 0                                  [rollup]\n"
            b"Rss:                1024 kB\nPss:                 512 kB\nPss_Anon:            100 kB\n"
            b"SwapPss:               3 kB\n")
    assert smaps.parse_rollup(text) == {"Rss": 1 << 20, "Pss": 512 << 10, "Pss_Anon": 100 << 10, "SwapPss": 3072}
    assert smaps.parse_rollup(b"") is None


def test_shmem_swap_pages_from_smaps():
    m = maps.Mapping(0x1000, 0x9000, "rw-s", 0, "00:01", 5, "/dev/zero (deleted)")
    blocks = {(0x1000, 0x9000): {"Swap": 5 * pagemap.PAGE_SIZE}}
    assert smaps.shmem_swap_pages(blocks, m, 2) == 3
    assert smaps.shmem_swap_pages(blocks, m, 6) is None
    assert smaps.shmem_swap_pages({}, m, 0) is None


# -- /proc/PID/stat, status, comm, cmdline, cgroup; /proc/meminfo, /proc/swaps ------

def test_stat_with_a_comm_holding_parentheses_and_spaces():
    data = (b"4242 (a) (b c) ) S 1 4242 4242 0 -1 4194560 123 0 0 0 17 9 0 0 20 0 1 0 987654 "
            b"12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
    assert procfs.parse_stat(data) == procfs.ProcStat(state="S", flags=4194560, utime_ticks=17, stime_ticks=9,
                                                      start_time_ticks=987654)
    assert procfs.parse_stat(b"4242 (x) Z") is None


def test_statm():
    """size, resident (pages), shared, text, lib, data, dt: only the first two are read."""
    assert procfs.parse_statm("5631 1024 512 300 0 2000 0\n") == (5631, 1024)


def test_status():
    text = ("Name:\tmy prog\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4243\n"
            "VmSize:\t  123456 kB\nVmData:\t    2048 kB\nCapEff:\t000001ffffffffff\n")
    assert procfs.parse_status(text) == procfs.ProcStatus(tgid=4242, cap_effective=0x1FFFFFFFFFF,
                                                          vm_size_bytes=123456 << 10, vm_data_bytes=2048 << 10)
    assert procfs.parse_status("Name:\tk\n") == procfs.ProcStatus(None, None, None, None)


def test_comm_and_cmdline():
    assert procfs.parse_comm("my prog\n") == "my prog"
    assert procfs.parse_comm("two\nlines\n") == "two\nlines"
    assert procfs.parse_cmdline("python3\0-c\0\0print(1)\0") == ["python3", "-c", "print(1)"]


def test_cgroup_v1_and_v2_lines():
    text = "12:memory:/user.slice/a:b\n3:cpu,cpuacct:/system\n0::/user.slice/user-0.slice/session-1.scope\n"
    assert procfs.parse_cgroup(text) == [
        procfs.CgroupEntry(12, ("memory",), "/user.slice/a:b"),
        procfs.CgroupEntry(3, ("cpu", "cpuacct"), "/system"),
        procfs.CgroupEntry(0, (), "/user.slice/user-0.slice/session-1.scope")]
    assert procfs.parse_cgroup("") == []


def test_meminfo():
    text = "MemTotal:       16315340 kB\nMemFree:          812344 kB\nMemAvailable:    9123456 kB\nHugePages_Total: 0\n"
    assert procfs.parse_meminfo(text) == procfs.Meminfo(available_bytes=9123456 << 10, free_bytes=812344 << 10)
    assert procfs.parse_meminfo("MemFree: 10 kB\n") == procfs.Meminfo(None, 10240)
    assert procfs.parse_meminfo_fields(text + "Hugepagesize:       2048 kB\nbogus\n") == {
        "MemTotal": 16315340 << 10, "MemFree": 812344 << 10, "MemAvailable": 9123456 << 10, "HugePages_Total": 0,
        "Hugepagesize": 2048 << 10}


def test_zoneinfo_free_pages():
    text = ("Node 0, zone      DMA\n  per-node stats\n      nr_inactive_anon 103763\n  pages free     3840\n"
            "      nr_free_pages 3840\nNode 0, zone   Normal\n  pages free     2858779\n"
            "      nr_free_pages 2858779\n      nr_free_cma  0\n")
    assert procfs.parse_zoneinfo_free(text) == 3840 + 2858779
    assert procfs.parse_zoneinfo_free("") == 0


def test_swaps():
    text = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
            "/dev/vda3                               partition\t4194300\t\t1024\t\t-2\n"
            "/swap\\040file                           file\t\t1048572\t\t0\t\t10\n")
    assert procfs.parse_swaps(text) == [
        procfs.SwapDevice("/dev/vda3", "partition", 4194300 << 10, 1 << 20, -2),
        procfs.SwapDevice("/swap\\040file", "file", 1048572 << 10, 0, 10)]
    assert procfs.parse_swaps("Filename\tType\tSize\tUsed\tPriority\n") == []


def test_mountinfo_tmpfs_devices():
    data = (b"22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
            b"30 22 0:26 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw\n"
            b"31 22 0:27 / /run/my\rdir rw master:2 unbindable - tmpfs none rw,size=10k\n"
            b"32 22 0:28 / /proc rw - proc proc rw\n")
    assert shmem.parse_tmpfs_devs(data) == {os.makedev(0, 26), os.makedev(0, 27)}


# -- configuration and sysfs ----------------------------------------------------------

def test_kernel_config_lines():
    lines = ["# Automatically generated file\n", "CONFIG_MEMCG=y\n", "CONFIG_ZRAM=m\n", "CONFIG_HZ=250\n",
             "# CONFIG_MEM_SOFT_DIRTY is not set\n", "CONFIG_PAGE_MAPCOUNT=y\n"]
    assert config.parse_config(lines) == frozenset({"CONFIG_MEMCG", "CONFIG_PAGE_MAPCOUNT"})


def test_sysfs_choice_files():
    assert probes.parse_choice("always [madvise] never\n") == "madvise"
    assert probes.parse_choice("[always] defer defer+madvise madvise never\n") == "always"
    assert probes.parse_choice("1\n") == "1"


def test_damon_region_files():
    assert damon.parse_region("140737488289792", "140737488355328", "7") == damon.DamonRegion(
        0x7FFFFFFF0000, 0x800000000000, 7)
    with pytest.raises(ValueError):
        damon.parse_region("0x10", "20", "1")


def test_idle_bitmap_words():
    words = struct.pack("<2Q", 1 << 3 | 1 << 63, 1 << 0)  # words 10 and 11: PFNs 643, 703, 704 idle
    pfns = np.array([643, 644, 703, 704, 705], dtype=np.uint64)
    assert idle.idle_bits(words, 10, pfns).tolist() == [True, False, True, True, False]


def test_page_cache_pages():
    assert pagecache.file_pages(0) == 0
    assert pagecache.file_pages(pagemap.PAGE_SIZE + 1) == 2


# -- the OSError boundary -------------------------------------------------------------

def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def test_oserror_wording_of_the_per_frame_files():
    denied = _translate(_oserror(errno.EACCES), "/proc/kpageflags", "kpageflags")
    assert (type(denied), str(denied)) == (AccessDenied, "cannot read /proc/kpageflags: permission denied (the "
                                                         "per-frame files are root's only: run as root (CAP_SYS_ADMIN))")
    missing = _translate(_oserror(errno.ENOENT), "/proc/kpagecgroup", "kpagecgroup")
    assert (type(missing), str(missing)) == (
        Unsupported, "this kernel has no /proc/kpagecgroup (it needs CONFIG_MEMCG)")
    copy = _translate(_oserror(errno.ENOENT), "saved", None)
    assert (type(copy), str(copy)) == (PagewalkError, "cannot read saved: No such file or directory")


def test_oserror_wording_of_a_named_file():
    assert str(pagecache.file_error(_oserror(errno.EACCES), "/f")) == \
        "cannot read /f: permission denied (not readable by this user)"
    missing = pagecache.file_error(_oserror(errno.ENOENT), "/f")
    assert (type(missing), str(missing)) == (InvalidArgument, "no such file: /f")
    loop = pagecache.file_error(_oserror(errno.ELOOP), "/f")
    assert (type(loop), str(loop)) == (InvalidArgument, "/f is a symbolic link (not followed)")
    assert str(pagecache.file_error(_oserror(errno.EIO), "/f")) == "cannot read /f: Input/output error"


def test_oserror_default_wording():
    assert str(from_oserror(_oserror(errno.ENOENT), None, "/sys/x")) == "cannot read /sys/x: no such file"
    assert str(from_oserror(_oserror(errno.ELOOP), None, "/x")) == "cannot read /x: Too many levels of symbolic links"


def test_iomem_system_ram():
    from pagewalk.kernel.physmem import PfnRange, parse_iomem_ram

    page = pagemap.PAGE_SIZE
    text = ("00000000-00000fff : Reserved\n"
            f"{page:08x}-{0x9ffff:08x} : System RAM\n"
            "000a0000-000bffff : PCI Bus 0000:00\n"
            f"{0x100000:08x}-{0x7fffffff:08x} : System RAM\n"
            "  01000000-01ffffff : Kernel code\n"
            "  02000000-020fffff : System RAM\n"
            "00000000-00000000 : System RAM\n")
    assert parse_iomem_ram(text) == [PfnRange(1, 0xA0000 // page), PfnRange(0x100000 // page, 0x80000000 // page),
                                     PfnRange(0, 0)]
