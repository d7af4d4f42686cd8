"""Optional dependencies (the extras in pyproject.toml), imported only when used.

A command that needs one that is missing fails with one line naming the extra to
install, never an ImportError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtra

__all__ = ["require"]


def require(module: str, extra: str, package: str) -> ModuleType:
    """Import ``module`` (from the PyPI package ``package``, installed by the extra
    ``pagewalk[extra]``) and return it.

    Raises :class:`pagewalk.errors.MissingExtra` when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(package, extra) from None
