"""Shell completion and the man page come from the commands' own definitions (issue 17)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import cli
from pagewalk.cli import COMMANDS


def complete(script: str, *words: str) -> list[str]:
    """What bash's completion offers for the last of ``words`` (the script sourced)."""
    code = (f'source {script}; COMP_WORDS=(pagewalk {" ".join(words)}); COMP_CWORD={len(words)}; _pagewalk; '
            'printf "%s\\n" "${COMPREPLY[@]}"')
    return subprocess.run(["bash", "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_bash_completes_commands_options_and_files(tmp_path):
    script = tmp_path / "pagewalk.bash"
    r = cli("completion", "bash")
    assert r.returncode == 0, r.stderr
    script.write_text(r.stdout)
    assert set(complete(script, "")) >= set(COMMANDS)
    assert complete(script, "ma") == ["maps", "manpage"]
    assert complete(script, "maps", "--so") == ["--sort"]
    assert "--by" in complete(script, "ram", "--")
    (tmp_path / "somefile").write_text("")
    os.chdir(tmp_path)
    assert complete(script, "file", "som") == ["somefile"]


def test_zsh_and_fish_scripts_name_every_command():
    zsh, fish = cli("completion", "zsh"), cli("completion", "fish")
    assert zsh.stdout.startswith("#compdef pagewalk") and "_pagewalk" in zsh.stdout
    for name in COMMANDS:
        assert f"-a {name} " in fish.stdout and f"__fish_seen_subcommand_from {name}'" in fish.stdout
    assert "-l sort" in fish.stdout
    assert cli("completion", "tcsh").returncode == 2


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed (Debian package man-db)")
def test_the_man_page_renders_and_holds_every_command(tmp_path):
    page = tmp_path / "pagewalk.1"
    page.write_text(cli("manpage").stdout)
    r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, env={**os.environ, "MANWIDTH": "80"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.startswith("PAGEWALK(1)")
    for name in COMMANDS:
        assert f"\n   {name}\n" in r.stdout, name
    assert "--sort FIELD" in r.stdout and "EXIT STATUS" in r.stdout
