"""WhiteNoise's static files, without sending every other request through a thread.

WhiteNoise's middleware is synchronous only, which costs every request under ASGI two hops
(project/middleware.py). This one is both: a request for a static file is served by
WhiteNoise in a thread; any other goes straight on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

from project.middleware import SyncAndAsyncMiddleware


class StaticFilesMiddleware(SyncAndAsyncMiddleware):
    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        # A static URL that is not found goes on to Django (its 404), from WhiteNoise's thread.
        self.whitenoise = WhiteNoiseMiddleware(async_to_sync(get_response) if self.is_async else get_response)

    def handle(self, request: HttpRequest) -> HttpResponse:
        return self.whitenoise(request)

    async def handle_async(self, request: HttpRequest) -> HttpResponse:
        if self._may_be_static(request.path_info):
            return await sync_to_async(self.whitenoise, thread_sensitive=True)(request)
        return await self.get_response(request)

    def _may_be_static(self, path: str) -> bool:
        if self.whitenoise.autorefresh:  # DEBUG: WhiteNoise looks files up on each request
            return path.startswith(self.whitenoise.static_prefix)
        return path in self.whitenoise.files
