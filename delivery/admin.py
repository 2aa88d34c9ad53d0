from django.contrib import admin

from delivery.models import Inbox, Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "seq", "event_type", "title", "created_at", "read_at")
    list_filter = ("event_type",)
    search_fields = ("title", "user__username")
    raw_id_fields = ("user", "event")


@admin.register(Inbox)
class InboxAdmin(admin.ModelAdmin):
    list_display = ("user", "last_seq", "unread")
    raw_id_fields = ("user",)
