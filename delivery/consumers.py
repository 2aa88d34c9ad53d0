"""The WebSocket consumer at /ws/notifications/: authenticate, subscribe, replay, forward.

A doorbell from the channel layer carries one batch's new notifications for the user, as
frames the worker encoded once, numbered from `first_seq`. The consumer keeps `cursor`, the
highest seq this socket has sent, sends the frames past it, and reads the database whenever
a doorbell starts beyond the very next seq: a lost, late or reordered doorbell can delay a
notification, never drop it, double it or send it out of order. Doorbells skip Channels'
per-message database-connection cleanup (a thread hop), since they touch no database
unless there is a gap.

Channels runs one handler at a time per consumer, so a doorbell that arrives during a
replay waits until the replay is done, and is then skipped if the replay already sent it.

Every WS_RECONCILE_INTERVAL_S (with jitter) the web process reconciles all its sockets at
once (delivery/socket_watch.py): those whose credential ended are closed, the others join
their groups again (a Redis restart forgets them) and send anything stored past their
cursor. Whatever loses a doorbell or a logout ring, the cost is bounded by that interval.
Rings lost while the process's pub/sub connection to Redis was down cost less: every
socket catches up as it comes back.

What one socket can make the server hold is bounded: at most REPLAY_MAX notifications per
replay (beyond that the socket answers `resync` and the client pages over HTTP), a few
resumes in a row, nothing sent after the peer is gone, and however the consumer ends, its
groups, slot and timers are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from autobahn.exception import Disconnected
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError

from delivery import metrics
from delivery.groups import user_group
from delivery.models import Notification
from delivery.payloads import encode_frame, notification_frame
from delivery.selectors import (
    PAGE_MAX,
    cursor_is_resumable,
    inbox_state,
    notification_ids_of_user,
    notifications_after_seq,
)
from delivery.services import notifications_mark_all_read, notifications_mark_read
from delivery.socket_slots import slot_claim, slot_release
from delivery.socket_watch import socket_watch

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY_SOCKETS = 4409
CLOSE_TOO_LARGE = 4413
CLOSE_ABUSE = 4429
FRAME_MAX_BYTES = 64 * 1024  # the largest legitimate frame is a mark_read of MARK_READ_MAX ids
MARK_READ_MAX = 1000
ID_LIMIT = 2**63  # a larger number is no id of ours, and would overflow a bigint column
# How long rings that came ahead of the cursor wait for the missing ones before the gap is
# read from the database (a batch's rings go out right after its commit: milliseconds).
GAP_GRACE_S = 0.25
# The most notifications one replay (resume, gap fill, reconcile) sends; a client further
# behind gets `resync` and pages over HTTP, which the client reads at its own pace.
REPLAY_MAX = PAGE_MAX


class TokenBucket:
    """Allows `burst` at once and `per_second` sustained."""

    clock = staticmethod(time.monotonic)  # a plain attribute, for tests

    def __init__(self, *, burst: float, per_second: float) -> None:
        self.burst = burst
        self.per_second = per_second
        self.tokens = burst
        self.stamp = self.clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class FrameError(Exception):
    """A client frame the server cannot take; answered with an error frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NotificationConsumer(AsyncWebsocketConsumer):
    """One open tab or device of one user."""

    # A tab sends a ping every ~30 s and a mark_read per click: 5/s sustained is far above
    # that, and 1,000 frames a minute is far above 5/s.
    frames_burst, frames_per_second = 60, 5.0
    # A handful of bad frames is a bug in a client, not abuse: allow 20, then one per 3 s.
    bad_frames_burst, bad_frames_per_second = 20, 1 / 3
    # A client resumes once per connection, and again only to fill a gap.
    resumes_burst, resumes_per_second = 3, 1 / 5
    closing = False
    released = False
    slot_held = False
    counted = False  # in sockets_open: accepted, authenticated, watched
    gap_timer: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ends (a disconnect, a crash, daphne cancelling it), let go of
            # everything, even while being cancelled.
            await asyncio.shield(self.release())

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections, through a thread hop, before every
        # message. Doorbells touch no database: they go straight to their handler.
        handler = DOORBELLS.get(message["type"])
        if handler is not None:
            await handler(self, message)
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        principal = self.scope.get("principal")
        if principal is None:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = principal.user
        self.credential = principal.credential
        if not await slot_claim(self.user.pk, self.channel_name):
            logger.warning("refusing a socket of user %s: %s open", self.user.pk, settings.WS_SOCKETS_PER_USER_MAX)
            metrics.sockets_refused.inc()
            await self.accept()
            await self.close(code=CLOSE_TOO_MANY_SOCKETS)
            return
        self.slot_held = True
        # Guards the cursor and the order of sends between the handlers and the process's watch.
        self.sending = asyncio.Lock()
        self.frames = TokenBucket(burst=self.frames_burst, per_second=self.frames_per_second)
        self.bad_frames = TokenBucket(burst=self.bad_frames_burst, per_second=self.bad_frames_per_second)
        self.resumes = TokenBucket(burst=self.resumes_burst, per_second=self.resumes_per_second)
        # Join before reading the inbox, so nothing committed in between falls through.
        self.early: dict[int, str] = {}  # seq -> frame, from rings that came ahead of the cursor
        self.groups = [user_group(self.user.pk), principal.credential.group]
        await self.join_groups()
        await self.accept()
        state = await database_sync_to_async(inbox_state)(user_id=self.user.pk)
        self.cursor = state.last_seq
        await self.send_frame(
            {"type": "hello", "user": self.user.get_username(), "unread": state.unread, "last_seq": state.last_seq}
        )
        socket_watch.add(self, self.channel_layer)
        self.counted = True
        metrics.sockets_open.inc()

    async def disconnect(self, code: int) -> None:
        await self.release()

    async def release(self) -> None:
        """Cancel the timers, leave the groups, free the slot: once, however the socket ended."""
        if self.released:
            return
        self.released = True
        self.closing = True
        socket_watch.discard(self)
        if self.gap_timer is not None:
            self.gap_timer.cancel()
        if self.counted:
            metrics.sockets_open.dec()
        try:
            for group in self.groups or []:
                await self.channel_layer.group_discard(group, self.channel_name)
        except (RedisError, OSError) as exc:
            logger.warning("socket of user %s could not leave its groups: %r", self.user.pk, exc)
        if self.slot_held:
            await slot_release(self.user.pk, self.channel_name)

    # --- what the process's watch asks of each socket (delivery/socket_watch.py) ------------

    async def join_groups(self) -> None:
        """Join the groups (again, at each reconcile: a Redis restart forgets the core layer's)."""
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)

    async def end_for_credential(self) -> None:
        await self.close(code=CLOSE_UNAUTHENTICATED)

    @property
    def user_id(self) -> int:
        return self.user.pk

    async def catch_up_now(self) -> None:
        """Send what is stored past the cursor: rings may have been lost."""
        async with self.sending:
            if not self.closing:
                await self.catch_up()

    # --- client frames ---------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if _too_large(text_data, bytes_data):
            await self.close(code=CLOSE_TOO_LARGE)
            return
        if not self.frames.take():
            logger.warning("closing socket of user %s: too many frames", self.user.pk)
            await self.close(code=CLOSE_ABUSE)
            return
        try:
            if bytes_data is not None:
                raise FrameError("unsupported_frame", "binary frames are not supported; send JSON text")
            await self.handle_frame(_parse(text_data or ""))
        except FrameError as error:
            if not self.bad_frames.take():
                logger.warning("closing socket of user %s: too many bad frames", self.user.pk)
                await self.close(code=CLOSE_ABUSE)
                return
            await self.send_frame({"type": "error", "code": error.code, "detail": error.detail})

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "ping":
            await self.send_frame({"type": "pong"})
        elif kind == "resume":
            after_seq = _cursor(frame.get("after_seq"))
            if not self.resumes.take():
                raise FrameError("too_many_resumes", "resume at most 3 times in a row, then once per 5 s")
            await self.resume(after_seq)
        elif kind == "mark_read":
            await self.mark_read(_ids(frame.get("ids")))
        elif kind == "mark_all_read":
            await database_sync_to_async(notifications_mark_all_read)(user=self.user)
        else:
            raise FrameError("unknown_type", f"unknown frame type {kind!r}")

    async def resume(self, after_seq: int) -> None:
        resumable = await database_sync_to_async(cursor_is_resumable)(user_id=self.user.pk, after_seq=after_seq)
        if not resumable:
            await self.send_frame({"type": "resync", "last_seq": self.cursor})
            return
        # Every stored notification after the client's cursor, as docs/PROTOCOL.md says, even one
        # this connection sent before the resume arrived: clients de-duplicate by id.
        async with self.sending:
            await self.catch_up(after_seq)

    async def mark_read(self, ids: list[int]) -> None:
        owned = await database_sync_to_async(notification_ids_of_user)(user_id=self.user.pk, ids=ids)
        if owned:
            # Every tab, this one included, hears of it through the group's "read" frame.
            await database_sync_to_async(notifications_mark_read)(user=self.user, ids=owned)
        if len(owned) < len(set(ids)):
            raise FrameError("not_found", f"{len(set(ids)) - len(owned)} of those ids are not yours or do not exist")

    # --- doorbells from the channel layer -------------------------------------------------

    async def notifications_created(self, message: dict[str, Any]) -> None:
        """New notifications of this user, seqs first_seq.., their frames encoded already."""
        metrics.doorbells_received.inc()
        async with self.sending:
            first_seq, frames = message["first_seq"], message["frames"]
            if self.closing or first_seq + len(frames) - 1 <= self.cursor:
                return  # already sent, by a replay or an earlier ring of the same notifications
            if first_seq > self.cursor + 1:
                # Two workers' rings of one user can cross on the way: keep these a moment,
                # and read the database only if the missing ones do not come.
                self.early.update(zip(range(first_seq, first_seq + len(frames)), frames, strict=True))
                if self.gap_timer is None:
                    self.gap_timer = asyncio.create_task(self.fill_gap_later())
                return
            await self.send_frames(frames[self.cursor + 1 - first_seq :])
            await self.send_frames_kept()

    async def send_frames(self, frames: list[str]) -> None:
        """Send encoded notification frames, the next seqs after the cursor."""
        for frame in frames:
            if self.closing:
                return
            await self.send(text_data=frame)
            metrics.frames_sent.inc()
            self.cursor += 1

    async def send_frames_kept(self) -> None:
        """Send the frames kept from early rings that now follow the cursor; forget the rest."""
        while self.cursor + 1 in self.early and not self.closing:
            await self.send_frames([self.early.pop(self.cursor + 1)])
        self.early = {seq: frame for seq, frame in self.early.items() if seq > self.cursor}
        if not self.early and self.gap_timer is not None:
            self.gap_timer.cancel()
            self.gap_timer = None

    async def fill_gap_later(self) -> None:
        await asyncio.sleep(GAP_GRACE_S)
        async with self.sending:
            self.gap_timer = None
            if self.early and not self.closing:
                self.early.clear()
                metrics.gaps_filled.inc()
                await self.catch_up()  # a ring went missing: fill from the database

    async def notifications_read(self, message: dict[str, Any]) -> None:
        await self.send_frame({"type": "read", "ids": message["ids"], "unread": message["unread"]})

    async def credential_revoked(self, message: dict[str, Any]) -> None:
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def credentials_changed(self, message: dict[str, Any]) -> None:
        """The user's password or active flag changed: is this socket's credential still good?"""
        if not await database_sync_to_async(self.credential.is_valid_for)(self.user.pk):
            await self.close(code=CLOSE_UNAUTHENTICATED)

    # --- sending ------------------------------------------------------------------------------

    async def catch_up(self, after_seq: int | None = None) -> None:
        """Send what is stored after the cursor (a gap fill, a reconcile) or after `after_seq`
        (a resume, answered with `resumed`); more than REPLAY_MAX is answered with `resync`,
        and the cursor moves to the end. Call with `sending` held."""
        state = await database_sync_to_async(inbox_state)(user_id=self.user.pk)
        start = self.cursor if after_seq is None else after_seq
        if state.last_seq - start > REPLAY_MAX:
            self.cursor = max(self.cursor, state.last_seq)
            await self.send_frame({"type": "resync", "last_seq": self.cursor})
            return
        if after_seq is None and state.last_seq > self.cursor:
            await self.send_stored_after(self.cursor, unread=state.unread)
        elif after_seq is not None:
            count = await self.send_stored_after(after_seq, unread=state.unread)
            await self.send_frame({"type": "resumed", "count": count})

    async def send_stored_after(self, after_seq: int, *, unread: int) -> int:
        """Send the stored notifications after `after_seq` (REPLAY_MAX at most), oldest first."""
        page = await database_sync_to_async(notifications_after_seq)(
            user_id=self.user.pk, after_seq=after_seq, limit=REPLAY_MAX
        )
        for notification in page:
            await self.send_notification(notification, unread=unread)
        if page:
            self.cursor = max(self.cursor, page[-1].seq)
        metrics.replay_size.observe(len(page))
        return len(page)

    async def send_notification(self, notification: Notification, *, unread: int) -> None:
        if not self.closing:
            await self.send(text_data=notification_frame(notification, unread=unread))
            metrics.frames_sent.inc()

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if self.closing:
            return  # doorbells can still arrive between our close and the disconnect
        await self.send(text_data=encode_frame(frame))

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Disconnected:
            # The peer went away between daphne noticing and telling us: stop sending; the
            # disconnect (or the end of the consumer) releases the rest.
            self.closing = True

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closing = True
        with contextlib.suppress(Disconnected):
            await super().close(code=code, reason=reason)


