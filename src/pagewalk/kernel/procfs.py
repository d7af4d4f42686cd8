"""Small files of ``/proc/PID`` (and ``/proc`` itself): ``stat``, ``status``, ``comm``,
``cmdline``, ``cgroup``, the list of processes, and the
machine-wide ``/proc/meminfo`` and ``/proc/swaps``.  Each reader returns None (or a
stated placeholder) where the file cannot be read: callers decide what that means.
Each file's text is decoded by a ``parse_*`` function of its own (no I/O).

The kernel writes these in fs/proc/array.c (stat, status), fs/proc/base.c (comm,
cmdline, the PID directories), kernel/cgroup/cgroup.c (``proc_cgroup_show``),
fs/proc/meminfo.c and mm/swapfile.c (swaps).
"""

from __future__ import annotations

import os
from collections import namedtuple  # (not typing.NamedTuple: typing costs start-up time)

from ..errors import ProcessGone

__all__ = [
    "command_name", "parse_comm", "command_line", "parse_cmdline", "read_text", "ProcStat", "parse_stat",
    "proc_stat", "is_zombie", "proc_start_time", "execed", "gone_during", "owner_uid", "all_pids",
    "ProcStatus", "parse_status", "read_status", "parse_statm", "read_statm", "thread_group", "CgroupEntry",
    "parse_cgroup", "read_cgroup", "Meminfo", "parse_meminfo", "read_meminfo", "parse_meminfo_fields",
    "meminfo_fields", "parse_zoneinfo_free", "zone_free_pages", "SwapDevice", "parse_swaps",
    "swap_devices", "open_fd_count", "MountEntry", "parse_mounts", "mounts"
]


def command_name(pid: int) -> str:
    """The process's command name (``/proc/PID/comm``) exactly as the process set it
    (only the newline the kernel adds is removed: the name may hold spaces, newlines
    and escape sequences of its own), ``?`` where unreadable."""
    text = read_text(f"/proc/{pid}/comm")
    return "?" if text is None else parse_comm(text)


def parse_comm(text: str) -> str:
    """Decode the text of ``/proc/PID/comm``: the name without the newline the kernel adds."""
    return text[:-1] if text.endswith("\n") else text


def command_line(pid: int) -> list[str]:
    """The process's arguments (``/proc/PID/cmdline``, :func:`parse_cmdline`), empty
    where unreadable."""
    return parse_cmdline(read_text(f"/proc/{pid}/cmdline") or "")


def parse_cmdline(text: str) -> list[str]:
    """Decode the text of ``/proc/PID/cmdline``: the NUL-separated arguments, empty
    ones left out."""
    return [a for a in text.split("\0") if a]


def read_text(path: str) -> str | None:
    """The text of a file as it is: no newline translation (``\\r`` stays), bytes that
    are not UTF-8 as surrogate escapes (:func:`os.fsdecode`); None where unreadable.
    Split it into lines at ``\\n`` only: names in /proc files may hold the other line
    ends of :meth:`str.splitlines`."""
    try:
        with open(path, "rb") as f:
            return os.fsdecode(f.read())
    except OSError:
        return None


class ProcStat(namedtuple("ProcStat", "state flags utime_ticks stime_ticks start_time_ticks")):
    """The fields pagewalk uses of ``/proc/PID/stat`` (fs/proc/array.c ``do_task_stat``).

    ``state``: the state letter (field 3: ``R``, ``S``, ``Z`` ...); ``flags``: the
    task's PF_* flags (field 9); ``utime_ticks``, ``stime_ticks``: CPU time in user
    and kernel mode (fields 14, 15), and ``start_time_ticks``: when it started
    (field 22, since boot), all in clock ticks (``os.sysconf("SC_CLK_TCK")``)."""

    __slots__ = ()


def parse_stat(data: bytes) -> ProcStat | None:
    """Decode the text of ``/proc/PID/stat``; None where it is not one.  comm (field
    2) may hold spaces and parentheses: the fields after it start after the last ')'."""
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return ProcStat(fields[0].decode(), int(fields[6]), int(fields[11]), int(fields[12]), int(fields[19]))
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/PID/stat`` decoded (:func:`parse_stat`), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return parse_stat(f.read())
    except OSError:
        return None


def is_zombie(pid: int) -> bool:
    """Whether the process has exited and its parent not reaped it yet (state Z or X)."""
    stat = proc_stat(pid)
    return stat is not None and stat.state in ("Z", "X")


def proc_start_time(pid: int) -> int | None:
    """When the process started (``/proc/PID/stat`` field 22, clock ticks since boot),
    or None if unreadable.  exec keeps it (and the PID) while the memory is replaced;
    a new process on a reused PID has another."""
    stat = proc_stat(pid)
    return None if stat is None else stat.start_time_ticks


