"""The JSON API for notifications and socket tickets (README, "HTTP API")."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import logout
from django.http import Http404
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from delivery.credentials import TICKET_TTL, Credential, sign_out_everywhere, ticket_issue
from delivery.payloads import notification_payload
from delivery.selectors import (
    PAGE_MAX,
    cursor_is_resumable,
    inbox_state,
    notification_ids_of_user,
    notifications_after_seq,
    notifications_newest_first,
)
from delivery.services import notifications_mark_all_read, notifications_mark_read

SEQ_MAX = 2**63 - 1


class NotificationListQuery(serializers.Serializer):
    after_seq = serializers.IntegerField(min_value=0, max_value=SEQ_MAX, required=False)
    before_seq = serializers.IntegerField(min_value=1, max_value=SEQ_MAX, required=False)
    unread = serializers.BooleanField(required=False, default=False)
    limit = serializers.IntegerField(min_value=1, max_value=PAGE_MAX, default=50)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "after_seq" in attrs and "before_seq" in attrs:
            raise serializers.ValidationError("give after_seq (oldest first) or before_seq (newest first), not both")
        if "after_seq" in attrs and attrs["unread"]:
            raise serializers.ValidationError("after_seq replays everything; it cannot be combined with unread")
        return attrs


@api_view(["GET"])
def notification_list(request: Request) -> Response:
    """The user's notifications: newest first, or oldest first after a seq (what a tab missed)."""
    query = NotificationListQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    params = query.validated_data
    user_id = request.user.pk
    limit = params["limit"]
    if "after_seq" in params:
        if not cursor_is_resumable(user_id=user_id, after_seq=params["after_seq"]):
            # Never a silent partial replay: the client must reload, as on a `resync` frame.
            return Response(
                {
                    "type": "resync",
                    "detail": "after_seq is older than what is kept, or ahead of this user's last seq; reload",
                    "last_seq": inbox_state(user_id=user_id).last_seq,
                },
                status=status.HTTP_410_GONE,
            )
        page = notifications_after_seq(user_id=user_id, after_seq=params["after_seq"], limit=limit)
        next_url = _next_page(request, "after_seq", page[-1].seq) if len(page) == limit else None
    else:
        page = notifications_newest_first(
            user_id=user_id, before_seq=params.get("before_seq"), unread_only=params["unread"], limit=limit
        )
        next_url = _next_page(request, "before_seq", page[-1].seq) if len(page) == limit else None
    state = inbox_state(user_id=user_id)
    return Response(
        {
            "results": [notification_payload(n) for n in page],
            "next": next_url,
            "unread": state.unread,
            "last_seq": state.last_seq,
        }
    )


@api_view(["GET"])
def unread_count(request: Request) -> Response:
    return Response({"unread": inbox_state(user_id=request.user.pk).unread})


@api_view(["POST"])
def notification_read(request: Request, notification_id: int) -> Response:
    """Mark one of the user's notifications read; anyone else's id is 404."""
    if notification_id > SEQ_MAX or not notification_ids_of_user(user_id=request.user.pk, ids=[notification_id]):
        raise Http404("no such notification")
    change = notifications_mark_read(user=request.user, ids=[notification_id])
    return Response({"id": notification_id, "read": True, "unread": change.unread})


@api_view(["POST"])
def notification_read_all(request: Request) -> Response:
    change = notifications_mark_all_read(user=request.user)
    return Response({"ids": change.ids, "unread": change.unread})


@api_view(["POST"])
def ws_ticket(request: Request) -> Response:
    """A 60-second, single-use ticket for `?ticket=` on a socket from another origin."""
    if isinstance(request.auth, AuthToken):
        credential = Credential(kind="token", ref=request.auth.digest)
    else:
        credential = Credential(kind="session", ref=request.session.session_key)
    ticket = ticket_issue(user=request.user, credential=credential)
    return Response({"ticket": ticket, "expires_in": int(TICKET_TTL.total_seconds())}, status=status.HTTP_201_CREATED)


@api_view(["POST"])
def sign_out_everywhere_view(request: Request) -> Response:
    """End every session and API token of the user, this one too, and close every socket
    they opened (within a second)."""
    ended = sign_out_everywhere(user=request.user)
    if not isinstance(request.auth, AuthToken):
        logout(request._request)  # and clear this browser's cookie
    return Response(ended)


def _next_page(request: Request, param: str, seq: int) -> str:
    return replace_query_param(request.build_absolute_uri(), param, seq)
