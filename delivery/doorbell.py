"""The doorbell: group_send from sync code, many groups in one Redis round trip.

The channel layer is at-most-once, so a ring is only a hint that the database has news;
a lost ring costs latency (the next ring, a reconcile or a resume fills the gap), never a
notification.

With the pub/sub layer (the default) a ring is one PUBLISH to the group's channel, and
`channels_redis` sends each with its own awaited round trip, one at a time. Here every
ring of a batch goes out in one pipeline from a plain redis-py client: a worker that
stored 500 users' notifications rings them in one round trip. The channel names and the
message bytes are the layer's own (`serialize()`, the `<prefix>__group__<group>` channel),
so consumers cannot tell the difference. Other layers (the core layer's group_send is a
Lua script per group) are rung through the layer itself, concurrently, on one long-lived
event loop per process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import redis
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

Ring = tuple[str, dict[str, Any]]  # (group, message)
RING_TIMEOUT_S = 15.0
# A counter of rings in the layer's Redis, which /metrics reads: every worker process adds
# to the same one, so Prometheus needs no per-process endpoint in Celery's prefork pool.
RUNG_COUNTER = "metrics:doorbells_rung"
REDIS_OPTIONS = ("socket_timeout", "socket_connect_timeout", "socket_keepalive", "health_check_interval")


class LayerUnavailable(RuntimeError):
    """The channel layer (Redis) did not take a ring."""


class PubSubPipeline:
    """Publishes rings for a single-host RedisPubSubChannelLayer in one pipelined round trip."""

    def __init__(self, layer: RedisPubSubChannelLayer, host: dict[str, Any], prefix: str) -> None:
        self.layer = layer
        self.prefix = prefix
        options = {key: host[key] for key in REDIS_OPTIONS if key in host}
        self.client = redis.Redis.from_url(host["address"], **options)

    def publish(self, rings: Sequence[Ring]) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for group, message in rings:
            pipeline.publish(f"{self.prefix}__group__{group}", self.layer.serialize(message))
        pipeline.incrby(rung_counter_key(self.prefix), len(rings))  # the same round trip
        pipeline.execute()


class LayerLoop:
    """Rings through the layer's own group_send, on a background event loop of its own, so
    the layer keeps its connections instead of opening new ones per async_to_sync() call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="doorbell", daemon=True).start()

    def publish(self, rings: Sequence[Ring]) -> None:
        self._run(self._send_all(rings)).result(RING_TIMEOUT_S)

    def _run(self, coro: Coroutine[Any, Any, None]) -> Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _send_all(self, rings: Sequence[Ring]) -> None:
        layer = get_channel_layer()
        results = await asyncio.gather(
            *(layer.group_send(group, message) for group, message in rings), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise errors[0]


def rung_counter_key(prefix: str) -> str:
    return f"{prefix}:{RUNG_COUNTER}"


def pubsub_host() -> tuple[dict[str, Any], str] | None:
    """The pub/sub layer's Redis host (a dict with "address") and its prefix, when the
    default layer is a RedisPubSubChannelLayer on one host; None otherwise."""
    config = settings.CHANNEL_LAYERS.get("default", {})
    options = config.get("CONFIG", {})
    hosts = options.get("hosts") or []
    if config.get("BACKEND", "").rsplit(".", 1)[-1] != RedisPubSubChannelLayer.__name__ or len(hosts) != 1:
        return None
    host = {"address": hosts[0]} if isinstance(hosts[0], str) else hosts[0]
    if not isinstance(host, dict) or "address" not in host:
        return None
    return host, options.get("prefix", "asgi")


def doorbells_rung(timeout_s: float = 1.0) -> int | None:
    """How many rings every process has sent through the pub/sub layer's pipeline (None with
    another layer, which does not count them). Raises RedisError if Redis does not answer."""
    found = pubsub_host()
    if found is None:
        return None
    host, prefix = found
    client = redis.Redis.from_url(host["address"], socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return int(client.get(rung_counter_key(prefix)) or 0)
    finally:
        client.close()


def publisher_for_layer() -> Callable[[Sequence[Ring]], None]:
    layer = get_channel_layer()
    if layer is None:
        raise LayerUnavailable("no channel layer is configured")
    found = pubsub_host()
    if found is not None and isinstance(layer, RedisPubSubChannelLayer):
        host, prefix = found
        return PubSubPipeline(layer, host, prefix).publish
    return LayerLoop().publish


class Doorbell:
    """Rings groups from sync code: waiting (a task that must know) or not (a request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._publish: Callable[[Sequence[Ring]], None] | None = None
        self._background: ThreadPoolExecutor | None = None

    def ring_and_wait(self, rings: Sequence[Ring]) -> None:
        """Ring every group in one go and wait; raises LayerUnavailable if it failed."""
        if not rings:
            return
        publish, _ = self._tools()
        try:
            publish(rings)
        except (RedisError, OSError, TimeoutError, RuntimeError) as exc:
            raise LayerUnavailable(f"channel layer did not take {len(rings)} ring(s): {exc!r}") from exc

    def ring(self, group: str, message: dict[str, Any]) -> None:
        """Ring one group without waiting; a failure is logged, never raised."""
        _, background = self._tools()
        background.submit(self._ring_logged, [(group, message)])

    def ring_on_commit(self, group: str, message: dict[str, Any]) -> None:
        """Ring once the current transaction commits (at once in autocommit)."""
        transaction.on_commit(partial(self.ring, group, message), robust=True)

    def forget_layer(self) -> None:
        """Build the publisher again at the next ring (the layer's settings changed)."""
        with self._lock:
            self._publish = None

    def _ring_logged(self, rings: Sequence[Ring]) -> None:
        try:
            self.ring_and_wait(rings)
        except LayerUnavailable as exc:
            logger.warning("doorbell ring lost (clients catch up from the database): %s", exc)

    def _tools(self) -> tuple[Callable[[Sequence[Ring]], None], ThreadPoolExecutor]:
        if self._publish is not None and self._background is not None and self._pid == os.getpid():
            return self._publish, self._background
        with self._lock:
            # After a fork (Celery's prefork pool) the parent's threads and sockets are not ours.
            if self._publish is None or self._background is None or self._pid != os.getpid():
                self._publish = publisher_for_layer()
                self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorbell-ring")
                self._pid = os.getpid()
            return self._publish, self._background


doorbell = Doorbell()


@receiver(setting_changed)
def _layer_settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "CHANNEL_LAYERS":
        doorbell.forget_layer()
