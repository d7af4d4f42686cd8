"""Names are data: a process whose name (comm), and a mapped file whose name, hold
escape sequences, control characters, line ends other than ``\\n``, invalid UTF-8 and
rich-style markup.  Every command reads the process (none leaves it out or fails),
prints the names escaped for people (no control byte reaches a terminal or a pipe),
and gives the exact value to programs (JSON, CSV, Prometheus labels).  The exact
values come from the kernel's own files (/proc/PID/maps, /proc/PID/comm, the file's
name), read here as bytes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

import pytest

import pagewalk
from conftest import PAGE, requires_root, run_on_terminal
from pagewalk.kernel.maps import parse_line, parse_maps
from specimen import Specimen

# A file name: terminal escapes (clear screen, set the window title), a newline (maps
# shows it as \012), every other character str.splitlines() ends a line at, a tab,
# markup as rich would read it, bytes that are not UTF-8, and a trailing space.
FILE_NAME = (b"\x1b[2J\x1b]0;title\x07 new\nline \r\x0b\x0c\x1c\x1d\x1e\xc2\x85\xe2\x80\xa8\t[bold]x[red] "
             b"\xff\xfe end ")
# How people see it: in maps (the kernel's \012 kept as it is) and as the file's own name.
FILE_SHOWN_IN_MAPS = (r"\x1b[2J\x1b]0;title\x07 new\012line \r\x0b\x0c\x1c\x1d\x1e\x85\u2028\t[bold]x[red] "
                      r"\xff\xfe end")
FILE_SHOWN = FILE_SHOWN_IN_MAPS.replace(r"\012", r"\n")
# A comm (15 bytes at most): a title escape, clear screen, newline, CR, VT, FS, a byte that is not UTF-8.
COMM = b"\x1b]0;t\x07\x1b[2J\n\r\x0b\x1c\xff"
COMM_SHOWN = r"\x1b]0;t\x07\x1b[2J\n\r\x0b\x1c\xff"
COMM_EXACT = COMM.decode("utf-8", "backslashreplace")  # JSON's form: bytes that are not UTF-8 as \xNN


class Hostile:
    """The specimen process, its hostile mapping (2 pages, the first written), a
    forked child sharing it, and the kernel's exact values."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.file = os.path.join(directory.encode(), FILE_NAME)
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(fd, 2 * PAGE)
        os.close(fd)
        self.specimen = Specimen()
        self.pid = self.specimen.pid
        self.addr = self.specimen.run(
            f"fd = os.open(bytes.fromhex('{self.file.hex()}'), os.O_RDWR)\n"
            "hostile = mmap(2, shared=True, fd=fd); write(hostile, 1)\n"
            f"assert ctypes.CDLL(None).prctl(15, ctypes.c_char_p(bytes.fromhex('{COMM.hex()}')), 0, 0, 0) == 0\n"
            "result = hostile")
        self.child = self.specimen.run("child_pid = fork(); result = child_pid")
        self.specimen.run(f"child('result = read({self.addr})')")  # fork copies no page table of a shared file
        with open(f"/proc/{self.pid}/comm", "rb") as f:
            assert f.read() == COMM + b"\n"  # the kernel keeps the name raw
        # the path exactly as the kernel prints it in maps: everything from the directory on
        with open(f"/proc/{self.pid}/maps", "rb") as f:
            line = next(x for x in f.read().split(b"\n") if directory.encode() in x)
        self.maps_path_bytes = line[line.index(directory.encode()):]
        assert b"\\012" in self.maps_path_bytes and b"\r\x0b" in self.maps_path_bytes
        self.maps_path_exact = self.maps_path_bytes.decode("utf-8", "backslashreplace")
        self.file_exact = self.file.decode("utf-8", "backslashreplace")
        self.shown_in_maps = os.path.join(directory, FILE_SHOWN_IN_MAPS)
        self.shown_file = os.path.join(directory, FILE_SHOWN)

    def close(self) -> None:
        self.specimen.close()
        shutil.rmtree(self.dir.encode(), ignore_errors=True)


