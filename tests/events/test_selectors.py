"""The outbox as an operator sees it: `outbox_state` and `manage.py outbox`."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from events.models import Event
from events.selectors import outbox_state

pytestmark = pytest.mark.django_db


def make_event(user_id: int, *, age_s: float = 0, **fields: object) -> Event:
    event = Event.objects.create(type="notice", data={"title": "t"}, recipient_ids=[user_id], **fields)
    Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(seconds=age_s))
    return event


def test_the_state_counts_pending_by_age_held_deferred_and_dead(alice) -> None:
    now = timezone.now()
    make_event(alice.pk, age_s=1)
    make_event(alice.pk, age_s=30, claimed_until=now + timedelta(seconds=10), claimed_by="w")
    make_event(alice.pk, age_s=300, next_attempt_at=now + timedelta(seconds=5))
    make_event(alice.pk, age_s=3600)
    make_event(alice.pk, status=Event.Status.DELIVERED)
    dead = make_event(alice.pk, status=Event.Status.DEAD, last_error="RuntimeError: boom", finished_at=now)

    state = outbox_state()

    assert state.pending == 4
    assert state.pending_by_age == {"<10s": 1, "<60s": 1, "<600s": 1, ">=600s": 1}
    assert 3599 < state.oldest_pending_age_s < 3700
    assert (state.in_flight, state.deferred, state.dead) == (1, 1, 1)
    assert [(d.id, d.type, d.error) for d in state.recent_dead] == [(dead.pk, "notice", "RuntimeError: boom")]


def test_an_empty_outbox_has_no_oldest_pending_event() -> None:
    state = outbox_state()
    assert (state.pending, state.oldest_pending_age_s, state.dead) == (0, None, 0)


def test_the_outbox_command_prints_the_state_and_json_for_scripts(alice) -> None:
    make_event(alice.pk, age_s=20)
    make_event(alice.pk, status=Event.Status.DEAD, last_error="RuntimeError: boom\ntraceback...")

    out = StringIO()
    call_command("outbox", stdout=out)
    text = out.getvalue()
    assert "pending      1 (oldest 2" in text
    assert "<60s  1" in text
    assert "dead         1 (retry them in the admin)" in text
    assert "notice: RuntimeError: boom" in text
    assert "traceback" not in text

    out = StringIO()
    call_command("outbox", "--json", stdout=out)
    found = json.loads(out.getvalue())
    assert (found["pending"], found["dead"], found["pending_by_age"]["<60s"]) == (1, 1, 1)
