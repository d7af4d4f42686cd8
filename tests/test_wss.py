"""``pagewalk wss``: a process that keeps touching a known number of pages out of a
larger resident set; every method this kernel has must report that number within
10%, and the others must say why they cannot run."""

from __future__ import annotations

import json

import pytest

from conftest import PAGE, cli, requires_root

pytestmark = requires_root

TOUCHED, RESIDENT = 1500, 6000

BUSY = f"""
import threading, time
a = mmap({RESIDENT}); write(a, {RESIDENT})
stop = False
def busy():
    while not stop:
        for i in range({TOUCHED}):
            ctypes.memset(a + i * PAGE, 1, 1)
        time.sleep(0.02)
threading.Thread(target=busy, daemon=True).start()
result = a
"""


@pytest.mark.parametrize("method", ["referenced", "soft-dirty", "idle", "damon"])
def test_wss_counts_the_pages_being_touched(specimen, method):
    from pagewalk.wss import why_unavailable

    a = specimen.run(BUSY)
    r = cli("wss", specimen.pid, "--method", method, "--interval", "0.5", "--count", "3", "--json")
    why = why_unavailable(method, specimen.pid)
    if why is not None:  # the kernel's own configuration says so, not pagewalk's result
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and why in r.stderr
        pytest.skip(f"{method} is not available here: {why}")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["method"] == method and len(doc["samples"]) == 3
    assert [s["time"] for s in doc["samples"]][0] == 0
    for sample in doc["samples"]:
        region = sum(m["wss_bytes"] for m in sample["mappings"] if m["start"] == a) // PAGE
        assert abs(region - TOUCHED) <= TOUCHED // 10, (method, region)
        assert sample["rss_bytes"] >= RESIDENT * PAGE
    assert doc["cost"]["pages_scanned"] > 0


def test_auto_says_which_method_and_what_it_disturbs(specimen):
    specimen.run(BUSY)
    r = cli("wss", specimen.pid, "--interval", "0.2", "--count", "1")
    assert r.returncode == 0, r.stderr
    assert "chosen by auto" in r.stderr and "cost" in r.stderr
    assert r.stdout.startswith("t=0.0s  wss ")
    assert cli("wss", specimen.pid, "--count", "0").returncode == 2
