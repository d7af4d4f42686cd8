"""The exporter's HTTP server: ``/metrics`` of a :class:`~pagewalk.analysis.exporter.MemoryCollector`.

One thread with a bounded number of connections and an idle timeout, so connections
held open by anyone who can connect never stop a scrape; ``--listen unix:PATH``
limits who can connect to the socket's owner (root's exporter shows every user's
processes and commands).  It serves ``/metrics``, a page linking to it at ``/``, and
404 elsewhere.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import resource
import selectors
import socket
import stat
import sys
import threading
import time

from ..analysis.exporter import MemoryCollector
from ..extras import require
from ..kernel.procfs import open_fd_count
from ..names import printable

__all__ = ["MetricsServer", "connection_cap", "parse_listen", "serve"]

# The server.  prometheus-client's own (a thread per connection, no timeout) is
# exhausted by idle connections: each holds a thread and a descriptor for ever, and
# once the descriptors run out no scrape is accepted.  This one is a single thread
# with a selector: connections are capped (the oldest idle one makes way for a new
# one), each must send its request within the idle timeout and take its response
# without stalling longer than that, so a scrape is served whatever others hold open.

MAX_CONNECTIONS = 64
IDLE_TIMEOUT_S = 5.0
FD_RESERVE = 32  # descriptors left for the scans (/proc files, a few per reading thread)
MAX_REQUEST_BYTES = 8192
SOCKET_MODE = 0o600  # a unix socket: its owner only
WARNING_INTERVAL_S = 60.0  # the server says at most one warning a minute: clients must not flood the log
BODY_CACHE_ENTRIES = 8  # encodings kept per pass (a client may name versions without end)
# in a request's head: control characters (but tab) and DEL; a bare LF or CR among them,
# which some parsers take for a line end (echoed, it would start a header of the client's)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
INDEX_PAGE = (b'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>pagewalk exporter</title></head>\n'
              b'<body><h1>pagewalk exporter</h1><p><a href="metrics">Metrics</a></p></body></html>\n')

_READING, _WRITING, _WAITING = 0, 1, 2  # eviction order: idle first, a scrape waiting for the first scan last


def parse_listen(text: str) -> tuple[str, int] | str:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; an empty host means loopback) to (host, port);
    ``unix:PATH`` to the socket's path."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError("--listen unix: wants a path (for example unix:/run/pagewalk/metrics.sock)")
        return text[5:]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen wants HOST:PORT (for example 127.0.0.1:9105) or unix:PATH, not {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "127.0.0.1", int(port)


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to what the descriptor limit allows beside the scans' own (at least 1)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - open_fd_count() - FD_RESERVE))


def _unix_listener(path: str, mode: int):
    """A listening unix socket at ``path``, created with ``mode``.  A stale socket (no one
    answers on it) is replaced; anything else there is refused, never removed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket (left as it is)")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                os.unlink(path)  # a previous exporter's, left behind
            else:
                raise OSError(errno.EADDRINUSE, f"a server is listening on {path}")

    def bind(sock) -> None:
        # created with its mode by bind (serve() binds before it starts threads, so the
        # umask is its alone): no moment when others could connect, and no chmod after,
        # which would follow a symlink put in the socket's place meanwhile
        old = os.umask(~mode & 0o777)
        try:
            sock.bind(path)
        finally:
            os.umask(old)

    return _listening(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), bind)


