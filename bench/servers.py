"""daphne, uvicorn and granian serving the same project.asgi:application.

The product stack's web process is replaced in turn by each server (one process, its
defaults); the same 1,000 tabs open on it and the emitting process sends events at the
given rates, as in bench.delivery. Measured: connect time, memory per socket, emit -> tab
latency, the rate reached, and the web process's CPU. daphne runs again at the end, so the
scenarios after this one find the stack as it was.
"""

from __future__ import annotations

import time
from typing import Any

from bench.delivery import open_tabs, prepare_users, run_phase, sockets_opened
from bench.meters import rss_mib
from bench.session import Session
from bench.stack import log


def run(session: Session) -> dict[str, Any]:
    options = session.options
    users = prepare_users(session)
    product = session.product
    found: list[dict[str, Any]] = []
    try:
        for server in options.servers:
            product.stop_web()
            product.start_web(server)
            idle = rss_mib(product.pid("web"))
            tabs, opened = open_tabs(session, "product", product.ws_url, f"tabs-{server}")
            try:
                time.sleep(2)
                connected = rss_mib(product.pid("web"))
                row: dict[str, Any] = {
                    "server": server,
                    **sockets_opened(opened, idle_mib=idle, connected_mib=connected),
                    "phases": [],
                }
                session.progress.step(f"{server}: {opened['opened']} tabs open in {opened['seconds']:.1f} s")
                # The tabs hold every earlier notification (their hello's last_seq): count on from there.
                last = session.product_emitter.ask(60, cmd="last_seqs", user_ids=users["ids"])["last_seq"]
                expected = {
                    name: last[str(user_id)] for name, user_id in zip(users["names"], users["ids"], strict=True)
                }
                for rate in options.server_rates:
                    phase = run_phase(session, "product", "emitter", rate, tabs, expected)
                    phase["server"] = server
                    row["phases"].append(phase)
                    session.progress.step(
                        f"{server} {rate:g}/s: p50 {phase['latency']['p50']:.0f} ms, "
                        f"p99 {phase['latency']['p99']:.0f} ms, web CPU {phase['cpu']['web']:.0f}%"
                    )
                row["rss_end_mib"] = rss_mib(product.pid("web"))
                found.append(row)
            finally:
                tabs.stop()
    finally:
        if product.server != "daphne":
            log("restarting daphne")
            product.stop_web()
            product.start_web("daphne")
    return {"servers": found}
