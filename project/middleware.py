"""A base for middleware that runs in the event loop under ASGI and in the thread under WSGI.

A synchronous-only middleware makes Django run it, and every middleware outside it, in a
thread, and hop back to the event loop for those inside it: two more hops on every request.
Django's MiddlewareMixin runs its process_* hooks in a thread, so it does not help.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse


class SyncAndAsyncMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.handle_async(request)
        return self.handle(request)

    def handle(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    async def handle_async(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError
