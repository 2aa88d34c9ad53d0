"""POST /api/messages/: send a direct message (the demo page's "send" form)."""

from django.contrib.auth import get_user_model
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.models import TEXT_MAX
from messaging.services import MessageRejected, message_send


class MessageInput(serializers.Serializer):
    to = serializers.CharField(max_length=150)
    text = serializers.CharField(max_length=TEXT_MAX)


class MessageCreate(APIView):
    """Each message is a notification on someone else's screen: limited per sender by
    API_RATE_LIMIT_MESSAGES."""

    throttle_scope = "messages"

    def post(self, request: Request) -> Response:
        payload = MessageInput(data=request.data)
        payload.is_valid(raise_exception=True)
        recipient = get_user_model().objects.filter(username=payload.validated_data["to"], is_active=True).first()
        if recipient is None:
            raise serializers.ValidationError({"to": ["no such user"]})
        try:
            message = message_send(sender=request.user, recipient=recipient, text=payload.validated_data["text"])
        except MessageRejected as exc:
            raise serializers.ValidationError({"text": [str(exc)]}) from None
        return Response({"id": message.pk}, status=status.HTTP_201_CREATED)
