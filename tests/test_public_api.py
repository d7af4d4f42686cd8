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
