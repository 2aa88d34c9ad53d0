"""URLs under /api/."""

from django.urls import include, path

from delivery import api
from events.api import EventCreate

urlpatterns = [
    path("notifications/", api.notification_list, name="notification-list"),
    path("notifications/unread-count/", api.unread_count, name="notification-unread-count"),
    path("notifications/<int:notification_id>/read/", api.notification_read, name="notification-read"),
    path("notifications/read-all/", api.notification_read_all, name="notification-read-all"),
    path("ws-ticket/", api.ws_ticket, name="ws-ticket"),
    path("sign-out-everywhere/", api.sign_out_everywhere_view, name="sign-out-everywhere"),
    path("events/", EventCreate.as_view(), name="event-create"),
    path("messages/", include("messaging.urls")),
]
