"""The per-user socket cap, counted across every web process in Redis.

Each open socket holds a slot: a member of the user's sorted set, scored with the time the
slot lapses. The socket's reconcile renews it and the socket's end removes it, so the slot
of a web process that died lapses on its own after `slot_ttl_s()`. Claiming is one Lua
script, so two processes cannot both take the last slot.

If Redis cannot be reached the socket is let in (the cap guards against abuse; it must not
turn a Redis hiccup into an outage) and the failure is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# One client per event loop: daphne runs one, tests run many.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def _client() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        _clients[loop] = client
    return client


def _key(user_id: int) -> str:
    return f"{settings.REDIS_NAMESPACE}:sockets:{user_id}"


def slot_ttl_s() -> int:
    """Longer than the longest gap between two reconciles of one socket, with room to spare."""
    return int(settings.WS_RECONCILE_INTERVAL_S * 1.25 * 2) + 10


async def slot_claim(user_id: int, socket: str) -> bool:
    """Take a slot for this socket; False if the user has WS_SOCKETS_PER_USER_MAX open."""
    now = time.time()
    ttl = slot_ttl_s()
    try:
        claimed = await _client().eval(
            CLAIM, 1, _key(user_id), now, now + ttl, settings.WS_SOCKETS_PER_USER_MAX, socket, ttl
        )
    except (RedisError, OSError) as exc:
        logger.warning("socket cap of user %s not checked, Redis unavailable: %r", user_id, exc)
        return True
    return bool(claimed)


async def slot_renew(user_id: int, socket: str) -> None:
    ttl = slot_ttl_s()
    try:
        async with _client().pipeline(transaction=True) as pipe:
            pipe.zadd(_key(user_id), {socket: time.time() + ttl})
            pipe.expire(_key(user_id), ttl)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        logger.warning("socket slot of user %s not renewed: %r", user_id, exc)


async def slot_release(user_id: int, socket: str) -> None:
    try:
        await _client().zrem(_key(user_id), socket)
    except (RedisError, OSError) as exc:
        logger.warning("socket slot of user %s not released, it lapses on its own: %r", user_id, exc)
