"""The ``pagewalk`` command: parse, call the library, print.

Each command is one small module with ``NAMES``, ``add_parser(subparsers)`` and
``run(args) -> int``.  Modules import their heavy dependencies inside ``run``,
so ``pagewalk v2p`` never loads numpy.  Errors the user can cause become one
line on stderr and exit status 1 (the work could not be done) or 2 (usage);
``PAGEWALK_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import os
import sys

# numpy's OpenBLAS starts a thread per CPU that spins for a while after import,
# taking a CPU from the threads that read /proc; pagewalk does no linear algebra.
# (Here, not in the library: a program that imports pagewalk keeps its own setting.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .. import __version__  # noqa: E402
from ..errors import InvalidArgument, PagewalkError  # noqa: E402
from . import _common  # noqa: E402

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import argparse

# Each command name and the module that serves it (the module's NAMES say the same), in
# the order of --help: a command imports its own module only, not the fifteen others.
COMMANDS = {"maps": "maps", "dump": "dump", "v2p": "v2p", "translate": "v2p", "types": "types", "usage": "usage",
            "who": "who", "shared": "shared", "file": "files", "snapshot": "snapshot", "diff": "diff", "wss": "wss",
            "watch": "watch", "picture": "picture", "ram": "ram", "exporter": "exporter", "doctor": "doctor",
            "completion": "completion", "manpage": "completion"}


def command_module(name: str):
    """The module of ``cli`` that serves the command module ``name`` (``"files"``)."""
    module = f"{__name__}.{name}"
    __import__(module)  # (not importlib: its package costs start-up time)
    return sys.modules[module]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of ``command`` when it names one
    (the others' parsers cost start-up time and would go unused)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        """argparse with the contract's one-line usage errors (exit 2)."""

        def error(self, message: str) -> None:  # type: ignore[override]
            # what a command's parser did not take comes back to the top one: point at the command's help
            prog = f"pagewalk {command}" if self.prog == "pagewalk" and command in COMMANDS and \
                message.startswith("unrecognized arguments") else self.prog
            _common.fail(f"{message} (see '{prog} --help')", 2)

    parser = _Parser(prog="pagewalk", description="Where every page of a Linux process lives.")
    parser.add_argument("-V", "--version", action="version", version=f"pagewalk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    chosen = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for name in chosen:
        command_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if sys.stdout is None:  # fd 1 was closed when Python started (``>&-``): writing is an error
        sys.stdout = _ClosedStdout()
    if sys.stderr is None:  # nowhere to say anything; print(file=None) would pick stdout
        sys.stderr = open(os.devnull, "w")
    # An everyday command must cost little more than starting Python: plain command
    # lines skip argparse altogether (cli.quick), the rest build one command's parser.
    args = None
    if argv and argv[0] in COMMANDS:
        from .quick import quick_args

        args = quick_args(argv, command_module(COMMANDS[argv[0]]))
    if args is None:
        args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return args.run(args)
    except InvalidArgument as exc:
        if os.environ.get("PAGEWALK_DEBUG"):
            raise
        return _common.fail(str(exc), 2)
    except PagewalkError as exc:
        if os.environ.get("PAGEWALK_DEBUG"):
            raise
        return _common.fail(str(exc), 1)
    except BrokenPipeError:
        # The reader went away (pagewalk dump | head): not an error.  Point stdout
        # at /dev/null so the interpreter's final flush does not complain.
        _silence_stdout()
        return 0
    except OSError as exc:
        # Reads of /proc are translated where they happen; what is left is output
        # (a full disk, /dev/full) or a bug, which PAGEWALK_DEBUG shows.
        if os.environ.get("PAGEWALK_DEBUG"):
            raise
        _silence_stdout()
        where = f"{exc.filename}: " if exc.filename else "cannot write output: "
        return _common.fail(where + (exc.strerror or str(exc)).lower(), 1)
    except KeyboardInterrupt:
        return 130


def _silence_stdout() -> None:
    if isinstance(sys.stdout, _ClosedStdout):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class _ClosedStdout:
    """Standard output when fd 1 is closed: every write fails as the shell's tools do
    ("cannot write output: standard output is closed", exit 1), and ``closed`` says so
    (outfile refuses ``-o -``)."""

    closed = True

    def write(self, data) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    flush = write

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise ValueError("standard output is closed")

    @property
    def buffer(self):
        return self
