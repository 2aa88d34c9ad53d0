"""Delivery at fixed rates: N users x M tabs, one event to one user each, product and baseline.

For each path (an emitting process beside the web process; HTTP ingest, POST /api/events/
to the web process that holds the sockets; or the same to a separate API process, one
daphne more) and each offered rate, the naive
baseline and the product run one after the other (which goes first alternates), each on
its own 1,000 open sockets. Per phase: emit -> tab latency of every frame, the rate
reached, frames lost, failed requests and their latency (HTTP), the CPU of every process,
and (product) the delivery tasks' run times and the PostgreSQL connections each process held.
"""

from __future__ import annotations

import time
from typing import Any

from bench.meters import CpuMeter, PgConnections, TaskLog, rss_mib
from bench.numbers import cdf_points, summary_ms
from bench.profile import Profiles
from bench.session import LOAD, PIPELINE, Session, pipeline_cpu_s
from bench.stack import Child, log

SYSTEMS = ("naive", "product")


def prepare_users(session: Session) -> dict[str, Any]:
    """The users, their tokens and the staff tokens, made once for the scenarios that need them."""
    if "users" not in session.shared:
        options = session.options
        made = session.product_emitter.ask(120, cmd="users", prefix="u", count=options.users)
        tokens = session.product_emitter.ask(600, cmd="tokens", user_ids=made["ids"])["tokens"]
        session.shared["users"] = {
            "ids": made["ids"],
            "names": made["names"],
            "tokens": {"product": tokens, "naive": made["names"]},  # the baseline's token is the name
            "staff": {
                "product": session.product.manage("issue_token", "ops", "--create", "--staff"),
                "naive": session.naive.env["NAIVE_STAFF_TOKEN"],
            },
        }
    return session.shared["users"]


def open_tabs(session: Session, system: str, url: str, name: str) -> tuple[Child, dict[str, Any]]:
    """A load generator with every user's tabs open on `url`; answers it and how it went."""
    options = session.options
    users = prepare_users(session)
    tabs = session.stack(system).child("bench.tabs", name)
    opened = tabs.ask(
        900,
        cmd="open",
        url=url,
        tabs=[[n, t, options.tabs] for n, t in zip(users["names"], users["tokens"][system], strict=True)],
    )
    if opened["failed"]:
        log(f"{system}: {opened['failed']} tabs failed to open: {opened['errors']}")
    return tabs, opened


def sockets_opened(opened: dict[str, Any], *, idle_mib: float, connected_mib: float) -> dict[str, Any]:
    """How opening the tabs went, and what they cost the web process in memory."""
    return {
        "opened": opened["opened"],
        "failed": opened["failed"],
        "connect_s": opened["seconds"],
        "rss_idle_mib": idle_mib,
        "rss_connected_mib": connected_mib,
        "kib_per_socket": (connected_mib - idle_mib) * 1024 / max(opened["opened"], 1),
    }


def run(session: Session) -> dict[str, Any]:
    options = session.options
    users = prepare_users(session)
    tabs: dict[str, Child] = {}
    sockets: dict[str, dict[str, Any]] = {}
    expected: dict[str, dict[str, int]] = {system: dict.fromkeys(users["names"], 0) for system in SYSTEMS}
    phases: list[dict[str, Any]] = []
    if "http-api" in options.paths:
        for system in SYSTEMS:
            session.stack(system).start_api()
    try:
        for system in SYSTEMS:
            stack = session.stack(system)
            idle = rss_mib(stack.pid("web"))
            tabs[system], opened = open_tabs(session, system, stack.ws_url, f"tabs-{system}")
            time.sleep(2)
            connected = rss_mib(stack.pid("web"))
            sockets[system] = sockets_opened(opened, idle_mib=idle, connected_mib=connected)
            session.progress.step(f"{system}: {opened['opened']} tabs open in {opened['seconds']:.1f} s")
        sockets["product"]["idle_cpu"] = idle_cpu(session, tabs["product"])
        for path in options.paths:
            for number, rate in enumerate(options.rates):
                order = SYSTEMS if number % 2 == 0 else tuple(reversed(SYSTEMS))
                for system in order:
                    phase = run_phase(session, system, path, rate, tabs[system], expected[system])
                    phases.append(phase)
                    session.progress.step(describe(phase))
        for system in SYSTEMS:
            sockets[system]["rss_end_mib"] = rss_mib(session.stack(system).pid("web"))
    finally:
        for child in tabs.values():
            child.stop()
        for system in SYSTEMS:
            session.stack(system).stop_process("api")
    return {"sockets": sockets, "phases": phases}


def idle_cpu(session: Session, tabs: Child, seconds: float = 10.0) -> dict[str, float]:
    """What the product's processes use with the sockets open and nothing to deliver (the
    sockets' reconcile, beat's sweep), in % of a core."""
    meter = session.cpu_meter("product", tabs)
    before = meter.snapshot()
    time.sleep(seconds)
    return CpuMeter.percent(CpuMeter.seconds(before, meter.snapshot()))


