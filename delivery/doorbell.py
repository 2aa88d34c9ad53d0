"""The doorbell: group_send from sync code, on one background event loop per process.

The channel layer is at-most-once, so a ring is only a hint that the database has news;
a lost ring costs latency (the next ring or a resume fills the gap), never a notification.
Sync callers (views, services, Celery tasks) get one long-lived loop, so the layer keeps
its Redis connections instead of opening new ones for every async_to_sync() call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine, Sequence
from functools import partial
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

Ring = tuple[str, dict[str, Any]]  # (group, message)
RING_TIMEOUT_S = 15.0


class LayerUnavailable(RuntimeError):
    """The channel layer (Redis) did not take a ring."""


class Doorbell:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def ring(self, group: str, message: dict[str, Any]) -> None:
        """Ring one group without waiting; a failure is logged, never raised."""
        future = self._submit(self._send_all([(group, message)]))
        future.add_done_callback(_log_failure)

    def ring_on_commit(self, group: str, message: dict[str, Any]) -> None:
        """Ring once the current transaction commits (at once in autocommit)."""
        transaction.on_commit(partial(self.ring, group, message), robust=True)

    def ring_and_wait(self, rings: Sequence[Ring], timeout: float = RING_TIMEOUT_S) -> None:
        """Ring every group and wait; raises LayerUnavailable if any ring failed."""
        if not rings:
            return
        future = self._submit(self._send_all(rings))
        try:
            future.result(timeout)
        except Exception as exc:
            future.cancel()
            raise LayerUnavailable(f"channel layer did not take {len(rings)} ring(s): {exc!r}") from exc

    async def _send_all(self, rings: Sequence[Ring]) -> None:
        layer = get_channel_layer()
        if layer is None:
            raise LayerUnavailable("no channel layer is configured")
        results = await asyncio.gather(
            *(layer.group_send(group, message) for group, message in rings), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise errors[0]

    def _submit(self, coro: Coroutine[Any, Any, None]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._running_loop())

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None and self._pid == os.getpid():
            return self._loop
        with self._lock:
            # After a fork (Celery's prefork pool) the parent's loop thread is gone.
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="doorbell", daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("doorbell ring lost (clients catch up from the database): %r", future.exception())


doorbell = Doorbell()
