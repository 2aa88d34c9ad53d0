"""Fan-out: one event to K users, of whom C have one tab connected.

    .venv/bin/python -m bench.fanout [--recipients 1000,10000] [--connected 1000] [--repeats 2]
        [--layers pubsub,core]

For each layer: a stack of its own, max(K) users made in bulk, and for each K a fresh set of
C tabs (one per user) spread evenly over the K recipients (every K/C-th user), so that the
last connected user is in the worker's last batch, as it would be in real traffic. The
emitter calls emit() once with all K recipients and polls the database until all K
notifications are committed; the tabs record when each one got its frame.

MEASURED.md §4, for comparison: a bare loop of group_send to 10,000 users (1,000
connected, nothing stored) took 4.6 s until the last connected tab had it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.stack import DEFAULT_POSTGRES, CpuMeter, bench_stack, header, log, table


@dataclass
class FanoutResult:
    layer: str
    recipients: int
    connected: int
    repeat: int
    timings: dict[str, Any]
    first_tab_s: float
    median_tab_s: float
    last_tab_s: float
    tabs_missing: int
    cpu: dict[str, float]


def run_layer(layer: str, args: argparse.Namespace) -> list[FanoutResult]:
    results: list[FanoutResult] = []
    with bench_stack(layer, postgres=args.postgres, keep_logs=args.keep_logs) as stack:
        emitter = stack.child("bench.emitter", "emitter")
        try:
            made = emitter.ask(300, cmd="users", prefix="f", count=max(args.recipients))
            ids: list[int] = made["ids"]
            log(f"{layer}: {len(ids)} users made in {made['seconds']:.1f}s")
            for recipients in args.recipients:
                connected = min(args.connected, recipients)
                step = recipients // connected
                tab_ids = ids[:recipients:step][:connected]
                tokens = emitter.ask(300, cmd="tokens", user_ids=tab_ids)["tokens"]
                tabs = stack.child("bench.tabs", f"tabs-{recipients}")
                try:
                    opened = tabs.ask(
                        600,
                        cmd="open",
                        url=stack.ws_url,
                        tabs=[[str(user_id), token, 1] for user_id, token in zip(tab_ids, tokens, strict=True)],
                    )
                    log(f"{layer} K={recipients}: {opened['opened']} tabs open ({opened['failed']} failed)")
                    time.sleep(2)
                    meter = CpuMeter()
                    meter.add_tree("daphne", stack.process("web").popen.pid)
                    meter.add_tree("worker", stack.process("worker").popen.pid)
                    meter.add_postgres(stack.database)
                    expected = dict.fromkeys((str(user_id) for user_id in tab_ids), 0)
                    for repeat in range(1, args.repeats + 1):
                        tag = f"fanout {layer} {recipients} #{repeat}"
                        before = meter.snapshot()
                        timings = emitter.ask(
                            args.timeout + 60, cmd="fanout", user_ids=ids[:recipients], tag=tag, timeout=args.timeout
                        )
                        for user_id in expected:
                            expected[user_id] += 1
                        waited = tabs.ask(args.timeout + 60, cmd="wait", expect=expected, timeout=args.settle)
                        after = meter.snapshot()
                        latencies = sorted(tabs.ask(60, cmd="collect", tag=tag)["latencies"])
                        result = FanoutResult(
                            layer=layer,
                            recipients=recipients,
                            connected=len(tab_ids),
                            repeat=repeat,
                            timings=timings,
                            first_tab_s=latencies[0] if latencies else float("nan"),
                            median_tab_s=latencies[len(latencies) // 2] if latencies else float("nan"),
                            last_tab_s=latencies[-1] if latencies else float("nan"),
                            tabs_missing=waited["tabs_missing"],
                            cpu=CpuMeter.percent(before, after),
                        )
                        results.append(result)
                        log(
                            f"{layer} K={recipients} #{repeat}: last tab {seconds(result.last_tab_s)}, all stored "
                            f"{seconds(timings['all_stored_s'])}, done {seconds(timings['finished_s'])}, "
                            f"tabs missing {result.tabs_missing}"
                        )
                        time.sleep(args.pause)
                finally:
                    tabs.stop()
        finally:
            emitter.stop()
    return results


def seconds(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2f} s"


def report(results: list[FanoutResult], args: argparse.Namespace) -> str:
    out = [header("Fan-out: one event to K users", "bench.fanout", args.argv)]
    rows = [
        [
            r.layer,
            f"{r.recipients:,}",
            f"{r.connected:,}",
            r.repeat,
            seconds(r.timings["task_began_s"]),
            seconds(r.first_tab_s),
            seconds(r.median_tab_s),
            seconds(r.last_tab_s),
            seconds(r.timings["all_stored_s"]),
            seconds(r.timings["finished_s"]),
            r.tabs_missing,
            f"{r.cpu['worker']:.0f} / {r.cpu['postgres']:.0f} / {r.cpu['daphne']:.0f}",
        ]
        for r in results
    ]
    out.append(
        table(
            [
                "layer",
                "K",
                "tabs",
                "#",
                "task began",
                "first tab",
                "median tab",
                "last tab",
                "all K stored",
                "task done",
                "tabs missing",
                "CPU % worker / postgres / daphne",
            ],
            rows,
        )
    )
    out.append(
        "\nTimes from emit(). all K stored: the emitter saw all K notifications committed (polled every 20 ms); "
        "task done: the worker marked the event delivered (every batch stored and rung). "
        "CPU from emit until every tab had it."
    )
    return "\n".join(out) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", default="1000,10000", help="K values, comma-separated")
    parser.add_argument("--connected", type=int, default=1000, help="recipients with one tab open")
    parser.add_argument("--repeats", type=int, default=2, help="events per K")
    parser.add_argument("--layers", default="pubsub,core")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds an event may take")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds the tabs may take after it")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between events")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    args.argv = argv
    args.recipients = [int(k) for k in args.recipients.split(",")]
    args.layers = args.layers.split(",")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    results = []
    for layer in args.layers:
        results += run_layer(layer, args)
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
