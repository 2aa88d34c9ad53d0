"""A web process's watch on its pub/sub subscription, and the catch-up of its sockets.

With the pub/sub channel layer, each web process hears every ring through one subscribed
Redis connection. While that connection is down (a Redis restart, a network blip), every
ring published for the process is gone. A later ring for the same user reveals the gap,
but a ring lost after a user's last event never would, until the socket's reconcile
(WS_RECONCILE_INTERVAL_S). So:

- when redis-py has reconnected and subscribed the connection to every group again (its
  PubSub.on_connect runs before our callback), each socket whose cursor is behind its
  user's inbox reads the rest from the database. A ring published after the resubscription
  reaches the socket; one published before was committed before it, so the catch-up reads it.
- a resubscription can fail (Redis refusing SUBSCRIBE for a moment: an ACL change, a
  failover) and leave the connection open and subscribed to nothing, and channels_redis's
  receive loop can end; neither library notices. Every PROBE_EVERY_S the process asks
  Redis whether its own probe channel has a subscriber: twice no means deaf, and every
  channel and group is subscribed again on a new connection, then the sockets catch up.

See docs/DESIGN.md, "Channel layer: pub/sub by default".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import weakref
from collections.abc import Coroutine
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.db import DatabaseError
from redis.exceptions import RedisError

from delivery import metrics
from delivery.selectors import inboxes_last_seq

logger = logging.getLogger(__name__)

PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 2.0
DEAF_PROBES_BEFORE_RESUBSCRIBE = 2


class Socket(Protocol):
    """What the watch needs of a consumer (delivery.consumers.NotificationConsumer)."""

    cursor: int

    @property
    def user_id(self) -> int: ...

    async def catch_up_now(self) -> None: ...


class LayerWatch:
    """The sockets of this process, the pub/sub connections whose reconnects they follow, and
    the probe that notices when rings stop arriving altogether."""

    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prober: asyncio.Task[None] | None = None

    def add(self, socket: Socket, layer: Any) -> None:
        """Follow `socket` from now on; call once it has joined its groups."""
        if not isinstance(layer, RedisPubSubChannelLayer):
            return
        self.sockets.add(socket)
        self._follow_reconnects(layer)
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self.probe_forever(layer))

    def discard(self, socket: Socket) -> None:
        self.sockets.discard(socket)
        if not self.sockets and self._prober is not None:
            self._prober.cancel()  # nothing to watch for
            self._prober = None

    def _follow_reconnects(self, layer: Any) -> None:
        for connection in pubsub_connections(layer):
            if connection not in self._watched:
                # redis-py keeps a weak reference to the method: this object lives as long as the process.
                connection.register_connect_callback(self.on_reconnect)
                self._watched.add(connection)

    async def on_reconnect(self, connection: Any) -> None:
        """Called by redis-py inside its reconnect, after the resubscription: schedule, do not wait
        (a catch-up sends frames and reads the database, and the connection is not free yet)."""
        metrics.layer_reconnects.inc()
        self._spawn(self.catch_up_all())

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def probe_forever(self, layer: Any) -> None:
        """Every PROBE_EVERY_S, ask whether this process still hears Redis (LayerProbe). Twice
        deaf in a row (once may be redis-py mid-reconnect) means the subscription is gone (a
        resubscription that failed, a receive loop that ended): subscribe everything again
        on a new connection. Whenever it hears again, every socket catches up."""
        probe = LayerProbe(layer)
        try:
            await probe.start()
        except (RedisError, OSError) as exc:
            logger.warning("channel layer probe not started (the next socket tries again): %r", exc)
            return
        missed = deaf = 0
        try:
            while True:
                await asyncio.sleep(PROBE_EVERY_S)
                outcome = await probe.check()
                if outcome is Probe.SUBSCRIBED:
                    if missed:
                        logger.warning("channel layer hears again after %d failed probe(s)", missed)
                        await self.catch_up_all()
                    missed = deaf = 0
                    continue
                missed += 1
                metrics.layer_probes_failed.inc()
                deaf = deaf + 1 if outcome is Probe.DEAF else 0
                if deaf >= DEAF_PROBES_BEFORE_RESUBSCRIBE:
                    await self._resubscribe(probe, layer)
                    deaf = 0
        finally:
            await probe.stop()

    async def _resubscribe(self, probe: LayerProbe, layer: Any) -> None:
        logger.warning("channel layer connection subscribed to nothing; subscribing again on a new connection")
        try:
            await probe.resubscribe()
        except (RedisError, OSError) as exc:
            logger.warning("subscribing again failed, trying at the next probe: %r", exc)
        self._follow_reconnects(layer)

    async def catch_up_all(self) -> int:
        """Every socket behind its user's inbox reads the rest; returns how many were behind.
        One query for all the sockets' users, then one catch-up per socket that is behind."""
        sockets = list(self.sockets)
        if not sockets:
            return 0
        try:
            last = await database_sync_to_async(inboxes_last_seq)(user_ids={socket.user_id for socket in sockets})
        except DatabaseError as exc:
            logger.warning("sockets not caught up after the layer came back (reconcile will): %r", exc)
            return 0
        behind = [socket for socket in sockets if socket.cursor < last.get(socket.user_id, 0)]
        if behind:
            logger.info("channel layer back: %d of %d sockets catch up", len(behind), len(sockets))
        results = await asyncio.gather(*(socket.catch_up_now() for socket in behind), return_exceptions=True)
        for result in results:
            if isinstance(result, (DatabaseError, RedisError, OSError)):
                logger.warning("a socket's catch-up after the layer came back failed (reconcile will): %r", result)
            elif isinstance(result, BaseException):
                raise result
        return len(behind)