def execed(pid: int, start_time: int | None) -> bool:
    """Whether the process that started at ``start_time`` (:func:`proc_start_time`),
    whose memory pagewalk was reading has gone, ran exec: it still has that PID and
    start time, and has a memory again.  One that is exiting has none (its maps read
    empty), whatever its state says at that moment."""
    if start_time is None or proc_start_time(pid) != start_time:
        return False
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            return bool(f.read(1))
    except OSError:
        return False


def gone_during(pid: int, start_time: int | None, during: str) -> ProcessGone:
    """The error for a process whose memory went away during ``during`` (``"the
    dump"``), with output already written: it ran exec (:func:`execed`), or it exited."""
    what = "changed its program (exec)" if execed(pid, start_time) else "exited"
    return ProcessGone(pid, f"process {pid} {what} during {during}; the output above is partial")


def owner_uid(pid: int) -> int | None:
    """The user ID that owns the process (its ``/proc/PID`` directory's owner: the
    effective UID, fs/proc/base.c ``task_dump_owner``); None if there is no such process."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def all_pids() -> list[int]:
    """The PIDs of every process ``/proc`` lists (its numeric directories), ascending.
    Raises OSError where /proc cannot be listed."""
    return sorted(int(n) for n in os.listdir("/proc") if n.isdigit())


class ProcStatus(namedtuple("ProcStatus", "tgid cap_effective vm_size_bytes vm_data_bytes")):
    """The fields pagewalk uses of ``/proc/PID/status`` (fs/proc/array.c
    ``proc_pid_status``), each None where the file has no such line: ``tgid`` (the
    thread group, that is process, ID), ``cap_effective`` (the effective capability
    mask, ``CapEff``), ``vm_size_bytes`` and ``vm_data_bytes`` (``VmSize``, ``VmData``:
    kB in the file, bytes here)."""

    __slots__ = ()


def parse_status(text: str) -> ProcStatus:
    """Decode the text of ``/proc/PID/status``.  Raises ValueError on a malformed
    number in a line it decodes."""
    found: dict[str, str] = {}
    for line in text.split("\n"):
        key, _, value = line.partition(":")
        if key in ("Tgid", "CapEff", "VmSize", "VmData"):
            found[key] = value.split()[0]
    kb = {k: int(found[k]) << 10 for k in ("VmSize", "VmData") if k in found}
    return ProcStatus(int(found["Tgid"]) if "Tgid" in found else None,
                      int(found["CapEff"], 16) if "CapEff" in found else None,
                      kb.get("VmSize"), kb.get("VmData"))


def read_status(pid: int | str) -> ProcStatus | None:
    """``/proc/PID/status`` (``pid`` may be ``"self"``) decoded (:func:`parse_status`);
    None where it is unreadable or malformed."""
    text = read_text(f"/proc/{pid}/status")
    try:
        return None if text is None else parse_status(text)
    except (ValueError, IndexError):
        return None


def parse_statm(text: str) -> tuple[int, int]:
    """``/proc/PID/statm``'s first two fields: (size, resident), in pages
    (fs/proc/array.c, ``proc_pid_statm``).  Raises ValueError if malformed."""
    size, resident = (int(x) for x in text.split()[:2])
    return size, resident


def read_statm(pid: int) -> tuple[int, int] | None:
    """(size, resident) in pages of ``/proc/PID/statm`` (:func:`parse_statm`); None
    where it is unreadable or malformed."""
    text = read_text(f"/proc/{pid}/statm")
    try:
        return None if text is None else parse_statm(text)
    except ValueError:
        return None


def thread_group(pid: int) -> int | None:
    """The process (thread group) ID that ``pid`` belongs to (``Tgid`` in
    ``/proc/PID/status``; ``pid`` itself where the line is missing); None if there is
    no such task."""
    status = read_status(pid)
    if status is None:
        return None
    return pid if status.tgid is None else status.tgid


class CgroupEntry(namedtuple("CgroupEntry", "hierarchy controllers path")):
    """One line of ``/proc/PID/cgroup`` (kernel/cgroup/cgroup.c ``proc_cgroup_show``):
    ``hierarchy`` ID (0 for cgroup v2), ``controllers`` (a tuple of names; empty for
    v2's single line), and the cgroup's ``path`` in that hierarchy."""

    __slots__ = ()


def parse_cgroup(text: str) -> list[CgroupEntry]:
    """Decode the text of ``/proc/PID/cgroup`` (``ID:CONTROLLERS:PATH`` lines; the
    path may hold ``:``).  Raises ValueError on a line that is not one."""
    out = []
    for line in text.split("\n")[:-1]:
        hierarchy, controllers, path = line.split(":", 2)
        out.append(CgroupEntry(int(hierarchy), tuple(controllers.split(",")) if controllers else (), path))
    return out


def read_cgroup(pid: int) -> list[CgroupEntry]:
    """``/proc/PID/cgroup`` decoded (:func:`parse_cgroup`); empty where unreadable."""
    return parse_cgroup(read_text(f"/proc/{pid}/cgroup") or "")


class Meminfo(namedtuple("Meminfo", "available_bytes free_bytes")):
    """The fields pagewalk uses of ``/proc/meminfo`` (fs/proc/meminfo.c), in bytes:
    ``MemAvailable`` (None before Linux 3.14) and ``MemFree``."""

    __slots__ = ()


def parse_meminfo(text: str) -> Meminfo:
    """Decode the text of ``/proc/meminfo`` (``Name:  N kB`` lines)."""
    return _meminfo(parse_meminfo_fields(text))


def _meminfo(fields: dict[str, int]) -> Meminfo:
    return Meminfo(fields.get("MemAvailable"), fields.get("MemFree"))


def read_meminfo() -> Meminfo:
    """``/proc/meminfo`` decoded (:func:`parse_meminfo`).  Raises OSError where it
    cannot be read (it always can)."""
    return _meminfo(meminfo_fields())


def parse_meminfo_fields(text: str) -> dict[str, int]:
    """Every field of ``/proc/meminfo``'s text: ``N kB`` fields in bytes, the others
    (``HugePages_Total`` and its kin: counts of huge pages) as they are."""
    out = {}
    for line in text.split("\n"):
        key, _, value = line.partition(":")
        words = value.split()
        if key and words and words[0].isdigit():
            out[key] = int(words[0]) << 10 if words[1:] == ["kB"] else int(words[0])
    return out


def meminfo_fields() -> dict[str, int]:
    """``/proc/meminfo`` decoded whole (:func:`parse_meminfo_fields`).  Raises OSError
    where it cannot be read (it always can)."""
    with open("/proc/meminfo", "rb") as f:
        return parse_meminfo_fields(os.fsdecode(f.read()))


def parse_zoneinfo_free(text: str) -> int:
    """The free pages of every zone in ``/proc/zoneinfo``'s text (``nr_free_pages``,
    mm/vmstat.c ``zoneinfo_show_print``): what the zones' buddy allocators hold."""
    return sum(int(line.split()[1]) for line in text.split("\n") if line.split()[:1] == ["nr_free_pages"])


