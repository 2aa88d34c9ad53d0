"""What emitting costs a request: sequential requests, product and baseline, broker up and down.

One client per web process sends requests one after the other over a keep-alive
connection, interleaved kind by kind so the machine's noise weighs on each alike:

- `GET /bench-no-such-page` on each (Django's request path, a 404, no database): the floor;
- product `GET /api/notifications/unread-count/` (token auth and one read): does not emit;
- product `POST /api/events/` (a staff token; the recipients looked up, emit()) and the
  baseline's `POST /api/events/` (the request calls group_send itself);
- product `POST /api/messages/` (a message and its event in one transaction).

Then the product's broker is stopped and its requests are sent again: they must stay as
fast, since a request never talks to the broker. After it is started again the events it
missed are counted (the outbox sweep delivers them).
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

from bench.numbers import summary_ms
from bench.session import Session
from bench.stack import log

KINDS = {
    "product noop": "GET 404 page (no database)",
    "product read": "GET unread-count (token, one read; no emit)",
    "product event": "POST /api/events/ (emit)",
    "product message": "POST /api/messages/ (message + emit, one transaction)",
    "naive noop": "GET 404 page (no database)",
    "naive event": "POST /api/events/ (group_send in the request)",
}


class Client:
    """One keep-alive HTTP connection, timing each request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, *, token: str | None = None, body: Any = None) -> tuple[int, float]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        try:
            self.connection.request(method, path, body=payload, headers=headers)
            response = self.connection.getresponse()
            response.read()
        except (http.client.HTTPException, OSError):
            # The server closed the keep-alive connection: open another and try once more.
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            started = time.perf_counter()
            self.connection.request(method, path, body=payload, headers=headers)
            response = self.connection.getresponse()
            response.read()
        return response.status, time.perf_counter() - started


def one_request(clients: dict[str, Client], kind: str, number: int, tokens: dict[str, str]) -> tuple[int, float]:
    system, what = kind.split()
    client = clients[system]
    if what == "noop":
        return client.request("GET", "/bench-no-such-page")
    if what == "read":
        return client.request("GET", "/api/notifications/unread-count/", token=tokens["sender"])
    if what == "message":
        return client.request(
            "POST", "/api/messages/", token=tokens["sender"], body={"to": "rcpt", "text": str(number)}
        )
    body = {"type": "notice", "recipients": ["rcpt"], "data": {"title": f"cost {number}", "body": "0"}}
    return client.request("POST", "/api/events/", token=tokens[f"{system} staff"], body=body)


def run_series(clients: dict[str, Client], kinds: list[str], count: int, tokens: dict[str, str]) -> dict[str, Any]:
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    statuses: dict[str, dict[str, int]] = {kind: {} for kind in kinds}
    for number in range(count):
        for kind in kinds:
            status, took = one_request(clients, kind, number, tokens)
            statuses[kind][str(status)] = statuses[kind].get(str(status), 0) + 1
            timings[kind].append(took)
    return {kind: {"latency": summary_ms(timings[kind]), "statuses": statuses[kind]} for kind in kinds}


def run(session: Session) -> dict[str, Any]:
    options = session.options
    product = session.product
    tokens = {
        "sender": product.manage("issue_token", "sender", "--create"),
        "product staff": product.manage("issue_token", "ops", "--create", "--staff"),
        "naive staff": session.naive.env["NAIVE_STAFF_TOKEN"],
    }
    product.manage("issue_token", "rcpt", "--create")
    clients = {"product": Client(product.port), "naive": Client(session.naive.port)}
    found: dict[str, Any] = {"labels": KINDS}
    run_series(clients, list(KINDS), max(options.requests // 10, 5), tokens)  # warm-up
    found["broker up"] = run_series(clients, list(KINDS), options.requests, tokens)
    session.progress.step("emit cost: broker up")

    assert product.broker is not None
    product.broker.stop()
    log("broker stopped")
    product_kinds = [kind for kind in KINDS if kind.startswith("product")]
    found["broker down"] = run_series(clients, product_kinds, options.requests, tokens)
    found["while down"] = session.product_emitter.ask(60, cmd="pending")
    session.progress.step("emit cost: broker down")

    product.broker.start()  # the same port, empty
    log("broker started again")
    time.sleep(2)
    found["worker alive"] = product.processes["worker"].alive()
    if not found["worker alive"]:
        # Celery 5.7 / kombu 5.7 can die on a broker restart (README, "Running it in
        # production"): start it again, as its supervisor would, and see the outbox catch up.
        log("the worker died with the broker restart; starting it again")
        product.stop_process("worker")
        product.start_worker(options.workers)
    clients["product"].request("POST", "/api/messages/", token=tokens["sender"], body={"to": "rcpt", "text": "back"})
    found["newest after restart"] = session.product_emitter.ask(90, cmd="newest_delivered", timeout=60)
    found["after restart"] = session.product_emitter.ask(
        options.drain_timeout + 30, cmd="drained", timeout=options.drain_timeout
    )
    web_log = product.processes["web"].log()
    found["handoff failures logged"] = web_log.count("could not hand")
    session.progress.step("emit cost: broker back")
    return found
