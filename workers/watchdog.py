"""A supervisord event listener that restarts workers that stopped consuming.

supervisord restarts a process that exits; this restarts one that is alive but silent:
on every TICK_5 it checks each RUNNING process of the `worker` group (deploy/supervisord.conf)
against its liveness file (workers/liveness.py), and stops (SIGTERM, then SIGKILL after
stopwaitsecs: a frozen process ignores the first) and starts any whose last ping is older
than WORKER_LIVENESS_TIMEOUT_S. A worker is not judged before it has run that long.

    [eventlistener:watchdog]
    command=python -m workers.watchdog
    events=TICK_5
"""

from __future__ import annotations

import os
import sys
import xmlrpc.client
from typing import Any

WORKER_GROUP = "worker"


def stale_workers(processes: list[dict[str, Any]], *, timeout_s: float) -> list[tuple[str, str]]:
    """(group:name, why) for each running worker that has not run a ping within timeout_s."""
    from workers.liveness import liveness_age

    stale = []
    for info in processes:
        if info["group"] != WORKER_GROUP or info["statename"] != "RUNNING":
            continue
        if info["now"] - info["start"] < timeout_s:
            continue
        age = liveness_age(info["name"])
        if age is None or age > timeout_s:
            why = "never pinged" if age is None else f"last ping {age:.0f} s ago"
            stale.append((f"{info['group']}:{info['name']}", why))
    return stale


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()  # workers.liveness reads settings and notes heartbeats through the ORM
    from django.conf import settings
    from supervisor import childutils

    rpc = childutils.getRPCInterface(os.environ)
    while True:
        headers, _payload = childutils.listener.wait(sys.stdin, sys.stdout)
        if headers["eventname"].startswith("TICK"):
            try:
                restart_stale_workers(rpc, timeout_s=settings.WORKER_LIVENESS_TIMEOUT_S)
            except (OSError, xmlrpc.client.Fault) as exc:  # supervisord is shutting down, say
                print(f"watchdog: {exc!r}", file=sys.stderr, flush=True)
        childutils.listener.ok(sys.stdout)


def restart_stale_workers(rpc: Any, *, timeout_s: float) -> None:
    for name, why in stale_workers(rpc.supervisor.getAllProcessInfo(), timeout_s=timeout_s):
        print(f"watchdog: restarting {name}: {why}", file=sys.stderr, flush=True)
        try:
            rpc.supervisor.stopProcess(name)
        except xmlrpc.client.Fault as exc:  # it may have exited meanwhile
            print(f"watchdog: stopping {name}: {exc!r}", file=sys.stderr, flush=True)
        rpc.supervisor.startProcess(name)


if __name__ == "__main__":
    main()
