"""Start-up stays light: the everyday commands load no numpy (issue 15), plain command
lines no argparse."""

from __future__ import annotations

import subprocess
import sys

from conftest import cli


def test_v2p_does_not_import_numpy(specimen):
    addr = specimen.run("a = mmap(1); write(a); result = a")
    code = ("import sys\nfrom pagewalk.cli import main\nrc = main(['v2p', sys.argv[1], sys.argv[2]])\n"
            "heavy = [m for m in ('numpy', 'rich', 'matplotlib') if m in sys.modules]\n"
            "print('HEAVY', heavy)\nsys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, str(specimen.pid), hex(addr)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout


def test_everyday_commands_import_neither_numpy_nor_argparse(specimen, tmp_path):
    """maps, usage (one process and several), types -p and -f, file, who, v2p and
    doctor on an everyday process answer with the compiled core and the standard
    library: no numpy, and no argparse for a plain command line.  (Lists, the whole
    machine, dumps and snapshots are bulk work: numpy.)"""
    import json
    import os

    addr = specimen.run("a = mmap(64); write(a, 64); result = a")
    pid = str(specimen.pid)
    library = tmp_path / "lib"
    library.write_bytes(b"x" * 3 * 4096)
    lines = [["maps", pid], ["usage", pid], ["usage", pid, str(os.getpid())], ["types", "-p", pid],
             ["types", "-f", str(library)], ["file", str(library)], ["v2p", pid, hex(addr)], ["doctor"],
             ["who", "--pfn", "0x1"]]
    code = ("import sys, json, os\nfrom pagewalk.cli import main\nos.dup2(os.open(os.devnull, os.O_WRONLY), 1)\n"
            "rc = main(json.loads(sys.argv[1]))\n"
            "print('HEAVY', [m for m in ('numpy', 'argparse') if m in sys.modules], rc, file=sys.stderr)\n")
    for line in lines:
        r = subprocess.run([sys.executable, "-c", code, json.dumps(line)], capture_output=True, text=True)
        assert "HEAVY [] 0" in r.stderr, (line, r.stderr[-2000:])


def test_help_does_not_import_numpy():
    """Building every command's parser (``pagewalk --help``) loads no numpy and no
    analysis: parsers take their choices from analysis.choices, which imports nothing."""
    code = ("import sys\nfrom pagewalk.cli import build_parser\n"
            "for command in (None, 'usage', 'wss', 'dump', 'maps'):\n    build_parser(command)\n"
            "print('HEAVY', [m for m in ('numpy', 'rich', 'matplotlib') if m in sys.modules])\n"
            "print('LAYERS', sorted(m for m in sys.modules if m.startswith(('pagewalk.core', 'pagewalk.analysis.'))))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
    assert "LAYERS ['pagewalk.analysis.choices']" in r.stdout  # no analysis, no Process


def test_version_and_help():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("pagewalk ")
    for command in ("maps", "dump", "v2p", "translate", "doctor"):
        r = cli(command, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout


def test_doctor_reports_what_this_kernel_has():
    import json

    r = cli("doctor", "--json")
    assert r.returncode == 0, r.stderr
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    with open("/proc/swaps") as f:
        assert checks["swap devices"]["ok"] == (len(f.read().splitlines()) > 1)
    import os

    assert checks["idle page tracking"]["ok"] == os.path.exists("/sys/kernel/mm/page_idle/bitmap")
    for c in checks.values():
        assert c["ok"] or c["cost"], c  # every gap says what it costs
    # the extras: installed by the test command, and missing where hidden
    assert checks["extra pagewalk[pictures]"]["ok"] and checks["extra pagewalk[exporter]"]["ok"]
    with open("/sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/avail_operations") if os.path.exists(
            "/sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/avail_operations") else open(os.devnull) as f:
        ops = f.read().split()
    if ops and "vaddr" not in ops:  # the kernel's own list of operations says no
        assert not checks["DAMON virtual-address monitoring"]["ok"]


def test_v2p_fast_path_and_argparse_path_agree(specimen):
    """Plain `v2p PID ADDR --json` skips argparse (cli.quick); with the option
    abbreviated it goes through argparse: the answers must be the same."""
    addr = specimen.run("a = mmap(2); write(a); result = a")
    fast = cli("v2p", specimen.pid, hex(addr), hex(addr + 4096), "--json")
    slow = cli("v2p", "--js", specimen.pid, hex(addr), hex(addr + 4096))
    assert fast.returncode == slow.returncode == 0
    assert fast.stdout == slow.stdout


def test_a_command_imports_its_own_module_only():
    """cli.COMMANDS names each command's module (as the module's NAMES say), and a
    command loads that module, not the other commands'."""
    from pagewalk import cli

    for name, module in cli.COMMANDS.items():
        assert name in cli.command_module(module).NAMES
    code = ("import sys\nfrom pagewalk.cli import build_parser\nbuild_parser('maps')\n"
            "print(sorted(m for m in sys.modules if m.startswith('pagewalk.cli.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['pagewalk.cli._common', 'pagewalk.cli.maps']"
    code = ("import sys\nfrom pagewalk.cli import command_module\nfrom pagewalk.cli.quick import quick_args\n"
            "assert quick_args(['maps', '1'], command_module('maps'))\n"
            "print(sorted(m for m in sys.modules if m.startswith('pagewalk.cli.') or m in ('argparse', 'numpy')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['pagewalk.cli._common', 'pagewalk.cli.maps', 'pagewalk.cli.quick']"
