"""Shared test helpers: specimen processes, the kernel's own smaps numbers, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from specimen import PAGE, Specimen  # noqa: E402

KB = 1024
ROOT = os.geteuid() == 0
requires_root = pytest.mark.skipif(not ROOT, reason="needs root (CI runs the suite as root)")


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by selenium (the test extra), for the HTML pages."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the test extra installs selenium")
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("Chromium and ChromeDriver are needed (Debian packages chromium, chromium-driver): "
                    "the README's test command installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=options)
    yield d
    d.quit()


@pytest.fixture
def specimen():
    with Specimen() as s:
        yield s


def state_of(pid: int) -> str:
    """The process's state letter (``/proc/PID/stat`` field 3)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_state(pid: int, letter: str, timeout: float = 10) -> None:
    """Wait until the process is in state ``letter`` (``Z``: exited, not reaped)."""
    deadline = time.monotonic() + timeout
    while state_of(pid) != letter:
        assert time.monotonic() < deadline, f"process {pid} did not reach state {letter}"
        time.sleep(0.01)


@pytest.fixture
def zombie():
    """The PID of a zombie: a child that exited and whose parent (python, not dash,
    which reaps) never waits for it, for as long as the test runs."""
    code = "import os, sys\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nprint(pid, flush=True)\nsys.stdin.read()\n"
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        wait_state(pid, "Z")
        yield pid
    finally:
        parent.kill()
        parent.wait()


def missing_pid() -> int:
    """A PID no process has (above any pid_max default in use here)."""
    pid = 4194303
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def smaps(pid: int) -> dict[tuple[int, int], dict[str, int | str]]:
    """``/proc/PID/smaps`` as {(start, end): {field: bytes, "path": ...}}: the kernel's
    own accounting, the reference every count is checked against."""
    out: dict[tuple[int, int], dict[str, int | str]] = {}
    current: dict[str, int | str] = {}
    with open(f"/proc/{pid}/smaps", errors="surrogateescape", newline="\n") as f:  # paths may hold any byte
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = head.split("-")
                parts = line.rstrip("\n").split(None, 5)
                current = {"path": parts[5] if len(parts) > 5 else ""}
                out[(int(lo, 16), int(hi, 16))] = current
            elif head.endswith(":") and head != "VmFlags:":
                value = line.split()[1]
                if value.isdigit():
                    current[head[:-1]] = int(value) * KB
    return out


def smaps_of(pid: int, addr: int) -> dict[str, int | str]:
    """The smaps block of the mapping containing ``addr``."""
    for (lo, hi), block in smaps(pid).items():
        if lo <= addr < hi:
            return block
    raise KeyError(hex(addr))


