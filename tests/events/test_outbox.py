"""The outbox's state machine: insert, claim with a lease, defer, release, deliver, split, give up."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from events.models import Event
from events.outbox import (
    Claim,
    event_dead_letter,
    event_insert,
    event_split,
    events_claim,
    events_defer,
    events_earlier_in_flight,
    events_extend_lease,
    events_mark_delivered,
    events_release_crashed,
    relay_heartbeat,
    relay_last_beat,
)

pytestmark = pytest.mark.django_db

LEASE_S = 15.0
MAX_ATTEMPTS = 3


def make_event(*recipients: int, **fields: Any) -> Event:
    return Event.objects.create(type="notice", data={"title": "t"}, recipient_ids=list(recipients), **fields)


def claim(holder: str = "worker-1", *, max_events: int = 100, max_recipients: int = 1000) -> Claim:
    return events_claim(
        token=holder, max_events=max_events, max_recipients=max_recipients, lease_s=LEASE_S, max_attempts=MAX_ATTEMPTS
    )


def ago(seconds: float) -> Any:
    return timezone.now() - timedelta(seconds=seconds)


def statements(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries]


# --- insert ---------------------------------------------------------------------------------


@pytest.mark.parametrize("in_atomic", [False, True])
@pytest.mark.parametrize("key", [None, "order:1"])
def test_an_event_is_written_in_one_insert_and_nothing_else(alice, in_atomic: bool, key: str | None) -> None:
    event = Event(type="notice", data={"title": "t"}, recipient_ids=[alice.pk], idempotency_key=key)

    with transaction.atomic() if in_atomic else contextlib.nullcontext(), CaptureQueriesContext(connection) as queries:
        stored, created = event_insert(event)

    inserts = [sql for sql in statements(queries) if sql.startswith("INSERT")]
    assert len(inserts) == 1
    assert not [sql for sql in statements(queries) if "SAVEPOINT" in sql.upper()]
    assert created
    assert stored.pk == Event.objects.get().pk
    assert Event.objects.get().idempotency_key == key


@pytest.mark.parametrize("in_atomic", [False, True])
def test_a_key_that_exists_gives_the_first_event_after_one_insert_and_one_lookup(alice, bob, in_atomic: bool) -> None:
    first, _ = event_insert(
        Event(type="notice", data={"title": "first"}, recipient_ids=[alice.pk], idempotency_key="k")
    )
    second = Event(type="notice", data={"title": "second"}, recipient_ids=[bob.pk], idempotency_key="k")

    with transaction.atomic() if in_atomic else contextlib.nullcontext(), CaptureQueriesContext(connection) as queries:
        found, created = event_insert(second)

    assert not created
    assert found.pk == first.pk
    assert found.data == {"title": "first"}
    assert [sql.split()[0] for sql in statements(queries)] == ["INSERT", "SELECT"]
    assert Event.objects.count() == 1


# --- claim ----------------------------------------------------------------------------------


def test_a_claim_takes_the_oldest_due_events_and_leases_them(alice) -> None:
    events = [make_event(alice.pk) for _ in range(4)]
    before = timezone.now()

    claimed = claim(max_events=3)

    assert claimed.ids == [event.pk for event in events[:3]]
    for event in Event.objects.filter(pk__in=claimed.ids):
        assert event.claimed_by == "worker-1"
        assert before + timedelta(seconds=LEASE_S) <= event.claimed_until <= timezone.now() + timedelta(seconds=LEASE_S)
        assert event.attempts == 0
        assert event.status == Event.Status.PENDING


def test_a_second_worker_gets_what_the_first_did_not_claim(alice) -> None:
    events = [make_event(alice.pk) for _ in range(3)]

    first = claim("worker-1", max_events=2)
    second = claim("worker-2", max_events=2)
    third = claim("worker-3")

    assert first.ids == [events[0].pk, events[1].pk]
    assert second.ids == [events[2].pk]
    assert third.events == []


def test_a_claim_stops_before_it_holds_more_recipients_than_allowed(alice, bob, make_user) -> None:
    carol = make_user("carol")
    one = make_event(alice.pk, bob.pk)
    two = make_event(carol.pk)
    make_event(alice.pk, bob.pk)

    assert claim(max_recipients=3).ids == [one.pk, two.pk]


def test_an_event_with_more_recipients_than_a_batch_is_claimed_alone(alice) -> None:
    small = make_event(alice.pk)
    large = make_event(*range(1, 12))

    assert claim(max_recipients=10).ids == [small.pk]
    assert claim(max_recipients=10).ids == [large.pk]


@pytest.mark.parametrize(
    "not_due",
    [
        {"status": Event.Status.DELIVERED},
        {"status": Event.Status.DEAD},
        {"status": Event.Status.SPLIT},
        {"claimed_until_s": 10},
        {"next_attempt_s": 10},
    ],
)
def test_events_that_are_finished_leased_or_waiting_to_retry_are_not_claimed(alice, not_due: dict[str, Any]) -> None:
    fields: dict[str, Any] = {}
    if "status" in not_due:
        fields["status"] = not_due["status"]
    if "claimed_until_s" in not_due:
        fields.update(claimed_until=timezone.now() + timedelta(seconds=10), claimed_by="other")
    if "next_attempt_s" in not_due:
        fields["next_attempt_at"] = timezone.now() + timedelta(seconds=10)
    make_event(alice.pk, **fields)

    assert claim().events == []


def test_an_event_due_to_retry_is_claimed_without_counting_an_attempt(alice) -> None:
    event = make_event(alice.pk, next_attempt_at=ago(1))

    assert claim().ids == [event.pk]
    assert Event.objects.get(pk=event.pk).attempts == 0


def test_an_event_whose_lease_ran_out_is_claimed_without_fresh_events_and_counts_an_attempt(alice) -> None:
    lost = make_event(alice.pk, claimed_until=ago(1), claimed_by="dead-worker", attempts=1)
    fresh = make_event(alice.pk)

    claimed = claim("worker-2")

    assert claimed.ids == [lost.pk]
    lost.refresh_from_db()
    assert (lost.attempts, lost.claimed_by) == (2, "worker-2")
    assert claimed.events[0].attempts == 2
    assert claim("worker-3").ids == [fresh.pk]  # and fresh events without suspects


def test_suspects_share_claims_in_groups_that_shrink_with_each_attempt(alice, settings) -> None:
    first = [make_event(alice.pk, claimed_until=ago(1), claimed_by="dead", attempts=0) for _ in range(20)]
    second = [make_event(alice.pk, claimed_until=ago(1), claimed_by="dead", attempts=1) for _ in range(3)]

    def claim64() -> list[int]:
        return events_claim(token="w", max_events=64, max_recipients=1000, lease_s=LEASE_S, max_attempts=8).ids

    # max_events 64: a first crash leaves groups of 64 / 8, a second of 64 / 64.
    assert claim64() == [event.pk for event in first[:8]]
    assert claim64() == [event.pk for event in first[8:16]]
    assert claim64() == [event.pk for event in first[16:]]  # not mixed with those of another attempt
    assert claim64() == [second[0].pk]
    assert claim64() == [second[1].pk]


@pytest.mark.parametrize(("max_attempts", "rounds_to_alone"), [(8, 3), (3, 3), (2, 2)])
def test_an_event_that_kills_every_worker_is_alone_by_its_third_attempt_and_alone_dead_lettered(
    alice, max_attempts: int, rounds_to_alone: int
) -> None:
    batch = [make_event(alice.pk) for _ in range(100)]
    killer = batch[37]
    ids_with_killer = [event.pk for event in batch]
    rounds = 0
    while True:
        held = events_claim(
            token=f"w{rounds}", max_events=100, max_recipients=1000, lease_s=LEASE_S, max_attempts=max_attempts
        )
        if killer.pk in held.ids:
            rounds += 1
            ids_with_killer = held.ids
            if len(ids_with_killer) == 1:
                break
            events_release_crashed(token=held.token)  # its worker died
        else:
            events_mark_delivered(held.ids)

    while rest := claim("drain", max_events=100).ids:
        events_mark_delivered(rest)
    events_mark_delivered([killer.pk])

    assert ids_with_killer == [killer.pk]
    assert rounds == rounds_to_alone
    assert Event.objects.get(pk=killer.pk).attempts == rounds_to_alone - 1
    others = Event.objects.exclude(pk=killer.pk)
    assert others.filter(status=Event.Status.DELIVERED).count() == 99
    assert max(others.values_list("attempts", flat=True)) <= rounds_to_alone - 1


def test_an_event_that_ran_out_of_attempts_is_dead_and_the_claim_goes_on(alice) -> None:
    worn = make_event(alice.pk, claimed_until=ago(1), claimed_by="dead-worker", attempts=MAX_ATTEMPTS - 1)
    fresh = make_event(alice.pk)

    assert claim().ids == [fresh.pk]

    worn.refresh_from_db()
    assert worn.status == Event.Status.DEAD
    assert worn.last_error == f"gave up after {MAX_ATTEMPTS} attempts that ended without an answer"
    assert worn.claimed_until is None


def test_parts_of_an_earlier_event_are_claimed_before_later_events(alice, bob) -> None:
    parent = make_event(alice.pk, bob.pk, status=Event.Status.SPLIT)
    later = make_event(alice.pk)
    part = make_event(alice.pk, parent=parent)  # made after `later`, as a split does

    assert claim(max_events=1).ids == [part.pk]
    assert claim(max_events=1).ids == [later.pk]


# --- lease, release, defer ------------------------------------------------------------------


def test_a_lease_can_be_extended_by_its_holder_only(alice) -> None:
    make_event(alice.pk)
    mine = claim("worker-1")
    Event.objects.filter(pk__in=mine.ids).update(claimed_until=timezone.now() + timedelta(seconds=1))

    events_extend_lease(Claim(token="worker-2", events=mine.events), lease_s=60)
    assert Event.objects.get().claimed_until < timezone.now() + timedelta(seconds=2)
    events_extend_lease(mine, lease_s=60)
    assert Event.objects.get().claimed_until > timezone.now() + timedelta(seconds=59)


def test_releasing_a_crashed_holders_events_makes_them_due_now(alice) -> None:
    make_event(alice.pk)
    make_event(alice.pk)
    held = claim("crashed")
    other = make_event(alice.pk, claimed_until=timezone.now() + timedelta(seconds=60), claimed_by="alive")

    assert events_release_crashed(token="crashed") == 2

    assert Event.objects.get(pk=other.pk).claimed_until > timezone.now()
    assert claim("worker-2").ids == held.ids  # together again, suspects now
    assert Event.objects.get(pk=held.ids[0]).attempts == 1


def test_a_deferred_claim_is_given_back_with_a_next_attempt_time_and_no_attempt(alice) -> None:
    make_event(alice.pk)
    held = claim()

    assert events_defer(held, delay_s=5, error="OperationalError: server closed the connection") == 1

    event = Event.objects.get()
    assert (event.claimed_until, event.claimed_by, event.attempts) == (None, "", 0)
    assert timezone.now() + timedelta(seconds=4) < event.next_attempt_at < timezone.now() + timedelta(seconds=6)
    assert event.last_error == "OperationalError: server closed the connection"


def test_a_claim_taken_over_by_another_worker_cannot_be_deferred_by_the_first(alice) -> None:
    make_event(alice.pk)
    first = claim("worker-1")
    Event.objects.update(claimed_by="worker-2")

    assert events_defer(first, delay_s=5, error="x") == 0


def test_earlier_events_in_flight_are_those_others_hold_on_a_live_lease(alice, bob) -> None:
    soon = timezone.now() + timedelta(seconds=30)
    held_by_other = make_event(alice.pk, claimed_until=soon, claimed_by="worker-2")
    make_event(bob.pk, claimed_until=ago(1), claimed_by="dead-worker")  # expired: not waited for
    make_event(bob.pk)  # nobody holds it
    make_event(alice.pk, status=Event.Status.DELIVERED, claimed_until=soon, claimed_by="worker-2")
    mine = claim("worker-1")
    make_event(alice.pk, claimed_until=soon, claimed_by="worker-3")  # later than mine

    assert events_earlier_in_flight(mine) == [(held_by_other.pk, [alice.pk])]


# --- ends -----------------------------------------------------------------------------------


def test_marking_delivered_ends_the_lease_and_leaves_finished_events_alone(alice) -> None:
    pending = make_event(alice.pk, claimed_until=timezone.now(), claimed_by="w", last_error="earlier blip")
    dead = make_event(alice.pk, status=Event.Status.DEAD)

    assert events_mark_delivered([pending.pk, dead.pk]) == 1

    pending.refresh_from_db()
    assert (pending.status, pending.claimed_until, pending.last_error) == (Event.Status.DELIVERED, None, "")
    assert pending.finished_at is not None
    assert Event.objects.get(pk=dead.pk).status == Event.Status.DEAD


def test_dead_lettering_keeps_the_error_and_happens_once(alice, caplog: pytest.LogCaptureFixture) -> None:
    event = make_event(alice.pk)

    assert event_dead_letter(event_id=event.pk, error="RuntimeError: boom")
    assert not event_dead_letter(event_id=event.pk, error="again")

    event.refresh_from_db()
    assert (event.status, event.last_error) == (Event.Status.DEAD, "RuntimeError: boom")
    assert caplog.text.count("dead-lettered") == 1


def test_a_split_replaces_the_event_by_pending_parts_in_one_go(alice, bob, make_user) -> None:
    carol = make_user("carol")
    event = make_event(alice.pk, bob.pk, carol.pk, actor=alice, target_type="auth.user", target_id=str(bob.pk))

    part_ids = event_split(event, parts=[[alice.pk, bob.pk], [carol.pk]])

    event.refresh_from_db()
    assert event.status == Event.Status.SPLIT
    parts = list(Event.objects.filter(pk__in=part_ids).order_by("pk"))
    assert [part.recipient_ids for part in parts] == [[alice.pk, bob.pk], [carol.pk]]
    for part in parts:
        assert (part.type, part.data, part.actor_id, part.parent_id) == ("notice", event.data, alice.pk, event.pk)
        assert (part.target_type, part.target_id, part.status) == ("auth.user", str(bob.pk), Event.Status.PENDING)
        assert part.idempotency_key is None


def test_the_relay_heartbeat_records_when_the_sweep_last_ran() -> None:
    assert relay_last_beat() is None
    before = timezone.now()

    relay_heartbeat()
    relay_heartbeat()

    last = relay_last_beat()
    assert last is not None
    assert before <= last <= timezone.now()
