"""What emitting costs a request: sequential requests to daphne, broker up and broker down.

    .venv/bin/python -m bench.emit_cost [--requests 300] [--layer pubsub]

One stack with two private redis-servers, one for the channel layer and one as the Celery
broker, so that the broker can be stopped alone. One client sends requests one after the
other over a keep-alive connection and times each:

- `GET /bench-no-such-page` (Django's whole request path, a 404, no database): the floor;
- `GET /api/notifications/unread-count/` (token auth and one read): a request that does
  not emit;
- `POST /api/messages/` (token auth, the recipient looked up, the message and its
  `message.received` event inserted in one transaction, the hand-off queued on commit);
- `POST /api/events/` (a staff token; emit() over HTTP, one recipient).

Then the broker is stopped and the same requests are sent again: they must stay fast,
since the request never talks to the broker. Finally the broker is started again, and the
events it missed are counted (they wait for the outbox relay, which is not running here).

MEASURED.md §5, for comparison: a no-op view 2.2 / 3.6 ms (p50 / p99), a view that looks
up the user and calls group_send itself 5.7 / 10.2 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from typing import Any

from bench.stack import DEFAULT_POSTGRES, bench_stack, header, log, ms, summary_ms, table

SERIES = ("noop", "read", "message", "event")
LABELS = {
    "noop": "GET 404 page (no database)",
    "read": "GET unread-count (token, 1 read)",
    "message": "POST /api/messages/ (emits)",
    "event": "POST /api/events/ (emits)",
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


def one_request(client: Client, kind: str, number: int, tokens: dict[str, str], label: str) -> tuple[int, float]:
    if kind == "noop":
        return client.request("GET", "/bench-no-such-page")
    if kind == "read":
        return client.request("GET", "/api/notifications/unread-count/", token=tokens["sender"])
    if kind == "message":
        body = {"to": "rcpt", "text": f"{label} {number}"}
        return client.request("POST", "/api/messages/", token=tokens["sender"], body=body)
    body = {"type": "notice", "recipients": ["rcpt"], "data": {"title": f"{label} {number}"}}
    return client.request("POST", "/api/events/", token=tokens["ops"], body=body)


def run_series(client: Client, count: int, tokens: dict[str, str], label: str) -> dict[str, dict[str, Any]]:
    """`count` requests of each kind, interleaved (noop, read, message, event, noop, ...), so
    that whatever else the machine is doing weighs on every kind alike."""
    timings: dict[str, list[float]] = {kind: [] for kind in SERIES}
    statuses: dict[str, dict[int, int]] = {kind: {} for kind in SERIES}
    for number in range(count):
        for kind in SERIES:
            status, took = one_request(client, kind, number, tokens, label)
            statuses[kind][status] = statuses[kind].get(status, 0) + 1
            timings[kind].append(took)
    return {
        kind: {"latency": summary_ms(timings[kind]), "statuses": statuses[kind], "seconds": sum(timings[kind])}
        for kind in SERIES
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per series")
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests per series first")
    parser.add_argument("--layer", default="pubsub")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)

    rows: list[list[Any]] = []
    after: dict[str, Any] = {}
    with bench_stack(args.layer, postgres=args.postgres, separate_broker=True, keep_logs=args.keep_logs) as stack:
        tokens = {
            "sender": stack.manage("issue_token", "sender", "--create"),
            "ops": stack.manage("issue_token", "ops", "--create", "--staff"),
        }
        stack.manage("issue_token", "rcpt", "--create")
        client = Client(stack.live.port)
        for phase in ("broker up", "broker down"):
            if phase == "broker down":
                assert stack.broker is not None
                stack.broker.stop()
                log("broker stopped")
            run_series(client, args.warmup, tokens, f"warm-up {phase}")
            results = run_series(client, args.requests, tokens, phase)
            for kind, result in results.items():
                latency = result["latency"]
                rows.append(
                    [
                        phase,
                        LABELS[kind],
                        ms(latency["p50"]),
                        ms(latency["p95"]),
                        ms(latency["p99"]),
                        ms(latency["max"]),
                        f"{args.requests / result['seconds']:.0f}",
                        ", ".join(f"{count}x {status}" for status, count in sorted(result["statuses"].items())),
                    ]
                )
                log(f"{phase} {kind}: p50 {ms(latency['p50'])} p99 {ms(latency['p99'])} {result['statuses']}")

        emitter = stack.child("bench.emitter", "emitter")
        try:
            after["while down"] = emitter.ask(60, cmd="undispatched")
            assert stack.broker is not None
            stack.broker.start()  # the same port
            log("broker started again")
            time.sleep(1)
            client.request("POST", "/api/messages/", token=tokens["sender"], body={"to": "rcpt", "text": "back"})
            after["newest"] = emitter.ask(90, cmd="newest_delivered", timeout=60)
            time.sleep(5)  # what the hand-off thread still held is published now
            after["after restart"] = emitter.ask(60, cmd="undispatched")
        finally:
            emitter.stop()
        web_log = stack.process("web").log()
        after["handoff warnings"] = web_log.count("could not hand event")
        after["queue full"] = web_log.count("hand-off queue full")

    out = [
        header(f"Emit cost: {args.requests} sequential requests per row, layer {args.layer}", "bench.emit_cost", argv)
    ]
    out.append(table(["broker", "request", "p50", "p95", "p99", "max", "req/s", "answers"], rows))
    down, restarted = after["while down"], after["after restart"]
    out.append(
        f"\nWith the broker down, {down['pending']} events were pending, {down['never_handed_off']} of them never "
        f"handed to the broker; daphne logged {after['handoff warnings']} hand-off failures "
        f"({after['queue full']} 'queue full'). After the broker came back, {restarted['pending']} were still "
        f"pending ({restarted['never_handed_off']} never handed off): those wait for the outbox relay (beat), "
        "which this benchmark does not run. A message sent after the restart was "
        f"{after['newest']['status']} {after['newest']['seconds']:.1f} s later."
    )
    print("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
