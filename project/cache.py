"""Django's Redis cache, with one set of connection pools per process.

Django keeps a cache object per thread and, under ASGI, per request (its handler is
context-local), and each object builds connection pools of its own: every API request opened
a new Redis connection for its rate-limit count. py-spy of the API process under load put a
fifth of its CPU in the rate limit, half of that in making the connection. Here the pools, and
one client on each, belong to the process (a new set after a fork).
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class SharedPoolsClient(RedisCacheClient):
    _shared: ClassVar[dict[tuple[Any, ...], tuple[Any, Any]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def _get_connection_pool(self, write: bool) -> Any:
        return self._pool_and_client(write)[0]

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        return self._pool_and_client(write)[1]

    def _pool_and_client(self, write: bool) -> tuple[Any, Any]:
        server = self._servers[self._get_connection_pool_index(write)]
        key = (os.getpid(), server, self._pool_class, repr(sorted(self._pool_options.items())))
        found = self._shared.get(key)
        if found is None:
            with self._lock:
                found = self._shared.get(key)
                if found is None:
                    pool = self._pool_class.from_url(server, **self._pool_options)
                    found = self._shared[key] = (pool, self._client(connection_pool=pool))
        return found


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedPoolsClient
