"""``pagewalk exporter``: real HTTP scrapes of a running exporter, parsed as the
Prometheus exposition format, against the kernel's smaps_rollup; the exporter
outlives a target that exits, and a scrape does not wait for a scan."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import resource
import socket
import stat
import tempfile
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import PAGE, cli, requires_root, smaps_rollup, without_module
from specimen import Specimen

pytestmark = requires_root
parser = pytest.importorskip("prometheus_client.parser", reason="the test extra installs prometheus-client")
openmetrics = pytest.importorskip("prometheus_client.openmetrics.parser")


@contextlib.contextmanager
def exporter(*args: str, listen: str = "127.0.0.1:0", fd_limit: int | None = None):
    """A running ``pagewalk exporter`` (on a free loopback port unless ``listen`` says
    otherwise; with its descriptor limit lowered to ``fd_limit``); yields its URL (or
    unix socket path) and the process."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    proc = subprocess.Popen([sys.executable, "-m", "pagewalk", "exporter", "--listen", listen, *args],
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit if fd_limit else None)
    try:
        line = proc.stderr.readline()
        found = re.search(r"serving metrics on (http://127\.0\.0\.1:\d+/metrics|unix:(\S+))", line)
        assert found, line + proc.stderr.read() if proc.poll() is not None else line
        proc.startup_line = line
        yield found.group(2) or found.group(1), proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def scrape(url: str, timeout: float = 10) -> tuple[dict, float]:
    """{(name, labels...): value} of one scrape, and how long it took."""
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout) as r:
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
            # (USS, like PSS, moves when another process mapping the same library pages comes or goes)
            uss, kernel_uss = process_value(samples, "pagewalk_process_uss_bytes", specimen.pid), \
                kernel["Private_Clean"] + kernel["Private_Dirty"]
            assert abs(uss - kernel_uss) <= 0.01 * kernel_uss, (uss, kernel_uss)
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
    for bad, said in ((("--idle-timeout", "0"), "--idle-timeout takes"), (("--max-connections", "0"), "1 or more"),
                      (("--listen", "unix:"), "wants a path"), (("--socket-mode", "999"), "octal")):
        r = cli("exporter", *bad)
        assert r.returncode == 2 and said in r.stderr and len(r.stderr.splitlines()) == 1, (bad, r.stderr)
    r = cli("exporter", "--listen", "127.0.0.1:0", "--pid", "4194305")  # above any PID
    assert r.returncode == 1 and "no process" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = cli("exporter", "--listen", "127.0.0.1:0", env=without_module(tmp_path, "prometheus_client"))
    assert r.returncode == 1 and "pagewalk[exporter]" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    with exporter("--interval", "5") as (url, _):
        host_port = url.split("/")[2]
        r = cli("exporter", "--listen", host_port)  # the port is taken
        assert r.returncode == 1 and "cannot listen" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("Threads:"))


def fd_links(pid: int) -> list[str]:
    """What the process's open descriptors point at; one closed while they are listed
    (the server drops connections over its cap as they come) is left out."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return links


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("/")[2].rpartition(":")
    return host, int(port)


@pytest.mark.parametrize("fd_limit", [None, 64])
def test_idle_connections_do_not_stop_scrapes(specimen, fd_limit):
    """300 connections that never finish a request (more than the exporter holds, and,
    with 64 descriptors, more than it could): a scrape is still answered at once (well
    within the 5 s idle timeout, so not thanks to it), from a bounded number of threads."""
    specimen.run("a = mmap(100); write(a, 100)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 400:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1024), hard))
    held: list[socket.socket] = []
    try:
        with exporter("--pid", str(specimen.pid), "--interval", "60", fd_limit=fd_limit) as (url, proc):
            wait_for(url, lambda s: process_value(s, "pagewalk_process_rss_bytes", specimen.pid))
            for i in range(300):
                sock = socket.create_connection(host_port(url), timeout=5)
                if i % 2:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # a request begun and never ended
                held.append(sock)
            samples, took = scrape(url, timeout=3)
            assert process_value(samples, "pagewalk_process_rss_bytes", specimen.pid) == \
                smaps_rollup(specimen.pid)["Rss"]
            assert took < 3, took
            # accepted in order, so every idle connection was accepted before the scrape was
            assert threads(proc.pid) <= 8, threads(proc.pid)
            sockets = sum(link.startswith("socket:") for link in fd_links(proc.pid))
            assert sockets <= 64 + 4, sockets  # the cap, the listener, the wake-up pair
            assert proc.poll() is None
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_connections_are_closed_after_the_timeout(specimen):
    with exporter("--pid", str(specimen.pid), "--idle-timeout", "0.5") as (url, proc):
        t0 = time.monotonic()
        silent = socket.create_connection(host_port(url), timeout=10)
        partial = socket.create_connection(host_port(url), timeout=10)
        partial.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        for sock in (silent, partial):
            with sock:
                assert sock.recv(1) == b""  # EOF from the exporter (a timeout raises instead)
        took = time.monotonic() - t0
        assert 0.49 < took < 5, took  # accepted after t0, closed 0.5 s after that
        # and the exporter still serves, in the format and encoding Prometheus asks for
        request = urllib.request.Request(url, headers={
            "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
            "Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            text = gzip.decompress(r.read()).decode()
        names = {f.name for f in openmetrics.text_string_to_metric_families(text)}
        assert "pagewalk_scan_pages" in names and text.endswith("# EOF\n")
        assert proc.poll() is None


def raw_scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_a_pid_given_twice_is_published_once(specimen):
    specimen.run("a = mmap(700); write(a, 700)")
    pid = str(specimen.pid)
    with exporter("--pid", pid, pid, "--interval", "60") as (url, proc):
        assert "scanning 1 process(es)" in proc.startup_line, proc.startup_line
        wait_for(url, lambda s: process_value(s, "pagewalk_process_rss_bytes", specimen.pid))
        text = raw_scrape(url)
    rss = smaps_rollup(specimen.pid)["Rss"]
    lines = [ln for ln in text.splitlines() if ln.startswith("pagewalk_process_rss_bytes{")]
    assert len(lines) == 1 and f'pid="{pid}"' in lines[0] and float(lines[0].split()[-1]) == rss, lines
    cgroups = [ln for ln in text.splitlines() if ln.startswith("pagewalk_cgroup_rss_bytes{")]
    assert len(cgroups) == 1 and float(cgroups[0].split()[-1]) == rss, (cgroups, rss)
    assert "pagewalk_scan_processes 1.0" in text.splitlines()


def unix_get(path: str) -> tuple[str, str]:
    """Status line and body of GET /metrics over the unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode().split("\r\n")[0], body.decode()


@pytest.fixture
def open_dir():
    """A directory every user may enter (pytest's tmp_path is root's alone, which would
    keep another user out whatever the socket's mode)."""
    import shutil

    where = tempfile.mkdtemp(prefix="pagewalk-test-")
    os.chmod(where, 0o755)
    yield where
    shutil.rmtree(where)


def test_unix_socket_is_its_owners_only(specimen, open_dir):
    from test_unprivileged import NOBODY, as_user

    path = os.path.join(open_dir, "metrics.sock")

    def connect() -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(path)
            except OSError as exc:
                return type(exc).__name__
            return "connected"

    with exporter("--pid", str(specimen.pid), "--interval", "60", listen=f"unix:{path}") as (where, proc):
        assert where == path
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
        assert as_user(NOBODY, connect) == {"value": "PermissionError"}
        deadline = time.monotonic() + 10
        while True:
            status, body = unix_get(path)
            if f'pid="{specimen.pid}"' in body or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == "HTTP/1.1 200 OK"
        samples = {(s.name, s.labels.get("pid")): s.value
                   for f in parser.text_string_to_metric_families(body) for s in f.samples}
        assert samples[("pagewalk_process_rss_bytes", str(specimen.pid))] == smaps_rollup(specimen.pid)["Rss"]
        # a second exporter does not take the socket of one that is running
        r = cli("exporter", "--listen", f"unix:{path}")
        assert r.returncode == 1 and "cannot listen" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
        assert proc.poll() is None
    assert not os.path.lexists(path)  # removed on exit

    # a group-readable socket when asked; a stale socket is replaced
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    with exporter("--interval", "60", "--socket-mode", "0660", listen=f"unix:{path}") as (_, proc):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
        assert unix_get(path)[0] == "HTTP/1.1 200 OK"

    # anything but a socket is left alone
    with open(path, "w") as f:
        f.write("precious")
    r = cli("exporter", "--listen", f"unix:{path}")
    assert r.returncode == 1 and "not a socket" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    with open(path) as f:
        assert f.read() == "precious"
    r = cli("exporter", "--listen", "127.0.0.1:0", "--socket-mode", "0660")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr


# -- the server: what one client sends cannot stop it or speak for it ----------------

BAD_VERSION = b"application/openmetrics-text; version=a"  # prometheus-client compares "a" with 1 and raises


def raw_request(address, request: bytes, timeout: float = 10) -> tuple[str, dict, bytes]:
    """Status line, headers (lower-case names) and body of one raw request to
    ``address`` (a TCP (host, port) or a unix socket's path)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address if isinstance(address, str) else tuple(address[:2]))
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def get(path: str = "/metrics", *headers: bytes, method: bytes = b"GET") -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, path.encode(), b"".join(h + b"\r\n" for h in headers))


@contextlib.contextmanager
def metrics_server(registry, ready: threading.Event | None = None, wait_s: float = 0, listen=("127.0.0.1", 0),
                   **kwargs):
    """The library's MetricsServer, serving ``registry`` from its own thread in this process."""
    from pagewalk.output.metrics_server import MetricsServer

    if ready is None:
        ready = threading.Event()
        ready.set()
    server = MetricsServer(listen, registry, ready, wait_s, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.close()


def one_gauge():
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    Gauge("pagewalk_test_bytes", "a test gauge", registry=registry).set(7)
    return registry


def test_a_bad_accept_header_is_answered_in_text(specimen):
    """After the first scan: an Accept header prometheus-client's chooser raises on gets
    the plain text format (it was dropped with a warning each time)."""
    with exporter("--pid", str(specimen.pid), "--interval", "60") as (url, proc):
        wait_for(url, lambda s: process_value(s, "pagewalk_process_rss_bytes", specimen.pid))
        for _ in range(3):
            status, headers, body = raw_request(host_port(url), get("/metrics", b"Accept: " + BAD_VERSION))
            assert status == "HTTP/1.1 200 OK" and headers["content-type"].startswith("text/plain; version=0.0.4")
            assert f'pid="{specimen.pid}"'.encode() in body
        samples, _ = scrape(url)
        assert process_value(samples, "pagewalk_process_rss_bytes", specimen.pid) == smaps_rollup(specimen.pid)["Rss"]
        assert proc.poll() is None
    err = proc.stderr.read()
    assert "warning" not in err and "Traceback" not in err, err


def test_a_request_waiting_for_the_first_scan_cannot_end_the_server():
    """A request that arrives before the first scan is answered later, from the loop's
    expiry pass (here: its wait ends, the scan never came); a bad Accept header there
    used to end the server's thread, and no request was answered again."""
    ready = threading.Event()
    with metrics_server(one_gauge(), ready, wait_s=0.3) as server:
        status, headers, body = raw_request(server.address, get("/metrics", b"Accept: " + BAD_VERSION))
        assert status == "HTTP/1.1 200 OK" and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert b"pagewalk_test_bytes 7.0" in body
        ready.set()
        server.wake()
        status, _, body = raw_request(server.address, get())
        assert status == "HTTP/1.1 200 OK" and b"pagewalk_test_bytes 7.0" in body


def test_a_header_cannot_be_injected():
    """A request whose head holds a control character (a bare LF or CR above all: some
    parsers end a line there) is refused, so nothing of it is echoed into the response
    (the OpenMetrics version used to be, into Content-Type)."""
    injected = get("/metrics", b"Accept: application/openmetrics-text; version=2.\nX-Evil: 1")
    with metrics_server(one_gauge()) as server:
        for bad in (injected, get("/metrics", b"Accept: application/openmetrics-text; version=2.\rX-Evil: 1"),
                    get("/metrics", b"Accept: text/plain\x01"), get("/metrics\x7f"),
                    get("/metrics", b"X-Other: \x1b[31m")):
            status, headers, body = raw_request(server.address, bad)
            assert status == "HTTP/1.1 400 Bad Request", (bad, status, headers)
            assert not any("evil" in (name + value).lower() for name, value in headers.items()), headers
            assert b"pagewalk_test_bytes" not in body
        status, headers, _ = raw_request(server.address, get("/metrics", b"Accept:\ttext/plain"))  # a tab is fine
        assert status == "HTTP/1.1 200 OK"


def test_the_servers_warnings_are_one_a_minute(capsys):
    """A scrape that fails is a 500 and a warning; repeated, it cannot flood the log."""
    class Failing:  # a collector that fails, as a bug in one would
        def collect(self):
            raise RuntimeError("collector broke")

    registry = one_gauge()
    registry.register(Failing())
    with metrics_server(registry) as server:
        for _ in range(4):
            status, _, _ = raw_request(server.address, get())
            assert status == "HTTP/1.1 500 Internal Server Error"
        assert raw_request(server.address, get("/"))[0] == "HTTP/1.1 200 OK"  # and it still serves
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "a scrape failed (RuntimeError: collector broke)" in err, err
        server._warn.interval_s = 0  # as if the minute were over: the next one says what was left out
        assert raw_request(server.address, get())[0] == "HTTP/1.1 500 Internal Server Error"
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "(3 more server warning(s) not shown)" in err, err


def test_the_encoded_body_is_reused_until_the_next_scan(specimen):
    """Requests between two scans cost no encoding: the body is the one a fresh encoding
    gives, kept per format and compression, and a new scan replaces it."""
    from prometheus_client import CollectorRegistry, generate_latest

    from pagewalk.analysis.exporter import MemoryCollector

    specimen.run("a = mmap(300); write(a, 300)")

    class Counting:  # counts the registry's encodings
        calls = 0

        def collect(self):
            Counting.calls += 1
            return iter(())

    collector = MemoryCollector([specimen.pid])
    registry = CollectorRegistry()
    registry.register(collector)
    registry.register(Counting())
    collector.scan()
    with metrics_server(registry, collector.scanned, generation=lambda: collector.generation) as server:
        first = raw_request(server.address, get())[2]
        assert raw_request(server.address, get())[2] == first and Counting.calls == 1
        assert raw_request(server.address, get(method=b"HEAD"))[0] == "HTTP/1.1 200 OK" and Counting.calls == 1
        zipped = raw_request(server.address, get("/metrics", b"Accept-Encoding: gzip"))
        assert zipped[1]["content-encoding"] == "gzip" and gzip.decompress(zipped[2]) == first
        assert Counting.calls == 2  # gzip is its own entry
        assert raw_request(server.address, get("/metrics", b"Accept-Encoding: gzip"))[2] == zipped[2]
        assert Counting.calls == 2
        assert generate_latest(registry) == first  # what a fresh encoding says
        collector.scan()
        after = raw_request(server.address, get())[2]
        stamp = re.compile(rb"^pagewalk_scan_timestamp_seconds (\S+)$", re.M)
        assert stamp.search(after).group(1) != stamp.search(first).group(1)
        assert after == generate_latest(registry)


def test_paths_metrics_an_index_and_404():
    with metrics_server(one_gauge()) as server:
        for path in ("/metrics", "/metrics?name[]=x", "http://localhost:9105/metrics"):
            status, headers, body = raw_request(server.address, get(path))
            assert status == "HTTP/1.1 200 OK" and b"pagewalk_test_bytes 7.0" in body, path
        for path in ("/", "/?x=1"):
            status, headers, body = raw_request(server.address, get(path))
            assert status == "HTTP/1.1 200 OK" and headers["content-type"].startswith("text/html"), path
            assert b'<a href="metrics">' in body and b"pagewalk_test_bytes" not in body
        for path in ("/metrics/", "/metricsx", "/favicon.ico", "/other/metrics", "*"):
            status, _, body = raw_request(server.address, get(path))
            assert status == "HTTP/1.1 404 Not Found" and b"pagewalk_test_bytes" not in body, path
        status, headers, body = raw_request(server.address, get("/nope", method=b"HEAD"))
        assert status == "HTTP/1.1 404 Not Found" and body == b""


@pytest.mark.parametrize("mode", [0o600, 0o660, 0o644])
def test_the_unix_socket_is_made_with_its_mode_not_changed_to_it(open_dir, monkeypatch, mode):
    """bind makes the socket with its mode (the umask says it): a chmod after bind would
    follow a symlink put in the socket's place in between (simulated here, at that very
    moment) and change the mode of whatever it points to."""
    path = os.path.join(open_dir, "metrics.sock")
    victim = os.path.join(open_dir, "victim")
    with open(victim, "w"):
        pass
    os.chmod(victim, 0o600)
    real_chmod = os.chmod

    def swapped_first(target, *args, **kwargs):
        if target == path:  # the race: the socket replaced by a symlink between bind and chmod
            os.unlink(path)
            os.symlink(victim, path)
        return real_chmod(target, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", swapped_first)
    old_umask = os.umask(0o022)
    try:
        with metrics_server(one_gauge(), listen=path, socket_mode=mode):
            st = os.lstat(path)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == mode
            assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600
            assert raw_request(path, get())[0] == "HTTP/1.1 200 OK"
            assert os.umask(0o022) == 0o022  # the process's umask is left as it was
    finally:
        os.umask(old_umask)


def test_ram_series_count_every_frame_once_and_each_cgroups_memory(specimen):
    """--ram: pagewalk_ram_bytes{use} adds up to the RAM walked (System RAM of
    /proc/iomem), each use within the targets of its meminfo count (read by the test),
    and a test process's cgroup holds its anonymous memory."""
    from pagewalk.kernel.physmem import system_ram

    specimen.run("a = mmap(8192); write(a, 8192)")
    with open(f"/proc/{specimen.pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    cgroup = next((p for _, c, p in lines if "memory" in c.split(",")), None) or \
        next(p for h, _, p in lines if h == "0")
    with exporter("--pid", str(specimen.pid), "--interval", "30", "--ram", "--scrape-budget", "20") as (url, _):
        samples, _ = scrape(url)
        with open("/proc/meminfo") as f:  # (while the exporter, whose memory the walk saw, runs)
            meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    uses = {dict(k[1])["use"]: v for k, v in samples.items() if k[0] == "pagewalk_ram_bytes"}
    ram = sum(r.end_pfn - r.start_pfn for r in system_ram()) * PAGE
    assert sum(uses.values()) == ram > 0
    anon = uses["anonymous"] + uses.get("KSM", 0)
    assert abs(anon - meminfo["AnonPages"]) <= max(meminfo["AnonPages"] // 50, 8 << 20), (anon, meminfo["AnonPages"])
    mine = {dict(k[1])["use"]: v for k, v in samples.items()
            if k[0] == "pagewalk_ram_cgroup_bytes" and dict(k[1])["cgroup"] == cgroup}
    assert mine.get("anonymous", 0) >= 32 << 20
    assert samples[("pagewalk_ram_scan_duration_seconds", ())] > 0


def test_help_texts_are_sentences_with_units(specimen):
    with exporter("--pid", str(specimen.pid), "--interval", "30") as (url, _):
        scrape(url)  # (after the first scan: every family is there)
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
    helps = dict(line.split(" ", 3)[2:] for line in text.splitlines() if line.startswith("# HELP "))
    assert len(helps) >= 10
    for name, words in helps.items():
        assert words[0].isupper() and words.endswith("."), (name, words)
        if name.endswith("_bytes"):
            assert "in bytes" in words, (name, words)
        if name.endswith("_seconds"):
            assert "seconds" in words, (name, words)
