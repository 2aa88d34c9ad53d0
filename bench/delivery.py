"""End-to-end latency, throughput and loss: N users x M tabs, events emitted at R/s.

    .venv/bin/python -m bench.delivery [--users 100] [--tabs 10] [--rates 10,50,100,200]
        [--seconds 15] [--layers pubsub,core] [--runs 1]

For each layer: a stack of its own (PostgreSQL database, redis-server, 1 daphne, 1 Celery
worker with 2 processes), N x M WebSocket tabs in a load-generator process, and an emitter
process that calls emit() R times a second for T seconds, each event to one user (round
robin), so daphne sends R x M frames a second. Per frame it records emit -> arrival in
the tab; after each rate it waits until the workers have delivered every event, gives the
tabs a settle period, and counts the seqs each tab is missing. The rates run one after
another on the same sockets, lowest first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.stack import (
    DEFAULT_POSTGRES,
    CpuMeter,
    TaskLog,
    bench_stack,
    header,
    log,
    ms,
    rss_mib,
    summary_ms,
    table,
)

RECONCILE_WAIT_S = 30 * 1.25 + 5  # WS_RECONCILE_INTERVAL_S (30) with its jitter, and some slack


@dataclass
class PhaseResult:
    layer: str
    run: int
    rate: float
    frames_per_s: float
    achieved: float
    latency: dict[str, float]
    lost: int
    tabs_missing: int
    duplicates: int
    gaps: int
    drain_s: float
    cpu: dict[str, float]
    rss_mib: float
    emit_ms_p50: float
    closed: int
    task_ms: dict[str, float]
    emitted: int
    spread: dict[str, float]

    @property
    def delivered_per_s(self) -> float:
        """Events delivered a second, emit start to drained: the workers' pace once they lag."""
        return self.emitted / (self.emitted / self.achieved + self.drain_s) if self.achieved else 0.0


@dataclass
class LayerResult:
    layer: str
    run: int
    rss_idle: float = 0.0
    rss_connected: float = 0.0
    rss_end: float = 0.0
    connect_s: float = 0.0
    opened: int = 0
    failed: int = 0
    phases: list[PhaseResult] = field(default_factory=list)
    lost_after_reconcile: int | None = None
    gc: dict[str, dict[str, float]] = field(default_factory=dict)


