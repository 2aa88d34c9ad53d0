"""HTTP ingest at a fixed rate: POST /api/events/ as another service would, open loop.

Started by the benchmarks (python -m bench.http_load) and driven by JSON lines on stdin.
Each request is due at start + n / rate whether or not earlier ones were answered (so a
slow server meets the load it would meet, and its queueing shows in the latency); it takes
an idle keep-alive connection or opens another, up to CONNECTIONS_MAX. A request's latency
runs from when it was due to its answer; one unanswered after `timeout` seconds fails.
The event's `data.body` is the wall time it was sent, for the tabs to measure end to end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

from bench.commands import serve_commands

CONNECTIONS_MAX = 256  # more than daphne's thread pool can serve at once: the server queues, not we


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def post(self, host: str, path: str, token: str, body: bytes) -> int:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("closed by the server")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        else:
            await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            raise ConnectionAbortedError(status)
        return status

    def close(self) -> None:
        self.writer.close()


class Ingest:
    def __init__(self) -> None:
        self.idle: list[Connection] = []
        self.opened = 0
        self.slots = asyncio.Semaphore(CONNECTIONS_MAX)

    async def one(self, port: int, path: str, token: str, body: bytes, timeout: float) -> int | str:
        async with self.slots:
            connection = self.idle.pop() if self.idle else None
            try:
                if connection is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
                    connection = Connection(reader, writer)
                    self.opened += 1
                status = await asyncio.wait_for(connection.post(f"127.0.0.1:{port}", path, token, body), timeout)
            except ConnectionAbortedError as closed:  # answered, then closed by the server
                assert connection is not None
                connection.close()
                return int(closed.args[0])
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                if connection is not None:
                    connection.close()
                return "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            self.idle.append(connection)
            return status

    async def post(
        self,
        *,
        port: int,
        path: str,
        token: str,
        rate: float,
        seconds: float,
        recipients: list[str],
        tag: str,
        timeout: float,
    ) -> dict[str, Any]:
        """POST one event to one recipient `rate` times a second for `seconds`, round robin."""
        total = int(rate * seconds)
        results: list[tuple[int, int | str, float]] = []

        async def request(number: int, due: float) -> None:
            index = number % len(recipients)
            sent = time.time()
            event = {"type": "notice", "recipients": [recipients[index]], "data": {"title": tag, "body": repr(sent)}}
            status = await self.one(port, path, token, json.dumps(event).encode(), timeout)
            results.append((index, status, time.monotonic() - due))

        started_wall = time.time()
        start = time.monotonic()
        pending = []
        for number in range(total):
            due = start + number / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(request(number, due)))
        sent_s = time.monotonic() - start
        await asyncio.gather(*pending)
        counts = [0] * len(recipients)
        statuses: Counter[str] = Counter()
        latencies: list[float] = []
        for index, status, took in results:
            statuses[str(status)] += 1
            latencies.append(took)
            if isinstance(status, int) and 200 <= status < 300:
                counts[index] += 1
        return {
            "requested": total,
            "sent_s": sent_s,
            "answered_s": time.monotonic() - start,
            "first": started_wall,
            "ok": sum(counts),
            "failed": total - sum(counts),
            "statuses": dict(statuses),
            "latencies": [round(value, 5) for value in latencies],
            "counts": counts,
            "connections_opened": self.opened,
        }

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()
        self.opened = 0


async def main() -> None:
    ingest = Ingest()

    async def reset() -> dict[str, bool]:
        ingest.close()
        return {"closed": True}

    await serve_commands({"post": ingest.post, "reset": reset})
    ingest.close()


if __name__ == "__main__":
    asyncio.run(main())