def _tcp_listener(host: str, port: int):
    """A listening TCP socket on ``host``:``port`` (the first address it resolves to)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]

    def bind(sock) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)

    return _listening(socket.socket(family, kind, proto), bind)


def _listening(sock, bind):
    """``sock`` after ``bind(sock)``, listening; closed if either fails."""
    try:
        bind(sock)
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock


class _Connection:
    __slots__ = ("sock", "state", "since", "request", "response", "head")

    def __init__(self, sock, now: float) -> None:
        self.sock = sock
        self.state = _READING
        self.since = now  # accepted; request complete (waiting); last progress (writing)
        self.request = b""
        self.response = memoryview(b"")
        self.head = False


class _Warnings:
    """Warnings on stderr, at most one every ``interval_s``; the next one shown says
    how many were left out."""

    def __init__(self, interval_s: float = WARNING_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: float | None = None
        self._left_out = 0

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            self._left_out += 1
            return
        more = f" ({self._left_out} more server warning(s) not shown)" if self._left_out else ""
        self._last, self._left_out = now, 0
        sys.stderr.write(f"pagewalk: warning: {message}{more}\n")


class MetricsServer:
    """``/metrics`` over HTTP from one thread: at most ``max_connections`` connections
    (fewer if the descriptor limit says so), each closed after ``idle_timeout_s`` without
    a complete request or without progress taking its response.  Until ``ready`` is set,
    a request waits for it at most ``wait_s`` seconds.  ``generation()``, if given, changes
    whenever what ``registry`` says may have: until it does, an encoded body is reused."""

    def __init__(self, listen: tuple[str, int] | str, registry, ready: threading.Event, wait_s: float, *,
                 max_connections: int = MAX_CONNECTIONS, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 socket_mode: int = SOCKET_MODE, generation=None) -> None:
        self._registry, self._ready, self._wait_s = registry, ready, wait_s
        self._generation = generation
        self._bodies: dict[tuple[str, bool], bytes] = {}  # (content type, gzip) -> body, this generation's
        self._bodies_of: object = None
        self._warn = _Warnings()
        self.idle_timeout_s = idle_timeout_s
        self._path = listen if isinstance(listen, str) else None
        self._listener = _unix_listener(listen, socket_mode) if self._path else _tcp_listener(*listen)
        self.address = self._listener.getsockname()
        st = os.stat(self._path) if self._path else None
        self._inode = (st.st_dev, st.st_ino) if st else None
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.max_connections = connection_cap(max_connections)
        self._connections: dict[int, _Connection] = {}
        self._accept_paused_until = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve from a daemon thread (``pagewalk-metrics``) until :meth:`close`; returns at once."""
        self._thread = threading.Thread(target=self._loop, name="pagewalk-metrics", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Have the loop look again (a scan ended, or it should stop)."""
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already woken, or closed

    def close(self) -> None:
        """Stop serving: every connection closed, a unix socket removed (if still ours)."""
        self._stopping = True
        self.wake()
        if self._thread is not None:
            self._thread.join(5)
        for conn in list(self._connections.values()):
            self._drop(conn)
        self._selector.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._path:
            try:
                st = os.lstat(self._path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self._path)
            except OSError:
                pass

    def _loop(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            events = self._selector.select(self._timeout(now))
            # clients first: a request already sent is read before new connections may evict it
            events.sort(key=lambda e: e[0].data == "listen")
            for key, mask in events:
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    try:
                        while self._wake_r.recv(64):
                            pass
                    except BlockingIOError:
                        pass
                elif key.fd in self._connections:
                    self._guarded(self._service, self._connections[key.fd], mask)
            self._expire(time.monotonic())

    def _guarded(self, action, conn: _Connection, *args) -> None:
        """``action(conn, *args)``; should it fail, the connection is dropped with a warning:
        nothing one client sends may end the server's thread."""
        try:
            action(conn, *args)
        except Exception as exc:
            self._warn(f"a connection failed ({type(exc).__name__}: {printable(str(exc))})")
            self._drop(conn)

    def _timeout(self, now: float) -> float | None:
        deadlines = [self._deadline(c) for c in self._connections.values()]
        if self._accept_paused_until:
            deadlines.append(self._accept_paused_until)
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _deadline(self, conn: _Connection) -> float:
        return conn.since + (self._wait_s if conn.state == _WAITING else self.idle_timeout_s)

    def _expire(self, now: float) -> None:
        for conn in list(self._connections.values()):
            if conn.state == _WAITING and (self._ready.is_set() or now >= self._deadline(conn)):
                self._guarded(self._respond, conn, now)
            elif now >= self._deadline(conn):
                self._drop(conn)
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self._listener, selectors.EVENT_READ, "listen")

    def _accept(self) -> None:
        for _ in range(max(1, self.max_connections // 4)):  # then serve what has arrived
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # out of descriptors (the scans hold some): make room, or stop accepting a moment
                    if not self._evict():
                        self._selector.unregister(self._listener)
                        self._accept_paused_until = time.monotonic() + 0.1
                        return
                continue  # ECONNABORTED and the like: that client is gone
            if len(self._connections) >= self.max_connections:
                self._evict()
            sock.setblocking(False)
            conn = _Connection(sock, time.monotonic())
            self._connections[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, "client")

    def _evict(self) -> bool:
        """Close the connection idle the longest (a scrape being answered only if none is idle)."""
        if not self._connections:
            return False
        self._drop(min(self._connections.values(), key=lambda c: (c.state, c.since)))
        return True

    def _drop(self, conn: _Connection) -> None:
        self._connections.pop(conn.sock.fileno(), None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _service(self, conn: _Connection, mask: int) -> None:
        try:
            if conn.state == _WRITING:
                if mask & selectors.EVENT_WRITE:
                    self._send(conn, time.monotonic())
                return
            data = conn.sock.recv(4096)
        except OSError:
            self._drop(conn)
            return
        if not data:  # the client closed
            self._drop(conn)
            return
        if conn.state == _WAITING:
            return  # anything after the request is not read: one request a connection
        conn.request += data
        if b"\r\n\r\n" in conn.request:
            now = time.monotonic()
            conn.state, conn.since = _WAITING, now
            if self._ready.is_set() or self._wait_s <= 0:
                self._respond(conn, now)
        elif len(conn.request) > MAX_REQUEST_BYTES:
            self._drop(conn)

    def _respond(self, conn: _Connection, now: float) -> None:
        status, content_type, body, extra = self._answer(conn)
        lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
                 "Connection: close", *extra]
        response = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (b"" if conn.head else body)
        conn.state, conn.since, conn.response = _WRITING, now, memoryview(response)
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, "client")
        self._send(conn, now)

    def _answer(self, conn: _Connection) -> tuple[str, str, bytes, list[str]]:
        """Status, content type, body and other headers for the connection's request."""
        head, _, _ = conn.request.partition(b"\r\n\r\n")
        raw_lines = head.split(b"\r\n")
        parts = raw_lines[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/") or any(map(_CONTROL.search, raw_lines)):
            return "400 Bad Request", "text/plain", b"bad request\n", []
        if parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET or HEAD\n", ["Allow: GET, HEAD"]
        conn.head = parts[0] == "HEAD"
        target = parts[1]
        if target.startswith(("http://", "https://")):  # absolute form, as sent to a proxy
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        path = target.partition("?")[0]
        if path == "/":
            return "200 OK", "text/html; charset=utf-8", INDEX_PAGE, []
        if path != "/metrics":
            return "404 Not Found", "text/plain", b"not found: try /metrics\n", []
        headers = {}
        for line in raw_lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        encoder, content_type = self._encoder(headers.get("accept", ""))
        gzipped = "gzip" in headers.get("accept-encoding", "")
        try:
            body = self._body(encoder, content_type, gzipped)
        except Exception as exc:  # keep serving: the next scrape may well succeed
            self._warn(f"a scrape failed ({type(exc).__name__}: {printable(str(exc))})")
            return "500 Internal Server Error", "text/plain", b"scrape failed\n", []
        return "200 OK", content_type, body, ["Content-Encoding: gzip"] if gzipped else []

    @staticmethod
    def _encoder(accept: str):
        """The format the scraper asks for (text or OpenMetrics), as prometheus-client's own
        server chooses it; plain text if the header trips it up or it would echo anything
        that is not printable ASCII into the Content-Type."""
        from prometheus_client import exposition

        try:
            encoder, content_type = exposition.choose_encoder(accept)
        except Exception:  # for one, a version such as "a" compares str with int in there
            encoder, content_type = None, ""
        if encoder is None or not (content_type.isascii() and content_type.isprintable()):
            return exposition.generate_latest, exposition.CONTENT_TYPE_PLAIN_0_0_4
        return encoder, content_type

    def _body(self, encoder, content_type: str, gzipped: bool) -> bytes:
        """The registry in ``content_type``, gzipped if asked: encoded once per generation."""
        # read before encoding: a pass ending meanwhile makes the body newer than its key, never older
        generation = self._generation() if self._generation is not None else None
        if generation is None or generation != self._bodies_of:
            self._bodies.clear()
            self._bodies_of = generation
        key = (content_type, gzipped)
        body = self._bodies.get(key) if generation is not None else None
        if body is None:
            body = encoder(self._registry)
            if gzipped:
                body = gzip.compress(body, compresslevel=5)
            if generation is not None and len(self._bodies) < BODY_CACHE_ENTRIES:
                self._bodies[key] = body
        return body

    def _send(self, conn: _Connection, now: float) -> None:
        try:
            sent = conn.sock.send(conn.response)
        except BlockingIOError:
            return
        except OSError:
            self._drop(conn)
            return
        conn.response, conn.since = conn.response[sent:], now
        if not conn.response:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._drop(conn)


def _scan_failed(exc: Exception) -> None:
    """The exporter's word on a failed pass: one warning line on stderr."""
    sys.stderr.write(f"pagewalk: warning: a scan failed ({type(exc).__name__}: {printable(str(exc))}); "
                     "serving the previous result\n")


def serve(listen: tuple[str, int] | str, pids: list[int] | None, interval: float, scrape_budget: float,
          stop: threading.Event, on_ready=None, *, max_connections: int = MAX_CONNECTIONS,
          idle_timeout_s: float = IDLE_TIMEOUT_S, socket_mode: int = SOCKET_MODE, ram: bool = False) -> None:
    """Serve ``/metrics`` on ``listen`` (``(host, port)`` or a unix socket's path) and scan
    every ``interval`` seconds until ``stop``; ``on_ready(address, max_connections)`` once
    listening; ``ram``: each scan walks every frame too (:class:`MemoryCollector`)."""
    collector = MemoryCollector(pids, ram=ram)  # first: a missing prometheus_client is said here
    prometheus_client = require("prometheus_client", "exporter", "prometheus-client")
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server = MetricsServer(listen, registry, collector.scanned, scrape_budget, max_connections=max_connections,
                           idle_timeout_s=idle_timeout_s, socket_mode=socket_mode,
                           generation=lambda: collector.generation)
    try:
        collector.on_scan = server.wake
        server.start()
        if on_ready is not None:
            on_ready(server.address, server.max_connections)
        collector.run(interval, stop, _scan_failed)
    finally:
        server.close()