def run_phase(
    session: Session, system: str, path: str, rate: float, tabs: Child, expected: dict[str, int]
) -> dict[str, Any]:
    options = session.options
    users = session.shared["users"]
    stack = session.stack(system)
    tag = f"{system} {path} {rate:g}/s"
    meter = session.cpu_meter(system, tabs)
    tasks = TaskLog(stack.processes["worker"].log_path) if system == "product" else None
    connections = None
    if system == "product":
        roles = {name: stack.pid(name) for name in ("web", "api", "worker", "beat") if name in stack.processes}
        roles.update({f"emitter {n}": emitter.pid for n, emitter in enumerate(session.product_emitters)})
        connections = PgConnections(options.postgres, stack.database or "", roles).start()
    profiles = None
    if system == "product" and options.profile and rate in options.profile_rates:
        profiles = Profiles(stack.workdir)
        for name in ("web", "api", "worker"):
            if name in stack.processes and (name != "api" or path == "http-api"):
                profiles.start(name, stack.pid(name), options.seconds, subprocesses=True)
    before = meter.snapshot()
    result: dict[str, Any] = {"system": system, "path": path, "rate": rate}
    if path == "emitter":
        done = emit_at_rate(session, system, rate, tag)
        result.update(sent=done["emitted"], accepted=done["emitted"], send_rate=done["achieved"])
        result["emit_call_ms"] = {"p50": done["call_ms_p50"], "p99": done["call_ms_p99"]}
    else:
        done = session.http.ask(
            options.seconds * 4 + options.http_timeout + 120,
            cmd="post",
            port=stack.api_port if path == "http-api" else stack.port,
            path="/api/events/",
            token=users["staff"][system],
            rate=rate,
            seconds=options.seconds,
            recipients=users["names"],
            tag=tag,
            timeout=options.http_timeout,
        )
        result.update(
            sent=done["requested"],
            accepted=done["ok"],
            send_rate=done["requested"] / max(done["sent_s"], 1e-6),
            failed=done["failed"],
            statuses=done["statuses"],
            http=summary_ms(done["latencies"]),
            http_cdf=cdf_points(done["latencies"]),
            http_connections=done["connections_opened"],
        )
        session.http.ask(30, cmd="reset")
    if profiles is not None:
        result["profile"] = profiles.finish()
    if system == "product":
        drained = session.product_emitter.ask(options.drain_timeout + 30, cmd="drained", timeout=options.drain_timeout)
        result["pending_after_drain"] = drained["pending"]
        result["dead"] = drained["dead"]
    for name, count in zip(users["names"], done["counts"], strict=True):
        expected[name] += count
    waited = tabs.ask(options.settle + 60, cmd="wait", expect=expected, timeout=options.settle)
    used = CpuMeter.seconds(before, meter.snapshot())
    if connections is not None:
        connections.stop()
        result["pg_connections"] = connections.summary()
        result["pg_unknown"] = connections.unknown.most_common(5)
        result["pg_opened"] = connections.opened
    collected = tabs.ask(120, cmd="collect", tag=tag)
    events = collected["events"]
    span = (collected["last_arrival"] or 0) - (collected["first_emit"] or 0)
    result.update(
        latency=summary_ms(collected["latencies"]),
        cdf=cdf_points(collected["latencies"]),
        spread=summary_ms(collected["spreads"]),
        events_delivered=events,
        reached=events / span if span > 0 else 0.0,
        lost=waited["missing"],
        tabs_missing=waited["tabs_missing"],
        duplicates=collected["duplicates"],
        gaps=collected["gaps"],
        closed=collected["closed"],
        cpu=CpuMeter.percent(used),
        cpu_s={name: value for name, value in used.items() if name in (*PIPELINE[system], *LOAD, "tabs")},
        cpu_ms_per_event=1000 * pipeline_cpu_s(system, used) / max(events, 1),
        window_s=used["wall"],
    )
    if tasks is not None:
        runs = tasks.since_last()
        result["tasks"] = {
            "count": len(runs),
            "run": summary_ms(took for took, _ in runs),
            "events_per_task": sum(count for _, count in runs) / max(len(runs), 1),
        }
    return result


def emit_at_rate(session: Session, system: str, rate: float, tag: str) -> dict[str, Any]:
    """The system's emitting processes share the rate, each with its own slice of the users
    (so each user's events still come from one process, one after another)."""
    users = session.shared["users"]
    recipients = users["ids"] if system == "product" else users["names"]
    emitters = session.emitters(system)
    count = len(emitters)
    for number, emitter in enumerate(emitters):
        share = recipients[number::count]
        emitter.send(cmd="rate", rate=rate / count, seconds=session.options.seconds, recipients=share, tag=tag)
    for emitter in emitters:
        emitter.reply(60)  # started
    dones = [emitter.reply(session.options.seconds * 4 + 180) for emitter in emitters]
    counts = [0] * len(recipients)
    for number, done in enumerate(dones):
        for index, sent in enumerate(done["counts"]):
            counts[number + index * count] += sent
    return {
        "emitted": sum(done["emitted"] for done in dones),
        "achieved": sum(done["achieved"] for done in dones),
        "call_ms_p50": max(done["call_ms_p50"] for done in dones),
        "call_ms_p99": max(done["call_ms_p99"] for done in dones),
        "counts": counts,
    }


def describe(phase: dict[str, Any]) -> str:
    latency = phase["latency"]
    text = (
        f"{phase['system']} {phase['path']} {phase['rate']:g}/s: p50 {latency['p50']:.0f} ms, "
        f"p99 {latency['p99']:.0f} ms, reached {phase['reached']:.0f}/s, lost {phase['lost']}"
    )
    if phase["path"] != "emitter":
        text += f", failed {phase['failed']}, HTTP p50 {phase['http']['p50']:.0f} ms"
    return text
