"""The open sockets of a web process, and what watches over all of them at once.

Two things, each one task per process rather than one per socket:

- The reconcile. Every WS_RECONCILE_INTERVAL_S (with jitter) the sockets whose credential
  ended are closed (4401), the others join their groups again (a Redis restart forgets the
  core layer's) and those behind their user's inbox send what they missed. Whatever loses
  a doorbell or a logout ring, that interval bounds the cost. The tokens are checked in one
  query per CREDENTIALS_PER_HOP sockets and the inboxes read in one query: a process with
  1,000 token sockets runs 6 queries per interval, not 2,000.

- The pub/sub subscription. With the pub/sub layer, each web process hears every ring
  through one subscribed Redis connection, and a ring published while it is down is gone;
  a ring lost after a user's last event would wait for the reconcile. So when redis-py has
  reconnected and subscribed the connection to every group again (its PubSub.on_connect
  runs before our callback), the sockets behind their inbox catch up: a ring published
  after the resubscription reaches them, one published before was committed before it.
  And a resubscription can fail (Redis refusing SUBSCRIBE for a moment: an ACL change, a
  failover), leaving the connection open and subscribed to nothing, and channels_redis's
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
import random
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from delivery import metrics
from delivery.credentials import Credential, credentials_valid
from delivery.selectors import inboxes_last_seq

logger = logging.getLogger(__name__)

PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 2.0
DEAF_PROBES_BEFORE_RESUBSCRIBE = 2
# Credentials checked per trip to the database thread: the tokens among them in one query, each
# session on its own.
CREDENTIALS_PER_HOP = 200
FAULTS = (TimeoutError, DatabaseError, RedisError, OSError)  # a reconcile that meets one tries next time


class Socket(Protocol):
    """What the watch needs of a socket (delivery.consumers.NotificationConsumer)."""

    cursor: int
    credential: Credential

    @property
    def user_id(self) -> int: ...

    async def catch_up_now(self) -> None: ...

    async def join_groups(self) -> None: ...

    async def end_for_credential(self) -> None: ...


class SocketWatch:
    """The sockets of this process; its reconcile; the pub/sub connections whose reconnects
    they follow, and the probe that notices when the process hears nothing any more."""

    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconciler: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None

    def add(self, socket: Socket, layer: Any) -> None:
        """Watch over `socket` from now on; call once it has joined its groups."""
        self.sockets.add(socket)
        self._reconciler = _running(self._reconciler, self.reconcile_forever)
        if isinstance(layer, RedisPubSubChannelLayer):
            self._follow_reconnects(layer)
            self._prober = _running(self._prober, lambda: self.probe_forever(layer))

    def discard(self, socket: Socket) -> None:
        self.sockets.discard(socket)
        if not self.sockets:  # nothing to watch over
            for task in (self._reconciler, self._prober):
                if task is not None:
                    task.cancel()
            self._reconciler = self._prober = None

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
        self._spawn(self._catch_up_after_fault())

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
                        await self._catch_up_after_fault()
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

    async def reconcile_forever(self) -> None:
        while True:
            interval = settings.WS_RECONCILE_INTERVAL_S
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))  # noqa: S311 (jitter, not crypto)
            try:
                await self.reconcile_all()
            except FAULTS as exc:
                logger.warning("reconcile of this process's sockets failed, retrying later: %r", exc)

    async def reconcile_all(self) -> None:
        """Close the sockets whose credential ended; the others join their groups again and
        those behind their inbox catch up."""
        sockets = list(self.sockets)
        if not sockets:
            return
        held = [(socket.credential, socket.user_id) for socket in sockets]
        valid: list[bool] = []
        for start in range(0, len(held), CREDENTIALS_PER_HOP):
            # In slices, so the sockets' own reads (resumes, gap fills) get the thread in between.
            valid += await database_sync_to_async(credentials_valid)(held[start : start + CREDENTIALS_PER_HOP])
        live = [socket for socket, ok in zip(sockets, valid, strict=True) if ok]
        for socket in (socket for socket, ok in zip(sockets, valid, strict=True) if not ok):
            await socket.end_for_credential()
        _raise_unexpected(await asyncio.gather(*(socket.join_groups() for socket in live), return_exceptions=True))
        await self.catch_up_all(live)

    async def catch_up_all(self, sockets: list[Any] | None = None) -> int:
        """Every socket (of `sockets`, or all) behind its user's inbox sends the rest; returns
        how many were behind. One query for all the users, a replay for each socket behind."""
        sockets = list(self.sockets) if sockets is None else sockets
        if not sockets:
            return 0
        last = await database_sync_to_async(inboxes_last_seq)(user_ids={socket.user_id for socket in sockets})
        behind = [socket for socket in sockets if socket.cursor < last.get(socket.user_id, 0)]
        _raise_unexpected(await asyncio.gather(*(socket.catch_up_now() for socket in behind), return_exceptions=True))
        return len(behind)

    async def _catch_up_after_fault(self) -> None:
        try:
            behind = await self.catch_up_all()
        except FAULTS as exc:
            logger.warning("sockets not caught up after the layer came back (the reconcile will): %r", exc)
            return
        if behind:
            logger.info("channel layer back: %d sockets caught up", behind)


def _raise_unexpected(results: list[Any]) -> None:
    """Of gathered results, log the faults (the next reconcile retries) and raise anything else."""
    for result in results:
        if isinstance(result, FAULTS):
            logger.warning("a socket's reconcile failed (the next one retries): %r", result)
        elif isinstance(result, BaseException):
            raise result


def _running(task: asyncio.Task[None] | None, start: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    """`task` if it still runs in this event loop, else a new one (tests run a loop each)."""
    loop = asyncio.get_running_loop()
    if task is not None and not task.done() and task.get_loop() is loop:
        return task
    return loop.create_task(start())


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


socket_watch = SocketWatch()
