"""The public API: what ``import pagewalk`` offers, each name documented, listed by
``help(pagewalk)``, and cheap to import."""

from __future__ import annotations

import inspect
import pydoc
import subprocess
import sys

import pagewalk


def test_every_public_name_resolves_and_is_documented():
    assert pagewalk.__all__[0] == "__version__"
    for name in pagewalk.__all__[1:]:
        value = getattr(pagewalk, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert (value.__doc__ or "").strip(), f"pagewalk.{name} has no docstring"


def test_help_lists_the_api():
    text = pydoc.render_doc(pagewalk, renderer=pydoc.plaintext)
    missing = [n for n in pagewalk.__all__[1:] if n not in text]
    assert missing == []
    assert "Process(pid)" in text  # the module's own guide comes first


def test_unknown_names_are_attribute_errors():
    try:
        pagewalk.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_import_is_light():
    """Importing the package loads no layer and no numpy: names load on first use."""
    code = ("import sys, pagewalk\n"
            "print(sorted(m for m in sys.modules if m.startswith('pagewalk') or m == 'numpy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['pagewalk']"


def test_every_module_says_what_it_offers():
    """Each module's __all__ names what other modules may use; private names (a leading
    underscore) are not imported across modules."""
    import ast
    import importlib
    import pathlib

    src = pathlib.Path(pagewalk.__file__).parent
    for path in sorted(src.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        name = "pagewalk." + ".".join(path.relative_to(src).with_suffix("").parts)
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        assert [n for n in module.__all__ if not hasattr(module, n)] == [], name
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level and node.module != "_common":
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "_common"]
                assert private == [], f"{name} imports private {private} from {node.module}"


def test_every_public_name_of_the_library_has_a_docstring():
    """Every function and class a module of the library offers (its ``__all__``; ``cli``
    excepted, whose commands follow the protocol of ``cli/__init__.py``), and every
    public method and property of those classes, says what it is in a docstring."""
    import dataclasses
    import functools
    import importlib
    import pathlib

    src = pathlib.Path(pagewalk.__file__).parent
    missing = set()

    def check(where: str, value) -> None:
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, (property, functools.cached_property)) or inspect.isfunction(value):
            if not (value.__doc__ or "").strip():
                missing.add(where)

    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[0] in ("cli", "__init__", "__main__"):
            continue
        name = ".".join(("pagewalk",) + (parts[:-1] if parts[-1] == "__init__" else parts))
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):  # (a layer's __init__ offers none)
            value = getattr(module, public)
            if getattr(value, "__module__", None) != name:
                continue  # a constant, or a name offered again: checked where it is defined
            if inspect.isfunction(value):
                check(f"{name}.{public}", value)
            elif inspect.isclass(value):
                doc = vars(value).get("__doc__") or ""
                if dataclasses.is_dataclass(value) and doc.startswith(value.__name__ + "("):
                    doc = ""  # the signature dataclass writes where there is no docstring
                if not doc.strip():
                    missing.add(f"{name}.{public}")
                for cls in value.__mro__:
                    if not cls.__module__.startswith("pagewalk."):
                        continue  # named tuples' and the standard library's own
                    for attr, member in vars(cls).items():
                        if not attr.startswith("_"):
                            check(f"{cls.__module__}.{cls.__qualname__}.{attr}", member)
    assert sorted(missing) == [], "public names without a docstring"
