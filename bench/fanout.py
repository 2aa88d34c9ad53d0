"""Fan-out: one event to K users, of whom C have one tab open, product and baseline.

K users are made in bulk; C of them (every K/C-th, so the last one is in the last part of
the product's fan-out) get one tab on each system. The product's emitter calls emit() once
with all K recipients and polls the database until all K notifications are committed;
the baseline's emitter loops over K `group_send`s, as a tutorial's view would. The tabs
record when each got its frame.
"""

from __future__ import annotations

import time
from typing import Any

from bench.meters import CpuMeter
from bench.numbers import cdf_points
from bench.session import Session, pipeline_cpu_s
from bench.stack import Child

SYSTEMS = ("naive", "product")


def run(session: Session) -> dict[str, Any]:
    options = session.options
    recipients = options.fanout
    made = session.product_emitter.ask(600, cmd="users", prefix="f", count=recipients)
    ids, names = made["ids"], made["names"]
    connected = min(options.fanout_connected, recipients)
    step = recipients // connected
    tab_index = list(range(0, recipients, step))[:connected]
    tokens = session.product_emitter.ask(600, cmd="tokens", user_ids=[ids[i] for i in tab_index])["tokens"]
    credentials = {
        "product": [[names[i], token, 1] for i, token in zip(tab_index, tokens, strict=True)],
        "naive": [[names[i], names[i], 1] for i in tab_index],
    }
    tabs: dict[str, Child] = {}
    expected: dict[str, dict[str, int]] = {system: {names[i]: 0 for i in tab_index} for system in SYSTEMS}
    events: list[dict[str, Any]] = []
    try:
        for system in SYSTEMS:
            tabs[system] = session.stack(system).child("bench.tabs", f"tabs-fanout-{system}")
            opened = tabs[system].ask(600, cmd="open", url=session.stack(system).ws_url, tabs=credentials[system])
            session.progress.step(f"fan-out: {system} {opened['opened']} tabs open")
        time.sleep(2)
        for repeat in range(1, options.fanout_repeats + 1):
            order = SYSTEMS if repeat % 2 else tuple(reversed(SYSTEMS))
            for system in order:
                events.append(one_event(session, system, repeat, ids, names, tabs[system], expected[system]))
                last = events[-1]
                session.progress.step(
                    f"fan-out {system} #{repeat}: first tab {last['first_tab_s']:.2f} s, "
                    f"last tab {last['last_tab_s']:.2f} s, missing {last['tabs_missing']}"
                )
                time.sleep(2)
    finally:
        for child in tabs.values():
            child.stop()
    return {"recipients": recipients, "connected": connected, "events": events}


def one_event(
    session: Session,
    system: str,
    repeat: int,
    ids: list[int],
    names: list[str],
    tabs: Child,
    expected: dict[str, int],
) -> dict[str, Any]:
    options = session.options
    tag = f"fanout {system} #{repeat}"
    meter = session.cpu_meter(system, tabs)
    before = meter.snapshot()
    if system == "product":
        timings = session.product_emitter.ask(180, cmd="fanout", user_ids=ids, tag=tag, timeout=120)
    else:
        timings = session.naive_emitter.ask(180, cmd="fanout", recipients=names, tag=tag, timeout=120)
    for name in expected:
        expected[name] += 1
    waited = tabs.ask(120, cmd="wait", expect=expected, timeout=options.settle)
    used = CpuMeter.seconds(before, meter.snapshot())
    latencies = sorted(tabs.ask(60, cmd="collect", tag=tag)["latencies"])
    nan = float("nan")
    return {
        "system": system,
        "repeat": repeat,
        "timings": timings,
        "first_tab_s": latencies[0] if latencies else nan,
        "median_tab_s": latencies[len(latencies) // 2] if latencies else nan,
        "last_tab_s": latencies[-1] if latencies else nan,
        "cdf": cdf_points(latencies),
        "tabs_missing": waited["tabs_missing"],
        "cpu": CpuMeter.percent(used),
        "cpu_s": pipeline_cpu_s(system, used),
    }
