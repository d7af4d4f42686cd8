"""Small files of ``/proc/PID`` (and ``/proc`` itself): ``stat``, ``status``, ``comm``,
``cmdline``, ``cgroup``, the list of processes.  Each reader returns None (or a
stated placeholder) where the file cannot be read: callers decide what that means.

The kernel writes these in fs/proc/array.c (stat, status) and fs/proc/base.c.
"""

from __future__ import annotations

import os

from ..errors import ProcessGone


def command_name(pid: int) -> str:
    """The process's command name (``/proc/PID/comm``) exactly as the process set it
    (only the newline the kernel adds is removed: the name may hold spaces, newlines
    and escape sequences of its own), ``?`` where unreadable."""
    text = read_text(f"/proc/{pid}/comm")
    if text is None:
        return "?"
    return text[:-1] if text.endswith("\n") else text


def command_line(pid: int) -> list[str]:
    """The process's arguments (``/proc/PID/cmdline``), empty where unreadable."""
    return [a for a in (read_text(f"/proc/{pid}/cmdline") or "").split("\0") if a]


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


def _stat_fields(pid: int) -> list[bytes] | None:
    """``/proc/PID/stat``'s fields from the state on (field 3 is [0]), or None if
    unreadable.  comm may hold spaces and parentheses: the fields start after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def proc_state(pid: int) -> tuple[str, int] | None:
    """Return ``(state letter, flags)`` from ``/proc/PID/stat``, or None if unreadable."""
    fields = _stat_fields(pid)
    try:
        return fields[0].decode(), int(fields[6])
    except (TypeError, IndexError, ValueError):
        return None


def is_zombie(pid: int) -> bool:
    """Whether the process has exited and its parent not reaped it yet (state Z or X)."""
    state = proc_state(pid)
    return state is not None and state[0] in ("Z", "X")


def proc_start_time(pid: int) -> int | None:
    """When the process started (``/proc/PID/stat`` field 22, clock ticks since boot),
    or None if unreadable.  exec keeps it (and the PID) while the memory is replaced;
    a new process on a reused PID has another."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19])
    except (TypeError, IndexError, ValueError):
        return None


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


def all_pids() -> list[int]:
    """The PIDs of every process (thread group) now in ``/proc``, ascending."""
    return sorted(int(n) for n in os.listdir("/proc") if n.isdigit())


def thread_group(pid: int) -> int | None:
    """The process (thread group) ID that ``pid`` belongs to; None if there is no such task."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return pid
