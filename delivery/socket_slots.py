"""The per-user socket cap, counted across every web process in Redis.

Each open socket holds a slot: a member of the user's set in Redis, named after the web
process that holds it. The socket's end removes it. A web process that dies cannot remove
its slots, so each process keeps a heartbeat key alive (PROCESS_TTL_S), and a claim that
finds the user at the cap first drops the slots of processes whose heartbeat has lapsed:
after a crash, a user's tabs get back in within seconds, not after some long expiry.
Claiming is one Lua script, so two processes cannot both take the last slot.

If Redis cannot be reached the socket is let in (the cap guards against abuse; it must not
turn a Redis hiccup into an outage) and the failure is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

PROCESS = uuid.uuid4().hex[:16]  # this web process, in the names of its slots
HEARTBEAT_EVERY_S = 3.0
PROCESS_TTL_S = 10

# KEYS[1] the user's slots; ARGV: cap, now, member, heartbeat key prefix. The heartbeat keys
# are not in KEYS: the channel layer's Redis is one server, not a cluster.
CLAIM = """
local cap = tonumber(ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= cap then
    for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
        local process = string.match(member, '^([^|]+)|')
        if not process or redis.call('EXISTS', ARGV[4] .. process) == 0 then
            redis.call('ZREM', KEYS[1], member)
        end
    end
    if redis.call('ZCARD', KEYS[1]) >= cap then
        return 0
    end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""

# Per event loop (daphne runs one, tests run many): the client and this process's heartbeat.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def _client() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # A blocking pool: a thousand sockets connecting at once wait their turn for one of
        # a few connections, where the default pool would refuse the rest.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=20, timeout=5, socket_timeout=2, socket_connect_timeout=2
        )
        client = aioredis.Redis(connection_pool=pool)
        _clients[loop] = client
    return client


def _slots_key(user_id: int) -> str:
    return f"{settings.REDIS_NAMESPACE}:sockets:{user_id}"


def heartbeat_prefix() -> str:
    return f"{settings.REDIS_NAMESPACE}:web-process:"


def slot_name(socket: str) -> str:
    return f"{PROCESS}|{socket}"


async def _beat() -> None:
    await _client().set(heartbeat_prefix() + PROCESS, 1, ex=PROCESS_TTL_S)


async def _beat_forever() -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY_S)
        try:
            await _beat()
        except (RedisError, OSError) as exc:
            logger.warning("web process heartbeat not written: %r", exc)


async def _alive() -> None:
    """This process's heartbeat is written before its first slot, and kept from then on."""
    loop = asyncio.get_running_loop()
    if loop not in _heartbeats:
        _heartbeats[loop] = loop.create_task(_beat_forever())  # first, so that only one starts
        try:
            await _beat()
        except BaseException:
            _heartbeats.pop(loop).cancel()
            raise


async def slot_claim(user_id: int, socket: str) -> bool:
    """Take a slot for this socket; False if the user has WS_SOCKETS_PER_USER_MAX open."""
    try:
        await _alive()
        claimed = await _client().eval(
            CLAIM,
            1,
            _slots_key(user_id),
            settings.WS_SOCKETS_PER_USER_MAX,
            time.time(),
            slot_name(socket),
            heartbeat_prefix(),
        )
    except (RedisError, OSError) as exc:
        logger.warning("socket cap of user %s not checked, Redis unavailable: %r", user_id, exc)
        return True
    return bool(claimed)


async def slot_release(user_id: int, socket: str) -> None:
    try:
        await _client().zrem(_slots_key(user_id), slot_name(socket))
    except (RedisError, OSError) as exc:
        logger.warning("socket slot of user %s not released; dropped when its process is gone: %r", user_id, exc)