@pytest.fixture(scope="module")
def hostile():
    h = Hostile(tempfile.mkdtemp(prefix="pagewalk-names-"))
    try:
        yield h
    finally:
        h.close()


def run(*args, layout: bytes = b"\n") -> str:
    """``pagewalk ARGS``, piped; checks that it succeeds and that neither stream holds
    a character that is not printable (but those of ``layout``, pagewalk's own)."""
    argv = [a if isinstance(a, bytes) else str(a) for a in args]
    r = subprocess.run([sys.executable, "-m", "pagewalk", *argv], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    for stream in (r.stdout, r.stderr):
        assert_printable(stream, layout)
    return r.stdout.decode()


def assert_printable(data: bytes, layout: bytes = b"\n") -> None:
    text = data.decode("utf-8")  # strict: every byte that is not UTF-8 was escaped
    bad = {c for c in text if not c.isprintable() and c.encode() not in layout}
    assert not bad, f"unescaped {sorted(bad)} in {text[:2000]!r}"


def line_with(text: str, needle: str) -> str:
    found = [line for line in text.split("\n") if needle in line]
    assert found, f"{needle!r} not in {text[:3000]!r}"
    return found[0]


def row_of(text: str, column: int, value) -> str:
    """The table row whose ``column``-th field is ``value``."""
    found = [line for line in text.split("\n") if line.split()[column : column + 1] == [str(value)]]
    assert len(found) == 1, f"{value} in column {column}: {found} in {text[:3000]!r}"
    return found[0]


# -- parsing: lines end at \n only, the path is all that follows the padding ----------

def test_the_library_reads_the_path_exactly(hostile):
    with open(f"/proc/{hostile.pid}/maps", "rb") as f:
        kernel_lines = [x for x in f.read().split(b"\n") if x]
    maps = pagewalk.read_maps(hostile.pid)
    assert len(maps) == len(kernel_lines)
    mine = [m for m in maps if m.start == hostile.addr]
    assert len(mine) == 1 and os.fsencode(mine[0].path) == hostile.maps_path_bytes  # trailing space included
    assert mine[0].kind == "file" and mine[0].text_path == hostile.maps_path_exact


def test_kernel_lines_with_other_line_ends_and_edge_spaces():
    # As show_map_vma prints them: the header, padded with spaces to column 72, one
    # more space, the path (which may begin with spaces of its own).
    head = "7f2a1d003000-7f2a1d004000 r--p 00001000 fe:00 1234 "
    assert len(head) < 72
    pad = " " * (72 - len(head)) + " "
    for path in ("/tmp/a\x0bb", "/tmp/a\x1cb", "/tmp/a\rb", "/tmp/a\x85b", "/tmp/a\u2028b", "/tmp/a\x0c\x1d\x1eb",
                 "/tmp/trailing \r", "  two leading spaces", "/tmp/tab\tend\t"):
        text = f"{head}{pad}{path}\n7ffd7c932000-7ffd7c953000 rw-p 00000000 00:00 0{' ' * 26}[stack]\n"
        maps = parse_maps(text)
        assert [m.path for m in maps] == [path, "[stack]"], repr(path)
    # A header of 72 characters or more is not padded: one space, then the path.
    long_head = "ffffffffff600000-ffffffffff601000 r--p 00000000 103:02 18446744073709551615 "
    assert len(long_head) > 72
    assert parse_line(long_head + "  /lead").path == " /lead"
    assert parse_line(long_head + " /x").path == "/x"
    # anonymous memory: the kernel leaves the space after the inode
    assert parse_line("7f2a1c000000-7f2a1c021000 rw-p 00000000 00:00 0 \n").path == ""


# -- every command, piped -----------------------------------------------------------

def test_maps(hostile):
    row = row_of(run("maps", hostile.pid), 0, f"{hostile.addr:x}")
    assert row.endswith(hostile.shown_in_maps)
    doc = json.loads(run("maps", hostile.pid, "--json"))
    mine = [m for m in doc["mappings"] if m["start"] == hostile.addr]
    assert mine[0]["path"] == hostile.maps_path_exact and mine[0]["present"] == 1


def test_dump_text_csv_jsonl(hostile):
    text = run("dump", hostile.pid)
    assert line_with(text, f"{hostile.addr:x}-{hostile.addr + 2 * PAGE:x} ").endswith(hostile.shown_in_maps + " ")
    # CSV: the exact value, quoted where it must be (csv reads it back)
    r = subprocess.run([sys.executable, "-m", "pagewalk", "dump", str(hostile.pid), "--format", "csv"],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_printable(r.stderr)
    rows = [row for row in csv.DictReader(io.StringIO(r.stdout.decode("utf-8"), newline=""))
            if hostile.addr <= int(row["vaddr"]) < hostile.addr + 2 * PAGE]
    assert [row["mapping"] for row in rows] == [hostile.maps_path_exact] * 2
    assert [row["present"] for row in rows] == ["1", "0"]
    jsonl = run("dump", hostile.pid, "--format", "jsonl")
    rows = [doc for doc in map(json.loads, jsonl.splitlines()) if doc["mapping"] == hostile.maps_path_exact]
    assert [doc["vaddr"] for doc in rows] == [hostile.addr, hostile.addr + PAGE]


def test_v2p(hostile):
    out = run("v2p", hostile.pid, f"{hostile.addr:x}")
    assert out.rstrip("\n").endswith(hostile.shown_in_maps + " ") and "present" in out
    doc = json.loads(run("v2p", hostile.pid, f"{hostile.addr:x}", "--json"))
    assert doc[0]["mapping"] == hostile.maps_path_exact


def test_usage_of_the_process_and_by_command_and_mapping(hostile):
    assert row_of(run("usage", hostile.pid), 0, hostile.pid).endswith(COMM_SHOWN)
    doc = json.loads(run("usage", hostile.pid, "--json"))
    assert doc["processes"][0]["command"] == COMM_EXACT
    assert line_with(run("usage", "--by", "command", hostile.pid, hostile.child), COMM_SHOWN).split()[0] == "2"
    groups = json.loads(run("usage", "--by", "command", hostile.pid, "--json"))["groups"]
    assert [g["name"] for g in groups] == [COMM_EXACT]
    row = line_with(run("usage", "--by", "mapping", hostile.pid), hostile.shown_in_maps)
    assert row.split()[:2] == ["1", "4.0K"]
    groups = json.loads(run("usage", "--by", "mapping", hostile.pid, "--json"))["groups"]
    assert hostile.maps_path_exact in [g["name"] for g in groups]


def test_usage_all_leaves_no_one_out(hostile):
    out = run("usage", "--all")
    for pid in (hostile.pid, hostile.child):
        assert row_of(out, 0, pid).endswith(COMM_SHOWN)
    doc = json.loads(run("usage", "--all", "--json"))
    assert {p["pid"]: p["command"] for p in doc["processes"]}.get(hostile.pid) == COMM_EXACT
    assert hostile.pid not in [s["pid"] for s in doc["skipped"]]


@requires_root
def test_who_and_shared(hostile):
    frame = json.loads(run("v2p", hostile.pid, f"{hostile.addr:x}", "--json"))[0]["paddr"]
    out = run("who", f"{frame:x}")
    for pid in (hostile.pid, hostile.child):
        row = row_of(out, 1, pid)
        assert COMM_SHOWN in row and row.endswith(hostile.shown_in_maps)
    hits = json.loads(run("who", f"{frame:x}", "--json"))
    assert {(h["pid"], h["command"], h["mapping"]) for h in hits} == {
        (pid, COMM_EXACT, hostile.maps_path_exact) for pid in (hostile.pid, hostile.child)}
    out = run("shared", hostile.pid, hostile.child)
    # (the first name keeps its trailing space; the line's end loses it)
    assert line_with(out, hostile.shown_in_maps).endswith(f"{hostile.shown_in_maps}   <->  {hostile.shown_in_maps}")
    pairs = json.loads(run("shared", hostile.pid, hostile.child, "--json"))["pairs"]
    assert {"mapping_a": hostile.maps_path_exact, "mapping_b": hostile.maps_path_exact} in [
        {k: p[k] for k in ("mapping_a", "mapping_b")} for p in pairs]


def test_file_and_its_errors(hostile):
    line = line_with(run("file", hostile.dir), hostile.shown_file)
    assert line.startswith(hostile.shown_file + " : 2 pages")  # the name's own trailing space, then ':'
    doc = json.loads(run("file", hostile.dir, "--json"))
    assert [d["path"] for d in doc] == [hostile.file_exact]
    # an error that quotes a path: one escaped line
    err = subprocess.run([sys.executable, "-m", "pagewalk", "file", hostile.file + b".gone"], capture_output=True)
    assert err.returncode == 2 and len(err.stderr.splitlines()) == 1
    assert_printable(err.stderr)
    assert hostile.shown_file + " .gone" in err.stderr.decode()


@requires_root
def test_types_file_listing(hostile):
    out = run("types", "-f", hostile.file, layout=b"\n\t")
    assert out.startswith(hostile.shown_file + " \tInode:")


def test_snapshot_load_and_diff(hostile, tmp_path):
    path = tmp_path / "hostile.npz"
    run("snapshot", hostile.pid, "-o", path)
    out = run("snapshot", "--load", path)
    assert line_with(out, "snapshot of PID").startswith(f"snapshot of PID {hostile.pid} ({COMM_SHOWN}) at")
    assert row_of(out, 0, f"{hostile.addr:x}").endswith(hostile.shown_in_maps)
    doc = json.loads(run("snapshot", "--load", path, "--json"))
    assert doc["meta"]["comm"] == COMM_EXACT
    assert hostile.maps_path_exact in [m["path"] for m in doc["mappings"]]
    hostile.specimen.run(f"write({hostile.addr + PAGE}, 1)")  # the second page appears
    out = run("diff", path, hostile.pid)
    assert row_of(out, 0, f"{hostile.addr:x}").endswith(hostile.shown_in_maps)
    rows = json.loads(run("diff", path, hostile.pid, "--json"))["mappings"]
    assert [r["appeared"] for r in rows if r["path"] == hostile.maps_path_exact] == [1]


def test_pictures(hostile, tmp_path):
    page = tmp_path / "map.html"  # names are shown as text there: escaped like everywhere people read them
    run("picture", hostile.pid, "-o", page)
    found = re.search(r'<script id="data" type="application/json">(.*?)</script>', page.read_text(encoding="utf-8"))
    data = json.loads(found.group(1))
    assert data["command"] == COMM_SHOWN and hostile.shown_in_maps + " " in data["mappings"]["name"]
    pytest.importorskip("matplotlib", reason="the test extra installs matplotlib")
    svg = tmp_path / "map.svg"
    run("picture", hostile.pid, "-o", svg)
    root = ET.parse(svg).getroot()  # XML forbids most control characters: they would make it unreadable
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert f"PID {hostile.pid} ({COMM_SHOWN})" in text
    assert "\x1b" not in svg.read_text(encoding="utf-8")


@requires_root
def test_exporter_serves_the_process_with_its_exact_name(hostile):
    parser = pytest.importorskip("prometheus_client.parser", reason="the test extra installs prometheus-client")
    proc = subprocess.Popen([sys.executable, "-m", "pagewalk", "exporter", "--listen", "127.0.0.1:0", "--pid",
                             str(hostile.pid), "--interval", "0.2"], stderr=subprocess.PIPE)
    try:
        line = proc.stderr.readline()
        found = re.search(rb"(http://127\.0\.0\.1:\d+/metrics)", line)
        assert found, line
        deadline = time.monotonic() + 20
        while True:  # until a scan has been served
            with urllib.request.urlopen(found.group(1).decode(), timeout=10) as r:
                text = r.read().decode("utf-8")
            samples = [s for family in parser.text_string_to_metric_families(text) for s in family.samples]
            if any(s.name == "pagewalk_scan_processes" for s in samples) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        labels = [s.labels for s in samples if s.name == "pagewalk_process_rss_bytes"]
        assert labels == [{"pid": str(hostile.pid), "command": COMM_EXACT, "user": "root"}], text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        rest = proc.stderr.read()
        proc.stderr.close()
    assert_printable(line + rest)


# -- on a terminal ------------------------------------------------------------------

@requires_root
def test_on_a_terminal_only_colour_codes_are_escapes(hostile):
    for command, shown in (("maps", hostile.shown_in_maps), ("usage", COMM_SHOWN)):
        on_tty, stderr = run_on_terminal([command, str(hostile.pid)], "stdout", {"COLUMNS": "1000"})
        assert b"\x1b[" in on_tty  # coloured
        plain = re.sub(rb"\x1b\[[0-9;]*m", b"", on_tty).replace(b"\r\n", b"\n")
        assert_printable(plain)
        assert_printable(stderr)
        assert shown.encode() in plain


@requires_root
def test_every_command_that_prints_names_escapes_them_on_a_terminal(hostile):
    """The names reach a terminal escaped from every command that prints them; the seed
    format too (byte for byte the seed's program only where no terminal reads it)."""
    addr = f"{hostile.addr:x}"
    frame = json.loads(run("v2p", hostile.pid, addr, "--json"))[0]["paddr"]
    for args, shown in ((["dump", str(hostile.pid)], hostile.shown_in_maps),
                        (["dump", str(hostile.pid), "--format", "seed"], hostile.shown_in_maps),
                        (["v2p", str(hostile.pid), addr], hostile.shown_in_maps),
                        (["who", f"{frame:x}"], COMM_SHOWN),
                        (["shared", str(hostile.pid), str(hostile.child)], hostile.shown_in_maps),
                        (["file", hostile.file], hostile.shown_file),
                        (["types", "-f", hostile.file, "-l"], hostile.shown_file)):
        for columns in ("80", "1000"):  # names cut to fit, and whole
            on_tty, stderr = run_on_terminal(args, "stdout", {"COLUMNS": columns})
            plain = re.sub(rb"\x1b\[[0-9;]*m", b"", on_tty).replace(b"\r\n", b"\n")
            assert_printable(plain, b"\n\t")  # page-types' layout has tabs of its own
            assert_printable(stderr)
        assert shown.encode() in plain, (args, plain[-2000:])
    piped = subprocess.run([sys.executable, "-m", "pagewalk", "dump", str(hostile.pid), "--format", "seed"],
                           capture_output=True, timeout=300).stdout
    assert hostile.maps_path_bytes in piped  # the seed's bytes where a program reads them


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (Debian package tmux)")
def test_watch_shows_names_escaped(hostile):
    session = f"pagewalk-names-{os.getpid()}"

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30).stdout

    command = f"{sys.executable} -m pagewalk watch {hostile.pid} --interval 0.3; echo EXIT=$?; sleep 60"
    tmux("new-session", "-d", "-s", session, "-x", "250", "-y", "80", command)
    try:
        deadline = time.monotonic() + 15
        while True:
            screen = tmux("capture-pane", "-p", "-t", session)
            if "sample 2" in screen or "EXIT=" in screen or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert f"pagewalk watch {hostile.pid} ({COMM_SHOWN})" in screen, screen
        assert hostile.shown_in_maps in screen, screen
        # the title escape went nowhere: the pane keeps its title
        assert tmux("display-message", "-p", "-t", session, "#{pane_title}").strip() not in ("t", "title")
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 15
        while "EXIT=" not in screen and time.monotonic() < deadline:
            time.sleep(0.1)
            screen = tmux("capture-pane", "-p", "-t", session)
        assert "EXIT=0" in screen, screen
    finally:
        tmux("kill-session", "-t", session)

