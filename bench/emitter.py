"""The Django side of a benchmark, in a process of its own: users, tokens, emit() at a rate.

Started by the benchmarks with the product stack's environment (python -m bench.emitter)
and driven by JSON lines on stdin, one answer per line on stdout. It calls `emit()` as
application code does, in autocommit, so each event is its own transaction and is handed
to the workers on commit by this process's hand-off thread.

Each event carries its emit time in `data.body` (a float, time.time()), so the tab that
receives it can tell the end-to-end latency.
"""

from __future__ import annotations

import os
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Max  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench.pacing import paced  # noqa: E402
from bench.stack import answer, serve_json_lines  # noqa: E402
from delivery.credentials import token_issue  # noqa: E402
from delivery.deliver_events import deliver_events  # noqa: E402
from delivery.models import Inbox, Notification  # noqa: E402
from events import emit  # noqa: E402
from events.handoff import hand_off, publish_delivery  # noqa: E402
from events.models import Event  # noqa: E402

BATCH = 1000
PENDING = Event.Status.PENDING


def users(*, prefix: str, count: int, staff: bool = False) -> dict[str, Any]:
    """Create `count` users named prefix00000...; answers their ids and names in order."""
    started = time.monotonic()
    model = get_user_model()
    unusable = make_password(None)  # they log in with tokens only; hashing 10,000 passwords would take minutes
    names = [f"{prefix}{number:05d}" for number in range(count)]
    for start in range(0, count, BATCH):
        model.objects.bulk_create(
            [model(username=name, password=unusable, is_staff=staff) for name in names[start : start + BATCH]]
        )
    ids = dict(model.objects.filter(username__in=names).values_list("username", "id"))
    return {"ids": [ids[name] for name in names], "names": names, "seconds": time.monotonic() - started}


def tokens(*, user_ids: list[int]) -> dict[str, Any]:
    """One API token per user (the user's tabs share it), as `issue_token` makes them."""
    by_id = get_user_model().objects.in_bulk(user_ids)
    return {"tokens": [token_issue(user=by_id[user_id]) for user_id in user_ids]}


def rate(*, rate: float, seconds: float, recipients: list[int], tag: str) -> dict[str, Any]:
    """emit() `rate` events a second for `seconds`, each to one user, round robin."""
    connection.ensure_connection()
    answer({"started": time.time()})

    def send(user_id: int, body: str) -> None:
        emit("notice", recipients=[user_id], data={"title": tag, "body": body})

    result = paced(rate=rate, seconds=seconds, recipients=recipients, send=send)
    flushed_at = time.monotonic()
    result["handoff_flushed"] = hand_off.flush(timeout=120)
    result["handoff_flush_s"] = time.monotonic() - flushed_at
    return result


def drained(*, timeout: float) -> dict[str, Any]:
    """Wait until no event is pending (every notification stored and rung)."""
    started = time.monotonic()
    pending = initially = Event.objects.filter(status=PENDING).count()
    while pending and time.monotonic() - started < timeout:
        time.sleep(0.05)
        pending = Event.objects.filter(status=PENDING).count()
    return {
        "pending_at_start": initially,
        "pending": pending,
        "seconds": time.monotonic() - started,
        "dead": Event.objects.filter(status=Event.Status.DEAD).count(),
        "at": time.time(),
    }


def fanout(*, user_ids: list[int], tag: str, timeout: float) -> dict[str, Any]:
    """One event to every user in `user_ids`; answers when its notifications were stored."""
    count = len(user_ids)
    connection.ensure_connection()
    t0 = time.time()
    event = emit("notice", recipients=user_ids, data={"title": tag, "body": repr(t0)})
    emit_s = time.time() - t0
    hand_off.flush(timeout=30)
    stored = 0
    stored_s = None
    while time.time() - t0 < timeout:
        stored = Notification.objects.filter(event__in=Event.objects.filter(parent_id=event.pk)).count()
        stored += Notification.objects.filter(event_id=event.pk).count()
        if stored >= count:
            stored_s = time.time() - t0
            break
        time.sleep(0.02)
    parts = Event.objects.filter(parent_id=event.pk)
    while time.time() - t0 < timeout and parts.filter(status=PENDING).exists():
        time.sleep(0.02)
    event.refresh_from_db()
    finished = parts.aggregate(last=Max("finished_at"))["last"] or event.finished_at
    return {
        "t0": t0,
        "emit_s": emit_s,
        "stored": stored,
        "all_stored_s": stored_s,
        "parts": parts.count(),
        "split_s": event.finished_at.timestamp() - t0 if event.finished_at and event.status == "split" else None,
        "finished_s": finished.timestamp() - t0 if finished else None,
        "status": event.status,
    }


def fill(*, user_id: int, count: int, tag: str, timeout: float) -> dict[str, Any]:
    """`count` events to one user as fast as emit() goes, then wait until all are delivered."""
    started = time.monotonic()
    for number in range(count):
        emit("notice", recipients=[user_id], data={"title": tag, "body": str(number)})
    hand_off.flush(timeout=60)
    waited = drained(timeout=timeout)
    return {"seconds": time.monotonic() - started, "pending": waited["pending"]}


