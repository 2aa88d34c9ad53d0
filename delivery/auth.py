"""WebSocket handshake checks: the Origin allow-list, then one credential (docs/PROTOCOL.md).

Credentials, in this order: `Authorization: Bearer <token>`, `?ticket=<ticket>`, the
session cookie. A credential that is present but bad does not fall through to the next.
The result is `scope["principal"]` (None when unauthenticated); the consumer accepts and
closes with 4401 in that case, because a refusal before accept reaches browsers as a bare
403/1006 that a client cannot act on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http.request import validate_host

from delivery.credentials import Credential, ticket_redeem, token_authenticate

logger = logging.getLogger(__name__)

ASGIApp = Any


@dataclass(frozen=True)
class Principal:
    """Who opened the socket, and with what."""

    user: AbstractBaseUser
    credential: Credential
    via: str  # "session", "token" or "ticket", for logs


def normalized_origin(origin: str) -> str | None:
    """`scheme://host:port`, lower-case, with the default port spelled out; None for anything
    that is no http(s) origin (the opaque "null" of sandboxed frames and files included)."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}:{port}"


def own_origin(scope: dict[str, Any]) -> str | None:
    """The origin of the socket's own address: the scheme it was opened with, and its Host.
    Behind a proxy that ends TLS, the scheme is what SECURE_PROXY_SSL_HEADER says (daphne
    puts no forwarded scheme in a WebSocket scope); a browser cannot set that header on a
    WebSocket handshake, so a hostile page cannot use it."""
    host = _header(scope, b"host")
    if not host:
        return None
    secure = scope.get("scheme") in ("wss", "https")
    proxy_ssl_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_ssl_header:
        name, secure_value = proxy_ssl_header
        forwarded = _header(scope, name.removeprefix("HTTP_").replace("_", "-").lower().encode())
        if forwarded is not None:
            secure = forwarded.split(",")[0].strip() == secure_value
    return normalized_origin(f"{'https' if secure else 'http'}://{host}")


def origin_allowed(origin: str | None, scope: dict[str, Any]) -> bool:
    """A browser's Origin must be the socket's own origin (scheme, host and port, the host
    one of ALLOWED_HOSTS), as Django's CSRF check compares them, or a configured origin
    (WS_ALLOWED_ORIGINS, CSRF_TRUSTED_ORIGINS). No Origin at all is a non-browser client,
    which cannot ride a victim's cookie, so it may go on."""
    if origin is None:
        return True
    candidate = normalized_origin(origin)
    if candidate is None:
        return False
    trusted = [*settings.WS_ALLOWED_ORIGINS, *getattr(settings, "CSRF_TRUSTED_ORIGINS", [])]
    if candidate in {normalized_origin(configured) for configured in trusted}:
        return True
    if candidate != own_origin(scope):
        return False  # another port or scheme of our host is another origin, as for CSRF
    hostname = urlsplit(candidate).hostname or ""
    return validate_host(hostname if ":" not in hostname else f"[{hostname}]", settings.ALLOWED_HOSTS)


class OriginCheckMiddleware:
    """Refuses cross-site WebSocket hijacking: a browser page on a foreign origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = _header(scope, b"origin")
        if not origin_allowed(origin, scope):
            client = (scope.get("client") or ["?"])[0]
            logger.warning("websocket refused: origin %r is not allowed (client %s)", origin, client)
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


class CredentialMiddleware:
    """Resolves the handshake's credential into `scope["principal"]`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope, principal=await _principal(scope))
        return await self.app(scope, receive, send)


async def _principal(scope: dict[str, Any]) -> Principal | None:
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        found = await database_sync_to_async(token_authenticate)(token.strip())
        if found is None:
            return None
        user, credential = found
        return Principal(user=user, credential=credential, via="token")

    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:
        ticket = await database_sync_to_async(ticket_redeem)(query["ticket"][0])
        if ticket is None:
            return None
        credential = Credential(kind=ticket.credential_kind, ref=ticket.credential_ref)  # type: ignore[arg-type]
        return Principal(user=ticket.user, credential=credential, via="ticket")

    session = scope.get("session")
    if session is None or not session.session_key:
        return None
    user = await get_user(scope)
    if not user.is_authenticated:
        return None
    return Principal(user=user, credential=Credential(kind="session", ref=session.session_key), via="session")


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def websocket_auth_stack(app: ASGIApp) -> ASGIApp:
    """Origin check first (nothing is looked up for a hijack attempt), then the credential."""
    return OriginCheckMiddleware(CookieMiddleware(SessionMiddleware(CredentialMiddleware(app))))
