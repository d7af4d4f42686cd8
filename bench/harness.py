"""The benchmark's harness: the machine, finding and building the programs, starting
and killing target processes, timing commands and taking medians."""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# ../shared beside the project, as on every developer machine and CI run
ANCHOR_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "anchors"
ANCHORS = ("seed_dump", "raw_read", "scan_ioctl", "workload")
# The Python helper programs (targets and floors), one file each
PROGRAM_DIR = Path(__file__).resolve().parent / "programs"


class BenchError(Exception):
    """A command failed or printed something unexpected."""


# -- the machine --------------------------------------------------------------------


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "unknown"


def mem_available_mib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def git_revision() -> str:
    """The commit pagewalk is at, '+dirty' when src/ has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def machine_header(pagewalk: str) -> list[tuple[str, str]]:
    return [
        ("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
        ("kernel (uname -r)", os.uname().release),
        ("CPU", cpu_model()),
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("python", f"{sys.executable} ({sys.version.split()[0]})"),
        ("pagewalk", f"{pagewalk} (git {git_revision()})"),
    ]


# -- programs -----------------------------------------------------------------------


def find_pagewalk() -> str:
    """The ``pagewalk`` next to this interpreter (its venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "pagewalk"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("pagewalk")
    if found is None:
        raise BenchError(f"no pagewalk executable next to {sys.executable} or on PATH")
    return found


def same_python(a: Path, b: Path) -> bool:
    """Same interpreter in the same environment (venv bin/python and bin/python3 are)."""
    try:
        return a.parent.resolve() == b.parent.resolve() and os.path.samefile(a, b)
    except OSError:
        return False


def compile_pagewalk() -> None:
    """Write pagewalk's bytecode first, as a regular install does: an editable install
    under PYTHONDONTWRITEBYTECODE=1 (set on these machines) would otherwise compile
    every module at every start and the start-up rows would measure the compiler."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = "import compileall, os, pagewalk; compileall.compile_dir(os.path.dirname(pagewalk.__file__), quiet=1)"
    subprocess.run([sys.executable, "-c", code], env=env, check=False)


def build_anchors(tmpdir: Path) -> dict[str, str]:
    """Compile the anchor programs into ``tmpdir``; name -> executable path."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc not found: it is needed to build the anchor programs")
    built = {}
    for name in ANCHORS:
        exe = tmpdir / name
        r = subprocess.run([gcc, "-O2", "-o", str(exe), str(ANCHOR_DIR / f"{name}.c")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"building {name}.c failed:\n{r.stderr}")
        built[name] = str(exe)
    return built


def _die_with_parent() -> None:
    """In the workload child: get SIGKILL if this benchmark dies without cleaning up."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextmanager
def running(argv: list[str], what: str, *, group: bool = False) -> Iterator[list[int]]:
    """Start ``argv``, read the ``PID n`` lines it prints until ``ready``, yield those
    PIDs, and always kill it on the way out (normal exit, error or Ctrl-C): by PID, or
    with ``group`` its whole process group (a forked family)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=group,
                            preexec_fn=None if group else _die_with_parent)
    try:
        pids = []
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("PID "):
                pids.append(int(line.split()[1]))
            elif line.startswith("ready"):
                break
        else:
            raise BenchError(f"{what} exited with status {proc.wait()} before it was ready")
        yield pids
    finally:
        try:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def running_workload(workload_exe: str, args: list[str]) -> Iterator[int]:
    """The anchor workload with ``args``, ready; its PID."""
    what = f"workload {' '.join(args)}"
    with running([workload_exe, *args], what) as pids:
        if len(pids) != 1:
            raise BenchError(f"{what} printed PIDs {pids}, expected its own")
        yield pids[0]


def program(name: str) -> list[str]:
    """The command that runs the helper program ``programs/NAME.py`` with this interpreter."""
    return [sys.executable, str(PROGRAM_DIR / f"{name}.py")]


@contextmanager
def swap_file(mib: int) -> Iterator[str | None]:
    """A swap file of ``mib`` MiB, enabled (None if that fails); always disabled and
    removed afterwards."""
    directory = tempfile.mkdtemp(prefix="pagewalk-bench-swap-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    path = os.path.join(directory, "swapfile")
    enabled = False
    try:
        made = subprocess.run(["fallocate", "-l", f"{mib}M", path], capture_output=True)
        if made.returncode:
            made = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "status=none"],
                                  capture_output=True)
        if made.returncode == 0:
            os.chmod(path, 0o600)
            enabled = (subprocess.run(["mkswap", path], capture_output=True).returncode == 0
                       and subprocess.run(["swapon", path], capture_output=True).returncode == 0)
        yield path if enabled else None
    finally:
        if enabled:
            subprocess.run(["swapoff", path], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def smaps_rollup_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/smaps_rollup has no {field}")


# -- timing -------------------------------------------------------------------------


def run_timed(argv: list[str]) -> float:
    """Whole-process wall time of one run, stdout to /dev/null."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with status {r.returncode}: "
                         f"{r.stderr.decode(errors='replace').strip()}")
    return elapsed


def alternate(measures: list[Callable[[], float]], runs: int) -> list[float]:
    """Call the measures in turn (A B C A B C ...) ``runs`` times; their medians."""
    samples: list[list[float]] = [[] for _ in measures]
    for _ in range(runs):
        for i, measure in enumerate(measures):
            samples[i].append(measure())
    return [statistics.median(s) for s in samples]


def timed_commands(commands: list[list[str]], runs: int) -> list[float]:
    return alternate([lambda argv=argv: run_timed(argv) for argv in commands], runs)


def output_digest(argv: list[str]) -> tuple[int, str]:
    """Line count and SHA-256 of a command's stdout, streamed (it may be a GB)."""
    digest = hashlib.sha256()
    lines = 0
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while chunk := proc.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
            digest.update(chunk)
    finally:
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        status = proc.wait()
    if status != 0:
        raise BenchError(f"{' '.join(argv)} exited with status {status}: {err.decode(errors='replace').strip()}")
    return lines, digest.hexdigest()


def inproc_report(argv: list[str]) -> dict[str, str]:
    """Run an anchor that prints ``key=value ... inproc_us=N``; its fields."""
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with status {r.returncode}: {r.stderr.strip()}")
    fields = dict(f.split("=", 1) for f in r.stdout.split() if "=" in f)
    if "inproc_us" not in fields:
        raise BenchError(f"{' '.join(argv)} printed no inproc_us: {r.stdout.strip()!r}")
    return fields


def largest_mapping_start(pid: int) -> int:
    best_start, best_size = 0, -1
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            lo, _, hi = line.split()[0].partition("-")
            start, end = int(lo, 16), int(hi, 16)
            if end - start > best_size:
                best_start, best_size = start, end - start
    return best_start
