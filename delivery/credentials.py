"""API tokens (knox, stored hashed) and single-use socket tickets: issuing, checking, revoking."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from hmac import compare_digest
from importlib import import_module
from typing import Literal

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS as KNOX_CONSTANTS

from delivery.doorbell import doorbell
from delivery.groups import session_group, token_group, user_group
from delivery.models import SignedInSession, SocketTicket
from delivery.payloads import CREDENTIAL_REVOKED_MESSAGE, CREDENTIALS_CHANGED_MESSAGE

logger = logging.getLogger(__name__)

TICKET_TTL = timedelta(seconds=60)


@dataclass(frozen=True)
class Credential:
    """What a socket was opened with: a login session or an API token.

    `ref` is the session key or the token's digest. It stays in the process (and in a
    ticket's row); only its hash, in `group`, ever reaches Redis.
    """

    kind: Literal["session", "token"]
    ref: str

    @property
    def group(self) -> str:
        """The group that closes this credential's sockets when it ends."""
        return session_group(self.ref) if self.kind == "session" else token_group(self.ref)

    def is_valid_for(self, user_id: int) -> bool:
        """Whether the credential still authenticates this (active) user: not logged out,
        not revoked, not expired, and (for sessions) the password was not changed since."""
        if self.kind == "token":
            return _live_tokens().filter(digest=self.ref, user_id=user_id).exists()
        session = import_module(settings.SESSION_ENGINE).SessionStore(self.ref).load()
        if str(session.get(SESSION_KEY)) != str(user_id):
            return False
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        return user is not None and constant_time_compare(
            session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
        )


def credentials_valid(held: Sequence[tuple[Credential, int]]) -> list[bool]:
    """Credential.is_valid_for for each (credential, user id), as many sockets hold them:
    every token in one query, each session on its own."""
    digests = {credential.ref for credential, _ in held if credential.kind == "token"}
    tokens: set[tuple[str, int]] = set()
    if digests:
        tokens = set(_live_tokens().filter(digest__in=digests).values_list("digest", "user_id"))
    return [
        (credential.ref, user_id) in tokens if credential.kind == "token" else credential.is_valid_for(user_id)
        for credential, user_id in held
    ]


def _live_tokens() -> QuerySet[AuthToken]:
    """Tokens of active users that have not expired."""
    return AuthToken.objects.filter(Q(expiry__isnull=True) | Q(expiry__gt=timezone.now()), user__is_active=True)


def token_issue(*, user: AbstractBaseUser) -> str:
    """A new API token for the user; only its hash is stored, so this is the one chance to see it."""
    _, token = AuthToken.objects.create(user=user)
    return token


def token_authenticate(token: str) -> tuple[AbstractBaseUser, Credential] | None:
    """The token's user and credential, or None for a bad, expired or revoked token, or an
    inactive user."""
    auth_token = token_find(token)
    if auth_token is None:
        return None
    return auth_token.user, Credential(kind="token", ref=auth_token.digest)


def token_find(token: str) -> AuthToken | None:
    """The token's row, its user loaded, or None for a bad, expired or revoked token, or an
    inactive user.

    knox's digest and comparison in one query. knox's own check also reads every token of the
    user, to delete expired ones, on every call: a second query per request or handshake, for
    tokens that here do not expire on their own (REST_KNOX TOKEN_TTL is None)."""
    try:
        digest = hash_token(token)
    except (ValueError, TypeError):  # binascii.Error is a ValueError: not a token of ours
        return None
    candidates = AuthToken.objects.filter(token_key=token[: KNOX_CONSTANTS.TOKEN_KEY_LENGTH]).select_related("user")
    now = timezone.now()
    for auth_token in candidates:
        if compare_digest(digest, auth_token.digest):
            if (auth_token.expiry is not None and auth_token.expiry <= now) or not auth_token.user.is_active:
                return None
            return auth_token
    return None


def tokens_revoke(*, user: AbstractBaseUser) -> int:
    """Revoke every API token of the user and close the sockets opened with them."""
    digests = list(AuthToken.objects.filter(user=user).values_list("digest", flat=True))
    AuthToken.objects.filter(digest__in=digests).delete()
    if digests:
        doorbell.ring_and_wait([(token_group(digest), CREDENTIAL_REVOKED_MESSAGE) for digest in digests])
    return len(digests)


def ticket_issue(*, user: AbstractBaseUser, credential: Credential) -> str:
    """A 60-second, single-use socket ticket, tied to the credential that asked for it: the
    socket it opens lives only as long as that credential does."""
    ticket = secrets.token_urlsafe(32)
    SocketTicket.objects.create(
        digest=_digest(ticket),
        user=user,
        credential_kind=credential.kind,
        credential_ref=credential.ref,
        expires_at=timezone.now() + TICKET_TTL,
    )
    return ticket


def ticket_redeem(ticket: str) -> SocketTicket | None:
    """Use up a ticket: the first redemption before expiry wins, every other one gets None."""
    now = timezone.now()
    digest = _digest(ticket)
    claimed = SocketTicket.objects.filter(
        digest=digest, used_at__isnull=True, expires_at__gt=now, user__is_active=True
    ).update(used_at=now)
    if not claimed:
        return None
    redeemed = SocketTicket.objects.select_related("user").get(digest=digest)
    # A ticket is worth no more than the credential that asked for it (logged out since?).
    credential = Credential(kind=redeemed.credential_kind, ref=redeemed.credential_ref)  # type: ignore[arg-type]
    return redeemed if credential.is_valid_for(redeemed.user_id) else None


def tickets_purge_expired() -> int:
    deleted, _ = SocketTicket.objects.filter(expires_at__lt=timezone.now() - TICKET_TTL).delete()
    return deleted


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def signed_in_session_note(*, user: AbstractBaseUser, session_key: str) -> None:
    SignedInSession.objects.update_or_create(session_key=session_key, defaults={"user": user})


def signed_in_session_forget(*, session_key: str) -> None:
    SignedInSession.objects.filter(session_key=session_key).delete()


def sign_out_everywhere(*, user: AbstractBaseUser) -> dict[str, int]:
    """End every login session and API token of the user, and close every socket they
    opened: one ring to the user's group makes each socket check its credential now."""
    keys = list(SignedInSession.objects.filter(user=user).values_list("session_key", flat=True))
    store = import_module(settings.SESSION_ENGINE).SessionStore
    for key in keys:
        store(key).delete()  # whatever SESSION_ENGINE keeps them in
    SignedInSession.objects.filter(user=user).delete()
    tokens, _ = AuthToken.objects.filter(user=user).delete()
    doorbell.ring_on_commit(user_group(user.pk), CREDENTIALS_CHANGED_MESSAGE)
    return {"sessions": len(keys), "tokens": tokens}
