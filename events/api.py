"""POST /api/events/: emit() for services written in other languages (staff tokens only)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from knox.models import AuthToken
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from events.emitting import IDEMPOTENCY_KEY_MAX, emit
from events.registry import InvalidEventData, UnknownEventType, get_event_type

RECIPIENTS_MAX = 10_000


class IsStaffToken(permissions.BasePermission):
    message = "emitting events over HTTP needs the API token of a staff user"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, AuthToken) and bool(request.user.is_staff)


class EmitEventInput(serializers.Serializer):
    type = serializers.CharField(max_length=100)
    recipients = serializers.ListField(
        child=serializers.CharField(max_length=150), min_length=1, max_length=RECIPIENTS_MAX
    )
    data = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(max_length=IDEMPOTENCY_KEY_MAX, required=False)

    def validate_type(self, value: str) -> str:
        try:
            get_event_type(value)
        except UnknownEventType as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_recipients(self, value: list[str]) -> list[Any]:
        usernames = set(value)
        users = list(get_user_model().objects.filter(username__in=usernames))
        missing = usernames - {user.get_username() for user in users}
        if missing:
            raise serializers.ValidationError(f"unknown user(s): {', '.join(sorted(missing))}")
        return users


class EventCreate(APIView):
    """Staff tokens only; limited per token by API_RATE_LIMIT_EVENTS (service traffic)."""

    permission_classes: ClassVar = [IsStaffToken]
    throttle_scope = "events"

    def post(self, request: Request) -> Response:
        payload = EmitEventInput(data=request.data)
        payload.is_valid(raise_exception=True)
        params = payload.validated_data
        try:
            event = emit(
                params["type"],
                recipients=params["recipients"],
                data=params["data"],
                idempotency_key=params.get("idempotency_key"),
            )
        except (InvalidEventData, ValueError) as exc:
            raise serializers.ValidationError({"data": [str(exc)]}) from None
        return Response({"id": event.pk}, status=status.HTTP_202_ACCEPTED)
