"""The per-page formats: folded text, csv, jsonl; bounded memory on huge reservations."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

from conftest import PAGE, Measured, cli, measured, pagemap_entry, requires_root, run_on_terminal

PRESENT, SWAP, FILE_BIT, EXCL = 1 << 63, 1 << 62, 1 << 61, 1 << 56
PFN_MASK = (1 << 55) - 1
RESERVATION_PAGES = (64 << 30) // PAGE


def peak_rss_kib(args: list[str]) -> tuple[int, str]:
    """Run the CLI in a fresh interpreter; return its peak RSS (KiB) and stdout."""
    r, peak = measured(*args)
    assert r.returncode == 0, r.stderr
    return peak >> 10, r.stdout.decode()


def test_text_folds_a_64_gib_reservation_into_one_line_in_bounded_memory(specimen):
    start = specimen.run("result = mmap(%d, 'none', noreserve=True)" % RESERVATION_PAGES)
    peak, out = peak_rss_kib(["dump", str(specimen.pid), "--range", f"{start:x}+64G"])
    lines = out.splitlines()
    assert len(lines) == 2, lines  # the mapping header and one run
    assert f"{RESERVATION_PAGES} pages" in lines[1] and "untouched" in lines[1]
    assert peak < 100 * 1024, f"peak RSS {peak} KiB"
    peak, out = peak_rss_kib(["maps", str(specimen.pid), "--json"])
    row = next(m for m in json.loads(out)["mappings"] if m["start"] == start)
    assert row["pages"] == RESERVATION_PAGES and row["present"] == 0
    assert peak < 100 * 1024, f"peak RSS {peak} KiB"


def streamed_dump(pid: int, fmt: str) -> tuple[int, int, bytes]:
    """``dump PID --format FMT`` of the whole process read through a pipe as it is
    written: (peak RSS of pagewalk in KiB, lines, the first 4 KiB)."""
    m = Measured("dump", pid, "--format", fmt)
    proc = subprocess.Popen(m.argv, env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines, head = 0, b""
    while chunk := proc.stdout.read(1 << 20):
        lines += chunk.count(b"\n")
        head = head or chunk[:4096]
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, stderr
    return m.peak_bytes >> 10, lines, head


def test_every_format_streams_the_reservation_workload_in_bounded_memory(specimen):
    """256 MiB written plus a 64 GiB reservation: 16.8 million pages, whose csv or
    jsonl would take gigabytes if held; every format stays under 100 MiB."""
    specimen.run("w = mmap(65536); write(w, 65536); r = mmap(%d, 'none', noreserve=True)" % RESERVATION_PAGES)
    with open(f"/proc/{specimen.pid}/maps") as f:
        pages = sum((int(hi, 16) - int(lo, 16)) // PAGE for lo, hi in
                    (line.split()[0].split("-") for line in f if "[vsyscall]" not in line))
    assert pages > RESERVATION_PAGES + 65536
    expected = {"seed": pages + 1, "csv": pages + 1, "jsonl": pages}  # seed and csv have a header line
    for fmt in ("seed", "csv", "jsonl", "text"):
        peak, lines, head = streamed_dump(specimen.pid, fmt)
        assert peak < 100 * 1024, (fmt, f"peak RSS {peak} KiB")
        if fmt == "text":
            assert 0 < lines < RESERVATION_PAGES // 100, lines  # runs folded, not a line a page
        else:
            assert lines == expected[fmt], fmt
            assert head.startswith({"seed": b"addr pfn", "csv": b"vaddr,pfn", "jsonl": b'{"vaddr":'}[fmt])


def test_text_runs_break_on_state_and_frames(specimen):
    addr = specimen.run("a = mmap(16); write(a, 4); read(a + 8 * PAGE, 4); madvise(a + 15 * PAGE, 1, MADV_GUARD_INSTALL)"
                        "\nresult = a")
    out = cli("dump", specimen.pid, "--range", f"{addr:x}+64K").stdout.splitlines()[1:]
    states = [line.split()[-1] for line in out]
    written = [line for line in out if "exclusive" in line]
    assert sum(int(line.split()[1]) for line in written) == 4
    assert "untouched" in states and "guard" in states
    zero_lines = [line for line in out if "zero" in line.split()[-1]]
    assert len(zero_lines) == 1 and zero_lines[0].split()[1] == "4"  # one frame for all: one run
    # runs cover the range exactly, in order
    covered = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in out]
    assert covered[0][0] == addr and covered[-1][1] == addr + 16 * PAGE
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))


@requires_root
def test_csv_and_jsonl_match_the_raw_entries(specimen):
    addr = specimen.run("a = mmap(6); write(a, 2); read(a + 2 * PAGE); madvise(a + 5 * PAGE, 1, MADV_GUARD_INSTALL)"
                        "\nresult = a")
    entries = [pagemap_entry(specimen.pid, addr + i * PAGE) for i in range(6)]
    rng = f"{addr:x}+{6 * PAGE:#x}"
    rows = list(csv.DictReader(io.StringIO(cli("dump", specimen.pid, "--format", "csv", "--range", rng).stdout)))
    objs = [json.loads(line) for line in cli("dump", specimen.pid, "--format", "jsonl", "--range", rng).stdout.splitlines()]
    assert len(rows) == len(objs) == 6
    for i, (row, obj, e) in enumerate(zip(rows, objs, entries)):
        assert int(row["vaddr"]) == obj["vaddr"] == addr + i * PAGE
        present = bool(e & PRESENT)
        assert obj["present"] is present and row["present"] == str(int(present))
        assert obj["exclusive"] is bool(e & EXCL)
        assert obj["pfn"] == (e & PFN_MASK if present else None)
        assert row["pfn"] == ("" if not present else str(e & PFN_MASK))
        assert obj["guard"] is (i == 5) and obj["swapped"] is False
        assert obj["zero"] is (i == 2)
        assert obj["mapping"] is None and row["mapping"] == ""
    assert objs[5]["swap_type"] == 31 and objs[5]["swap_offset"] == 4  # the guard marker (include/linux/swapops.h)
    where = cli("dump", specimen.pid, "--format", "jsonl", "--range", rng, "--where", "present,~zero").stdout
    assert [json.loads(line)["vaddr"] for line in where.splitlines()] == [addr, addr + PAGE]


def test_progress_shows_on_a_terminal_stderr_only(specimen):
    """A long dump to a file reports progress on stderr when stderr is a terminal,
    and nothing when it is not."""
    specimen.run("big = mmap(1 << 25, 'none', noreserve=True)")  # 128 GiB: a few seconds of output
    seen, _ = run_on_terminal(["dump", str(specimen.pid), "--format", "seed"], "stderr", other=subprocess.DEVNULL)
    assert b"pagewalk dump" in seen and b"pages" in seen
    quiet = subprocess.run([sys.executable, "-m", "pagewalk", "dump", str(specimen.pid), "--format", "seed"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == b""


def test_text_lines_are_the_same_for_few_and_many_runs(specimen):
    """Few runs are printed by a plain loop, many by the vectorised formatter: the
    same runs must print the same either way."""
    import numpy as np

    from pagewalk.output.dump_runs import FEW_RUNS, TextFormat, _Runs

    fmt = TextFormat()
    fmt.page_size = PAGE
    rng = np.random.default_rng(7)
    n = 3 * FEW_RUNS
    vaddr = (rng.integers(1, 1 << 30, n) * PAGE).astype(np.int64)
    count = rng.integers(1, 5000, n)
    count[:4] = 1
    key = rng.choice([0, 1, 1 | 2, 1 | 128, 8, 8 | 128, 32, 64], n)
    first = np.where(key & (1 | 8), rng.integers(-1, 1 << 20, n), -1)
    last = np.where(first >= 0, first + count - 1, -1)
    last[5] = first[5]
    runs = _Runs(vaddr, count, key, first, last)
    many = fmt._lines(runs)
    few = b"".join(fmt._lines(runs[i:i + 1]) for i in range(n))
    assert many == few


def test_vectorised_numbers_print_as_printf_does():
    """hex_col and dec_col against Python's own formatting, widths mixed in one column."""
    import numpy as np

    from pagewalk.output import vecfmt as vf

    rng = np.random.default_rng(3)
    edges = [0, 1, 9, 10, 15, 16, 255, 256, 4095, 4096, 10**12, 2**47 - 1, 2**63 - 1, 2**64 - 1]
    for values in (np.array(edges, dtype=np.uint64), rng.integers(0, 1 << 52, 5000).astype(np.uint64),
                   np.arange(0x7F0000000000, 0x7F0000000000 + 300 * PAGE, PAGE, dtype=np.uint64), np.array([7])):
        n = len(values)
        assert vf.render([vf.hex_col(values), vf.const(b"\n", n)]) == "".join(f"{int(v):x}\n" for v in values).encode()
        assert vf.render([vf.dec_col(values), vf.const(b"\n", n)]) == "".join(f"{int(v)}\n" for v in values).encode()
