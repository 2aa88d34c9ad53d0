"""The baseline's socket: join the user's group, forward what it hears, number the frames.

The tutorials take the user from the session (AuthMiddlewareStack); to keep the database out
of the baseline altogether, the bearer token here simply is the user name. Frames carry a
per-socket counter as `seq`, so the load generator counts what a tab missed the same way
as for the product (there is nothing stored to number them by).
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer


def user_group(name: str) -> str:
    return f"user.{name}"


class NaiveNotificationConsumer(AsyncJsonWebsocketConsumer):
    user = ""
    seq = 0

    async def connect(self) -> None:
        headers = dict(self.scope["headers"])
        self.user = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
        if not self.user:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(user_group(self.user), self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "user": self.user, "last_seq": 0})

    async def disconnect(self, code: int) -> None:
        if self.user:
            await self.channel_layer.group_discard(user_group(self.user), self.channel_name)

    async def notify(self, message: dict[str, Any]) -> None:
        self.seq += 1
        await self.send_json(
            {
                "type": "notification",
                "notification": {"seq": self.seq, "title": message["title"], "body": message["body"]},
            }
        )
