"""The README's library examples run as they stand (section "The library"), against a
process with known memory: documentation that cannot drift from the API."""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import sys

from conftest import requires_root
from specimen import Specimen

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def examples() -> list[str]:
    text = README.read_text()
    section = text[text.index("## The library\n"):text.index("\n## ", text.index("## The library\n") + 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@requires_root
def test_the_readme_library_examples_run(tmp_path):
    blocks = examples()
    assert len(blocks) >= 6
    with Specimen() as s:
        addr = s.run("addr = mmap(8); write(addr, 4); result = addr")
        namespace = {"pid": s.pid, "os": os, "sys": sys, "workdir": str(tmp_path)}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            for block in blocks:
                exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    text = out.getvalue()
    assert "NoAddressSpace" in text  # the last example reached its except
    assert [h.pid for h in namespace["who"].hits] == [namespace["pid"]]  # the specimen's own page
    assert oct((tmp_path / "before.npz").stat().st_mode & 0o777) == "0o600"
    assert addr  # (the specimen's mapping gave the first example a writable one)
