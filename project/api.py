"""The API's plumbing on top of DRF: a safer JSON parser, and JSON for outages too."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5


class SafeJSONParser(JSONParser):
    """DRF's JSONParser catches ValueError only: a body nested deeper than Python's recursion
    limit raised RecursionError and answered 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: the database being down is a 503 with Retry-After in JSON, which a
    calling service can act on, not Django's HTML 500 page (nothing was emitted); a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE is a JSON 400, not Django's HTML one."""
    if isinstance(exc, RequestDataTooBig):
        # Django would answer its HTML 400 page and log a traceback; as a 400 like any other,
        # it gets Django's one "Bad Request" line.
        return Response(
            {"detail": f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("API request failed, database unavailable: %r", exc)
        return Response(
            {"detail": "the database is unavailable; nothing was done, retry shortly"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return exception_handler(exc, context)
