from django.contrib import admin

from events.models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """The outbox; filter by status "dead" for the dead-letter records."""

    list_display = ("id", "type", "status", "attempts", "created_at", "finished_at")
    list_filter = ("status", "type")
    search_fields = ("type", "idempotency_key", "last_error")
    readonly_fields = [field.name for field in Event._meta.fields]
