"""The event row is the outbox: written in the caller's transaction, claimed and delivered by workers.

Every state change of a row lives in events/outbox.py; docs/DESIGN.md draws the lifecycle.
"""

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
        SPLIT = "split", "split into parts"
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
    # A large fan-out is split into parts, each an event of its own with a slice of the
    # recipients, so that several workers share it; parts are ordered as their parent.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="parts")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Attempts that ended without an answer: the worker died or its lease ran out. Errors
    # of the database or Redis do not count; a renderer that raises is dead at once.
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # The lease: a worker that claimed the event owns it until then. Once it has passed,
    # any worker may claim the event again; that is how lost work comes back.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    # After a database or Redis error, the event waits until then (a retry scheduled in
    # the outbox, not in a broker message that a dying worker could take along).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["id"], name="event_pending_idx", condition=models.Q(status="pending")),
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


class Heartbeat(models.Model):
    """When a component last proved it works: the outbox sweep ("outbox") and each worker
    ("worker:<name>"); /healthz reports those that stopped."""

    name = models.CharField(max_length=200, primary_key=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%H:%M:%S}"
