"""What one event costs each step, in one process, without Celery or sockets.

The worker and beat are stopped first (this runs last), so nothing else claims the events:
emit() in autocommit and inside the caller's atomic(), the hand-off's publish of a task,
and deliver_events for a lone event (the idle case) and for a backlog delivered in batches.
Set against the worker's CPU per event in the delivery scenario, the difference is Celery's.
"""

from __future__ import annotations

from typing import Any

from bench.session import Session
from bench.stack import log


def run(session: Session) -> dict[str, Any]:
    options = session.options
    for name in ("beat", "worker"):
        session.product.stop_process(name)
    log("worker and beat stopped for the in-process costs")
    found = session.product_emitter.ask(
        900, cmd="inprocess", events=options.events, users_count=100, batch=options.batch
    )
    session.progress.step("in-process costs", weight=2)
    return found
