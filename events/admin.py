from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from events.models import Event
from events.outbox import events_requeue


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """The outbox; filter by status "dead" for the dead-letter records."""

    list_display = ("id", "type", "status", "attempts", "parent", "created_at", "finished_at")
    list_filter = ("status", "type")
    search_fields = ("type", "idempotency_key", "last_error")
    readonly_fields = [field.name for field in Event._meta.fields]
    actions = ["retry_dead_events"]

    @admin.action(description="Retry the selected dead events")
    def retry_dead_events(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        count = events_requeue(event_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request, f"{count} dead event(s) queued again; the outbox sweep delivers them in seconds.", messages.SUCCESS
        )
