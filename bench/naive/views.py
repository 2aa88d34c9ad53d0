"""POST /api/events/ the tutorial way: the request itself rings each recipient's group."""

from __future__ import annotations

import hmac
import json

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from bench.naive.consumer import user_group


@require_POST
def event_create(request: HttpRequest) -> JsonResponse:
    """{"recipients": [username, ...], "data": {"title", "body"}} -> one group_send per recipient."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not settings.NAIVE_STAFF_TOKEN or not hmac.compare_digest(token, settings.NAIVE_STAFF_TOKEN):
        return JsonResponse({"detail": "staff token needed"}, status=403)
    try:
        body = json.loads(request.body)
        recipients = [str(name) for name in body["recipients"]]
        data = dict(body.get("data") or {})
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"detail": "bad request"}, status=400)
    layer = get_channel_layer()
    for name in recipients:
        async_to_sync(layer.group_send)(
            user_group(name), {"type": "notify", "title": data.get("title", ""), "body": data.get("body", "")}
        )
    return JsonResponse({"sent": len(recipients)}, status=202)