# Channel-layer messages that need no database, by type: dispatched without Channels' thread hop.
DOORBELLS = {
    "notifications.created": NotificationConsumer.notifications_created,
    "notifications.read": NotificationConsumer.notifications_read,
    "credential.revoked": NotificationConsumer.credential_revoked,
}


def _too_large(text_data: str | None, bytes_data: bytes | None) -> bool:
    if bytes_data is not None:
        return len(bytes_data) > FRAME_MAX_BYTES
    text = text_data or ""
    # A character is 1 to 4 bytes in UTF-8: encode only when the answer is in doubt.
    if len(text) * 4 <= FRAME_MAX_BYTES:
        return False
    return len(text.encode("utf-8", errors="surrogatepass")) > FRAME_MAX_BYTES


def _parse(text: str) -> dict[str, Any]:
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python can parse
        raise FrameError("invalid_json", "frames must be JSON objects") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameError("invalid_frame", 'frames must be JSON objects with a string "type"')
    return frame


def _cursor(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FrameError("invalid_cursor", "after_seq must be a whole number >= 0")
    return value


def _ids(value: Any) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, int) and not isinstance(item, bool) and 0 < item < ID_LIMIT for item in value)
    ):
        raise FrameError("invalid_ids", "ids must be a non-empty list of notification ids")
    if len(value) > MARK_READ_MAX:
        raise FrameError("invalid_ids", f"at most {MARK_READ_MAX} ids per mark_read")
    return value
