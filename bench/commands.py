"""The JSON-lines protocol of the benchmark's helper processes: one command per line on stdin
(`{"cmd": name, ...arguments}`), one JSON answer per line on stdout, `quit` or EOF to stop."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[..., Awaitable[Any]]


async def serve_commands(handlers: dict[str, Handler]) -> None:
    """Answer commands until `quit` or EOF; a failing command answers {"error": ...}."""
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        name = command.pop("cmd")
        if name == "quit":
            return
        try:
            handler = handlers.get(name)
            if handler is None:
                raise ValueError(f"unknown command {name!r}")
            result = await handler(**command)
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
