"""API token authentication for DRF in one query (its own module: DRF imports it through the
settings while rest_framework.views is still being imported)."""

from __future__ import annotations

from typing import Any

from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework.exceptions import AuthenticationFailed

from delivery.credentials import token_find


class BearerTokenAuthentication(TokenAuthentication):
    """knox's scheme (`Authorization: Bearer <token>`, stored hashed) with the socket
    handshake's one-query check: knox's own reads every token of the user as well, to delete
    expired ones, on every request (a tenth of a POST /api/events/'s CPU)."""

    def authenticate_credentials(self, token: bytes) -> tuple[Any, AuthToken]:
        auth_token = token_find(token.decode("utf-8", errors="replace"))
        if auth_token is None:
            raise AuthenticationFailed("Invalid token.")
        return auth_token.user, auth_token
