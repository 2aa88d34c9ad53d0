"""Django's HTTP handler for ASGI, with each request's middleware and view in one thread hop.

Django's own ASGI handler runs the middleware chain in the event loop, and every middleware
built on MiddlewareMixin (sessions, CSRF, auth, messages, security, ...) runs its
process_request and process_response in the sync thread, each a hop there and back: more
than ten hops for one API request, with the GIL passed between the loop and the thread each
time. Here the whole request runs synchronously in that thread, as under WSGI, and the loop
only reads the request and writes the response. The views here are all synchronous (DRF).
"""

from __future__ import annotations

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class OneHopASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # ASGIHandler asks for the async chain; build only the sync one, which
        # get_response_async runs whole in the thread.
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def http_application() -> OneHopASGIHandler:
    """What django.core.asgi.get_asgi_application returns, with the one-hop handler."""
    django.setup(set_prefix=False)
    return OneHopASGIHandler()
