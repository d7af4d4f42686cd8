"""Optional dependencies (the extras in pyproject.toml), imported only when used.

A command that needs one that is missing fails with one line naming the extra to
install, never an ImportError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import Unsupported


def require(module: str, extra: str, package: str) -> ModuleType:
    """Import ``module`` (from ``package``, in the extra ``pagewalk[extra]``) or say how
    to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Unsupported(f"this needs {package}, which is not installed: pip install 'pagewalk[{extra}]'") from None
