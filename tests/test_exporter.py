"""``pagewalk exporter``: real HTTP scrapes of a running exporter, parsed as the
Prometheus exposition format, against the kernel's smaps_rollup; the exporter
outlives a target that exits, and a scrape does not wait for a scan."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import PAGE, cli, requires_root, smaps_rollup, without_module
from specimen import Specimen

pytestmark = requires_root
parser = pytest.importorskip("prometheus_client.parser", reason="the test extra installs prometheus-client")


@contextlib.contextmanager
def exporter(*args: str):
    """A running ``pagewalk exporter`` on a free loopback port; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "pagewalk", "exporter", "--listen", "127.0.0.1:0", *args],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", line)
        assert found, line + proc.stderr.read() if proc.poll() is not None else line
        yield found.group(1), proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def scrape(url: str) -> tuple[dict, float]:
    """{(name, labels...): value} of one scrape, and how long it took."""
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    took = time.monotonic() - t0
    samples = {}
    for family in parser.text_string_to_metric_families(text):  # raises on a malformed exposition
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, took


def process_value(samples: dict, name: str, pid: int) -> float | None:
    for (metric, labels), value in samples.items():
        if metric == name and dict(labels).get("pid") == str(pid):
            return value
    return None


def wait_for(url: str, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        samples, _ = scrape(url)
        if predicate(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_scrape_matches_smaps_rollup_and_outlives_its_target(specimen):
    specimen.run("a = mmap(3000); write(a, 3000)\nshm = mmap(200, shared=True); write(shm, 200)")
    other = Specimen()
    try:
        other.run("b = mmap(500); write(b, 500)")
        with exporter("--pid", str(specimen.pid), str(other.pid), "--interval", "0.2") as (url, proc):
            samples = wait_for(url, lambda s: process_value(s, "pagewalk_process_pss_bytes", other.pid))
            kernel = smaps_rollup(specimen.pid)
            pss = process_value(samples, "pagewalk_process_pss_bytes", specimen.pid)
            assert pss is not None and abs(pss - kernel["Pss"]) <= 0.01 * kernel["Pss"], (pss, kernel["Pss"])
            assert process_value(samples, "pagewalk_process_rss_bytes", specimen.pid) == kernel["Rss"]
            assert process_value(samples, "pagewalk_process_uss_bytes", specimen.pid) == \
                kernel["Private_Clean"] + kernel["Private_Dirty"]
            assert process_value(samples, "pagewalk_process_swap_bytes", specimen.pid) == kernel["Swap"] == 0
            assert process_value(samples, "pagewalk_process_huge_bytes", specimen.pid) == kernel["AnonHugePages"] + \
                kernel["ShmemPmdMapped"] + kernel["FilePmdMapped"]
            labels = next(dict(k[1]) for k in samples if k[0] == "pagewalk_process_rss_bytes"
                          and dict(k[1])["pid"] == str(specimen.pid))
            with open(f"/proc/{specimen.pid}/comm") as f:
                assert labels == {"pid": str(specimen.pid), "command": f.read().strip(), "user": "root"}
            cgroups = [dict(k[1])["cgroup"] for k in samples if k[0] == "pagewalk_cgroup_rss_bytes"]
            assert cgroups and sum(v for k, v in samples.items() if k[0] == "pagewalk_cgroup_rss_bytes") >= \
                kernel["Rss"] + 500 * PAGE
            assert samples[("pagewalk_scan_duration_seconds", ())] > 0
            pages_before = samples[("pagewalk_scan_pages_total", ())]
            assert pages_before >= 3700  # both processes' pages, at least once

            other.close()  # the second target exits between scrapes
            after = wait_for(url, lambda s: process_value(s, "pagewalk_process_rss_bytes", other.pid) is None)
            assert process_value(after, "pagewalk_process_rss_bytes", other.pid) is None  # its series ended
            assert not any(dict(k[1]).get("pid") == str(other.pid) for k in after)
            assert process_value(after, "pagewalk_process_rss_bytes", specimen.pid) == kernel["Rss"]
            assert after[("pagewalk_scan_pages_total", ())] > pages_before  # a counter: it only grows
            assert proc.poll() is None
    finally:
        other.close()


def test_scrapes_do_not_wait_for_scans(specimen):
    """Scanning every process without pause, a scrape is served from the last result:
    it takes a small fraction of a scan."""
    specimen.run("a = mmap(100_000); write(a, 100_000)")  # 400 MB to scan: a scan takes a while
    with exporter("--all", "--interval", "0") as (url, proc):
        samples = wait_for(url, lambda s: ("pagewalk_scan_duration_seconds", ()) in s)
        scan = samples[("pagewalk_scan_duration_seconds", ())]
        took = []
        for _ in range(10):
            _, t = scrape(url)
            took.append(t)
        assert samples[("pagewalk_scan_processes", ())] >= 3
        took.sort()
        # the median scrape is well under a scan (its thread still shares the GIL with the scanning loop)
        assert took[5] < 0.5 * scan, (took, scan)
        assert proc.poll() is None


def test_exporter_bad_input_and_missing_extra(tmp_path):
    r = cli("exporter", "--listen", "nowhere")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("exporter", "--pid", "1", "--all")
    assert r.returncode == 2
    for bad in ("inf", "nan", "-1", "1e300"):
        r = cli("exporter", "--interval", bad)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, (bad, r.stderr)
    r = cli("exporter", "--listen", "127.0.0.1:0", "--pid", "4194305")  # above any PID
    assert r.returncode == 1 and "no process" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = cli("exporter", "--listen", "127.0.0.1:0", env=without_module(tmp_path, "prometheus_client"))
    assert r.returncode == 1 and "pagewalk[exporter]" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    with exporter("--interval", "5") as (url, _):
        host_port = url.split("/")[2]
        r = cli("exporter", "--listen", host_port)  # the port is taken
        assert r.returncode == 1 and "cannot listen" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
