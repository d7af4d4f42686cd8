"""The plain forms of a command line parsed without argparse.

Importing argparse (it imports gettext, locale and re, which compiles gettext's
plural rules) and building a command's parser (each help formatter imports shutil
and asks the terminal's size) take about 8 ms here: as long again as starting
Python, for ``pagewalk maps PID``.  So a command's ``add_parser`` is run against a
recorder instead, and a command line made only of what the recorder understands
(exact option names, one value each, positionals in one block) is parsed from the
record.  Anything else (help, abbreviations, ``--opt=value``, values that look
like options, errors of any kind) returns None, and argparse parses the line and
says what is wrong.  tests/test_cli_quick.py checks that both give the same
arguments for every command's plain forms.
"""

from __future__ import annotations

from types import SimpleNamespace

__all__ = ["quick_args"]

SUPPRESS = "==SUPPRESS=="  # argparse.SUPPRESS: no attribute at all
_SIMPLE_ACTIONS = {"store", "store_true", "store_false", "store_const", "append", "extend"}


class GiveUp(Exception):
    """The parser uses something the recorder does not imitate: argparse parses."""


class _Argument:
    def __init__(self, names: tuple[str, ...], kw: dict) -> None:
        action = kw.get("action", "store")
        if not isinstance(action, str) or action not in _SIMPLE_ACTIONS:
            raise GiveUp
        self.option = names[0].startswith("-")
        if not names or (not self.option and len(names) > 1):
            raise GiveUp
        self.names, self.action = names, action
        self.nargs = kw.get("nargs")
        if self.nargs not in (None, "?", "*", "+") or (self.option and self.nargs is not None):
            raise GiveUp
        self.required = bool(kw.get("required"))
        if self.required and not self.option or action in ("append", "extend") and not self.option:
            raise GiveUp
        long = [n for n in names if n.startswith("--")]
        self.dest = kw.get("dest") or (long[0] if long else names[0]).lstrip("-").replace("-", "_")
        default = {"store_true": False, "store_false": True}.get(action)
        self.default = kw.get("default", default)
        self.const = kw.get("const")
        self.type = kw.get("type")
        self.choices = kw.get("choices")

    def convert(self, text: str):
        value = self.type(text) if self.type is not None else text  # errors: argparse's to say
        if self.choices is not None and value not in self.choices:
            raise GiveUp
        return value


class _Parser:
    """What ``add_parser`` declares, recorded."""

    def __init__(self) -> None:
        self.arguments: list[_Argument] = []
        self.defaults: dict = {}
        self.groups: list[list[_Argument]] = []

    def add_argument(self, *names: str, **kw) -> None:
        self.arguments.append(_Argument(names, kw))

    def set_defaults(self, **kw) -> None:
        self.defaults.update(kw)

    def add_mutually_exclusive_group(self, required: bool = False) -> _Group:
        if required:
            raise GiveUp
        group = _Group(self)
        self.groups.append(group.members)
        return group

    def add_argument_group(self, *args, **kw) -> _Parser:
        return self

    def __getattr__(self, name: str):
        raise GiveUp  # any other part of argparse's interface


class _Group:
    def __init__(self, parser: _Parser) -> None:
        self.parser, self.members = parser, []

    def add_argument(self, *names: str, **kw) -> None:
        self.parser.add_argument(*names, **kw)
        self.members.append(self.parser.arguments[-1])

    def __getattr__(self, name: str):
        raise GiveUp


class _Subparsers:
    def __init__(self, command: str) -> None:
        self.command = command
        self.parser: _Parser | None = None

    def add_parser(self, name: str, **kw) -> _Parser:
        parser = _Parser()
        if self.command == name or self.command in kw.get("aliases", ()):
            self.parser = parser
        return parser


def quick_args(argv: list[str], module) -> SimpleNamespace | None:
    """The arguments of ``argv`` (its first word the command that ``module``, a
    ``cli`` command module, serves) as argparse would parse them, or None where
    argparse must parse them itself."""
    try:
        sub = _Subparsers(argv[0])
        module.add_parser(sub)
        if sub.parser is None:
            return None
        return _parse(sub.parser, argv[0], argv[1:])
    except Exception:  # GiveUp, or a type's own error: argparse words it
        return None


def _parse(parser: _Parser, command: str, words: list[str]) -> SimpleNamespace:
    options = {name: a for a in parser.arguments if a.option for name in a.names}
    positionals = [a for a in parser.arguments if not a.option]
    values: dict = {}
    given: set[int] = set()
    block: list[str] = []
    block_done = False
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-") and word != "-":
            a = options.get(word)
            if a is None:
                raise GiveUp  # help, an abbreviation, --opt=value, a negative number, a typo
            given.add(id(a))
            if a.action in ("store_true", "store_false"):
                values[a.dest] = a.action == "store_true"
            elif a.action == "store_const":
                values[a.dest] = a.const
            else:
                if i + 1 == len(words) or words[i + 1].startswith("-") and words[i + 1] != "-":
                    raise GiveUp
                i += 1
                value = a.convert(words[i])
                if a.action == "store":
                    values[a.dest] = value
                else:  # append, extend (one value: a string extends by its letters)
                    seen = values.setdefault(a.dest, list(a.default or []))
                    seen.extend(value) if a.action == "extend" else seen.append(value)
            if block:
                block_done = True
        else:
            if block_done:
                raise GiveUp  # positionals in two places: argparse's rules are subtle there
            block.append(word)
        i += 1
    for group in parser.groups:
        if sum(id(a) in given for a in group) > 1:
            raise GiveUp
    if any(a.required and id(a) not in given for a in parser.arguments):
        raise GiveUp
    values.update(_positionals(positionals, block))
    out = SimpleNamespace(command=command, **parser.defaults)
    for a in parser.arguments:
        if a.dest in values:
            setattr(out, a.dest, values[a.dest])
        elif a.default != SUPPRESS and not hasattr(out, a.dest):
            # argparse converts a string default as if it had been given
            setattr(out, a.dest, a.convert(a.default) if isinstance(a.default, str) and a.type else a.default)
    return out


def _positionals(positionals: list[_Argument], block: list[str]) -> dict:
    """The block of positional words shared out as argparse does when they come together."""
    fixed = sum(1 for a in positionals if a.nargs is None)
    variadic = [a for a in positionals if a.nargs is not None]
    spare = len(block) - fixed
    if spare < 0 or len(variadic) > 1 or spare and not variadic:
        raise GiveUp
    if variadic and (variadic[0].nargs == "?" and spare > 1 or variadic[0].nargs == "+" and not spare):
        raise GiveUp
    values, at = {}, 0
    for a in positionals:
        if a.nargs is None:
            values[a.dest] = a.convert(block[at])
            at += 1
        elif spare == 0:  # argparse: the default ([] for '*' without one), a string one converted
            default = [] if a.nargs == "*" and a.default is None else a.default
            values[a.dest] = a.convert(default) if isinstance(default, str) and a.type else default
        elif a.nargs == "?":
            values[a.dest] = a.convert(block[at])
            at += 1
        else:
            values[a.dest] = [a.convert(w) for w in block[at : at + spare]]
            at += spare
    return values
