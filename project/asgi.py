"""ASGI entry point: HTTP goes to Django, WebSockets to the notification consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from delivery.auth import websocket_auth_stack  # noqa: E402
from delivery.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_auth_stack(URLRouter(websocket_urlpatterns)),
    }
)
