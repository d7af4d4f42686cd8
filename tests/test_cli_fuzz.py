"""Random hostile command lines: whatever the arguments, ``pagewalk`` answers with
status 0, 1 or 2, and on failure with exactly one ``pagewalk: error:`` line (``file``: one
a PATH it cannot read, the others answered); never a
traceback, never a hang.

A few hundred invocations of ``pagewalk.cli.main(argv)`` in this process (a process
each would take minutes), from a seeded generator: out-of-range, negative, inf and
nan numbers, empty strings, odd ranges, names that are not UTF-8 (as Python decodes
them from argv), FIFOs, devices and /proc files as paths, PIDs of nothing, of a
kernel thread and of a zombie, stdin closed or full of garbage.  Each call runs under
a timer: one that would block (a FIFO opened for reading) fails the test instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import stat
import sys
import tempfile
import traceback


from conftest import requires_root

# (PAGEWALK_FUZZ_SEED and PAGEWALK_FUZZ_RUNS explore further: a failure prints its command line)
SEED = int(os.environ.get("PAGEWALK_FUZZ_SEED", "13"))
INVOCATIONS = int(os.environ.get("PAGEWALK_FUZZ_RUNS", "400"))
SECONDS_EACH = 20  # a timer per call: far above any call here, which take milliseconds


class Hang(BaseException):
    """The timer fired: the call would have blocked (BaseException: no handler eats it)."""


NUMBERS = ["-1", "0", "-0", "1", "1e308", "inf", "-inf", "nan", "NaN", "1e-400", "0x", "0x-1", "0x10",
           "18446744073709551616", "18446744073709551615", "9223372036854775807", "9223372036854775808",
           "4294967296", "99999999999999999999999", "1" + "0" * 5000, "", " ", "\u0663", "\uff11", "0b101",
           "1_000", "+5", "-", "0o17", "ffffffffffffffff", "0xffffffffffffffff", "8000000000000000",
           "fffffffffffff000", "0x7fffffffffffff", "12abc", "\udcff\udcfe", "1e3", "0.5", "-0.0"]
TEXTS = ["", " ", "\n", "a\x1bb", "\udcff", "..", "/", "-5", "~", ",", "=", "~present,", "present,,file",
         "x" * 5000, "present", "~file,swapped", "zero,huge", "soft_dirty", "uffd-wp", "\u2028", "anon", "@",
         "@-1", "@0", "=a,b", "a,~b", "compound,=huge", "0x10", "1,2=3"]
RANGES = ["", "-", "+", "0-0", "1-0", "0+0", "0+1", "ffffffffffffffff-", "0-10000000000000000",
          "0+100000000000000000000T", "0x1000+1k", "0x1000+1Q", "1000-2000-3000", "+1", "-1", "0x-0x",
          "fffffffffffff000+0x1000", "0+1T", "ffffffffff600000+4k", "0+1" + "0" * 5000, "\udcff-\udcfe",
          "0,16", "5", "0x10,-5", "-5", "18446744073709551616", "4+-1", ",", "0,", "+", "10,5", "0+0x"]
NAMES = [t for t in TEXTS if t not in ("..", "/")]  # as paths: a whole file tree is not walked
SHORT_PFN_RANGES = ["0,16", "5", "0x10,-5", "-5", "18446744073709551616", "4+-1", "10,5", "0+0x", "0x100+0x10",
                    "0xffffffffff+1", "0x7fffffffffffffff", "", ","]  # none walks the whole machine
FORMATS = ["text", "seed", "csv", "jsonl", "", "xml", "\udcff"]


def hostile_pid(rng: random.Random, pids: dict[str, str]) -> str:
    if rng.random() < 0.5:
        return rng.choice(list(pids.values()))
    return rng.choice([*NUMBERS, "self", "abc", "1" * 30])


def command_line(rng: random.Random, pids: dict[str, str], paths: list[str], outputs: list[str],
                 places: list[int]) -> list[str]:
    """One random command line, of a command that does little work whatever its arguments
    (every process or the whole machine is never walked: that takes seconds).  ``paths``
    are read (devices and /proc files among them), ``outputs`` written: only ever files
    of the test's own directory (run as root, an output written over /dev/null would
    break the machine).  ``places`` are addresses in and around the specimen's mappings."""
    pick = rng.choice
    maybe = lambda p=0.5: rng.random() < p  # noqa: E731
    target = lambda: pick([pids["specimen"]] * 3 + [hostile_pid(rng, pids)])  # noqa: E731
    place = lambda: f"{pick(places) + pick([0, 1, -1, 4095, 4096, -4096, 1 << 32]):x}"  # noqa: E731

    def a_range() -> str:
        if maybe(0.4):
            return pick(RANGES)
        return f"{place()}{pick(['-', '+'])}{pick([place(), '0', '1', '4k', '1M', '0x10', '1T', ''])}"

    command = pick(["maps", "dump", "v2p", "translate", "types", "usage", "who", "shared", "file", "wss", "watch",
                    "snapshot", "diff", "doctor", "picture"])
    argv = [command]
    if command == "maps":
        argv += [target()] + (["--sort", pick(TEXTS + ["rss", "path"])] if maybe() else []) + \
            (["--json"] if maybe() else []) + (["--no-scan"] if maybe(0.2) else [])
    elif command == "dump":
        argv += [target(), "--format", pick(FORMATS)]
        argv += ["--range", a_range()]  # (a whole dump would take too long)
        argv += ["--where", pick(TEXTS)] if maybe() else []
    elif command in ("v2p", "translate"):
        argv += [target()] + [pick(NUMBERS + RANGES + ["-"]) if maybe(0.4) else place()
                              for _ in range(rng.randint(0, 3))]
        argv += ["--json"] if maybe() else []
    elif command == "types":
        where = pick(["-p", "-f", "-F", "-d", "-a"])
        value = hostile_pid(rng, pids) if where == "-p" else pick(TEXTS) if where == "-d" else \
            pick(SHORT_PFN_RANGES) if where == "-a" else pick(paths + NAMES)
        argv += [where, value]
        if where in ("-p", "-f") and maybe(0.7):
            argv += ["-a", pick(RANGES)]
        if where == "-F" and value == "/proc/kpageflags":  # (the whole machine: too long)
            argv += ["-a", pick(SHORT_PFN_RANGES)]
        argv += [pick(["-b", "-c"]), pick(TEXTS + NUMBERS)] if maybe(0.4) else []
        argv += [pick(["-l", "-L", "-N", "-r", "--json", "-C", "-M"])] if maybe(0.4) else []
    elif command == "usage":
        argv += [hostile_pid(rng, pids) for _ in range(rng.randint(1, 3))]
        argv += [pick(["--sort", "--by"]), pick(TEXTS + ["pss", "cgroup", "mapping"])] if maybe() else []
        argv += ["--json"] if maybe() else []
    elif command == "who":
        argv += [pick(NUMBERS)] if maybe() else ["--pfn", pick(NUMBERS)]
        if maybe(0.8):  # a PFN out of range: no walk of every process (a valid one walks them all)
            argv += ["--pfn", "8000000000000000"]
    elif command == "shared":
        argv += [hostile_pid(rng, pids) for _ in range(rng.randint(1, 3))]
    elif command == "file":
        argv += [pick(paths + NAMES) for _ in range(rng.randint(1, 2))] + (["--json"] if maybe() else [])
    elif command == "wss":
        interval = pick(["inf", "-inf", "nan", "1e308", "0", "-1", "", "abc", "1e-400", "0x10", "86401", "1e-9",
                         "0.001", "\udcff"])
        counts = ["1", "2", "0", "-1", "", "abc", "1e3"] + ([] if interval in ("1e-9", "0.001") else ["9" * 30])
        argv += [target(), "--interval", interval, "--count", pick(counts)]  # (sampling that ends soon)
        argv += ["--method", pick(["auto", "referenced", "soft-dirty", "idle", "damon", "", "x"])] if maybe() else []
        argv += ["--json"] if maybe() else []
    elif command == "watch":
        argv += [target(), "--interval", pick(NUMBERS)]
    elif command == "snapshot":
        argv += [target(), "-o", pick(outputs)] if maybe(0.6) else \
            ["--load", pick(paths + NAMES)] + (["--json"] if maybe() else []) if maybe() else [pick(paths + NAMES)]
    elif command == "diff":
        argv += [pick(paths + NAMES + list(pids.values())), pick(paths + NAMES + list(pids.values()))]
    elif command == "picture":
        argv += [hostile_pid(rng, pids), "-o", pick(outputs + ["x.bmp"])]
    if maybe(0.05):
        argv.insert(rng.randint(1, len(argv)), pick(["--bogus", "-x", "--", "-"]))
    return argv


