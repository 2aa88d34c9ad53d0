"""A recording WebSocket client: one tab, remembering every frame it was sent."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection


@dataclass
class Tab:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    origin: str | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    connection: ClientConnection | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None
    close_code: int | None = None
    ended: bool = False

    async def open(self) -> Tab:
        self.connection = await websockets.connect(
            self.url,
            additional_headers=self.headers,
            origin=self.origin,
            open_timeout=10,  # type: ignore[arg-type]
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.connection is not None
        try:
            async for raw in self.connection:
                async with self._arrived:
                    self.frames.append(json.loads(raw))
                    self._arrived.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.connection.close_code
            self.ended = True
            async with self._arrived:
                self._arrived.notify_all()

    async def send(self, frame: dict[str, Any] | str) -> None:
        assert self.connection is not None
        await self.connection.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def wait_for(self, frame_type: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The first `count` frames of this type, waiting for them to arrive."""

        def enough() -> bool:
            return len(self.of_type(frame_type)) >= count or self.closed

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(enough), timeout)
        found = self.of_type(frame_type)
        if len(found) < count:
            raise AssertionError(f"socket closed ({self.close_code}) after {found!r}; all frames: {self.frames!r}")
        return found[:count]

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: self.closed), timeout)
        return self.close_code

    @property
    def closed(self) -> bool:
        return self.ended

    def of_type(self, frame_type: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["type"] == frame_type]

    def notifications(self) -> list[dict[str, Any]]:
        return [frame["notification"] for frame in self.of_type("notification")]

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        if self._reader is not None:
            await self._reader