class Probe(enum.Enum):
    SUBSCRIBED = "subscribed"
    UNREACHABLE = "unreachable"  # Redis did not answer
    DEAF = "deaf"  # Redis answers, and this process hears nothing from it


class LayerProbe:
    """A channel of this process that nothing is sent to: whether Redis counts a subscriber
    for it says whether this process's pub/sub connection is subscribed at all. Redis
    answers from its own state, so a busy event loop never passes for a deaf one."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel = ""

    async def start(self) -> None:
        self.channel = await self.layer.new_channel("layer-probe.")

    async def stop(self) -> None:
        loop_layer = self.layer._get_layer()
        if loop_layer.channels.pop(self.channel, None) is not None:
            with contextlib.suppress(RedisError, OSError):
                await loop_layer._get_shard(self.channel).unsubscribe(self.channel)

    async def check(self) -> Probe:
        loop_layer = self.layer._get_layer()
        if any(shard._receive_task is not None and shard._receive_task.done() for shard in loop_layer._shards):
            return Probe.DEAF  # channels_redis's receive loop ended: nothing reads the connection
        shard = loop_layer._get_shard(self.channel)
        shard._ensure_redis()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                [(_, subscribers)] = await shard._redis.pubsub_numsub(self.channel)
        except (RedisError, OSError, TimeoutError):
            return Probe.UNREACHABLE  # redis-py reconnects by itself once Redis answers
        return Probe.SUBSCRIBED if subscribers else Probe.DEAF

    async def resubscribe(self) -> None:
        """Close each shard's connection and subscribe every channel and group of this process
        again on a new one (channels_redis keeps what it believes is subscribed per shard)."""
        loop_layer = self.layer._get_layer()
        for shard in loop_layer._shards:
            await shard.flush()
        for name in [*loop_layer.channels, *loop_layer.groups]:
            await loop_layer._get_shard(name).subscribe(name)


def pubsub_connections(layer: Any) -> list[Any]:
    """The redis-py connections a RedisPubSubChannelLayer receives rings on, in this event
    loop; none for another layer (the core layer reads from lists, and loses no ring).
    They exist once something has subscribed."""
    if not isinstance(layer, RedisPubSubChannelLayer):
        return []
    shards = getattr(layer._get_layer(), "_shards", [])
    pubsubs = [getattr(shard, "_pubsub", None) for shard in shards]
    return [pubsub.connection for pubsub in pubsubs if pubsub is not None and pubsub.connection is not None]


layer_watch = LayerWatch()
