"""Notifications (one per event and recipient, numbered per user), inboxes and socket tickets."""

from django.conf import settings
from django.db import models


class Inbox(models.Model):
    """A user's notification counters; its row lock serialises seq allocation for that user.

    Whoever creates a notification or changes read state locks this row first, so `seq`
    values commit strictly in order (no tab can see 11 while 10 is still uncommitted) and
    `unread` always matches the rows.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="inbox"
    )
    last_seq = models.PositiveBigIntegerField(default=0)
    unread = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"inbox of user {self.user_id}: last_seq={self.last_seq} unread={self.unread}"


class Notification(models.Model):
    """What one user was told about one event."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    seq = models.PositiveBigIntegerField()
    event = models.ForeignKey("events.Event", on_delete=models.CASCADE, related_name="notifications")
    event_type = models.CharField(max_length=100)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    url = models.CharField(max_length=2000, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The gapless per-user sequence, and the reason a task may safely run twice.
            models.UniqueConstraint(fields=["user", "seq"], name="notification_user_seq_uniq"),
            models.UniqueConstraint(fields=["event", "user"], name="notification_event_user_uniq"),
        ]
        indexes = [
            # "this user's unread", newest first
            models.Index(
                fields=["user", "-seq"],
                name="notification_unread_idx",
                condition=models.Q(read_at__isnull=True),
            ),
        ]
        # "this user's after seq" and "newest first" both use the (user, seq) unique index.

    def __str__(self) -> str:
        return f"#{self.seq} for user {self.user_id}: {self.title}"


class SocketTicket(models.Model):
    """A single-use, short-lived WebSocket credential for browser pages on another origin."""

    digest = models.CharField(max_length=64, unique=True)  # sha256 of the ticket; never the ticket
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The credential that asked for it (a session key or a token digest): a socket opened
    # with the ticket closes when that credential ends.
    credential_kind = models.CharField(max_length=16)
    credential_ref = models.CharField(max_length=128)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"ticket for user {self.user_id} (expires {self.expires_at:%H:%M:%S})"


class SignedInSession(models.Model):
    """A login session of a user, noted at sign-in, so "sign out everywhere" can end them all
    without decoding every session in the store."""

    session_key = models.CharField(max_length=40, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="signed_in_sessions")
    signed_in_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"session of user {self.user_id} since {self.signed_in_at:%Y-%m-%d %H:%M}"
