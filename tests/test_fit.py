"""Every table fits the terminal it is shown on.  At 80x24 no line of a command's
output is wider than 80, long names are cut from the middle and still tell files
apart; at 200x50, with ``--wide``, and piped, every column is there as before.
``-o COLUMNS`` names columns by header in any case.  Real pseudo-terminals sized
with TIOCSWINSZ, a specimen whose file names are long; no mocks."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import cli, pagemap_entry, requires_root, run_on_terminal

pytestmark = requires_root
LONG_DIR = "a-directory-whose-name-is-long-enough-to-push-a-table-past-eighty-columns"
NAMES = ("specimen-one.bin", "specimen-two.bin")


@pytest.fixture(scope="module")
def layout_case(tmp_path_factory):
    """A specimen mapping two files of long paths that differ only near their ends,
    a forked child sharing its pages, and a snapshot of it."""
    from specimen import Specimen

    directory = tmp_path_factory.mktemp("fit") / LONG_DIR
    directory.mkdir()
    paths = [directory / name for name in NAMES]
    for path in paths:
        path.write_bytes(b"\x5a" * 4 * 4096)
    with Specimen() as specimen:
        addrs = [specimen.run(f"fd = os.open({str(p)!r}, os.O_RDONLY); a = mmap(4, 'r', fd=fd); read(a, 2); "
                              f"result = a") for p in paths]
        anon = specimen.run("result = mmap(16); write(result, 8)")
        snap = directory / "specimen.pwsnap"
        assert cli("snapshot", str(specimen.pid), "-o", str(snap)).returncode == 0
        for addr in addrs:  # after the snapshot: pages appear in each mapping, for diff to show
            specimen.run(f"read({addr}, 4)")
        specimen.run(f"write({anon}, 16)")
        child = specimen.run("result = fork()")
        for addr in addrs:  # (fork copies no page table entries of a file mapping: the child reads them)
            specimen.run(f"child('read({addr}, 4)')")
        pfn = pagemap_entry(specimen.pid, addrs[0]) & ((1 << 55) - 1)
        yield {"pid": str(specimen.pid), "child": str(child), "snap": str(snap), "pfn": f"{pfn:x}",
               "file": str(paths[0])}


COMMANDS = {
    "maps": lambda c: ["maps", c["pid"]],
    "usage": lambda c: ["usage", c["pid"], c["child"]],
    "shared": lambda c: ["shared", c["pid"], c["child"]],
    "who": lambda c: ["who", "--pfn", c["pfn"]],
    "diff": lambda c: ["diff", c["snap"], c["pid"]],
    "snapshot": lambda c: ["snapshot", "--load", c["snap"]],
    "wss": lambda c: ["wss", c["pid"], "--interval", "0.1", "--count", "1"],
    "doctor": lambda c: ["doctor"],
    "ram": lambda c: ["ram", "--by", "cgroup"],
    "file": lambda c: ["file", c["file"]],
}


def on_terminal(args: list[str], columns: int, rows: int) -> list[str]:
    """What ``pagewalk ARGS`` shows on a terminal of that size, colours off, as lines."""
    shown, _ = run_on_terminal(args, "stdout", {"NO_COLOR": "1"}, size=(columns, rows))
    return shown.decode().replace("\r\n", "\n").splitlines()


def piped(args: list[str]) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "pagewalk", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def headers(lines: list[str]) -> list[list[str]]:
    """Each table's header line (words in capitals alone), split at runs of two or more
    spaces (shared's ``MAPPING_A  <->  MAPPING_B`` one header)."""
    return [re.split(r" {2,}", line.strip().replace("  <->  ", " <-> ")) for line in lines
            if re.fullmatch(r"[A-Z][A-Z_'/<> -]*", line.strip())]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_line_fits_80_columns_and_wide_keeps_every_column(layout_case, command):
    args = COMMANDS[command](layout_case)
    narrow = on_terminal(args, 80, 24)
    assert narrow and all(len(line) <= 80 for line in narrow), max(narrow, key=len)
    full = piped(args)
    if command == "file":  # lines, not a table: wrapped at 80, whole when piped or --wide
        assert max(map(len, full)) > 80 and narrow[0] != full[0]
        assert "".join("".join(narrow).split()) == "".join("".join(full).split())  # the same words
    else:
        assert headers(narrow), narrow
    assert headers(on_terminal([*args, "--wide"], 80, 24)) == headers(full)
    wide = on_terminal(args, 200, 50)
    assert all(len(line) <= 200 for line in wide)
    if all(len(line) <= 200 for line in full):  # room for all of it: shown as when piped
        assert headers(wide) == headers(full)


def test_long_names_are_cut_from_the_middle_and_stay_apart(layout_case):
    """Both files' names end the same way; cut to 80 columns, each keeps its own ending
    (the part after the last /) and loses the directories in the middle."""
    for args in (["maps", layout_case["pid"]], ["snapshot", "--load", layout_case["snap"]],
                 ["shared", layout_case["pid"], layout_case["child"]]):
        narrow = on_terminal(args, 80, 24)
        for name in NAMES:
            rows = [line for line in narrow if name in line]
            assert rows and all(LONG_DIR not in line and "..." in line for line in rows), (args, narrow)
    full = piped(["maps", layout_case["pid"]])
    assert sum(LONG_DIR in line for line in full) == 2  # piped: the whole path


def test_hidden_columns_are_named(layout_case):
    """Where a column gives way to fit, a last line names it and says --wide shows it."""
    narrow = on_terminal(["diff", layout_case["snap"], layout_case["pid"]], 80, 24)
    starts = [i for i, line in enumerate(narrow) if line.startswith("(hidden to fit 80 columns:")]
    assert len(starts) == 1, narrow
    hidden = " ".join(narrow[starts[0]:])  # (wrapped: it may take two lines)
    # nothing was swapped in (this test has no swap): that column says nothing and goes first
    assert "SWAPPED_IN" in hidden and "--wide shows them" in hidden, narrow
    assert "SWAPPED_IN" not in headers(narrow)[0]


@pytest.mark.parametrize("command, columns, expected", [
    ("maps", "Start,RSS,mapping", ["START", "RSS", "MAPPING"]),
    ("usage", "pid,PSS,command", ["PID", "PSS", "COMMAND"]),
    ("shared", "size,mapping_a_mapping_b", ["SIZE", "MAPPING_A <-> MAPPING_B"]),
    ("who", "PID,vaddr", ["PID", "VADDR"]),
    ("diff", "mapping,moved", ["MAPPING", "MOVED"]),
    ("snapshot", "present,start", ["PRESENT", "START"]),
    ("doctor", "status,check", ["STATUS", "CHECK"]),
    ("ram", "use,active", ["USE", "ACTIVE"]),
])
def test_columns_named_in_any_case_in_that_order(layout_case, command, columns, expected):
    args = COMMANDS[command](layout_case)
    option = "--columns" if command in ("ram", "snapshot") else "-o"  # (there -o names an output file)
    shown = piped([*args, option, columns])
    assert headers(shown)[0] == expected, shown[:3]
    r = cli(*args, option, "nosuchcolumn")
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1
    assert "nosuchcolumn" in r.stderr and expected[0].lower() in r.stderr


def test_terminal_width_comes_from_the_terminal_not_only_columns(layout_case):
    """No COLUMNS in the environment (run_on_terminal removes it where a size is given):
    the width is the pseudo-terminal's own."""
    narrow = on_terminal(["maps", layout_case["pid"]], 100, 30)
    assert max(map(len, narrow)) <= 100 and narrow[0].split()[:2] == ["START", "PERMS"]
