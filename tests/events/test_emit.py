"""emit(): one durable event row in the caller's transaction, handed over only after commit."""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import time

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction

from events import emit
from events.emitting import DATA_MAX_BYTES, IDEMPOTENCY_KEY_MAX
from events.handoff import hand_off
from events.models import Event
from events.registry import TITLE_MAX, InvalidEventData, UnknownEventType
from tests.events.conftest import ThrowawayTypes

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def published_after_flush(published_events: list[int]) -> list[int]:
    """The hand-off publishes from its own thread: wait for it before looking."""
    assert hand_off.flush(timeout=5)
    return list(published_events)


def test_emit_writes_one_pending_event_with_its_recipients_actor_target_and_data(alice, bob) -> None:
    event = emit("notice", recipients=[bob, alice], actor=alice, target=bob, data={"title": "Hello"})

    stored = Event.objects.get()
    assert stored.pk == event.pk
    assert stored.type == "notice"
    assert stored.recipient_ids == sorted([alice.pk, bob.pk])
    assert stored.actor == alice
    assert stored.target_type == "auth.user"
    assert stored.target_id == str(bob.pk)
    assert stored.target == bob
    assert stored.data == {"title": "Hello"}
    assert stored.status == Event.Status.PENDING
    assert stored.attempts == 0
    assert stored.idempotency_key is None


def test_recipients_may_be_users_or_ids_and_each_counts_once(alice, bob) -> None:
    event = emit("notice", recipients=[bob.pk, alice, bob, alice.pk], data={"title": "Hello"})

    assert event.recipient_ids == sorted([alice.pk, bob.pk])


def test_emit_publishes_only_after_commit(
    alice, published_events: list[int], django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        event = emit("notice", recipients=[alice], data={"title": "Deploy finished"})
        assert published_after_flush(published_events) == []

    assert len(callbacks) == 1
    assert published_after_flush(published_events) == [event.pk]


def emit_in_a_transaction_that_fails(recipient, title: str) -> None:  # type: ignore[no-untyped-def]
    with transaction.atomic():
        emit("notice", recipients=[recipient], data={"title": title})
        raise Boom


def test_rolled_back_emit_leaves_no_event_and_publishes_nothing(
    alice, published_events: list[int], django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(Boom):
        emit_in_a_transaction_that_fails(alice, "Never")

    assert callbacks == []
    assert not Event.objects.exists()
    assert published_after_flush(published_events) == []


def test_an_event_emitted_before_a_rollback_elsewhere_in_the_request_survives(
    alice, published_events: list[int], django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        kept = emit("notice", recipients=[alice], data={"title": "Kept"})
        with pytest.raises(Boom):
            emit_in_a_transaction_that_fails(alice, "Rolled back")

    assert list(Event.objects.values_list("pk", flat=True)) == [kept.pk]
    assert published_after_flush(published_events) == [kept.pk]


def test_an_unknown_type_raises_at_the_call_site_and_writes_nothing(alice) -> None:
    with pytest.raises(UnknownEventType, match=re.escape("unknown event type 'comment.created'")):
        emit("comment.created", recipients=[alice], data={})

    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({"when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}, "JSON-serialisable"),
        ({"what": object()}, "JSON-serialisable"),
        ({("tuple", "key"): 1}, "JSON-serialisable"),
        (["title", "body"], "mapping"),
        ("title", "mapping"),
        ({"blob": "x" * DATA_MAX_BYTES}, f"larger than {DATA_MAX_BYTES} bytes"),
    ],
    ids=["datetime", "object", "tuple-key", "list", "string", "too-large"],
)
def test_data_that_is_no_json_object_or_too_large_is_refused(
    alice, data: object, complaint: str, event_types: ThrowawayTypes
) -> None:
    event_types.add("test.anything")

    with pytest.raises(InvalidEventData, match=complaint):
        emit("test.anything", recipients=[alice], data=data)  # type: ignore[arg-type]

    assert not Event.objects.exists()


def test_data_up_to_the_size_limit_is_accepted(alice, event_types: ThrowawayTypes) -> None:
    event_types.add("test.anything")
    overhead = len('{"blob": ""}')

    event = emit("test.anything", recipients=[alice], data={"blob": "x" * (DATA_MAX_BYTES - overhead)})

    assert len(event.data["blob"]) == DATA_MAX_BYTES - overhead
    with pytest.raises(InvalidEventData):
        emit("test.anything", recipients=[alice], data={"blob": "x" * (DATA_MAX_BYTES - overhead + 1)})


@pytest.mark.parametrize("key", [None, "ratio:1"])
@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_data_with_a_number_json_cannot_express_is_refused(
    alice, number: float, key: str | None, event_types: ThrowawayTypes
) -> None:
    event_types.add("test.anything")

    with pytest.raises(InvalidEventData, match="JSON"):
        emit("test.anything", recipients=[alice], data={"ratio": number}, idempotency_key=key)


def test_data_is_stored_as_its_json_round_trip(alice, event_types: ThrowawayTypes) -> None:
    event_types.add("test.anything")

    event = emit("test.anything", recipients=[alice], data={"count": 3, "tags": ("a", "b"), "nested": {"ok": True}})

    assert event.data == {"count": 3, "tags": ["a", "b"], "nested": {"ok": True}}


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({}, "needs data.title"),
        ({"body": "no title"}, "needs data.title"),
        ({"title": "   "}, "needs data.title"),
        ({"title": 42}, "needs data.title"),
        ({"title": "t" * (TITLE_MAX + 1)}, f"longer than {TITLE_MAX}"),
        ({"title": "t", "body": 7}, "data.body must be a string"),
        ({"title": "t", "url": None}, "data.url must be a string"),
        ({"title": "t", "body": "b" * 2001}, "data.body is longer than 2000"),
        ({"title": "t", "html": "<b>x</b>", "extra": 1}, "unknown field\\(s\\): extra, html"),
    ],
)
def test_notice_data_is_validated_with_a_reason(alice, data: dict, complaint: str) -> None:
    with pytest.raises(InvalidEventData, match=complaint):
        emit("notice", recipients=[alice], data=data)

    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "data",
    [{"title": "t"}, {"title": "t" * TITLE_MAX, "body": "", "url": "/inbox"}, {"title": "<b>", "url": "javascript:x"}],
)
def test_valid_notice_data_is_stored_as_given(alice, data: dict) -> None:
    assert emit("notice", recipients=[alice], data=data).data == data


