"""``pagewalk exporter``: Prometheus metrics of process and cgroup memory."""

from __future__ import annotations

from ..errors import InvalidArgument
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("exporter",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser(
        "exporter", help="serve Prometheus metrics of process and cgroup memory (extra pagewalk[exporter])",
        description="Serves /metrics (a page at / links to it; other paths are 404): RSS, PSS, USS, swap and huge bytes per process (labels pid, command, "
                    "user) and RSS, PSS, USS and swap per memory cgroup, from the same pagemap and kpagecount "
                    "pass as 'pagewalk usage', plus the exporter's own cost (pagewalk_scan_duration_seconds, "
                    "pagewalk_scan_pages_total). Scans run every --interval seconds; a scrape is served from "
                    "the last scan and never waits for one (the first at most --scrape-budget seconds). "
                    "Listens on loopback unless told otherwise; run as root, it shows every user's processes "
                    "to anyone who can connect (--listen unix:PATH restricts that to the socket's owner). "
                    "At most --max-connections at once; one without a request for --idle-timeout seconds is "
                    "closed. Neither --pid nor --all means --all.")
    p.add_argument("--listen", default="127.0.0.1:9105", metavar="HOST:PORT|unix:PATH",
                   help="address to serve on (default 127.0.0.1:9105; port 0 picks a free one), or a unix "
                        "socket to create (mode --socket-mode; a stale socket is replaced, nothing else)")
    p.add_argument("--socket-mode", metavar="OCTAL",
                   help="permissions of the unix socket (default 0600: its owner only; 0660 adds its group)")
    p.add_argument("--max-connections", type=int, default=64, metavar="N",
                   help="connections held at once (default 64, fewer if the file descriptor limit is low); "
                        "past it, the one idle the longest is closed")
    p.add_argument("--idle-timeout", type=float, default=5.0, metavar="S",
                   help="seconds a connection may take to send its request, or stall taking the response "
                        "(default 5)")
    p.add_argument("--pid", dest="pids", nargs="+", action="extend", default=[], metavar="PID",
                   help="only these processes (their series end when they exit)")
    p.add_argument("--all", action="store_true", help="every process (the default)")
    p.add_argument("--interval", type=float, default=15.0, metavar="S",
                   help="seconds between scans (default 15; 0 scans without pause)")
    p.add_argument("--scrape-budget", type=float, default=1.0, metavar="S",
                   help="longest a scrape waits for the first scan (default 1)")
    p.add_argument("--ram", action="store_true",
                   help="also walk every frame of RAM each scan: pagewalk_ram_bytes{use} and "
                        "pagewalk_ram_cgroup_bytes{cgroup,use} as 'pagewalk ram' counts them (root; about 0.5 s "
                        "of CPU a scan on 24 GiB, reported as pagewalk_ram_scan_duration_seconds)")
    p.set_defaults(run=run)


def run(args) -> int:
    import signal
    import threading

    from ..output.metrics_server import parse_listen, serve

    if args.pids and args.all:
        raise InvalidArgument("give --pid or --all, not both")
    if not all(0 <= value <= threading.TIMEOUT_MAX for value in (args.interval, args.scrape_budget)):
        raise InvalidArgument("--interval and --scrape-budget take a number of seconds, 0 or more "
                              "(--interval 0: scan without pause)")
    if not 0 < args.idle_timeout <= threading.TIMEOUT_MAX:
        raise InvalidArgument("--idle-timeout takes a number of seconds above 0")
    if args.max_connections < 1:
        raise InvalidArgument("--max-connections takes a number, 1 or more")
    try:
        listen = parse_listen(args.listen)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    mode = "0600" if args.socket_mode is None else args.socket_mode
    if not (mode and all(c in "01234567" for c in mode) and int(mode, 8) <= 0o777):
        raise InvalidArgument(f"--socket-mode wants octal permissions such as 0600 or 0660, not {mode!r}")
    if args.socket_mode is not None and not isinstance(listen, str):
        raise InvalidArgument("--socket-mode is for --listen unix:PATH")
    # a PID given twice is one process: checked and counted in the line below once
    # (usage.gather, which the scans call, reads it once)
    pids = _common.parse_pids(args.pids) or None
    from ..core.process import Process

    for pid in pids or ():
        # Process() refuses a missing PID (which never comes back: serving nothing for it
        # would hide the typo) and a thread ID, as every command does
        Process(pid).close()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def ready(address, max_connections: int) -> None:
        if isinstance(address, str):
            where = f"unix:{address} (GET /metrics)"
        else:
            host, port = address[:2]
            where = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
        _common.warn(f"serving metrics on {where}, scanning "
                     f"{'every process' if pids is None else f'{len(pids)} process(es)'} every {args.interval:g} s; "
                     f"at most {max_connections} connections")

    try:
        serve(listen, pids, args.interval, args.scrape_budget, stop, on_ready=ready,
              max_connections=args.max_connections, idle_timeout_s=args.idle_timeout,
              socket_mode=int(mode, 8), ram=args.ram)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        from ..errors import PagewalkError

        raise PagewalkError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    return 0
