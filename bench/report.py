"""The Markdown report of a run: one table per scenario, each product figure beside the baseline's."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.numbers import ms, ratio, table

PATHS = {
    "emitter": "an emitting process beside the web process",
    "http": "HTTP ingest (POST /api/events/) to the web process that holds the sockets",
    "http-api": "HTTP ingest to a separate API process (a second daphne, no sockets)",
}


def render(run: dict[str, Any], results: dict[str, Any], plots: dict[str, str]) -> str:
    out = [f"# Benchmark run, {run['started']}", "", _machine(run)]
    if "delivery" in results:
        out += _delivery(results["delivery"], plots)
    if "fanout" in results:
        out += _fanout(results["fanout"], plots)
    if "resume" in results:
        out += _resume(results["resume"])
    if "resume_flood" in results:
        out += _resume_flood(results["resume_flood"])
    if "servers" in results:
        out += _servers(results["servers"], plots)
    if "emit_cost" in results:
        out += _emit_cost(results["emit_cost"])
    if "task_cost" in results:
        out += _task_cost(results["task_cost"])
    out += _profiles(results)
    out += _targets(results)
    return "\n".join(out) + "\n"


def _machine(run: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in run["packages"].items())
    minutes = f", took {run['minutes']:.1f} min" if "minutes" in run else ""
    return (
        f"`{run['command']}` (git {run['git']}{minutes})  \n"
        f"{run['cores']} cores ({run['cpu']}), {run['memory_gib']} GiB, {run['os']}, load average at start "
        f"{' '.join(map(str, run['load_at_start']))}; Python {run['python']}, PostgreSQL {run['postgres']}, "
        f"redis-server {run['redis_server']}  \n{packages}\n\n"
        "Ratios are product / naive baseline, measured in this run: below x1 the product is faster (latency, "
        "CPU), above x1 it carries more (rates).\n"
    )


def _pair(naive: float | None, product: float | None, unit: Any = ms) -> str:
    return f"{unit(naive)} / {unit(product)} ({ratio(product, naive)})"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}/s"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _delivery(delivery: dict[str, Any], plots: dict[str, str]) -> list[str]:
    phases = delivery["phases"]
    out = ["## Delivery: 100 users x 10 tabs, one event to one user each", ""]
    sockets = delivery["sockets"]
    out.append(
        table(
            ["system", "tabs open (failed)", "connect time", "web RSS idle", "with tabs", "per socket", "at end"],
            [
                [
                    system,
                    f"{s['opened']} ({s['failed']})",
                    f"{s['connect_s']:.1f} s",
                    f"{s['rss_idle_mib']:.0f} MiB",
                    f"{s['rss_connected_mib']:.0f} MiB",
                    f"{s['kib_per_socket']:.0f} KiB",
                    f"{s.get('rss_end_mib', 0):.0f} MiB",
                ]
                for system, s in sockets.items()
            ],
        )
    )
    idle = sockets.get("product", {}).get("idle_cpu")
    if idle:
        out.append(
            f"\nProduct, sockets open and nothing to deliver: web {idle['web']:.1f}%, worker {idle['worker']:.1f}%, "
            f"beat {idle['beat']:.1f}%, postgres {idle['postgres']:.1f}% of a core (reconcile, sweep)."
        )
    for path in PATHS:
        chosen = [phase for phase in phases if phase["path"] == path]
        if not chosen:
            continue
        out += ["", f"### Fed by {PATHS[path]}", ""]
        headers = ["offered", "e2e p50 naive / product", "e2e p99", "reached", "lost frames n / p"]
        if path != "emitter":
            headers += ["failed requests n / p", "HTTP p50", "HTTP p99"]
        headers += ["CPU per event"]
        rows = []
        for rate in sorted({phase["rate"] for phase in chosen}):
            naive = _find(chosen, "naive", rate)
            product = _find(chosen, "product", rate)
            row = [
                f"{rate:g}/s",
                _pair(_get(naive, "latency", "p50"), _get(product, "latency", "p50")),
                _pair(_get(naive, "latency", "p99"), _get(product, "latency", "p99")),
                _pair(_get(naive, "reached"), _get(product, "reached"), _rate),
                f"{_get(naive, 'lost')} / {_get(product, 'lost')}",
            ]
            if path != "emitter":
                row += [
                    f"{_get(naive, 'failed')} / {_get(product, 'failed')} of {_get(product, 'sent')}",
                    _pair(_get(naive, "http", "p50"), _get(product, "http", "p50")),
                    _pair(_get(naive, "http", "p99"), _get(product, "http", "p99")),
                ]
            row.append(_pair(_get(naive, "cpu_ms_per_event"), _get(product, "cpu_ms_per_event"), _cpu))
            rows.append(row)
        out.append(table(headers, rows))
        if f"cdf_{path}" in plots:
            out.append(f"\n![latency CDF, {PATHS[path]}]({plots[f'cdf_{path}']})")
        out += ["", _phase_details(chosen)]
    if "throughput" in plots:
        out.append(f"\n![delivered against offered events/s]({plots['throughput']})")
    connections = [phase for phase in phases if phase["system"] == "product" and "pg_connections" in phase]
    if connections:
        out += ["", "### PostgreSQL connections held by the product's processes", ""]
        out.append(_connections(connections))
    return out


def _phase_details(phases: list[dict[str, Any]]) -> str:
    rows = []
    for phase in phases:
        cpu = phase["cpu"]
        tasks = phase.get("tasks")
        rows.append(
            [
                f"{phase['system']} {phase['rate']:g}/s",
                f"{phase['sent']} / {phase['accepted']} / {phase['events_delivered']}",
                f"{phase['send_rate']:.0f}/s",
                ms(phase["latency"]["max"]),
                f"{ms(phase['spread']['p50'])} / {ms(phase['spread']['p99'])}",
                f"{phase['duplicates']}/{phase['gaps']}",
                f"{cpu.get('web', 0):.0f} / {cpu.get('api', 0):.0f} / {cpu.get('worker', 0):.0f} / "
                f"{cpu.get('postgres', 0):.0f} / "
                f"{cpu.get('redis', 0) + cpu.get('broker', 0):.0f} / {cpu.get('emitter', 0):.0f}",
                f"{cpu['machine']:.0f} ({cpu['others']:.0f})",
                "-" if not tasks else f"{tasks['count']}, {tasks['events_per_task']:.1f}, {ms(tasks['run']['p50'])}",
            ]
        )
    return table(
        [
            "phase",
            "sent / accepted / delivered",
            "send rate",
            "e2e max",
            "tab spread p50 / p99",
            "dup/gap",
            "CPU % web / api / worker / pg / redis / emitter",
            "machine % (not ours)",
            "tasks, events each, run p50",
        ],
        rows,
    )


def _connections(phases: list[dict[str, Any]]) -> str:
    rows = []
    for phase in phases:
        held = phase["pg_connections"]
        by_process = ", ".join(
            f"{name} {value['max']:.0f}" for name, value in held.items() if name != "all" and value["max"]
        )
        rows.append(
            [
                f"{phase['path']} {phase['rate']:g}/s",
                f"{held['all']['max']:.0f} (mean {held['all']['mean']:.1f}, "
                f"active at most {held['all']['active_max']:.0f})",
                by_process,
                phase.get("pg_opened", "-"),
            ]
        )
    return (
        table(
            ["phase", "connections to the database, at most", "at most, per client process", "connections opened"],
            rows,
        )
        + "\n\nSampled from pg_stat_activity once a second; each connection is attributed to the process "
        "that owns its client port ('unknown': closed by its client before it could be looked up). "
        "Connections opened: PostgreSQL's session counter over the phase."
    )


def _fanout(fanout: dict[str, Any], plots: dict[str, str]) -> list[str]:
    out = ["", f"## Fan-out: one event to {fanout['recipients']:,} users, {fanout['connected']:,} with a tab open", ""]
    rows = []
    for event in fanout["events"]:
        timings = event["timings"]
        rows.append(
            [
                event["system"],
                event["repeat"],
                ms(1000 * event["first_tab_s"]),
                ms(1000 * event["median_tab_s"]),
                ms(1000 * event["last_tab_s"]),
                ms(1000 * timings["all_stored_s"]) if timings.get("all_stored_s") else "-",
                timings.get("parts", "-"),
                event["tabs_missing"],
                f"{event['cpu_s']:.2f} s",
            ]
        )
    out.append(
        table(
            ["system", "#", "first tab", "median tab", "last tab", "all stored", "parts", "tabs missing", "CPU"], rows
        )
    )
    naive = [event for event in fanout["events"] if event["system"] == "naive"]
    product = [event for event in fanout["events"] if event["system"] == "product"]
    if naive and product:
        mean = lambda events, key: sum(e[key] for e in events) / len(events)  # noqa: E731
        out.append(
            f"\nMean last tab: naive {ms(1000 * mean(naive, 'last_tab_s'))}, product "
            f"{ms(1000 * mean(product, 'last_tab_s'))} "
            f"({ratio(mean(product, 'last_tab_s'), mean(naive, 'last_tab_s'))}); "
            f"first tab {ratio(mean(product, 'first_tab_s'), mean(naive, 'first_tab_s'))}."
        )
    if "fanout" in plots:
        out.append(f"\n![fan-out arrival times]({plots['fanout']})")
    return out


def _resume(resume: dict[str, Any]) -> list[str]:
    rows = [
        [
            number,
            f"{t['received']} / {t['wanted']}",
            ms(1000 * t["hello_s"]),
            ms(1000 * t["all_s"]),
            ms(1000 * t["resumed_s"]),
        ]
        for number, t in enumerate(resume["tries"], start=1)
    ]
    return [
        "",
        f"## Resume: a tab that missed {resume['missed']:,} notifications",
        "",
        table(["#", "received / missed", "connect -> hello", "resume -> all received", "resume -> resumed"], rows),
        "\nProduct only: the baseline stores nothing, so what a tab missed is gone.",
    ]


def _resume_flood(flood: dict[str, Any]) -> list[str]:
    rows = []
    for row in flood["rows"]:
        after = row.get("after_seqs")
        server = row.get("server", {})
        closed = ", ".join(f"{count} x {why}" for why, count in row.get("server_closed", {}).items()) or "none"
        unread = [value for value in row.get("unread_bytes", []) if value is not None]
        states = Counter(row.get("tcp_states", []))
        rows.append(
            [
                row["label"],
                f"{row['resumes']} (after_seq {after[0]}-{after[1]})" if after else row["resumes"],
                f"{row['before_mib']:.0f}",
                f"{row['peak_mib']:.0f} (+{row['peak_mib'] - row['before_mib']:.0f})",
                f"{row['after_mib']:.0f} (+{row['after_mib'] - row['before_mib']:.0f})",
                f"{server.get('replays', float('nan')):.0f} / {server.get('replayed', float('nan')):,.0f}",
                closed,
                ", ".join(f"{count} {state}" for state, count in states.items()) or "-",
                f"{min(unread) / 1024:.0f}-{max(unread) / 1024:.0f}" if unread else "-",
                ", ".join(sorted({str(code) for code in row.get("close_codes", [])})) or "-",
            ]
        )
    return [
        "",
        f"## Resume flood: {flood['sockets']} sockets that stop reading, over an inbox of {flood['inbox']:,}",
        "",
        table(
            [
                "run",
                "resumes per socket",
                "web RSS before (MiB)",
                "peak",
                "10 s after the drop",
                "replays / notifications replayed (server)",
                "closed by the server (its log)",
                "TCP state at the drop",
                "unread at the drop (KiB per socket)",
                "close code seen",
            ],
            rows,
        ),
        "\nThe first row is the baseline: the same sockets, opened and dropped without a frame. The sockets "
        "read nothing: the server's side comes from its /metrics and log, the socket's from its TCP state and "
        "kernel receive queue just before the drop (None: no close frame was read).",
    ]


def _servers(servers: dict[str, Any], plots: dict[str, str]) -> list[str]:
    rows_in = servers["servers"]
    daphne = next((row for row in rows_in if row["server"] == "daphne"), None)
    rows = []
    for row in rows_in:
        for phase in row["phases"]:
            base = _find(daphne["phases"], "product", phase["rate"]) if daphne else None
            rows.append(
                [
                    row["server"],
                    f"{phase['rate']:g}/s",
                    f"{row['connect_s']:.1f} s",
                    f"{row['kib_per_socket']:.0f} KiB",
                    f"{ms(phase['latency']['p50'])} ({ratio(phase['latency']['p50'], _get(base, 'latency', 'p50'))})",
                    f"{ms(phase['latency']['p99'])} ({ratio(phase['latency']['p99'], _get(base, 'latency', 'p99'))})",
                    f"{phase['reached']:.0f}/s",
                    phase["lost"],
                    f"{phase['cpu'].get('web', 0):.0f}% ({ratio(phase['cpu'].get('web'), _get(base, 'cpu', 'web'))})",
                ]
            )
    out = [
        "",
        "## Web servers: the same project.asgi:application under daphne, uvicorn and granian",
        "",
        table(
            [
                "server",
                "offered",
                "1,000 tabs open in",
                "per socket",
                "e2e p50 (vs daphne)",
                "e2e p99 (vs daphne)",
                "reached",
                "lost",
                "web CPU (vs daphne)",
            ],
            rows,
        ),
    ]
    if "servers" in plots:
        out.append(f"\n![latency CDF per server]({plots['servers']})")
    return out


def _emit_cost(cost: dict[str, Any]) -> list[str]:
    labels = cost["labels"]
    rows = []
    for kind, label in labels.items():
        up = cost["broker up"].get(kind)
        down = cost["broker down"].get(kind)
        rows.append(
            [
                kind.split()[0],
                label,
                ms(up["latency"]["p50"]),
                ms(up["latency"]["p99"]),
                ms(down["latency"]["p50"]) if down else "-",
                ms(down["latency"]["p99"]) if down else "-",
                ", ".join(f"{n}x {s}" for s, n in sorted(up["statuses"].items())),
            ]
        )
    up = cost["broker up"]
    product_event = up["product event"]["latency"]
    naive_event = up["naive event"]["latency"]
    after = cost["after restart"]
    return [
        "",
        "## What emitting costs a request (sequential requests, one keep-alive connection each)",
        "",
        table(["system", "request", "broker up p50", "p99", "broker down p50", "p99", "answers (up)"], rows),
        f"\nPOST /api/events/: product p50 {ms(product_event['p50'])}, baseline {ms(naive_event['p50'])} "
        f"({ratio(product_event['p50'], naive_event['p50'])}); p99 {ratio(product_event['p99'], naive_event['p99'])}. "
        f"With the broker down {cost['while down']['pending']} events were pending "
        f"({cost['while down']['never_claimed']} never claimed); after it came back, a message was "
        f"{cost['newest after restart']['status']} {cost['newest after restart']['seconds']:.1f} s later and "
        f"{after['pending']} were left pending {after['seconds']:.1f} s later (the sweep delivers what the "
        f"hand-off could not). Worker alive after the broker restart: {cost['worker alive']}." + _worker_restart(cost),
    ]


def _worker_restart(cost: dict[str, Any]) -> str:
    if cost["worker alive"]:
        return ""
    return (
        " It had died (kombu's restore_unacked, see the README) and was started again before the "
        "message was sent, as a supervisor would."
    )


def _task_cost(cost: dict[str, Any]) -> list[str]:
    labels = {
        "emit": "emit() to one user, autocommit",
        "emit_atomic": "emit() inside the caller's atomic() (BEGIN + a read + emit + COMMIT)",
        "publish": "publish_delivery: one deliver_events task to the broker (the hand-off thread)",
        "deliver_lone": "deliver_events, a lone event (claim, render, store, ring)",
        "deliver_batch": f"deliver_events, a backlog of {cost['deliver_batch']['events']} events, per event",
    }
    rows = [
        [label, f"{cost[key]['cpu_ms']:.2f} ms", f"{cost[key]['wall_ms']:.2f} ms", cost[key].get("statements", "-")]
        for key, label in labels.items()
    ]
    return [
        "",
        "## Cost per event in one process, without Celery",
        "",
        table(["step", "CPU", "wall", "SQL statements"], rows),
        f"\nThe emit() call itself inside atomic(): p50 {cost['emit_atomic']['call_ms_p50']:.2f} ms (what emitting "
        f"adds to a request that already has a transaction); in autocommit p50 {cost['emit']['wall_ms_p50']:.2f} ms. "
        "Statements for the backlog are for the whole backlog.",
    ]


def _profiles(results: dict[str, Any]) -> list[str]:
    """py-spy's view of the product's web and worker processes in the profiled phases."""
    out: list[str] = []
    phases = results.get("delivery", {}).get("phases", []) + [
        phase for row in results.get("servers", {}).get("servers", []) for phase in row["phases"]
    ]
    for phase in phases:
        for process, profile in phase.get("profile", {}).items():
            if not profile["samples"]:
                continue
            packages = ", ".join(f"{name} {share:.0f}%" for name, share in profile["packages"])
            functions = ", ".join(f"`{name}` {share:.0f}%" for name, share in profile["functions"][:5])
            ours = ", ".join(f"`{name}` {share:.0f}%" for name, share in profile.get("ours_inclusive", [])[:6])
            out.append(
                f"- **{process}**, {phase['path']} {phase['rate']:g}/s ({profile['samples']} samples): "
                f"{packages}. Innermost functions: {functions}. Our code on the stack: {ours or 'none'}."
            )
    if not out:
        return []
    return [
        "",
        "## Where the product's processes spend their CPU (py-spy, innermost frame)",
        "",
        "Profiled phases run slower than unprofiled ones; their latency figures above are not the ones to quote.",
        "",
        *out,
    ]


def _targets(results: dict[str, Any]) -> list[str]:
    """Issue 7's targets, each with what this run measured."""
    rows: list[list[str]] = []
    delivery = results.get("delivery", {}).get("phases", [])
    em200 = _find(delivery, "product", 200, "emitter")
    http200 = _find(delivery, "product", 200, "http-api") or _find(delivery, "product", 200, "http")
    em500 = _find(delivery, "product", 500, "emitter")
    if em200:
        p99 = em200["latency"]["p99"]
        rows.append(
            [
                "200/s, emitting process: p99 < 50 ms, nothing lost",
                f"p99 {ms(p99)}, lost {em200['lost']}",
                _ok(p99 < 50 and not em200["lost"]),
            ]
        )
    if http200:
        good = not http200["failed"] and http200["http"]["p99"] < 50
        rows.append(
            [
                f"200/s over HTTP ({http200['path']}): every request 2xx, HTTP p99 < 50 ms",
                f"{http200['failed']} failed, HTTP p99 {ms(http200['http']['p99'])}",
                _ok(good),
            ]
        )
    if em500:
        p99 = em500["latency"]["p99"]
        rows.append(
            [
                "500/s: nothing lost, p99 < 250 ms",
                f"p99 {ms(p99)}, reached {em500['reached']:.0f}/s, lost {em500['lost']}",
                _ok(p99 < 250 and not em500["lost"]),
            ]
        )
    held = [
        p["rate"]
        for p in delivery
        if p["system"] == "product" and p["path"] == "emitter" and p["latency"]["p99"] < 100 and not p["lost"]
    ]
    if delivery:
        rows.append(
            [
                "highest rate with p99 < 100 ms (emitting process)",
                f"{max(held):g}/s" if held else "none of those run",
                "reported",
            ]
        )
    fanout = [e for e in results.get("fanout", {}).get("events", []) if e["system"] == "product"]
    if fanout:
        last = max(e["last_tab_s"] for e in fanout)
        rows.append(["10,000 recipients: last connected tab < 1 s", f"worst {last:.2f} s", _ok(last < 1)])
    task = results.get("task_cost")
    if task:
        adds = task["emit_atomic"]["call_ms_p50"]
        rows.append(["emitting adds < 1 ms p50 to a request", f"emit() in atomic p50 {adds:.2f} ms", _ok(adds < 1)])
    resume = results.get("resume", {}).get("tries", [])
    if resume:
        worst = max(t["all_s"] for t in resume)
        rows.append(["1,000 missed notifications within 1 s of resuming", f"worst {worst:.2f} s", _ok(worst < 1)])
    sockets = results.get("delivery", {}).get("sockets", {}).get("product")
    if sockets:
        kib = sockets["kib_per_socket"]
        rows.append(["idle socket no more than ~40 KiB", f"{kib:.0f} KiB", _ok(kib <= 44)])
    for phase in (em200, em500):
        if phase:
            cost = phase["cpu_ms_per_event"]
            rows.append(
                [
                    f"CPU per delivered event < 3 ms (all processes, {phase['rate']:g}/s)",
                    f"{cost:.2f} ms",
                    _ok(cost < 3),
                ]
            )
    if not rows:
        return []
    return ["", "## Issue 7's targets in this run", "", table(["target", "measured", ""], rows)]


def _ok(good: bool) -> str:
    return "met" if good else "**missed**"


def _find(phases: list[dict[str, Any]], system: str, rate: float, path: str | None = None) -> dict[str, Any] | None:
    for phase in phases:
        if phase["system"] == system and phase["rate"] == rate and (path is None or phase["path"] == path):
            return phase
    return None


def _get(phase: dict[str, Any] | None, *keys: str) -> Any:
    value: Any = phase
    for key in keys:
        if value is None:
            return None
        value = value.get(key)
    return value
