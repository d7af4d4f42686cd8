"""One vocabulary, and empty answers that say so (issue 17): the words a table prints
are the words its options take, in any case; a command that finds nothing says so;
``file`` answers the paths it can and names the ones it cannot."""

from __future__ import annotations

import json
import os

from conftest import PAGE, cli, requires_root


def test_sort_takes_the_columns_words_in_any_case(specimen):
    specimen.run("a = mmap(64); write(a, 64)")
    by_rss = cli("usage", specimen.pid, os.getpid(), "--sort", "RSS", "--json")
    assert by_rss.returncode == 0, by_rss.stderr
    rows = json.loads(by_rss.stdout)["processes"]
    assert [r["rss"] for r in rows] == sorted((r["rss"] for r in rows), reverse=True)
    for word, key in (("EXCL", "exclusive"), ("Mapping", "path"), ("RSS", "rss")):
        r = cli("maps", specimen.pid, "--sort", word, "--json")
        assert r.returncode == 0, (word, r.stderr)
        rows = [m for m in json.loads(r.stdout)["mappings"] if m[key] is not None]
        values = [m[key] for m in rows]
        assert values == (sorted(values) if key == "path" else sorted(values, reverse=True)), (word, values)
    assert cli("maps", specimen.pid, "--sort", "nonsense").returncode == 2


@requires_root
def test_where_untouched_is_what_the_text_dump_calls_untouched(specimen):
    """Of 8 pages, 3 written: --where untouched keeps the other 5, as pagemap shows them (read by the test)."""
    addr = specimen.run("a = mmap(8); write(a, 3); result = a")
    rows = [json.loads(line) for line in cli("dump", specimen.pid, "--format", "jsonl", "--range",
                                             f"{addr:x}+{8 * PAGE // 1024}k", "--where", "UNTOUCHED").stdout.splitlines()]
    with open(f"/proc/{specimen.pid}/pagemap", "rb") as f:
        entries = [int.from_bytes(os.pread(f.fileno(), 8, (addr // PAGE + i) * 8), "little") for i in range(8)]
    assert [r["vaddr"] for r in rows] == [addr + i * PAGE for i in range(8) if entries[i] == 0] != []
    assert len(rows) == 5


def test_an_empty_dump_says_no_pages_match(specimen):
    addr = specimen.run("a = mmap(4); result = a")
    for args, extra in ((("--range", "0-10"), "no mapping lies in the range"),
                        (("--range", f"{addr:x}+{4 * PAGE // 1024}k", "--where", "present"), "")):
        r = cli("dump", specimen.pid, *args)
        assert r.returncode == 0 and "no pages match" in r.stderr and extra in r.stderr, r.stderr


def test_file_answers_what_it_can_with_totals_and_grammar(tmp_path):
    one = tmp_path / "one"
    one.write_bytes(b"x" * 10)  # one page
    (tmp_path / "two").write_bytes(b"y" * (PAGE + 1))
    r = cli("file", tmp_path / "missing", one)
    assert r.returncode == 2 and "missing" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{one}: 1 page (" in r.stdout
    r = cli("file", tmp_path)
    assert r.returncode == 0 and "total: 2 files, 3 pages" in r.stdout, r.stdout
    summary = cli("file", "--summary", tmp_path)
    lines = summary.stdout.splitlines()
    assert len(lines) == 3 and not any(line.startswith(" ") for line in lines), summary.stdout
    assert any(line.startswith(" ") for line in cli("file", tmp_path).stdout.splitlines())  # (what --summary leaves out)
    (tmp_path / "empty").mkdir()
    r = cli("file", tmp_path / "empty")
    assert r.returncode == 0 and "no files" in r.stderr and r.stdout == "", (r.stdout, r.stderr)


def test_errors_point_at_the_help_that_answers_them():
    for args, hint in ((("maps", "1", "2"), "pagewalk maps --help"), (("maps", "--typo", "1"), "pagewalk maps --help"),
                       (("mapz",), "pagewalk --help")):
        r = cli(*args)
        assert r.returncode == 2 and f"(see '{hint}')" in r.stderr, r.stderr
    r = cli("-V")
    assert r.returncode == 0 and r.stdout.startswith("pagewalk ")


def test_v2p_json_tells_anonymous_memory_from_no_mapping(specimen):
    addr = specimen.run("a = mmap(2); write(a, 1); result = a")
    with open(f"/proc/{specimen.pid}/maps") as f:
        starts = sorted(int(line.split("-")[0], 16) for line in f)
    assert 0x1000 not in starts
    anon, nothing = json.loads(cli("v2p", specimen.pid, f"{addr:x}", "1000", "--json").stdout)
    assert anon["mapped"] is True and anon["mapping"] is None and anon["present"] is True
    assert nothing["mapped"] is False and nothing["mapping"] is None


def test_maps_shows_the_columns_asked_for_in_their_order(specimen):
    r = cli("maps", specimen.pid, "-o", "rss,Start,mapping,excl")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["RSS", "START", "MAPPING", "EXCL"]
    full = cli("maps", specimen.pid).stdout.splitlines()
    assert len(lines) == len(full) and lines[-1].split()[1] == "total"
    r = cli("maps", specimen.pid, "-o", "rss,nonsense")
    assert r.returncode == 2 and "nonsense" in r.stderr.lower()