def last_seqs(*, user_ids: list[int]) -> dict[str, Any]:
    found = dict(Inbox.objects.filter(user_id__in=user_ids).values_list("user_id", "last_seq"))
    return {"last_seq": {str(user_id): found.get(user_id, 0) for user_id in user_ids}}


def pending() -> dict[str, Any]:
    """Events not yet delivered, and of those, how many no worker ever claimed."""
    waiting = Event.objects.filter(status=PENDING)
    return {"pending": waiting.count(), "never_claimed": waiting.filter(claimed_by="").count()}


def newest_delivered(*, timeout: float) -> dict[str, Any]:
    """Wait until the newest event is no longer pending; answers its status and the wait."""
    started = time.monotonic()
    event = Event.objects.order_by("-pk").first()
    while event is not None and event.status == PENDING and time.monotonic() - started < timeout:
        time.sleep(0.05)
        event.refresh_from_db()
    return {"status": event.status if event else None, "seconds": time.monotonic() - started}


# --- costs in this process, without Celery ---------------------------------------------------


def _timed(call: Any, items: list[Any]) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    walls = []
    for item in items:
        started = time.perf_counter()
        call(item)
        walls.append(time.perf_counter() - started)
    walls.sort()
    return {
        "cpu_ms": 1000 * (time.process_time() - cpu) / len(items),
        "wall_ms": 1000 * (time.perf_counter() - wall) / len(items),
        "wall_ms_p50": 1000 * walls[len(walls) // 2],
        "wall_ms_p99": 1000 * walls[min(int(len(walls) * 0.99), len(walls) - 1)],
    }


def _statements(call: Any, item: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        call(item)
    return len(captured.captured_queries)


def inprocess(*, events: int, users_count: int, batch: int) -> dict[str, Any]:
    """CPU, wall time and SQL statements of each step for one event, in this process:
    emit() in autocommit and inside atomic(), the hand-off's publish, deliver_events for
    a lone event and for events in batches. The worker must be stopped meanwhile."""
    made = users(prefix="c", count=users_count)["ids"]
    real_publish, hand_off.publish = hand_off.publish, lambda event_ids: None  # measured apart below
    found: dict[str, Any] = {}

    def emit_one(number: int) -> int:
        return emit("notice", recipients=[made[number % users_count]], data={"title": "cost", "body": "0"}).pk

    def emit_in_atomic(number: int) -> None:
        with transaction.atomic():
            Event.objects.exists()  # the caller's own work, so BEGIN is not emit's
            started = time.perf_counter()
            emit_one(number)
            inside.append(time.perf_counter() - started)

    def deliver_all(_: Any = None) -> int:
        return deliver_events(token="bench-inprocess", budget_s=600)  # noqa: S106 (a claim name)

    try:
        emit_one(0)
        found["emit"] = _timed(emit_one, list(range(events)))
        found["emit"]["statements"] = _statements(emit_one, 0)
        inside: list[float] = []
        found["emit_atomic"] = _timed(emit_in_atomic, list(range(events)))
        inside.sort()
        found["emit_atomic"]["call_ms_p50"] = 1000 * inside[len(inside) // 2]
        found["emit_atomic"]["statements"] = _statements(emit_in_atomic, 0)
        deliver_all()  # what the steps above emitted

        # One event at a time: what a lone event costs when the pipeline is idle.
        lone: list[float] = []
        cpu_lone = 0.0
        statements_lone = 0
        for number in range(events // 3):
            emit_one(number)
            cpu, wall = time.process_time(), time.perf_counter()
            if number == 0:
                statements_lone = _statements(deliver_all, None)
            else:
                deliver_all()
            cpu_lone += time.process_time() - cpu
            lone.append(time.perf_counter() - wall)
        found["deliver_lone"] = {
            "cpu_ms": 1000 * cpu_lone / len(lone),
            "wall_ms": 1000 * sum(lone) / len(lone),
            "statements": statements_lone,
        }

        # A backlog: `batch` events to distinct users, claimed and stored in batches.
        for number in range(batch):
            emit_one(number)
        cpu, wall = time.process_time(), time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            delivered = deliver_all()
        found["deliver_batch"] = {
            "cpu_ms": 1000 * (time.process_time() - cpu) / max(delivered, 1),
            "wall_ms": 1000 * (time.perf_counter() - wall) / max(delivered, 1),
            "statements": len(captured.captured_queries),
            "events": delivered,
        }

        ids = [[number] for number in range(events // 3)]
        found["publish"] = _timed(publish_delivery, ids)
    finally:
        hand_off.publish = real_publish
    return found


if __name__ == "__main__":
    serve_json_lines(
        {
            "users": users,
            "tokens": tokens,
            "rate": rate,
            "drained": drained,
            "fanout": fanout,
            "fill": fill,
            "pending": pending,
            "last_seqs": last_seqs,
            "newest_delivered": newest_delivered,
            "inprocess": inprocess,
        }
    )
