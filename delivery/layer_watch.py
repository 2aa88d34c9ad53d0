"""Every socket of a web process catches up once its pub/sub connection to Redis is back.

With the pub/sub channel layer, each web process hears every ring through one subscribed
Redis connection. When that connection drops (a Redis restart, a network blip, Redis
closing it), every ring published until redis-py has reconnected and subscribed again is
gone, and the reconnect waits out a backoff of up to several seconds. A later ring for the
same user would reveal the gap, but a ring lost after a user's last event never would,
until the socket's reconcile (WS_RECONCILE_INTERVAL_S). So when the connection is back,
after redis-py has subscribed it to every group again (PubSub.on_connect runs first), each
socket whose cursor is behind its user's inbox reads the rest from the database.

A ring published after the resubscription reaches the socket; one published before it was
committed before it, so the catch-up reads it. Nothing falls between (docs/DESIGN.md,
"Doorbell").
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
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
        """Every PROBE_EVERY_S, ring a group of this process's own and listen for it. Rings that
        stop arriving while Redis takes them mean the subscription is gone (a resubscription
        that failed, a receive loop that ended): subscribe everything again on a new
        connection. Either way, once probes arrive again, every socket catches up."""
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
                outcome = await probe.ring()
                if outcome is Probe.HEARD:
                    if missed:
                        logger.warning("channel layer hears rings again after %d missed probe(s)", missed)
                        await self.catch_up_all()
                    missed = deaf = 0
                    continue
                missed += 1
                metrics.layer_probes_missed.inc()
                deaf = deaf + 1 if outcome is Probe.DEAF else 0
                if deaf >= DEAF_PROBES_BEFORE_RESUBSCRIBE:
                    await self._resubscribe(probe, layer)
                    deaf = 0
        finally:
            await probe.stop()

    async def _resubscribe(self, probe: LayerProbe, layer: Any) -> None:
        logger.warning("channel layer takes rings but does not hear them; subscribing again on a new connection")
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
    HEARD = "heard"
    UNREACHABLE = "unreachable"  # Redis did not take the ring
    DEAF = "deaf"  # Redis took it, and it never came back


class LayerProbe:
    """A channel of this process in a group of its own, rung and listened to through Redis."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.group = f"layer-probe.{uuid.uuid4().hex}"
        self.channel = ""
        self.sent = 0
        self.received = 0
        self.arrived = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.channel = await self.layer.new_channel("layer-probe.")
        await self.layer.group_add(self.group, self.channel)
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()  # channels_redis unsubscribes the channel as its receive ends
        with contextlib.suppress(RedisError, OSError):
            await self.layer.group_discard(self.group, self.channel)

    async def _listen(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            self.received = max(self.received, int(message.get("n", 0)))
            self.arrived.set()

    async def ring(self) -> Probe:
        """Ring the group and listen for this ring for up to PROBE_TIMEOUT_S."""
        self.sent += 1
        try:
            await asyncio.wait_for(
                self.layer.group_send(self.group, {"type": "probe", "n": self.sent}), PROBE_TIMEOUT_S
            )
        except (RedisError, OSError, TimeoutError):
            return Probe.UNREACHABLE  # redis-py reconnects by itself once Redis answers
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                while True:
                    self.arrived.clear()
                    if self.received >= self.sent:
                        return Probe.HEARD
                    await self.arrived.wait()
        except TimeoutError:
            return Probe.DEAF

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
