"""API tokens (knox, stored hashed) and single-use socket tickets: issuing, checking, revoking."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework.exceptions import AuthenticationFailed

from delivery.doorbell import doorbell
from delivery.groups import token_group
from delivery.models import SocketTicket
from delivery.payloads import CREDENTIAL_REVOKED_MESSAGE

logger = logging.getLogger(__name__)

TICKET_TTL = timedelta(seconds=60)


def token_issue(*, user: AbstractBaseUser) -> str:
    """A new API token for the user; only its hash is stored, so this is the one chance to see it."""
    _, token = AuthToken.objects.create(user=user)
    return token


def token_authenticate(token: str) -> tuple[AbstractBaseUser, str] | None:
    """The token's user and the token's stored digest, or None for a bad, expired or
    revoked token, or an inactive user."""
    try:
        user, auth_token = TokenAuthentication().authenticate_credentials(token.encode())
    except (AuthenticationFailed, UnicodeError):
        return None
    return user, auth_token.digest


def tokens_revoke(*, user: AbstractBaseUser) -> int:
    """Revoke every API token of the user and close the sockets opened with them."""
    digests = list(AuthToken.objects.filter(user=user).values_list("digest", flat=True))
    AuthToken.objects.filter(digest__in=digests).delete()
    if digests:
        doorbell.ring_and_wait([(token_group(digest), CREDENTIAL_REVOKED_MESSAGE) for digest in digests])
    return len(digests)


def ticket_issue(*, user: AbstractBaseUser, credential_group: str) -> str:
    """A 60-second, single-use socket ticket, tied to the credential that asked for it."""
    ticket = secrets.token_urlsafe(32)
    SocketTicket.objects.create(
        digest=_digest(ticket),
        user=user,
        credential_group=credential_group,
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
    return SocketTicket.objects.select_related("user").get(digest=digest)


def tickets_purge_expired() -> int:
    deleted, _ = SocketTicket.objects.filter(expires_at__lt=timezone.now() - TICKET_TTL).delete()
    return deleted


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()
