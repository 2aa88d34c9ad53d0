"""API tokens (several per user, stored hashed, revocable) and single-use socket tickets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from knox.models import AuthToken

from delivery.credentials import (
    TICKET_TTL,
    Credential,
    ticket_issue,
    ticket_redeem,
    tickets_purge_expired,
    token_authenticate,
    token_issue,
    tokens_revoke,
)
from delivery.groups import session_group, token_group
from delivery.models import SocketTicket
from delivery.payloads import CREDENTIAL_REVOKED_MESSAGE

pytestmark = pytest.mark.django_db


def token_credential(user) -> Credential:  # type: ignore[no-untyped-def]
    """The credential of a freshly issued API token of `user`."""
    return token_authenticate(token_issue(user=user))[1]


def session_credential(client, user) -> Credential:  # type: ignore[no-untyped-def]
    """The credential of a login session of `user` (Django's test client, logged in)."""
    client.force_login(user)
    return Credential(kind="session", ref=client.session.session_key)


def test_an_issued_token_authenticates_its_user(alice) -> None:
    token = token_issue(user=alice)

    user, credential = token_authenticate(token)

    assert user == alice
    assert credential == Credential(kind="token", ref=AuthToken.objects.get(user=alice).digest)


def test_only_a_hash_of_the_token_is_stored(alice) -> None:
    token = token_issue(user=alice)

    stored = AuthToken.objects.get(user=alice)
    assert token not in (stored.digest, stored.token_key)
    assert stored.digest != token


def test_a_user_may_hold_several_tokens(alice) -> None:
    first, second = token_issue(user=alice), token_issue(user=alice)

    assert first != second
    assert token_authenticate(first)[0] == token_authenticate(second)[0] == alice


@pytest.mark.parametrize("token", ["", "nonsense", "x" * 64, "ü" * 64, "Bearer abc"])
def test_a_bad_token_authenticates_nobody(alice, token: str) -> None:
    token_issue(user=alice)

    assert token_authenticate(token) is None


def test_a_tampered_token_authenticates_nobody(alice) -> None:
    token = token_issue(user=alice)

    assert token_authenticate(token[:-1] + ("a" if token[-1] != "a" else "b")) is None


def test_a_token_of_an_inactive_user_authenticates_nobody(alice) -> None:
    token = token_issue(user=alice)
    alice.is_active = False
    alice.save()

    assert token_authenticate(token) is None


def test_revoking_ends_every_token_of_the_user_and_rings_their_groups(alice, bob, rings) -> None:
    alices = [token_issue(user=alice), token_issue(user=alice)]
    digests = sorted(token_authenticate(token)[1].ref for token in alices)
    bobs = token_issue(user=bob)

    assert tokens_revoke(user=alice) == 2

    assert [token_authenticate(token) for token in alices] == [None, None]
    assert token_authenticate(bobs)[0] == bob
    assert sorted(rings) == sorted((token_group(digest), CREDENTIAL_REVOKED_MESSAGE) for digest in digests)


def test_revoking_a_user_without_tokens_rings_nothing(alice, rings) -> None:
    assert tokens_revoke(user=alice) == 0
    assert rings == []


def test_token_groups_name_no_credential(alice) -> None:
    token = token_issue(user=alice)
    _, credential = token_authenticate(token)

    group = credential.group

    assert group == token_group(credential.ref)
    assert token not in group
    assert credential.ref not in group
    assert len(group) < 100  # channel-layer group names must stay short


def test_session_groups_name_no_credential(client, alice) -> None:
    credential = session_credential(client, alice)

    assert credential.group == session_group(credential.ref)
    assert credential.ref not in credential.group


def test_a_live_token_credential_is_valid_for_its_user_only(alice, bob) -> None:
    credential = token_credential(alice)

    assert credential.is_valid_for(alice.pk)
    assert not credential.is_valid_for(bob.pk)


def test_a_revoked_token_credential_is_no_longer_valid(alice, rings) -> None:
    credential = token_credential(alice)

    tokens_revoke(user=alice)

    assert not credential.is_valid_for(alice.pk)


def test_a_token_credential_of_a_deactivated_user_is_no_longer_valid(alice) -> None:
    credential = token_credential(alice)
    alice.is_active = False
    alice.save()

    assert not credential.is_valid_for(alice.pk)


def test_a_session_credential_is_valid_until_logout(client, alice, bob, rings) -> None:
    credential = session_credential(client, alice)
    assert credential.is_valid_for(alice.pk)
    assert not credential.is_valid_for(bob.pk)

    client.post("/accounts/logout/")

    assert not credential.is_valid_for(alice.pk)


def test_a_session_credential_ends_when_the_password_changes(client, alice) -> None:
    credential = session_credential(client, alice)

    alice.set_password("a-new-password-entirely")
    alice.save()

    assert not credential.is_valid_for(alice.pk)


def test_a_made_up_session_key_is_no_credential(alice) -> None:
    assert not Credential(kind="session", ref="no-such-session-key").is_valid_for(alice.pk)


def test_a_session_without_a_login_is_no_credential(alice) -> None:
    anonymous = SessionStore()
    anonymous["cart"] = "full"
    anonymous.create()

    assert not Credential(kind="session", ref=anonymous.session_key).is_valid_for(alice.pk)


def test_a_ticket_is_redeemed_once_and_carries_its_credential(alice) -> None:
    credential = token_credential(alice)
    ticket = ticket_issue(user=alice, credential=credential)

    redeemed = ticket_redeem(ticket)

    assert redeemed is not None
    assert redeemed.user == alice
    assert Credential(kind=redeemed.credential_kind, ref=redeemed.credential_ref) == credential  # type: ignore[arg-type]
    assert redeemed.used_at is not None
    assert ticket_redeem(ticket) is None


def test_a_ticket_asked_for_by_a_session_carries_that_session(client, alice) -> None:
    credential = session_credential(client, alice)

    redeemed = ticket_redeem(ticket_issue(user=alice, credential=credential))

    assert Credential(kind=redeemed.credential_kind, ref=redeemed.credential_ref) == credential  # type: ignore[arg-type]


def test_a_ticket_lives_sixty_seconds(alice) -> None:
    before = timezone.now()
    ticket_issue(user=alice, credential=token_credential(alice))

    expires_at = SocketTicket.objects.get().expires_at
    assert timedelta(seconds=60) == TICKET_TTL
    assert before + TICKET_TTL <= expires_at <= timezone.now() + TICKET_TTL


def test_an_expired_ticket_is_refused(alice) -> None:
    ticket = ticket_issue(user=alice, credential=token_credential(alice))
    SocketTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert ticket_redeem(ticket) is None
    assert SocketTicket.objects.get().used_at is None


def test_a_ticket_of_an_inactive_user_is_refused(alice) -> None:
    ticket = ticket_issue(user=alice, credential=token_credential(alice))
    alice.is_active = False
    alice.save()

    assert ticket_redeem(ticket) is None


def test_a_ticket_is_worth_nothing_once_its_token_is_revoked(alice, rings) -> None:
    ticket = ticket_issue(user=alice, credential=token_credential(alice))

    tokens_revoke(user=alice)

    assert ticket_redeem(ticket) is None


def test_a_ticket_is_worth_nothing_once_its_session_logged_out(client, alice, rings) -> None:
    ticket = ticket_issue(user=alice, credential=session_credential(client, alice))

    client.post("/accounts/logout/")

    assert ticket_redeem(ticket) is None


@pytest.mark.parametrize("ticket", ["", "made-up", "x" * 10_000])
def test_an_unknown_ticket_is_refused(alice, ticket: str) -> None:
    ticket_issue(user=alice, credential=token_credential(alice))

    assert ticket_redeem(ticket) is None


def test_only_a_hash_of_the_ticket_is_stored(alice) -> None:
    ticket = ticket_issue(user=alice, credential=token_credential(alice))

    stored = SocketTicket.objects.get()
    assert stored.digest != ticket
    assert ticket not in (stored.credential_ref, stored.credential_kind)


def test_purging_removes_tickets_expired_longer_than_a_ttl_ago(alice) -> None:
    credential = token_credential(alice)
    old, recent, live = (ticket_issue(user=alice, credential=credential) for _ in range(3))
    now = timezone.now()
    first, second, _ = SocketTicket.objects.order_by("pk")
    SocketTicket.objects.filter(pk=first.pk).update(expires_at=now - TICKET_TTL - timedelta(seconds=5))
    SocketTicket.objects.filter(pk=second.pk).update(expires_at=now - timedelta(seconds=5))

    assert tickets_purge_expired() == 1

    assert ticket_redeem(old) is None
    assert SocketTicket.objects.count() == 2
    assert ticket_redeem(live) is not None
    assert ticket_redeem(recent) is None  # expired, though not yet purged
