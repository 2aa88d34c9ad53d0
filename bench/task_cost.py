"""What one event costs each step, measured in one process, without Celery or sockets.

    .venv/bin/python -m bench.task_cost [--events 300] [--runs 3]

A stack of its own with daphne and the worker stopped, so that only this process works:
`emit()` (the event row, in autocommit), `publish_to_celery` (what the hand-off thread does
per event: publish the task, then note `dispatched_at`) and `event_deliver` for one
recipient (what a Celery task runs: store the notification, ring the doorbell). Set
against the worker's CPU per event in bench.delivery, the difference is Celery's own cost.
"""

from __future__ import annotations

import argparse
import sys

from bench.stack import DEFAULT_POSTGRES, bench_stack, header, log, table

STEPS = {
    "emit": "emit() to one user (the request's part)",
    "publish": "publish_to_celery (the hand-off thread's part)",
    "deliver": "event_deliver, one recipient (the task's body)",
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layer", default="pubsub")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args(argv)

    runs = []
    with bench_stack(args.layer, postgres=args.postgres) as stack:
        for name in ("worker", "web"):
            stack.process(name).stop()
        for run in range(args.runs):
            emitter = stack.child("bench.emitter", f"emitter-{run}")
            try:
                runs.append(emitter.ask(600, cmd="inprocess", events=args.events, users=100))
            finally:
                emitter.stop()
            stack.manage("flush", "--noinput")
            log(f"run {run + 1}: " + ", ".join(f"{k} {v['cpu_ms']:.2f} ms CPU" for k, v in runs[-1].items()))

    def span(step: str, key: str) -> str:
        values = [run[step][key] for run in runs]
        return f"{min(values):.2f} - {max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"

    rows = [
        [label, span(step, "cpu_ms"), span(step, "wall_ms"), runs[0][step].get("statements", "-")]
        for step, label in STEPS.items()
    ]
    out = [header(f"Cost per event, in process ({args.events} calls x {args.runs} runs)", "bench.task_cost", argv)]
    out.append(table(["step", "CPU ms", "wall ms", "SQL statements"], rows))
    out.append(
        "\nStatements as Django logs them; the delivery's server-side cursor (`.iterator()`) also "
        "sends FETCH and CLOSE, which it does not log."
    )
    print("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
