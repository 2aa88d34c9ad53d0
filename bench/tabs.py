"""The load generator: many WebSocket tabs in one asyncio process, apart from the web server.

Started by the benchmarks (python -m bench.tabs) and driven by JSON lines on stdin. Each
tab authenticates with its user's API token, as a non-browser client does, and records
for every `notification` frame its seq and the time from the event's emit (the float the
emitter or the HTTP client put in `data.body`) to the frame's arrival here. The seq tells
what is missing, doubled or out of order: every tab of a user must end with seq 1..N,
gapless. The same generator serves the product and the naive baseline (whose frames
carry a per-socket seq, as it stores nothing to number them by).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import socket
import struct
import termios
import time
import urllib.request
from collections import defaultdict
from typing import Any

import websockets

from bench.commands import serve_commands


class Tab:
    __slots__ = ("ahead", "close_code", "contiguous", "duplicates", "gaps", "reader", "token", "user", "ws")

    def __init__(self, user: str, token: str) -> None:
        self.user = user
        self.token = token
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.contiguous = 0  # every seq up to this one arrived (from the hello's last_seq on)
        self.ahead: set[int] = set()  # seqs that arrived past a hole (none, if the contract holds)
        self.duplicates = 0
        self.gaps = 0
        self.close_code: int | None = None


class LoadGenerator:
    def __init__(self) -> None:
        self.tabs: list[Tab] = []
        self.latencies: dict[str, list[float]] = defaultdict(list)
        # Per tag, per event (its emit time, as sent): when its first and its last frame arrived.
        self.spans: dict[str, dict[str, list[float]]] = defaultdict(dict)
        self.frames = 0

    async def open(self, *, url: str, tabs: list[list[Any]], concurrency: int = 20) -> dict[str, Any]:
        """Open `count` tabs for each [user, token, count]; answers once every hello arrived."""
        started = time.monotonic()
        gate = asyncio.Semaphore(concurrency)
        new = [Tab(user, token) for user, token, count in tabs for _ in range(count)]
        errors: list[str] = []

        async def connect(tab: Tab) -> None:
            async with gate:
                try:
                    tab.ws = await websockets.connect(
                        url,
                        additional_headers={"Authorization": f"Bearer {tab.token}"},
                        open_timeout=60,
                        ping_interval=None,  # as browsers: the server pings, we answer
                        compression=None,  # the servers differ in whether they deflate; none is asked of any
                        max_size=2**20,
                    )
                    hello = json.loads(await asyncio.wait_for(tab.ws.recv(), 60))
                    if hello.get("type") != "hello":
                        raise RuntimeError(f"first frame was {hello!r}")
                    tab.contiguous = hello["last_seq"]
                    tab.reader = asyncio.create_task(self.read(tab))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(connect(tab) for tab in new))
        self.tabs += [tab for tab in new if tab.reader is not None]
        return {
            "opened": sum(tab.reader is not None for tab in new),
            "failed": len(errors),
            "errors": errors[:5],
            "seconds": time.monotonic() - started,
        }

    async def read(self, tab: Tab) -> None:
        latencies = self.latencies
        try:
            async for raw in tab.ws:
                arrived = time.time()
                frame = json.loads(raw)
                if frame["type"] != "notification":
                    continue
                self.frames += 1
                notification = frame["notification"]
                seq = notification["seq"]
                if seq <= tab.contiguous or seq in tab.ahead:
                    tab.duplicates += 1
                    continue
                if seq == tab.contiguous + 1:
                    tab.contiguous = seq
                    while tab.contiguous + 1 in tab.ahead:
                        tab.contiguous += 1
                        tab.ahead.discard(tab.contiguous)
                else:
                    tab.gaps += 1
                    tab.ahead.add(seq)
                title, emitted = notification["title"], notification["body"]
                latencies[title].append(arrived - float(emitted))
                span = self.spans[title].get(emitted)
                if span is None:
                    self.spans[title][emitted] = [arrived, arrived]
                else:
                    span[1] = max(span[1], arrived)
        except websockets.ConnectionClosed:
            pass
        finally:
            tab.close_code = tab.ws.close_code

    def missing(self, expect: dict[str, int]) -> tuple[int, int]:
        """(frames missing, tabs missing any) against each user's expected last seq."""
        frames = tabs = 0
        for tab in self.tabs:
            want = expect.get(tab.user, 0)
            have = tab.contiguous + sum(1 for seq in tab.ahead if seq <= want)
            if have < want:
                frames += want - min(have, want)
                tabs += 1
        return frames, tabs

    async def wait(self, *, expect: dict[str, int], timeout: float) -> dict[str, Any]:
        """Wait until every tab holds seq 1..expect[user], or `timeout` passes."""
        started = time.monotonic()
        while True:
            frames, tabs = self.missing(expect)
            if not frames or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(0.1)
        return {"missing": frames, "tabs_missing": tabs, "seconds": time.monotonic() - started, **self.state()}

    def state(self) -> dict[str, Any]:
        closed = [tab.close_code for tab in self.tabs if tab.reader is not None and tab.reader.done()]
        return {
            "frames": self.frames,
            "duplicates": sum(tab.duplicates for tab in self.tabs),
            "gaps": sum(tab.gaps for tab in self.tabs),
            "closed": len(closed),
            "close_codes": sorted({str(code) for code in closed}),
        }

    async def collect(self, *, tag: str) -> dict[str, Any]:
        """The latencies (seconds) recorded for notifications titled `tag`, per event the time
        from its first tab's frame to its last tab's ('spreads'), how many events arrived
        and when the first was emitted and the last frame arrived; then forgotten."""
        spans = self.spans.pop(tag, {})
        return {
            "latencies": [round(value, 5) for value in self.latencies.pop(tag, [])],
            "spreads": [round(last - first, 5) for first, last in spans.values()],
            "events": len(spans),
            "first_emit": min((float(emitted) for emitted in spans), default=None),
            "last_arrival": max((last for _, last in spans.values()), default=None),
            **self.state(),
        }

    async def resume(self, *, url: str, token: str, after_seq: int, timeout: float) -> dict[str, Any]:
        """One tab that reconnects and resumes from `after_seq`: how long until its hello, and
        from sending `resume` until it holds every notification up to the hello's last_seq."""
        started = time.monotonic()
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, compression=None, max_size=2**20
        ) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            hello_s = time.monotonic() - started
            want = hello["last_seq"] - after_seq
            resumed_at = time.monotonic()
            await ws.send(json.dumps({"type": "resume", "after_seq": after_seq}))
            seqs: set[int] = set()
            all_s = resumed_s = None
            while resumed_s is None or all_s is None:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                if frame["type"] == "notification":
                    seqs.add(frame["notification"]["seq"])
                    if len(seqs) >= want and all_s is None:
                        all_s = time.monotonic() - resumed_at
                elif frame["type"] == "resumed":
                    resumed_s = time.monotonic() - resumed_at
                    all_s = all_s if all_s is not None else float("nan")
                elif frame["type"] == "resync":
                    # More than one replay holds: the client pages over HTTP, as docs/PROTOCOL.md says.
                    http_url = url.replace("ws://", "http://", 1).split("/ws/", 1)[0]
                    seqs |= await asyncio.to_thread(_seqs_over_http, http_url, token, after_seq, frame["last_seq"])
                    all_s = resumed_s = time.monotonic() - resumed_at
        return {"hello_s": hello_s, "all_s": all_s, "resumed_s": resumed_s, "received": len(seqs), "wanted": want}

    async def flood(
        self, *, url: str, token: str, sockets: int, after_seqs: list[int], hold_s: float
    ) -> dict[str, Any]:
        """Open `sockets` that stop reading at once (a one-frame receive queue), send one `resume`
        per `after_seqs` on each, hold, then drop them without a close frame.

        They read nothing, so what the server answered is never parsed. What each socket shows
        just before the drop, without reading: the close code the client saw (none once it has
        stopped reading: a close frame would wait unread behind the replies), its TCP state
        (CLOSE_WAIT: the server closed its side; CLOSE: it reset the connection) and the bytes
        that reached it unread (the kernel's receive queue: a lower bound of what came back)."""
        headers = {"Authorization": f"Bearer {token}"}
        opened = [await websockets.connect(url, additional_headers=headers, max_queue=1) for _ in range(sockets)]
        for ws in opened:
            for after_seq in after_seqs:
                await ws.send(json.dumps({"type": "resume", "after_seq": after_seq}))
        await asyncio.sleep(hold_s)
        seen = [_unread_state(ws) for ws in opened]
        for ws in opened:
            ws.transport.abort()
        return {
            "opened": len(opened),
            "close_codes": [ws.close_code for ws in opened],
            "tcp_states": [state for state, _ in seen],
            "unread_bytes": [unread for _, unread in seen],
        }

    async def close(self) -> None:
        async def close_one(tab: Tab) -> None:
            with contextlib.suppress(TimeoutError, OSError, websockets.WebSocketException):
                await asyncio.wait_for(tab.ws.close(), 10)

        await asyncio.gather(*(close_one(tab) for tab in self.tabs))


TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE", 8: "CLOSE_WAIT"}  # linux/tcp_states.h


def _unread_state(ws: Any) -> tuple[str, int | None]:
    """A socket's TCP state and the bytes waiting unread in its kernel receive queue (Linux)."""
    sock = ws.transport.get_extra_info("socket")
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        unread = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return "unknown", None
    return TCP_STATES.get(state, str(state)), unread


def _seqs_over_http(http_url: str, token: str, after_seq: int, last_seq: int) -> set[int]:
    seqs: set[int] = set()
    url: str | None = f"{http_url}/api/notifications/?after_seq={after_seq}&limit=200"
    while url and (not seqs or max(seqs) < last_seq):
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (the benchmark's own stack)
            page = json.load(response)
        seqs |= {n["seq"] for n in page["results"] if n["seq"] <= last_seq}
        url = page["next"]
    return seqs


async def main() -> None:
    generator = LoadGenerator()
    handlers = {
        "open": generator.open,
        "wait": generator.wait,
        "collect": generator.collect,
        "resume": generator.resume,
        "flood": generator.flood,
    }
    await serve_commands(handlers)
    await generator.close()


if __name__ == "__main__":
    asyncio.run(main())
