"""The Django side of a benchmark, in a process of its own: users, tokens, emit() at a rate.

Started by the benchmarks with the stack's environment (python -m bench.emitter) and driven
by JSON lines on stdin, one answer per line on stdout. It calls `emit()` as application
code does, in autocommit, so each event is its own transaction and is handed to Celery on
commit by this process's hand-off thread: the socket process carries frames only, as
MEASURED.md advises for heavy ingest.

Each event carries its emit time in `data.body` (a float, time.time()), so the tab that
receives it can tell the end-to-end latency.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection  # noqa: E402

from bench.stack import answer, serve_json_lines  # noqa: E402
from delivery.credentials import token_issue  # noqa: E402
from delivery.models import Inbox, Notification  # noqa: E402
from events import emit  # noqa: E402
from events.handoff import hand_off  # noqa: E402
from events.models import Event  # noqa: E402

BATCH = 1000


def users(*, prefix: str, count: int, staff: bool = False) -> dict[str, Any]:
    """Create `count` users named prefix00000...; answers their ids in order."""
    started = time.monotonic()
    model = get_user_model()
    unusable = make_password(None)  # they log in with tokens only; hashing 10,000 passwords would take minutes
    names = [f"{prefix}{number:05d}" for number in range(count)]
    for start in range(0, count, BATCH):
        model.objects.bulk_create(
            [model(username=name, password=unusable, is_staff=staff) for name in names[start : start + BATCH]]
        )
    ids = dict(model.objects.filter(username__in=names).values_list("username", "id"))
    return {"ids": [ids[name] for name in names], "seconds": time.monotonic() - started}


def tokens(*, user_ids: list[int]) -> dict[str, Any]:
    """One API token per user (the user's tabs share it), as `issue_token` makes them."""
    model = get_user_model()
    by_id = model.objects.in_bulk(user_ids)
    return {"tokens": [token_issue(user=by_id[user_id]) for user_id in user_ids]}


def rate(*, rate: float, seconds: float, user_ids: list[int], tag: str) -> dict[str, Any]:
    """emit() `rate` events a second for `seconds`, each to one user, round robin."""
    total = int(rate * seconds)
    per_user: Counter[int] = Counter()
    emit_s: list[float] = []
    behind_max = 0.0
    connection.ensure_connection()
    answer({"started": time.time()})
    start = time.monotonic()
    for number in range(total):
        due = start + number / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        else:
            behind_max = max(behind_max, now - due)
        user_id = user_ids[number % len(user_ids)]
        t0 = time.time()
        emit("notice", recipients=[user_id], data={"title": tag, "body": repr(t0)})
        emit_s.append(time.time() - t0)
        per_user[user_id] += 1
    elapsed = time.monotonic() - start
    flushed = hand_off.flush(timeout=120)
    emit_sorted = sorted(emit_s)
    return {
        "emitted": total,
        "seconds": elapsed,
        "achieved": total / elapsed if elapsed else 0.0,
        "behind_max_s": behind_max,
        "emit_ms_p50": 1000 * statistics.median(emit_sorted),
        "emit_ms_max": 1000 * emit_sorted[-1],
        "handoff_done_after_s": time.monotonic() - start - elapsed,
        "handoff_flushed": flushed,
        "per_user": {str(user_id): n for user_id, n in per_user.items()},
        "ended": time.time(),
    }


def drained(*, timeout: float) -> dict[str, Any]:
    """Wait until no event is pending (every notification stored and rung)."""
    started = time.monotonic()
    pending = Event.objects.filter(status=Event.Status.PENDING).count()
    initially = pending
    while pending and time.monotonic() - started < timeout:
        time.sleep(0.1)
        pending = Event.objects.filter(status=Event.Status.PENDING).count()
    return {
        "pending_at_start": initially,
        "pending": pending,
        "seconds": time.monotonic() - started,
        "dead": Event.objects.filter(status=Event.Status.DEAD).count(),
    }


def fanout(*, user_ids: list[int], tag: str, timeout: float) -> dict[str, Any]:
    """One event to every user in `user_ids`; answers when it was stored, seen from here."""
    count = len(user_ids)
    connection.ensure_connection()
    t0 = time.time()
    event = emit("notice", recipients=user_ids, data={"title": tag, "body": repr(t0)})
    emit_s = time.time() - t0
    hand_off.flush(timeout=30)
    handed_off_s = time.time() - t0
    stored_s = None
    stored = 0
    while time.time() - t0 < timeout:
        stored = Notification.objects.filter(event_id=event.pk).count()
        if stored >= count:
            stored_s = time.time() - t0
            break
        time.sleep(0.02)
    while time.time() - t0 < timeout:
        event.refresh_from_db()
        if event.status != Event.Status.PENDING:
            break
        time.sleep(0.02)
    created = Notification.objects.filter(event_id=event.pk).values_list("created_at", flat=True)
    first_row = min(created).timestamp() - t0 if stored else None
    last_row = max(created).timestamp() - t0 if stored else None
    return {
        "t0": t0,
        "event_id": event.pk,
        "emit_s": emit_s,
        "handed_off_s": handed_off_s,
        "task_began_s": event.dispatched_at.timestamp() - t0 if event.dispatched_at else None,
        "stored": stored,
        "all_stored_s": stored_s,
        "first_row_s": first_row,
        "last_row_s": last_row,
        "finished_s": event.finished_at.timestamp() - t0 if event.finished_at else None,
        "status": event.status,
    }


def last_seqs(*, user_ids: list[int]) -> dict[str, Any]:
    found = dict(Inbox.objects.filter(user_id__in=user_ids).values_list("user_id", "last_seq"))
    return {"last_seq": {str(user_id): found.get(user_id, 0) for user_id in user_ids}}


def undispatched() -> dict[str, Any]:
    """Events still pending that were never handed to the broker (the relay's work)."""
    pending = Event.objects.filter(status=Event.Status.PENDING)
    return {"pending": pending.count(), "never_handed_off": pending.filter(dispatched_at__isnull=True).count()}


def newest_delivered(*, timeout: float) -> dict[str, Any]:
    """Wait until the newest event is no longer pending; answers its status and the wait."""
    started = time.monotonic()
    event = Event.objects.order_by("-pk").first()
    while event is not None and event.status == Event.Status.PENDING and time.monotonic() - started < timeout:
        time.sleep(0.05)
        event.refresh_from_db()
    return {"status": event.status if event else None, "seconds": time.monotonic() - started}


def inprocess(*, events: int, users: int) -> dict[str, Any]:
    """What emit(), the hand-off's publish and a one-recipient delivery cost in this process,
    without Celery: CPU and wall time per call, and the SQL statements Django sent for one."""
    from delivery.fanout import event_deliver
    from django.test.utils import CaptureQueriesContext

    from events.handoff import publish_to_celery

    made = globals()["users"](prefix="c", count=users)["ids"]
    real_publish, hand_off.publish = hand_off.publish, lambda event_id: None  # measured apart below

    def timed(call: Any, items: list[Any]) -> dict[str, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for item in items:
            call(item)
        return {
            "cpu_ms": 1000 * (time.process_time() - cpu) / len(items),
            "wall_ms": 1000 * (time.perf_counter() - wall) / len(items),
        }

    def statements(call: Any, item: Any) -> int:
        with CaptureQueriesContext(connection) as captured:
            call(item)
        return len(captured.captured_queries)

    def emit_one(number: int) -> int:
        return emit("notice", recipients=[made[number % users]], data={"title": "cost", "body": "0"}).pk

    try:
        emit_one(0)
        found: dict[str, Any] = {"emit": timed(emit_one, list(range(events)))}
        found["emit"]["statements"] = statements(emit_one, 0)
        ids = [emit_one(number) for number in range(2 * events + 2)]
        event_deliver(event_id=ids[0])
        found["deliver"] = timed(lambda event_id: event_deliver(event_id=event_id), ids[1 : events + 1])
        found["deliver"]["statements"] = statements(lambda event_id: event_deliver(event_id=event_id), ids[-1])
        found["publish"] = timed(publish_to_celery, ids[events + 1 : 2 * events + 1])
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
            "last_seqs": last_seqs,
            "undispatched": undispatched,
            "newest_delivered": newest_delivered,
            "inprocess": inprocess,
        }
    )
