"""Plain command lines are parsed without argparse (pagewalk.cli.quick), to the very
arguments argparse gives, and everything else is left to argparse."""

from __future__ import annotations

import pytest

from pagewalk.cli import COMMANDS, build_parser, command_module
from pagewalk.cli.quick import quick_args

# Command lines the quick parser must take, and must parse as argparse does.
PLAIN = [
    "maps 1", "maps 1 --json", "maps --json 1", "maps 1 --sort rss --no-scan",
    "usage", "usage 1", "usage 1 2 3", "usage --all", "usage 1 --json",
    "types -p 1", "types -p 1 -r", "types -f /usr/lib", "types -p 1 -b anon -b lru -N", "types -p 1 -l",
    "types -p 1 -L -a 0x10+5", "types",
    "file /usr/lib/x", "file a b --json", "who 0x1000", "who --pfn 12", "who 0x1000 0x2000 --json",
    "v2p 1 0x1000", "v2p 1 0x1000 0x2000 --json", "translate 1 -", "doctor", "doctor --json",
    "dump 1", "dump 1 --format csv", "dump 1 --where swapped --range 0-10", "shared 1 2", "snapshot 1 -o x.npz", "snapshot --load x.npz",
    "diff a.npz b.npz", "wss 1", "watch 1", "picture 1 -o x.png", "ram", "ram --json", "ram --files / --top 3",
    "completion bash", "manpage",
]

# Command lines argparse must parse (help, errors, forms the quick parser does not imitate).
LEFT_TO_ARGPARSE = [
    "maps", "maps 1 2", "maps -h", "maps 1 --js", "maps 1 --sort", "maps 1 --sort=rss", "maps 1 --bogus",
    "types -p", "types -p -1", "usage 1 --json 2", "v2p 1", "file", "doctor extra", "picture 1", "maps -- 1",
]


def argparse_args(argv: list[str]) -> dict:
    return vars(build_parser(argv[0]).parse_args(argv))


@pytest.mark.parametrize("line", PLAIN)
def test_plain_lines_parse_as_argparse_parses_them(line):
    argv = line.split()
    quick = quick_args(argv, command_module(COMMANDS[argv[0]]))
    assert quick is not None, f"{line!r} went to argparse"
    assert vars(quick) == argparse_args(argv)


@pytest.mark.parametrize("line", LEFT_TO_ARGPARSE)
def test_other_lines_are_left_to_argparse(line):
    argv = line.split()
    assert quick_args(argv, command_module(COMMANDS[argv[0]])) is None


def test_every_command_has_a_plain_form():
    """Each command's plain lines above reach the quick parser (a new command whose
    parser uses more of argparse than the recorder imitates shows up here)."""
    assert {line.split()[0] for line in PLAIN} >= set(COMMANDS) - {"exporter"}
    assert quick_args(["exporter", "--port", "9000"], command_module("exporter")) is None  # nargs="+" options
