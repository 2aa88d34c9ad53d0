"""Management commands (README): emit_event, issue_token, revoke_token, seed_demo."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from delivery.credentials import token_authenticate, token_issue
from events.models import Event

pytestmark = pytest.mark.django_db


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def one_line_reason(raised: pytest.ExceptionInfo[CommandError]) -> str:
    reason = str(raised.value)
    assert reason
    assert "\n" not in reason
    return reason


def test_emit_event_prints_the_new_events_id(alice, bob) -> None:
    printed = run_command("emit_event", "notice", "--to", "alice,bob", "--data", '{"title": "Deploy finished"}')

    event = Event.objects.get()
    assert printed == str(event.pk)
    assert (event.type, event.recipient_ids, event.data) == (
        "notice",
        sorted([alice.pk, bob.pk]),
        {"title": "Deploy finished"},
    )


def test_emit_event_with_a_key_emits_once(alice) -> None:
    args = ("emit_event", "notice", "--to", "alice", "--data", '{"title": "t"}', "--key", "deploy:41")

    first, again = run_command(*args), run_command(*args)

    assert first == again
    assert Event.objects.get().idempotency_key == "deploy:41"


def test_emit_event_tolerates_spaces_around_usernames(alice, bob) -> None:
    run_command("emit_event", "notice", "--to", " alice , bob ,", "--data", '{"title": "t"}')

    assert Event.objects.get().recipient_ids == sorted([alice.pk, bob.pk])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["comment.created", "--to", "alice"], "unknown event type 'comment.created'"),
        (["notice", "--to", "alice,nobody,ghost", "--data", '{"title": "t"}'], "unknown user(s): ghost, nobody"),
        (["notice", "--to", " , ", "--data", '{"title": "t"}'], "--to names no user"),
        (["notice", "--to", "alice", "--data", "{not json"], "--data is not valid JSON"),
        (["notice", "--to", "alice", "--data", '["a list"]'], "mapping"),
        (["notice", "--to", "alice", "--data", '{"body": "no title"}'], "needs data.title"),
        (["notice", "--to", "alice", "--data", '{"title": "t"}', "--key", "k" * 201], "idempotency_key"),
    ],
)
def test_emit_event_fails_with_a_one_line_reason(alice, args: list[str], says: str) -> None:
    with pytest.raises(CommandError) as raised:
        run_command("emit_event", *args)

    assert says in one_line_reason(raised)
    assert not Event.objects.exists()


def test_issue_token_prints_a_token_that_authenticates_the_user(alice) -> None:
    token = run_command("issue_token", "alice")

    assert token_authenticate(token)[0] == alice


def test_issue_token_twice_gives_two_working_tokens(alice) -> None:
    first, second = run_command("issue_token", "alice"), run_command("issue_token", "alice")

    assert first != second
    assert token_authenticate(first)[0] == token_authenticate(second)[0] == alice


def test_issue_token_for_an_unknown_user_fails_without_creating_one(db) -> None:
    with pytest.raises(CommandError) as raised:
        run_command("issue_token", "carol")

    assert "unknown user 'carol'" in one_line_reason(raised)
    assert "--create" in str(raised.value)
    assert not get_user_model().objects.filter(username="carol").exists()


def test_issue_token_with_create_creates_the_user_without_a_usable_password(db) -> None:
    token = run_command("issue_token", "svc-billing", "--create")

    user = get_user_model().objects.get(username="svc-billing")
    assert token_authenticate(token)[0] == user
    assert not user.has_usable_password()


def test_revoke_token_ends_every_token_of_the_user_only(alice, bob, rings) -> None:
    alices = [token_issue(user=alice), token_issue(user=alice)]
    bobs = token_issue(user=bob)

    printed = run_command("revoke_token", "alice")

    assert printed == "revoked 2 token(s) of alice"
    assert [token_authenticate(token) for token in alices] == [None, None]
    assert token_authenticate(bobs)[0] == bob
    assert len(rings) == 2  # one ring per token, to close its sockets


def test_revoke_token_reaches_the_real_channel_layer(alice) -> None:
    token_issue(user=alice)

    assert run_command("revoke_token", "alice") == "revoked 1 token(s) of alice"


def test_revoke_token_for_an_unknown_user_fails(db) -> None:
    with pytest.raises(CommandError) as raised:
        run_command("revoke_token", "carol")

    assert "unknown user 'carol'" in one_line_reason(raised)


def test_seed_demo_refuses_to_run_without_debug(settings) -> None:
    settings.DEBUG = False

    with pytest.raises(CommandError) as raised:
        run_command("seed_demo")

    assert "DJANGO_DEBUG=1" in one_line_reason(raised)
    assert not get_user_model().objects.filter(username__in=["alice", "bob"]).exists()


def test_seed_demo_creates_the_demo_users_with_debug(settings) -> None:
    settings.DEBUG = True

    printed = run_command("seed_demo")

    users = get_user_model().objects.filter(username__in=["alice", "bob"])
    assert sorted(user.username for user in users) == ["alice", "bob"]
    password = printed.rsplit(" ", 1)[-1]
    assert all(user.check_password(password) for user in users)
