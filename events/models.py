"""The event row: written in the caller's transaction, it is the outbox the relay reads."""

from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models
from django.utils.functional import cached_property


class Event(models.Model):
    """One domain event, durable from the caller's commit on; delivered at least once."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        DEAD = "dead", "dead (gave up)"

    type = models.CharField(max_length=100)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the event is about, as a model label ("messaging.message") and primary key. A
    # label, not a ContentType foreign key: content type ids can change under long-running
    # processes (a restored database, a test flush), and a label reads well in the admin.
    target_type = models.CharField(max_length=100, blank=True, default="")
    target_id = models.CharField(max_length=64, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    # User ids as given to emit(); the type's audience rule filters them at delivery.
    recipient_ids = models.JSONField(default=list)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # Last time the event was handed to the broker (hand-off or relay) or a worker began an
    # attempt; the relay leaves it alone for EVENTS_REDRIVE_AFTER_S after that.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"],
                name="event_pending_idx",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"

    @cached_property
    def target(self) -> Any:
        """The target instance, or None if there is none or it was deleted since."""
        if not self.target_type:
            return None
        model = apps.get_model(self.target_type)
        return model._default_manager.filter(pk=self.target_id).first()
