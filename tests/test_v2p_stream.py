"""``v2p PID -`` answers millions of addresses in bounded memory: it reads, translates
and writes a batch at a time, text or one JSON document written element by element."""

from __future__ import annotations

import json
import os
import tempfile

from conftest import PAGE, measured

PAGES = 256


def entries(pid: int, addr: int, pages: int) -> list[int]:
    """The kernel's pagemap entries of ``pages`` pages from ``addr``."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        data = os.pread(f.fileno(), 8 * pages, 8 * (addr // PAGE))
    return [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]


def run_v2p(pid: int, addresses: list[int], *extra: str) -> tuple[int, bytes, int, str]:
    """``v2p PID - EXTRA`` on the addresses; (status, stdout, peak RSS in KiB, stderr)."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write("".join(f"{a:x}\n" for a in addresses).encode())
        stdin.seek(0)
        r, peak = measured("v2p", pid, "-", *extra, stdin=stdin)
        return r.returncode, r.stdout, peak >> 10, r.stderr.decode()


def test_a_million_addresses_in_text_stay_in_bounded_memory(specimen):
    a = specimen.run(f"a = mmap({PAGES}); write(a, {PAGES}); result = a")
    n = 1_000_000
    # every page of the mapping, at every offset in turn, in an order that jumps about
    addresses = [a + (i * 8191) % (PAGES * PAGE) for i in range(n)]
    status, out, peak_kib, err = run_v2p(specimen.pid, addresses)
    assert status == 0, err
    lines = out.split(b"\n")
    assert lines[-1] == b"" and len(lines) == n + 1
    # the old code kept every answer: 580 MB for a million
    assert peak_kib < 80 * 1024, f"peak RSS {peak_kib} KiB"
    pfns = entries(specimen.pid, a, PAGES)
    root = os.geteuid() == 0
    for i in list(range(0, n, 9973)) + [n - 1]:  # lines answer the addresses in order
        vaddr = addresses[i]
        pfn = pfns[(vaddr - a) // PAGE] & ((1 << 55) - 1)
        expect = f"0x{vaddr:x} -> 0x{pfn * PAGE + vaddr % PAGE:x} pfn 0x{pfn:x}  present" if root else \
            f"0x{vaddr:x} -> - pfn -  present"
        assert lines[i].decode().startswith(expect), (lines[i], expect)


def test_json_is_one_document_written_element_by_element(specimen):
    a = specimen.run(f"a = mmap({PAGES}); write(a, {PAGES // 2}); result = a")  # half present, half untouched
    n = 100_000  # several batches; one unmapped address among them
    addresses = [a + (i * 8191) % (PAGES * PAGE) for i in range(n)]
    addresses[70_000] = 0x10
    status, out, peak_kib, err = run_v2p(specimen.pid, addresses, "--json")
    # every address answered, then the unmapped one named (exit 1)
    assert status == 1 and err == f"pagewalk: error: not mapped in process {specimen.pid}: 0x10\n", err
    # the old code kept every answer and their JSON: over 300 MB for these
    assert peak_kib < 110 * 1024, f"peak RSS {peak_kib} KiB"
    doc = json.loads(out)
    assert len(doc) == n and [d["vaddr"] for d in doc] == addresses
    assert out.decode() == json.dumps(doc, indent=1) + "\n"  # the layout json.dumps gives the whole
    present = [d["present"] for d in doc]
    assert present == [(v - a) // PAGE < PAGES // 2 if v != 0x10 else False for v in addresses]
    assert doc[70_000]["mapping"] is None and doc[70_000]["state"] == "not mapped"


def test_many_unmapped_addresses_are_counted_and_a_few_named(specimen):
    status, out, _, err = run_v2p(specimen.pid, [0x1000 * (i + 1) for i in range(40_000)])
    assert status == 1 and out.count(b"not mapped") == 40_000
    assert err == (f"pagewalk: error: not mapped in process {specimen.pid}: "
                   + ", ".join(f"0x{0x1000 * (i + 1):x}" for i in range(8)) + " and 39992 more\n")


def test_a_line_too_long_to_be_an_address_is_refused_before_it_is_read_whole(specimen):
    """256 MiB without a newline on stdin: refused once its first MiB shows it is no
    address, in the memory of one read (reading whole lines took it all)."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write(b"1000\n")
        stdin.truncate(5 + (256 << 20))  # zeros, no newline
        stdin.seek(0)
        r, peak = measured("v2p", specimen.pid, "-", stdin=stdin)
    assert r.returncode == 2 and r.stderr.decode() == \
        "pagewalk: error: a line of stdin is longer than 4096 bytes: not an address\n", r.stderr
    assert peak < 80 << 20, f"peak RSS {peak >> 20} MiB"