def cli(*args: str, input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m pagewalk ARGS`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "pagewalk", *map(str, args)], capture_output=True, text=True,
                          input=input, env={**os.environ, **(env or {})}, timeout=300)


# ``python -m pagewalk`` that writes its own peak resident memory (VmHWM, which exec
# starts afresh) to the file named by PAGEWALK_TEST_PEAK_FILE as it exits, under an
# address-space limit if PAGEWALK_TEST_AS_LIMIT says so.  (A process's rusage keeps
# the peak of what it was before exec, and a child of pytest starts as big as pytest
# or, spawned with vfork, with pytest's own peak: wait4's ru_maxrss measures pytest.)
MEASURED = """import atexit, os, resource, runpy, sys
limit = os.environ.get("PAGEWALK_TEST_AS_LIMIT")
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
def peak():
    with open("/proc/self/status") as f, open(os.environ["PAGEWALK_TEST_PEAK_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
atexit.register(peak)
runpy.run_module("pagewalk", run_name="__main__", alter_sys=True)
"""


class Measured:
    """How to run ``pagewalk ARGS`` measured (``argv`` and ``env`` for subprocess);
    after it ended, ``peak_bytes`` is its peak resident memory (-1 if it did not
    exit normally)."""

    def __init__(self, *args, env: dict | None = None, as_limit: int | None = None) -> None:
        fd, self._peak_file = tempfile.mkstemp(prefix="pagewalk-peak-")
        os.close(fd)
        os.unlink(self._peak_file)
        self.argv = [sys.executable, "-c", MEASURED, *map(str, args)]
        self.env = {**os.environ, **(env or {}), "PAGEWALK_TEST_PEAK_FILE": self._peak_file}
        if as_limit:
            self.env["PAGEWALK_TEST_AS_LIMIT"] = str(as_limit)

    @property
    def peak_bytes(self) -> int:
        try:
            with open(self._peak_file) as f:
                return int(f.read()) << 10
        except FileNotFoundError:
            return -1
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._peak_file)


def measured(*args, env: dict | None = None, as_limit: int | None = None, stdin=None,
             timeout: float = 300) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``pagewalk ARGS`` (output as bytes); the result and its peak resident memory in bytes."""
    m = Measured(*args, env=env, as_limit=as_limit)
    r = subprocess.run(m.argv, env=m.env, stdin=stdin, capture_output=True, timeout=timeout)
    return r, m.peak_bytes


def cli_json(*args: str):
    r = cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def mapping_counts(pid: int, addr: int):
    """pagewalk's counts of the mapping holding ``addr`` (through the library)."""
    import pagewalk

    with pagewalk.Process(pid) as p:
        for mc in p.counts().mappings:
            if mc.mapping.contains(addr):
                return mc.counts
    raise KeyError(hex(addr))


def kpageflags(pfn: int, file: str = "/proc/kpageflags") -> int:
    """Flags of a PFN straight from /proc/kpageflags (or another per-PFN file such as
    /proc/kpagecount), independent of pagewalk."""
    with open(file, "rb") as f:
        f.seek(pfn * 8)
        return int.from_bytes(f.read(8), "little")


def smaps_rollup(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` in bytes."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def pagemap_entry(pid: int, vaddr: int) -> int:
    """One raw pagemap entry, read independently of pagewalk (the selftests' way)."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(vaddr // PAGE * 8)
        return int.from_bytes(f.read(8), "little")


KPF_ANON = 1 << 12
KPF_ZERO_PAGE = 1 << 24
KPF_THP = 1 << 22


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def hugetlb_pool(extra: int):
    """``extra`` more 2 MiB hugetlb pages in the pool for the block; the pool's size
    restored afterwards."""
    knob = "/proc/sys/vm/nr_hugepages"
    with open(knob) as f:
        saved = f.read().strip()
    try:
        with open(knob, "w") as f:
            f.write(str(int(saved) + extra))
        yield
    finally:
        with open(knob, "w") as f:
            f.write(saved)


@contextlib.contextmanager
def memory_cgroup(pid: int):
    """A new memory cgroup holding the process ``pid`` for the block (cgroup v1's
    memory controller where mounted, else cgroup v2 with the memory controller enabled
    at its root); yields its path in the hierarchy, e.g. ``/pagewalk-test-123``.  The
    process goes back to the root cgroup afterwards and the cgroup is removed.  Skips
    the test (with the reason) where no memory cgroup can be made."""
    from pagewalk.kernel.memcg import find_hierarchy

    hierarchy = find_hierarchy()
    if hierarchy is None:
        pytest.skip("no memory cgroup hierarchy is mounted")
    if hierarchy.version == 2:
        with open(os.path.join(hierarchy.root, "cgroup.controllers")) as f:
            if "memory" not in f.read().split():
                pytest.skip("cgroup v2 without the memory controller")
        with open(os.path.join(hierarchy.root, "cgroup.subtree_control"), "w") as f:
            f.write("+memory")
    name = f"/pagewalk-test-{os.getpid()}-{pid}"
    directory = hierarchy.root + name
    try:
        os.mkdir(directory)
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup: {exc}")
    try:
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        yield name
    finally:
        with contextlib.suppress(OSError), open(os.path.join(hierarchy.root, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        for _ in range(100):  # (rmdir fails while the kernel still counts a task leaving)
            try:
                os.rmdir(directory)
                break
            except OSError:
                time.sleep(0.05)


@contextlib.contextmanager
def swap_file(size_mib: int = 64):
    """A temporary swap file, enabled; always disabled and deleted afterwards.
    Skips the test (with the reason) where no candidate filesystem takes it."""
    reasons = []
    for base in ("/var/tmp", "/tmp"):
        if not os.path.isdir(base):
            continue
        directory = tempfile.mkdtemp(prefix="pagewalk-swap-", dir=base)
        path = os.path.join(directory, "swapfile")
        enabled = False
        try:
            if shutil.which("fallocate") and _run("fallocate", "-l", f"{size_mib}M", path).returncode == 0:
                pass
            else:
                made = _run("dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size_mib}")
                if made.returncode:
                    reasons.append(f"{base}: dd failed: {made.stderr.strip()}")
                    continue
            os.chmod(path, 0o600)
            made = _run("mkswap", path)
            if made.returncode:
                reasons.append(f"{base}: mkswap failed: {made.stderr.strip()}")
                continue
            on = _run("swapon", path)
            if on.returncode:
                reasons.append(f"{base}: swapon failed: {on.stderr.strip()}")
                continue
            enabled = True
            yield path
            return
        finally:
            off = _run("swapoff", path) if enabled else None
            with contextlib.suppress(OSError):
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(directory)
            if off is not None and off.returncode:
                raise RuntimeError(f"swapoff {path} failed: {off.stderr.strip()}")
    pytest.skip("cannot enable a swap file: " + "; ".join(reasons))


def run_on_terminal(args: list[str], stream: str, env: dict | None = None, other=subprocess.PIPE,
                    size: tuple[int, int] | None = None) -> tuple[bytes, bytes | None]:
    """Run ``pagewalk ARGS`` with ``stream`` (stdout or stderr) on a new pseudo-terminal,
    read while it runs, and the other stream to ``other`` (a pipe read at the end, or
    DEVNULL); returns (what the terminal got, what the pipe got).  ``size``: the
    terminal's (columns, rows), set on it as a terminal emulator does (COLUMNS and
    LINES then left out of the environment)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    environment = {**os.environ, "TERM": "xterm", **(env or {})}
    if size is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        environment.pop("COLUMNS", None)
        environment.pop("LINES", None)
    io = {"stdout": other, "stderr": other, stream: slave}
    proc = subprocess.Popen([sys.executable, "-m", "pagewalk", *args], stdin=subprocess.DEVNULL,
                            env=environment, **io)
    os.close(slave)
    got = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    pipe = proc.stderr if stream == "stdout" else proc.stdout
    rest = pipe.read() if pipe is not None else None
    proc.wait(timeout=300)
    assert proc.returncode == 0, rest
    return bytes(got), rest


def without_module(tmp_path, name: str) -> dict[str, str]:
    """An environment in which ``import name`` fails, as when an optional extra is not
    installed: a package of that name, first on the path, that raises ImportError."""
    shadow = tmp_path / "shadow" / name
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    return {"PYTHONPATH": str(shadow.parent)}
