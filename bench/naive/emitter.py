"""The baseline's emitting process: application code that calls `group_send` itself.

Driven by JSON lines like bench.emitter, with the same commands and answers for `rate` and
`fanout`, so the scenarios treat both alike. It keeps one event loop for the whole run (the
layer's Redis connections with it), the cheapest way a process can ring groups: the
baseline at its best.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.naive.settings")
django.setup()

from channels.layers import get_channel_layer  # noqa: E402

from bench.naive.consumer import user_group  # noqa: E402
from bench.pacing import paced  # noqa: E402
from bench.stack import answer, serve_json_lines  # noqa: E402

LOOP = asyncio.new_event_loop()
LAYER = get_channel_layer()


def ring(name: str, title: str, body: str) -> None:
    LOOP.run_until_complete(LAYER.group_send(user_group(name), {"type": "notify", "title": title, "body": body}))


def rate(*, rate: float, seconds: float, recipients: list[str], tag: str) -> dict[str, Any]:
    """Ring one user's group `rate` times a second for `seconds`, round robin over `recipients`."""
    answer({"started": time.time()})
    return paced(rate=rate, seconds=seconds, recipients=recipients, send=lambda name, body: ring(name, tag, body))


def fanout(*, recipients: list[str], tag: str, timeout: float) -> dict[str, Any]:
    """One notification to every recipient: a loop of group_send, as a tutorial's view would."""
    t0 = time.time()

    async def ring_all() -> None:
        message = {"type": "notify", "title": tag, "body": repr(t0)}
        for name in recipients:
            await LAYER.group_send(user_group(name), message)

    LOOP.run_until_complete(asyncio.wait_for(ring_all(), timeout))
    return {"t0": t0, "all_sent_s": time.time() - t0}


if __name__ == "__main__":
    serve_json_lines({"rate": rate, "fanout": fanout})
