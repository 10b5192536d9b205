#!/usr/bin/env python3
"""Container health check for Tocsin services (installed as /usr/local/bin/tocsin-healthcheck).

The image has no curl or procps; CPython is there for the runner, so the check is Python
(standard library only). Every given check must pass; exit status 0 = healthy, 1 = unhealthy.

    tocsin-healthcheck --http http://127.0.0.1:8080/readyz    # 2xx within --timeout
    tocsin-healthcheck --runners 1                             # >= 1 live `tocsin runner` process
    tocsin-healthcheck --connected 4222 --connected 5432       # established TCP to these ports

Ingest and the API serve /healthz and /readyz. The scheduler and the worker serve no HTTP yet
(the observability listener, `telemetry.listen`, is still to come), so for them docker-compose
checks what can be seen from inside the container: the worker's runner processes are up, and
both hold connections to NATS (4222) and PostgreSQL (5432). Both services keep a PostgreSQL
LISTEN connection open for their whole life (dispatch and cancel notifications), so an idle
pool does not make the check flap. Once they serve /readyz, switch them to --http.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

TCP_ESTABLISHED = "01"


def check_http(url: str, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (local URL)
            if 200 <= response.status < 300:
                return None
            return f"{url} answered {response.status}"
    except urllib.error.HTTPError as error:
        return f"{url} answered {error.code}"
    except OSError as error:
        return f"{url}: {error}"


def live_runners() -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in ("Z", "X") or len(argv) < 2:
            continue
        if os.path.basename(argv[0]) == b"tocsin" and argv[1] == b"runner":
            count += 1
    return count


def established_remote_ports() -> set[int]:
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == TCP_ESTABLISHED:
                        ports.add(int(fields[2].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tocsin-healthcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--http", action="append", default=[], metavar="URL")
    parser.add_argument("--runners", type=int, default=0, metavar="MIN")
    parser.add_argument("--connected", action="append", type=int, default=[], metavar="PORT")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if not (args.http or args.runners or args.connected):
        parser.error("give at least one check")

    problems = [p for p in (check_http(url, args.timeout) for url in args.http) if p]
    if args.runners:
        alive = live_runners()
        if alive < args.runners:
            problems.append(f"{alive} runner processes alive, want at least {args.runners}")
    if args.connected:
        open_ports = established_remote_ports()
        problems += [f"no established connection to port {p}" for p in args.connected if p not in open_ports]

    for problem in problems:
        print(f"unhealthy: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