def zone_free_pages() -> int | None:
    """:func:`parse_zoneinfo_free` of ``/proc/zoneinfo``; None where unreadable."""
    text = read_text("/proc/zoneinfo")
    return None if text is None else parse_zoneinfo_free(text)


class SwapDevice(namedtuple("SwapDevice", "filename kind size_bytes used_bytes priority")):
    """One line of ``/proc/swaps`` (mm/swapfile.c ``swap_show``): the device or file
    (spaces and tabs in it escaped by the kernel as ``\\040``, ``\\011``), ``kind``
    (``partition`` or ``file``), its size and the part in use (kB in the file, bytes
    here), and its priority."""

    __slots__ = ()


def parse_swaps(text: str) -> list[SwapDevice]:
    """Decode the text of ``/proc/swaps`` (a header line, then one line a device)."""
    out = []
    for line in text.split("\n")[1:]:
        parts = line.split()
        if len(parts) >= 5:
            out.append(SwapDevice(parts[0], parts[1], int(parts[2]) << 10, int(parts[3]) << 10, int(parts[4])))
    return out


def swap_devices() -> list[SwapDevice]:
    """The active swap devices (``/proc/swaps``, :func:`parse_swaps`); empty where
    unreadable."""
    return parse_swaps(read_text("/proc/swaps") or "")


def open_fd_count() -> int:
    """How many file descriptors this process has open (entries of
    ``/proc/self/fd``, the one listing them included).  Raises OSError where /proc
    cannot be listed."""
    return len(os.listdir("/proc/self/fd"))


MountEntry = namedtuple("MountEntry", "source point fstype options")
MountEntry.__doc__ = """One line of ``/proc/self/mounts``: device or ``source``, mount ``point``,
file-system type ``fstype`` and its ``options`` (a tuple)."""


def _unescape_mount(field: str) -> str:
    """A field of /proc/self/mounts: the kernel writes space, tab, newline and
    backslash as octal escapes (fs/proc_namespace.c, ``mangle``)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def parse_mounts(text: str) -> list[MountEntry]:
    """Decode the text of ``/proc/self/mounts`` (lines end at \\n only)."""
    out = []
    for line in text.split("\n"):
        fields = line.split(" ")
        if len(fields) >= 4:
            out.append(MountEntry(_unescape_mount(fields[0]), _unescape_mount(fields[1]), fields[2],
                                  tuple(fields[3].split(","))))
    return out


def mounts() -> list[MountEntry]:
    """This process's mounts (:func:`parse_mounts`); empty where unreadable."""
    return parse_mounts(read_text("/proc/self/mounts") or "")