@pytest.mark.parametrize(
    ("recipients", "complaint"),
    [
        ([], "at least one recipient"),
        ("alice", "list of users or user ids"),
        (None, "list of users or user ids"),
        ([True], "users or user ids, not True"),
        (["alice"], "users or user ids, not 'alice'"),
        ([User(username="unsaved")], "saved users"),
        ([AnonymousUser()], "users or user ids"),
    ],
)
def test_recipients_must_be_saved_users_or_ids(recipients: object, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        emit("notice", recipients=recipients, data={"title": "t"})  # type: ignore[arg-type]

    assert not Event.objects.exists()


def test_the_same_idempotency_key_twice_gives_one_event_published_once(
    alice, bob, published_events: list[int], django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = emit("notice", recipients=[alice], data={"title": "First"}, idempotency_key="deploy:41")
    with django_capture_on_commit_callbacks(execute=True):
        again = emit("notice", recipients=[bob], data={"title": "Second"}, idempotency_key="deploy:41")

    assert again.pk == first.pk
    assert again.data == {"title": "First"}  # first write wins
    assert Event.objects.count() == 1
    assert published_after_flush(published_events) == [first.pk]


def test_the_same_idempotency_key_twice_in_one_transaction_gives_one_event(alice) -> None:
    with transaction.atomic():
        first = emit("notice", recipients=[alice], data={"title": "t"}, idempotency_key="k")
        again = emit("notice", recipients=[alice], data={"title": "t"}, idempotency_key="k")

    assert again.pk == first.pk
    assert Event.objects.count() == 1


def test_different_idempotency_keys_give_different_events(alice) -> None:
    emit("notice", recipients=[alice], data={"title": "t"}, idempotency_key="a")
    emit("notice", recipients=[alice], data={"title": "t"}, idempotency_key="b")

    assert Event.objects.count() == 2


@pytest.mark.parametrize("key", ["", "k" * (IDEMPOTENCY_KEY_MAX + 1), 41])
def test_an_idempotency_key_must_be_a_short_string(alice, key: object) -> None:
    with pytest.raises(ValueError, match="idempotency_key must be a string"):
        emit("notice", recipients=[alice], data={"title": "t"}, idempotency_key=key)  # type: ignore[arg-type]

    assert not Event.objects.exists()


def test_emit_in_a_request_opens_no_connection_and_publishes_only_after_the_response(
    alice, bob, client, published_events: list[int], django_capture_on_commit_callbacks, monkeypatch
) -> None:
    client.force_login(alice)
    connections: list[object] = []
    real_connect = socket.socket.connect

    def record_connect(sock: socket.socket, address: object) -> None:
        connections.append(address)
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", record_connect)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/api/messages/", {"to": "bob", "text": "hi"}, content_type="application/json")
        assert response.status_code == 201
        assert published_after_flush(published_events) == []

    assert connections == []
    event = Event.objects.get(type="message.received")
    assert len(callbacks) == 1
    callbacks[0]()  # the commit
    assert published_after_flush(published_events) == [event.pk]


def test_a_slow_broker_does_not_delay_the_request_that_emitted(
    alice, bob, client, published_events: list[int], django_capture_on_commit_callbacks, monkeypatch
) -> None:
    client.force_login(alice)
    broker_answers = threading.Event()

    def slow_publish(event_ids: list[int]) -> None:
        broker_answers.wait(5)
        published_events.extend(event_ids)

    monkeypatch.setattr(hand_off, "publish", slow_publish)
    try:
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/api/messages/", {"to": "bob", "text": "hi"}, content_type="application/json")
        elapsed = time.monotonic() - started
    finally:
        broker_answers.set()

    assert response.status_code == 201
    assert elapsed < 1.0
    assert published_after_flush(published_events) == [Event.objects.get(type="message.received").pk]


@pytest.mark.parametrize("text", ["\ud800", "half \udc00 pair", "high \ud83d alone"])
def test_text_with_a_lone_surrogate_is_refused_at_emit(alice, text: str) -> None:
    with pytest.raises(InvalidEventData, match="no lone surrogates"):
        emit("notice", recipients=[alice], data={"title": text})
    assert not Event.objects.exists()


def test_text_outside_the_basic_plane_is_taken(alice) -> None:
    event = emit("notice", recipients=[alice], data={"title": "deploy \U0001f680 done"})
    assert Event.objects.get(pk=event.pk).data == {"title": "deploy \U0001f680 done"}
