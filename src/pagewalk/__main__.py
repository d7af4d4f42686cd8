"""``python -m pagewalk``: the same as the ``pagewalk`` command."""

from .cli import main

raise SystemExit(main())
