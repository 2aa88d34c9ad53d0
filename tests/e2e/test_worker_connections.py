"""End to end, PostgreSQL: a Celery worker keeps its database connection across tasks.

Celery's Django fix-up closes the connection around every task unless CELERY_DB_REUSE_MAX
is set (project/celery.py); each delivery then paid a new PostgreSQL connection.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from events import emit
from tests.conftest import wait_until_delivered
from tests.live import LiveStack

pytestmark = pytest.mark.live

EVENTS = 40


def sessions_opened() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_forty_deliveries_one_after_another_open_a_handful_of_connections(
    private_stack: LiveStack, transactional_db: None, alice
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL sessions (pg_stat_database); SQLite has no connections to count")
    private_stack.start_worker(concurrency=2)
    emit("notice", recipients=[alice], data={"title": "warm-up"})
    wait_until_delivered()
    time.sleep(0.6)  # pg_stat_database is refreshed about twice a second
    before = sessions_opened()

    for number in range(EVENTS):
        emit("notice", recipients=[alice], data={"title": f"n {number}"})
        wait_until_delivered()  # one task each: nothing to batch
    time.sleep(0.6)
    opened = sessions_opened() - before

    # Before the fix: one per task, so 40 or more. Now: the pool processes' own, the sweep's,
    # and this test's, at most.
    assert opened < 10, f"{opened} connections opened for {EVENTS} deliveries"
