"""Event types that misbehave, loaded into the fault stack's processes via EVENT_TYPE_MODULES."""

from __future__ import annotations

import os
import time
from typing import Any

from events.registry import Rendered, event_type


@event_type("test.poison")
def render_poison(event: Any, user: Any) -> Rendered:
    """A renderer with a bug: it raises every time."""
    raise RuntimeError("this renderer always fails")


@event_type("test.crash")
def render_crash(event: Any, user: Any) -> Rendered:
    """A renderer that kills the worker process running it, every time."""
    os._exit(1)


@event_type("test.slow")
def render_slow(event: Any, user: Any) -> Rendered:
    """A renderer that takes its time, so that a worker can be killed mid-task."""
    time.sleep(1.5)
    return Rendered(title=event.data["title"])


@event_type("test.stall")
def render_stall(event: Any, user: Any) -> Rendered:
    """Slower still: a delivery holding it is mid-render for seconds, however loaded the machine."""
    time.sleep(5.0)
    return Rendered(title=event.data["title"])
