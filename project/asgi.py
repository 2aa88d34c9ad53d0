"""ASGI entry point: HTTP goes to Django, WebSockets to the notification consumer."""

import gc
import os

from project.http import http_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# A web process pools its database connections (PostgreSQL): see DATABASES in settings.
# Only for this process: the variable is taken back once the settings have read it, so a
# process started from here (a test's Celery worker) decides for itself.
pool_by_default = "DATABASE_POOL" not in os.environ
os.environ.setdefault("DATABASE_POOL", "1")
# Django must be set up before anything imports models.
django_asgi_app = http_application()
if pool_by_default:
    from django.conf import settings

    settings.DATABASES  # noqa: B018 (read now, while the variable is set)
    del os.environ["DATABASE_POOL"]

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from delivery.auth import websocket_auth_stack  # noqa: E402
from delivery.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_auth_stack(URLRouter(websocket_urlpatterns)),
    }
)

# Everything loaded so far (Django, the apps, the URL conf) lives as long as the process:
# move it out of the collector's way. With 1,000 sockets, daphne's full collections paused it
# for p50 ~200 ms every 2-3 s; frozen, p50 ~90 ms, and p99 delivery at 2,000 frames/s fell
# from 0.65-2.5 s to ~0.28 s (docs/BENCHMARKS.md, "Earlier measurements").
gc.freeze()
