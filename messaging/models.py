"""A direct message from one user to another."""

from django.conf import settings
from django.db import models

TEXT_MAX = 2000


class Message(models.Model):
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    text = models.TextField(max_length=TEXT_MAX)
    sent_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"message {self.pk} from {self.sender_id} to {self.recipient_id}"