def call(argv: list[str], stdin: io.TextIOWrapper | None, outdir: str) -> tuple[int, str]:
    """``main(argv)`` with its own stdout (a real file: the CLI may redirect its
    descriptor), stderr and stdin; (status, stderr)."""
    from pagewalk.cli import main

    err = io.StringIO()
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(Hang()))
    saved_stdin = sys.stdin
    with open(os.path.join(outdir, "stdout"), "w") as out:
        sys.stdin = stdin
        signal.setitimer(signal.ITIMER_REAL, SECONDS_EACH)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main(argv)
                except SystemExit as exc:
                    status = exc.code
        except Hang:
            raise AssertionError(f"pagewalk {argv!r} did not return within {SECONDS_EACH} s") from None
        except BaseException:
            raise AssertionError(f"pagewalk {argv!r} raised:\n{traceback.format_exc()}") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            sys.stdin = saved_stdin
    return status, err.getvalue()


@requires_root
def test_hostile_command_lines_get_a_status_and_at_most_one_error_line(specimen, zombie, monkeypatch):
    gone = 4194303
    while os.path.exists(f"/proc/{gone}"):
        gone -= 1
    pids = {"specimen": str(specimen.pid), "gone": str(gone), "kernel thread": "2", "zombie": str(zombie),
            "init": "1"}
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as d:
        monkeypatch.chdir(d)  # relative names are written here
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo)
        small = os.path.join(d, "small")
        with open(small, "wb") as f:
            f.write(b"x" * 10000)
        os.symlink("loop", os.path.join(d, "loop"))
        odd = os.path.join(d, "\udcff\x1b[31m")
        open(odd, "w").close()
        devices = []
        for name, minor in (("null", 3), ("zero", 5), ("full", 7)):  # this directory's own copies to write to
            with contextlib.suppress(OSError):
                os.mknod(os.path.join(d, name), 0o666 | stat.S_IFCHR, os.makedev(1, minor))
                devices.append(os.path.join(d, name))
        paths = [fifo, small, odd, os.path.join(d, "loop"), os.path.join(d, "new.snap"), d, "/dev/zero",
                 "/dev/null", "/dev/full", "/proc/self/mem", "/proc/self/pagemap", "/nonexistent",
                 "/proc/kpageflags", os.path.join(d, "nodir", "x.snap"), os.path.join(small, "below")]
        outputs = [small, odd, os.path.join(d, "loop"), os.path.join(d, "new.snap"), os.path.join(d, "x.png"),
                   os.path.join(d, "x.svg"), os.path.join(d, "x.html"), d, os.path.join(d, "nodir", "x.snap"),
                   os.path.join(small, "below"), "-", *devices, *NAMES]
        outdir = os.path.join(d, "out")
        os.mkdir(outdir)
        with open(f"/proc/{specimen.pid}/maps") as f:
            places = [int(x, 16) for line in f for x in line.split()[0].split("-")] + [0, 1 << 47, (1 << 64) - 1]
        failures = []
        for _ in range(INVOCATIONS):
            argv = command_line(rng, pids, paths, outputs, places)
            stdin = rng.choice([None, b"", b"\xff\xfe\n", b"0x1000\n" * 3, b"zz\n", b"\n\n", b"1" * 100000,
                                f"{rng.getrandbits(64):x}\n".encode()])
            status, err = call(argv, None if stdin is None else io.TextIOWrapper(io.BytesIO(stdin)), outdir)
            errors = [line for line in err.splitlines() if line.startswith("pagewalk: error:")]
            # (file answers each PATH on its own, as ls does: an error line a bad one)
            allowed = range(1, len(argv)) if argv[0] == "file" and status != 0 else [int(status != 0)]
            ok = status in (0, 1, 2) and "Traceback" not in err and len(errors) in allowed
            if not ok:
                failures.append(f"pagewalk {argv!r} -> {status!r}: {err!r}")
    assert not failures, "\n".join(failures[:20])
