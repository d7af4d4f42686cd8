"""The exception hierarchy (pagewalk.errors): what a library caller catches, and the exit
status the CLI gives each kind (1: the work could not be done, 2: malformed input)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

import pagewalk
from conftest import requires_root
from specimen import Specimen
from test_unprivileged import NOBODY, as_user, run_as


def test_the_tree():
    """psutil's shape: a caller that catches NoSuchProcess catches every way a PID has
    no memory to read; InvalidArgument and NotMapped are also the builtin kinds."""
    e = pagewalk
    assert issubclass(e.NoAddressSpace, e.NoSuchProcess)
    assert issubclass(e.ProcessGone, e.NoSuchProcess)
    for kind in (e.NoSuchProcess, e.AccessDenied, e.Unsupported, e.MissingExtra, e.NotMapped, e.InvalidArgument,
                 e.BadSnapshot):
        assert issubclass(kind, e.PagewalkError)
    assert not issubclass(e.MissingExtra, e.Unsupported)  # a Python package, not the kernel
    assert issubclass(e.MissingExtra, ImportError)
    assert issubclass(e.InvalidArgument, ValueError) and issubclass(e.NotMapped, LookupError)


def test_a_zombie_is_caught_as_no_such_process(zombie):
    with pytest.raises(pagewalk.NoSuchProcess) as caught:
        with pagewalk.Process(zombie) as p:
            p.counts()
    assert type(caught.value) is pagewalk.NoAddressSpace
    assert caught.value.pid == zombie and "zombie" in caught.value.reason


def test_a_kernel_thread_is_caught_as_no_such_process():
    with pytest.raises(pagewalk.NoSuchProcess) as caught:
        pagewalk.Process(2).counts()  # kthreadd
    assert type(caught.value) is pagewalk.NoAddressSpace and "kernel thread" in str(caught.value)


def test_a_missing_extra_is_its_own_error():
    from pagewalk.extras import require

    with pytest.raises(pagewalk.MissingExtra) as caught:
        require("pagewalk_no_such_module", "pictures", "no-such-package")
    assert (caught.value.package, caught.value.extra) == ("no-such-package", "pictures")
    assert str(caught.value) == ("this needs no-such-package, which is not installed: "
                                 "pip install 'pagewalk[pictures]'")


def test_the_cli_says_which_extra_to_install(tmp_path):
    """matplotlib made unimportable: one line, exit 1, no file written."""
    with Specimen() as s:
        out = tmp_path / "p.png"
        code = ("import sys; sys.modules['matplotlib'] = None\n"
                "from pagewalk.cli import main; sys.exit(main(sys.argv[1:]))")
        r = subprocess.run([sys.executable, "-c", code, "picture", str(s.pid), "-o", str(out)],
                           capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert r.stderr == ("pagewalk: error: this needs matplotlib, which is not installed: "
                        "pip install 'pagewalk[pictures]'\n")
    assert not out.exists()


@requires_root
def test_types_without_frames_is_access_denied_exit_1():
    """A privilege problem is not a usage error: exit 1 (AccessDenied), not 2.  (-F
    gives a flags file this user can read, so that the frames are what is missing.)"""
    with tempfile.TemporaryDirectory(dir="/tmp") as where, Specimen(uid=NOBODY) as s:
        os.chmod(where, 0o755)
        flags = os.path.join(where, "kpageflags")
        with open(flags, "wb") as f:
            f.write(bytes(8 * 1024))
        os.chmod(flags, 0o644)
        status, out, err = run_as(NOBODY, ["types", "-p", str(s.pid), "-F", flags])
    assert status == 1, err
    assert err == "pagewalk: error: types -p needs the frames of the pages: run as root (CAP_SYS_ADMIN)\n"
    assert out == ""


def test_a_method_this_user_may_not_use_is_access_denied():
    """wss: a missing privilege (clear_refs of another user's process) is AccessDenied,
    not Unsupported (a missing kernel feature)."""
    from pagewalk.analysis.wss import choose
    from pagewalk.errors import Denied

    with Specimen() as s:
        caught = as_user(NOBODY, lambda: _kind(lambda: choose("referenced", s.pid)))
    assert caught == {"value": "AccessDenied: wss --method referenced: "
                               f"/proc/{s.pid}/clear_refs is writable by the process owner only"}
    assert isinstance(Denied("x"), str) and Denied("x") == "x"


def _kind(call) -> str:
    try:
        call()
    except pagewalk.PagewalkError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "none"