def gc_pauses(gc_dir: Path, pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """Full (generation 2) collections per process, from bench/gcprobe's logs."""
    found = {}
    for name, pid in pids.items():
        path = gc_dir / f"gc.{pid}"
        lines = path.read_text().split("\n") if path.exists() else []
        full = sorted(float(line.split()[2]) for line in lines if line and line.split()[1] == "2")
        found[name] = {
            "count": len(full),
            "p50_ms": 1000 * full[len(full) // 2] if full else 0.0,
            "max_ms": 1000 * full[-1] if full else 0.0,
            "total_s": sum(full),
        }
    shutil.rmtree(gc_dir, ignore_errors=True)
    return found


def run_layer(layer: str, run: int, args: argparse.Namespace) -> LayerResult:
    result = LayerResult(layer=layer, run=run)
    extra_env = {}
    if args.gc_log:
        gc_dir = Path(tempfile.mkdtemp(prefix="bench-gc-"))
        extra_env = {"PYTHONPATH": str(Path(__file__).parent / "gcprobe"), "BENCH_GC_LOG": str(gc_dir / "gc")}
        if args.gc_freeze:
            extra_env["BENCH_GC_FREEZE_AFTER"] = "3"
    with bench_stack(
        layer, postgres=args.postgres, workers=args.workers, keep_logs=args.keep_logs, extra_env=extra_env
    ) as stack:
        emitter = stack.child("bench.emitter", "emitter")
        tabs = stack.child("bench.tabs", "tabs")
        try:
            ids = emitter.ask(60, cmd="users", prefix="u", count=args.users)["ids"]
            tokens = emitter.ask(120, cmd="tokens", user_ids=ids)["tokens"]
            names = {str(user_id): f"u{number:05d}" for number, user_id in enumerate(ids)}
            daphne = stack.process("web").popen.pid
            meter = CpuMeter()
            meter.add_tree("daphne", daphne)
            meter.add_tree("worker", stack.process("worker").popen.pid)
            meter.add_tree("emitter", emitter.pid)
            meter.add_tree("tabs", tabs.pid)
            meter.add_tree("redis", stack.redis.process.pid)  # type: ignore[union-attr]
            meter.add_postgres(stack.database)

            result.rss_idle = rss_mib(daphne)
            log(f"{layer}: opening {args.users} x {args.tabs} tabs (daphne RSS {result.rss_idle:.0f} MiB)")
            opened = tabs.ask(
                600,
                cmd="open",
                url=stack.ws_url,
                tabs=[[names[str(user_id)], token, args.tabs] for user_id, token in zip(ids, tokens, strict=True)],
            )
            result.opened, result.failed, result.connect_s = opened["opened"], opened["failed"], opened["seconds"]
            if opened["failed"]:
                log(f"{layer}: {opened['failed']} tabs failed to open: {opened['errors']}")
            time.sleep(2)
            result.rss_connected = rss_mib(daphne)
            log(
                f"{layer}: {opened['opened']} tabs open in {opened['seconds']:.1f}s, RSS {result.rss_connected:.0f} MiB"
            )

            expected = dict.fromkeys(names.values(), 0)
            tasks = TaskLog(stack.process("worker").log_path)
            for rate in args.rates:
                tag = f"{layer} {rate:g}/s run {run}"
                emitter.send(cmd="rate", rate=rate, seconds=args.seconds, user_ids=ids, tag=tag)
                emitter.reply(60)  # started
                before = meter.snapshot()
                done = emitter.reply(args.seconds * 4 + 120)
                after = meter.snapshot()
                cpu = CpuMeter.percent(before, after)
                drained = emitter.ask(args.drain_timeout + 30, cmd="drained", timeout=args.drain_timeout)
                drain_s = time.time() - done["ended"]
                for user_id, count in done["per_user"].items():
                    expected[names[user_id]] += count
                waited = tabs.ask(args.settle + 60, cmd="wait", expect=expected, timeout=args.settle)
                collected = tabs.ask(120, cmd="collect", tag=tag)
                phase = PhaseResult(
                    layer=layer,
                    run=run,
                    rate=rate,
                    frames_per_s=rate * args.tabs,
                    achieved=done["achieved"],
                    latency=summary_ms(collected["latencies"]),
                    lost=waited["missing"],
                    tabs_missing=waited["tabs_missing"],
                    duplicates=collected["duplicates"],
                    gaps=collected["gaps"],
                    drain_s=drain_s if drained["pending_at_start"] else 0.0,
                    cpu=cpu,
                    rss_mib=rss_mib(daphne),
                    emit_ms_p50=done["emit_ms_p50"],
                    closed=collected["closed"],
                    task_ms=summary_ms(tasks.since_last()),
                    emitted=done["emitted"],
                    spread=summary_ms(collected.get("spreads", [])),
                )
                result.phases.append(phase)
                log(
                    f"{layer} {rate:g}/s: p50 {ms(phase.latency['p50'])} p99 {ms(phase.latency['p99'])} "
                    f"max {ms(phase.latency['max'])} lost {phase.lost} drain {drain_s:.1f}s "
                    f"pending {drained['pending']} cpu daphne {cpu['daphne']:.0f}% worker {cpu['worker']:.0f}% "
                    f"machine {cpu['machine']:.0f}%"
                )
                if drained["pending"]:
                    log(f"{layer}: {drained['pending']} events still pending after {args.drain_timeout}s; stopping")
                    break
            if result.phases and result.phases[-1].lost:
                log(f"{layer}: frames missing; waiting {RECONCILE_WAIT_S:.0f}s for the sockets' reconcile")
                waited = tabs.ask(RECONCILE_WAIT_S + 60, cmd="wait", expect=expected, timeout=RECONCILE_WAIT_S)
                result.lost_after_reconcile = waited["missing"]
            result.rss_end = rss_mib(daphne)
            if args.gc_log:
                result.gc = gc_pauses(gc_dir, {"daphne": daphne, "emitter": emitter.pid, "tabs": tabs.pid})
        finally:
            tabs.stop()
            emitter.stop()
    return result


def frames(value: float) -> str:
    return f"{value:,.0f}"


def report(results: list[LayerResult], args: argparse.Namespace) -> str:
    out = [
        header(
            f"Delivery: {args.users} users x {args.tabs} tabs, {args.seconds:g} s per rate, "
            f"{args.workers} worker processes",
            "bench.delivery",
            args.argv,
        )
    ]
    rows = []
    for result in results:
        for phase in result.phases:
            latency = phase.latency
            rows.append(
                [
                    phase.layer,
                    phase.run,
                    f"{phase.rate:g} ({frames(phase.frames_per_s)})",
                    f"{phase.achieved:.0f}",
                    ms(latency["p50"]),
                    ms(latency["p95"]),
                    ms(latency["p99"]),
                    ms(latency["max"]),
                    f"{ms(phase.spread['p50'])} / {ms(phase.spread['p99'])}",
                    f"{phase.lost} / {latency['n']:,}",
                    f"{phase.duplicates}/{phase.gaps}",
                    f"{phase.drain_s:.1f} s",
                    f"{phase.delivered_per_s:.0f}",
                ]
            )
    out.append(
        table(
            [
                "layer",
                "run",
                "events/s (frames/s)",
                "emitted/s",
                "p50",
                "p95",
                "p99",
                "max",
                "tab spread p50 / p99",
                "lost / frames",
                "dup/gap",
                "drain",
                "delivered/s",
            ],
            rows,
        )
    )
    out.append(
        "\nemit -> tab, per frame. tab spread: per event, from its first tab's frame to its last tab's. "
        "lost: seqs a tab still lacked after every event was delivered "
        f"and a {args.settle:g} s settle. drain: from the last emit until no event was pending. "
        "delivered/s: events over the time from the first emit until none was pending.\n"
    )
    cpu_rows = []
    for result in results:
        for phase in result.phases:
            cpu = phase.cpu
            cpu_rows.append(
                [phase.layer, phase.run, f"{phase.rate:g}"]
                + [f"{cpu.get(name, 0):.0f}" for name in ("daphne", "worker", "postgres", "redis", "emitter", "tabs")]
                + [f"{cpu['machine']:.0f} ({cpu['others']:.0f})", f"{phase.rss_mib:.0f}"]
                + [f"{ms(phase.task_ms['p50'])} / {ms(phase.task_ms['p99'])}", f"{phase.emit_ms_p50:.1f} ms"]
            )
    out.append(
        table(
            [
                "layer",
                "run",
                "events/s",
                "daphne %",
                "worker %",
                "postgres %",
                "redis %",
                "emitter %",
                "tabs %",
                "machine % (not ours)",
                "daphne RSS MiB",
                "task p50 / p99",
                "emit() p50",
            ],
            cpu_rows,
        )
    )
    out.append(
        "\nCPU over the emit window, % of one core (the machine has 200%; 'not ours' is everything else running "
        "on it). task: a delivery task's run time in the worker's log; emit(): the call in the emitter.\n"
    )
    out.append(
        table(
            ["layer", "run", "tabs open (failed)", "connect time", "daphne RSS idle", "with tabs", "at end", "per tab"],
            [
                [
                    r.layer,
                    r.run,
                    f"{r.opened} ({r.failed})",
                    f"{r.connect_s:.1f} s",
                    f"{r.rss_idle:.0f} MiB",
                    f"{r.rss_connected:.0f} MiB",
                    f"{r.rss_end:.0f} MiB",
                    f"{(r.rss_connected - r.rss_idle) * 1024 / max(r.opened, 1):.0f} KiB",
                ]
                for r in results
            ],
        )
    )
    if args.runs > 1:
        out.append("\n" + ranges(results))
    for result in results:
        for name, pauses in result.gc.items():
            out.append(
                f"\nGC, {result.layer} run {result.run}, {name}: {pauses['count']} full collections, "
                f"p50 {pauses['p50_ms']:.0f} ms, max {pauses['max_ms']:.0f} ms, {pauses['total_s']:.1f} s in all"
            )
    late = [r for r in results if r.lost_after_reconcile is not None]
    if late:
        out.append(
            "\nMissing after one reconcile interval: "
            + ", ".join(f"{r.layer} run {r.run}: {r.lost_after_reconcile}" for r in late)
        )
    return "\n".join(out) + "\n"


def ranges(results: list[LayerResult]) -> str:
    """Per layer and rate, the range over runs (as MEASURED.md reports them)."""
    grouped: dict[tuple[str, float], list[PhaseResult]] = {}
    for result in results:
        for phase in result.phases:
            grouped.setdefault((phase.layer, phase.rate), []).append(phase)

    def span(values: list[float]) -> str:
        low, high = ms(min(values)), ms(max(values))
        return low if low == high else f"{low} - {high}"

    rows = [
        [
            layer,
            f"{rate:g}",
            len(phases),
            span([p.latency["p50"] for p in phases]),
            span([p.latency["p99"] for p in phases]),
            sum(p.lost for p in phases),
            f"{min(p.delivered_per_s for p in phases):.0f} - {max(p.delivered_per_s for p in phases):.0f}",
        ]
        for (layer, rate), phases in sorted(grouped.items())
    ]
    return table(["layer", "events/s", "runs", "p50", "p99", "lost (all runs)", "delivered/s"], rows)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--tabs", type=int, default=10, help="tabs per user")
    parser.add_argument("--rates", default="10,50,100,200", help="events per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="emit time per rate")
    parser.add_argument("--layers", default="pubsub,core")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (--concurrency)")
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole set this many times")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds the tabs get after delivery")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for the workers")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL; a throwaway database is made on it")
    parser.add_argument("--gc-log", action="store_true", help="log full GC pauses (bench/gcprobe)")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="with --gc-log: daphne calls gc.freeze() once its app is loaded"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs in /tmp/bench-*")
    args = parser.parse_args(argv)
    args.argv = argv
    args.rates = [float(rate) for rate in args.rates.split(",")]
    args.layers = args.layers.split(",")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    results = []
    for run in range(1, args.runs + 1):
        # Alternate the order, so that neither layer always runs on a warmer (or busier) machine.
        order = args.layers if run % 2 else list(reversed(args.layers))
        results.extend(run_layer(layer, run, args) for layer in order)
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
