"""``pagewalk watch`` in a real terminal (tmux): it draws, updates, follows a resize,
says when the process exits, and quits on q with status 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import wait_state
from specimen import Specimen

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (Debian package tmux)")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_for(session: str, predicate, seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while True:
        text = screen(session)
        if predicate(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_watch_draws_updates_and_quits_on_q():
    session = f"pagewalk-watch-{os.getpid()}"
    with Specimen() as s:
        command = f"{sys.executable} -m pagewalk watch {s.pid} --interval 0.3; echo EXIT=$?; sleep 60"
        tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
        try:
            text = wait_for(session, lambda t: "sample 2" in t)
            assert f"pagewalk watch {s.pid}" in text and "MAPPING" in text and "total" in text, text
            s.run("a = mmap(2000); write(a, 2000)")  # 7.8 MiB more resident
            text = wait_for(session, lambda t: "+7.8M" in t)
            assert "+7.8M" in text, text  # the change since the previous sample
            tmux("resize-window", "-t", session, "-x", "50", "-y", "20")
            redrawn = lambda t: t.startswith("pagewalk watch") and max(map(len, t.splitlines())) <= 50  # noqa: E731
            text = wait_for(session, redrawn)
            assert redrawn(text) and "RSS" in text, text
            tmux("resize-window", "-t", session, "-x", "120", "-y", "40")
            s.close()  # the process exits
            text = wait_for(session, lambda t: "exited" in t)
            assert f"process {s.pid} exited" in text, text
            tmux("send-keys", "-t", session, "q")
            text = wait_for(session, lambda t: "EXIT=" in t)
            assert "EXIT=0" in text, text
        finally:
            tmux("kill-session", "-t", session)


def test_watch_needs_a_terminal():
    with Specimen() as s:
        r = subprocess.run([sys.executable, "-m", "pagewalk", "watch", str(s.pid)], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=30)
    assert r.returncode == 1 and "terminal" in r.stderr and len(r.stderr.splitlines()) == 1


def test_watch_shows_a_zombie_as_one_until_q(zombie):
    """A zombie is still a process (ps lists it, state Z): watch shows it, with no pages,
    rather than exiting with an error."""
    session = f"pagewalk-watch-zombie-{os.getpid()}"
    try:
        command = f"{sys.executable} -m pagewalk watch {zombie} --interval 0.2; echo EXIT=$?; sleep 60"
        tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "40", command)
        text = wait_for(session, lambda t: "zombie" in t or "EXIT=" in t)
        assert f"pagewalk watch {zombie}" in text and "state Z" in text and "no pages" in text, text
        assert "EXIT=" not in text, text
        tmux("send-keys", "-t", session, "q")
        text = wait_for(session, lambda t: "EXIT=" in t)
        assert "EXIT=0" in text, text
    finally:
        tmux("kill-session", "-t", session)


def test_watch_of_a_process_that_exits_unreaped_says_it_is_a_zombie_until_q():
    session = f"pagewalk-watch-unreaped-{os.getpid()}"
    with Specimen() as s:
        command = f"{sys.executable} -m pagewalk watch {s.pid} --interval 0.2; echo EXIT=$?; sleep 60"
        tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "40", command)
        try:
            text = wait_for(session, lambda t: "sample 2" in t)
            assert "MAPPING" in text, text
            s._w.close()  # the specimen exits; its parent (this test) does not wait for it yet
            wait_state(s.pid, "Z")
            text = wait_for(session, lambda t: "exited" in t or "EXIT=" in t)
            assert f"process {s.pid} exited" in text and "zombie" in text and "EXIT=" not in text, text
            tmux("send-keys", "-t", session, "q")
            text = wait_for(session, lambda t: "EXIT=" in t)
            assert "EXIT=0" in text, text
        finally:
            tmux("kill-session", "-t", session)


def test_watch_at_80_by_24_keeps_header_total_and_hint_and_scrolls():
    """A process with more mappings than 24 lines hold: the header, the total and the
    hint stay on screen; arrows and PgDn scroll the rows; s sorts by PSS; names are
    shortened, not cut off at the edge; the exit message is shown whole."""
    session = f"pagewalk-watch-80-{os.getpid()}"
    with Specimen() as s:
        s.run("import ctypes.util; ctypes.CDLL(ctypes.util.find_library('m'))")
        command = f"{sys.executable} -m pagewalk watch {s.pid} --interval 0.3; echo EXIT=$?; sleep 60"
        tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)
        try:
            text = wait_for(session, lambda t: "sample 2" in t)
            lines = text.rstrip("\n").split("\n")
            assert lines[0].startswith(f"pagewalk watch {s.pid}") and "q quits" in lines[-1], text
            assert any(line.split()[-1:] == ["total"] for line in lines), text
            assert "rows 1-" in lines[-1] and all(len(line) <= 80 for line in lines), text
            first_rows = lines[-1]
            tmux("send-keys", "-t", session, "NPage")
            text = wait_for(session, lambda t: "rows 1-" not in t)
            assert "rows 1-" not in text and "q quits" in text and "total" in text, text
            tmux("send-keys", "-t", session, "Up")
            assert wait_for(session, lambda t: t != text) != text
            tmux("send-keys", "-t", session, "s")
            text = wait_for(session, lambda t: "by PSS" in t)
            assert "by PSS" in text, (first_rows, text)
            s.close()
            text = wait_for(session, lambda t: "exited" in t)
            assert f"process {s.pid} exited at" in text and "numbers below are its last" in text, text
            assert all(len(line) <= 80 for line in text.split("\n")), text
            tmux("send-keys", "-t", session, "q")
            assert "EXIT=0" in wait_for(session, lambda t: "EXIT=" in t)
        finally:
            tmux("kill-session", "-t", session)
