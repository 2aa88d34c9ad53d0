"""make bench: every scenario, product against the naive baseline, in one run.

    .venv/bin/python -m bench                 # moderate defaults, 8-13 minutes on 2 cores
    .venv/bin/python -m bench --quick         # a smoke run: small numbers, a few minutes
    .venv/bin/python -m bench --only fanout,resume --out var/bench

Writes <out>/report.md (tables, ratios to the baseline, machine, versions, the command),
<out>/results.json and <out>/*.png; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import delivery, emit_cost, fanout, resume, resume_flood, servers, task_cost
from bench.machine import describe_run
from bench.plots import draw_all
from bench.progress import Progress
from bench.report import render
from bench.session import Session, open_session
from bench.stack import DEFAULT_POSTGRES, ROOT, log

SECTIONS: dict[str, Callable[[Session], dict[str, Any]]] = {
    "delivery": delivery.run,
    "fanout": fanout.run,
    "resume": resume.run,
    "resume_flood": resume_flood.run,
    "servers": servers.run,
    "emit_cost": emit_cost.run,  # stops and restarts the broker: late in the run
    "task_cost": task_cost.run,  # stops the worker and beat: last
}

QUICK = {
    "users": 10,
    "tabs": 10,
    "rates": "50,200",
    "seconds": 3.0,
    "fanout": 1000,
    "fanout_connected": 100,
    "fanout_repeats": 1,
    "server_rates": "200",
    "resume": 200,
    "resume_repeats": 1,
    "flood_inbox": 600,
    "flood_sockets": 4,
    "requests": 30,
    "events": 60,
    "batch": 100,
    "settle": 10.0,
    "out": "var/bench-quick",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run with small numbers")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections, comma-separated: {','.join(SECTIONS)}")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--tabs", type=int, default=10, help="tabs per user")
    parser.add_argument("--rates", default="50,200,500", help="offered events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="load time per rate")
    parser.add_argument(
        "--paths",
        default="emitter,http,http-api",
        help="emitter (a process beside web), http (ingest to web), http-api (ingest to a separate API process)",
    )
    parser.add_argument("--fanout", type=int, default=10_000, help="recipients of the fan-out event")
    parser.add_argument("--fanout-connected", type=int, default=1000, help="of them, with one tab open")
    parser.add_argument("--fanout-repeats", type=int, default=2)
    parser.add_argument("--servers", default="daphne,uvicorn,granian")
    parser.add_argument("--server-rates", default="200,500", help="events/s for the server comparison")
    parser.add_argument("--resume", type=int, default=1000, help="notifications a resuming tab missed")
    parser.add_argument("--resume-repeats", type=int, default=3)
    parser.add_argument("--flood-inbox", type=int, default=3000, help="notifications of the user whose sockets flood")
    parser.add_argument("--flood-sockets", type=int, default=8, help="sockets that stop reading and send resumes")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per kind (emit cost)")
    parser.add_argument("--events", type=int, default=300, help="calls per step (in-process cost)")
    parser.add_argument("--batch", type=int, default=500, help="backlog delivered in batches (in-process cost)")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--emitters", type=int, default=2, help="emitting processes per system, sharing the rate")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds the tabs get after the load")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="seconds the workers get to catch up")
    parser.add_argument("--http-timeout", type=float, default=30.0, help="seconds before a request counts as failed")
    parser.add_argument("--profile", action="store_true", help="py-spy the product's web and worker (perturbs them)")
    parser.add_argument("--profile-rates", default="200,500", help="with --profile: at these rates")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL; a throwaway database is made on it")
    parser.add_argument("--out", default="docs/bench", help="where the report, results and plots go")
    parser.add_argument(
        "--render", action="store_true", help="only redraw the report and plots from <out>/results.json"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs in /tmp/bench-*")
    defaults = parser.parse_args([])
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == getattr(defaults, name):  # what the command line set wins
                setattr(args, name, value)
    args.argv = argv
    args.rates = [float(rate) for rate in str(args.rates).split(",")]
    args.server_rates = [float(rate) for rate in str(args.server_rates).split(",")]
    args.profile_rates = [float(rate) for rate in str(args.profile_rates).split(",")]
    args.paths = args.paths.split(",")
    args.servers = args.servers.split(",")
    args.only = [name for name in SECTIONS if name in args.only.split(",")]
    return args


def planned_steps(args: argparse.Namespace) -> float:
    """Steps for the progress bar, weighted roughly by how long each takes."""
    weights = {
        "delivery": 2 + len(args.paths) * len(args.rates) * 2,
        "fanout": 2 + args.fanout_repeats * 2,
        "resume": args.resume_repeats,
        "resume_flood": 2,
        "servers": len(args.servers) * (1 + len(args.server_rates)),
        "emit_cost": 3,
        "task_cost": 2,
    }
    return sum(weights[name] for name in args.only)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = (ROOT / args.out) if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        saved = json.loads((out / "results.json").read_text())
        write_report(saved["run"], saved["results"], out)
        return 0
    run = describe_run(args)
    progress = Progress(planned_steps(args))
    progress.show("starting the product and the naive stacks")
    results: dict[str, Any] = {}
    started = time.monotonic()
    with open_session(args, progress) as session:
        for name in args.only:
            log(f"--- {name}")
            results[name] = SECTIONS[name](session)
            (out / "results.json").write_text(json.dumps({"run": run, "results": results}, indent=1, default=str))
    run["minutes"] = (time.monotonic() - started) / 60
    (out / "results.json").write_text(json.dumps({"run": run, "results": results}, indent=1, default=str))
    write_report(run, results, out)
    log(f"done in {run['minutes']:.1f} min: {out / 'report.md'}")
    return 0


def write_report(run: dict[str, Any], results: dict[str, Any], out: Path) -> None:
    plots = draw_all(results, out)
    report = render(run, results, plots)
    (out / "report.md").write_text(report)
    print(report)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
