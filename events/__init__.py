"""Domain events: `from events import emit`, then `emit("type", recipients=[...], ...)`."""

from typing import Any

__all__ = ["emit"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import events` works before Django's app registry is ready.
    if name == "emit":
        from events.emitting import emit

        return emit
    raise AttributeError(f"module 'events' has no attribute {name!r}")
