"""The stack as `make serve` runs it (devtools/serve.py), on a fault stack's database and Redis."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

from devtools.with_redis import free_port
from tests.faults.harness import FaultStack
from tests.live import BIN, ManagedProcess

Served = tuple[ManagedProcess, xmlrpc.client.ServerProxy]


def django_answers(url: str) -> bool:
    """Whether a web process answers /healthz through nginx (a 502 is nginx alone)."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310 (our URL)
            return response.status == 200
    except urllib.error.HTTPError as error:
        return error.code == 503  # Django's answer until beat's first sweep
    except (urllib.error.URLError, OSError):
        return False


def start_served(stack: FaultStack, run_dir: Path, **overrides: str) -> Served:
    """Start `python -m devtools.serve` with nginx on a free port (stack.port, so stack.ws_url
    goes through nginx); returns supervisord and its XML-RPC interface once every program
    runs, every web process answers through nginx and every worker is ready."""
    stack.port = free_port()
    supervisor_port = free_port()
    stack.env = dict(
        stack.env,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        NOTIFY_RUN_DIR=str(run_dir),
        SUPERVISOR_PORT=str(supervisor_port),
        HOST="127.0.0.1",
        PORT=str(stack.port),
        WORKER_LIVENESS_DIR=str(run_dir / "liveness"),
        **overrides,
    )
    supervisord = stack.spawn("supervisord", sys.executable, "-m", "devtools.serve")
    # It stops its programs one by one (a worker may take stopwaitsecs, 10 s): killed sooner,
    # it would leave them running, since each has a process group of its own.
    supervisord.stop_timeout_s = 60.0
    rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{supervisor_port}/RPC2")

    def all_running() -> bool:
        try:
            states = [info["statename"] for info in rpc.supervisor.getAllProcessInfo()]
        except (OSError, xmlrpc.client.Error):
            return False
        return bool(states) and all(state == "RUNNING" for state in states)

    web_sockets = [run_dir / f"web_{number}.sock" for number in range(int(stack.env.get("WEB_PROCESSES", "2")))]
    workers = int(stack.env.get("WORKER_PROCESSES", "2"))
    stack.wait_ready(supervisord, all_running)
    stack.wait_ready(supervisord, lambda: all(socket.exists() for socket in web_sockets))
    stack.wait_ready(supervisord, lambda: django_answers(stack.http_url))
    stack.wait_ready(supervisord, lambda: supervisord.log().count(" ready.") >= workers)
    return supervisord, rpc


def start_served_small(stack: FaultStack, run_dir: Path, *, liveness_timeout_s: float, **overrides: str) -> Served:
    """One web process and one worker, pinging every second, judged silent after
    `liveness_timeout_s`: the stack the single-fault scenarios run on."""
    return start_served(
        stack,
        run_dir,
        WEB_PROCESSES="1",
        WORKER_PROCESSES="1",
        WORKER_LIVENESS_TIMEOUT_S=str(liveness_timeout_s),
        WORKER_PING_INTERVAL_S="1",
        **overrides,
    )
