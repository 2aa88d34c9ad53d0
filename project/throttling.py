"""Rate limits of the JSON API, per user, per API token and per scope (docs/SECURITY.md).

Counted in the shared cache (Redis) by django-ratelimit in fixed windows, one increment per
request whatever the rate, so every web process sees the same count. Over the limit, DRF
answers 429 in JSON with Retry-After. If the cache cannot be reached, the request is let
through and the failure logged: a limit guards against abuse and must not turn a Redis
hiccup into an outage.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django_ratelimit.core import get_usage
from knox.models import AuthToken
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

if TYPE_CHECKING:  # rest_framework.views imports this module, through the settings
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


class RateLimit(BaseThrottle):
    """The limit of a view's `throttle_scope` ("api" if it names none) for one `kind` of key:
    settings.API_RATE_LIMITS[scope][kind], counted per `key_of` the request."""

    kind = ""
    retry_after: int | None = None

    def key_of(self, request: Request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Request, view: APIView) -> bool:
        scope = getattr(view, "throttle_scope", None) or "api"
        rate = settings.API_RATE_LIMITS.get(scope, {}).get(self.kind)
        key = self.key_of(request)
        if not rate or key is None:
            return True
        group = f"{scope}.{self.kind}"
        try:
            usage = get_usage(request, group=group, key=lambda _group, _request: key, rate=rate, increment=True)
        except (RedisError, OSError) as exc:
            logger.warning("rate limit %s not checked, cache unavailable: %r", group, exc)
            return True
        if usage is None or not usage["should_limit"]:
            return True
        self.retry_after = max(1, usage["time_left"])
        logger.warning("rate limit %s (%s) reached by %s %s", group, rate, self.kind, _shown(key))
        return False

    def wait(self) -> float | None:
        return self.retry_after


class PerUser(RateLimit):
    """The calls of one user, whatever the credential."""

    kind = "user"

    def key_of(self, request: Request) -> str | None:
        return str(request.user.pk) if request.user.is_authenticated else None


class PerToken(RateLimit):
    """The calls made with one API token."""

    kind = "token"

    def key_of(self, request: Request) -> str | None:
        return request.auth.digest if isinstance(request.auth, AuthToken) else None


def _shown(key: str) -> str:
    return key if len(key) < 20 else key[:8] + "…"  # a token's digest: never whole in a log
