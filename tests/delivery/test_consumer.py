"""The socket at /ws/notifications/ (docs/PROTOCOL.md), through the real ASGI stack and the real Redis
channel layer: handshake checks, frames, resume, read state, and closing when a credential ends."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from delivery.consumers import FRAME_MAX_BYTES, REPLAY_MAX, NotificationConsumer
from delivery.credentials import ticket_redeem, token_issue, tokens_revoke
from delivery.groups import user_group
from delivery.models import Notification, SocketTicket
from delivery.payloads import notifications_created_message
from delivery.services import Stored
from delivery.socket_slots import heartbeat_prefix
from events import emit
from project.asgi import application
from tests.events.conftest import deliver_due

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_async_db_connections")]

PATH = "/ws/notifications/"
WAIT_S = 5.0  # generous: a ring crosses a thread, Redis pub/sub and the consumer's loop
UNAUTHENTICATED, TOO_MANY_SOCKETS, TOO_LARGE, ABUSE = 4401, 4409, 4413, 4429


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def hello_of(headers: list[tuple[bytes, bytes]] | None) -> dict[str, Any]:
    """Open a socket with these handshake headers, and return its hello frame."""

    async def scenario() -> dict[str, Any]:
        socket = Socket(headers)
        hello = await socket.open_authenticated()
        await socket.shut()
        return hello

    return run(scenario())


def close_code_of(headers: list[tuple[bytes, bytes]] | None = None, path: str = PATH) -> int | None:
    """Open a socket and return the code it is closed with (None if it stays open)."""
    return run(close_code_of_async(headers, path))


async def close_code_of_async(headers: list[tuple[bytes, bytes]] | None = None, path: str = PATH) -> int | None:
    socket = Socket(headers, path=path)
    await socket.open()
    code = await socket.close_code()
    await socket.shut()
    return code


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def with_origin(
    origin: str, headers: list[tuple[bytes, bytes]], *, host: str = "testserver"
) -> list[tuple[bytes, bytes]]:
    """A browser's handshake: its page's Origin, and the Host it connects to."""
    return [(b"origin", origin.encode()), (b"host", host.encode()), *headers]


def session_cookie(client, user) -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


class Socket:
    """One tab: a WebsocketCommunicator with helpers that read frames as JSON."""

    def __init__(self, headers: list[tuple[bytes, bytes]] | None = None, path: str = PATH) -> None:
        self.communicator = WebsocketCommunicator(application, path, headers=headers or [])

    async def open(self) -> tuple[bool, Any]:
        return await self.communicator.connect(timeout=WAIT_S)

    async def open_authenticated(self) -> dict[str, Any]:
        """Open, and return the hello frame."""
        connected, _ = await self.open()
        assert connected
        hello = await self.frame()
        assert hello["type"] == "hello", hello
        return hello

    async def send(self, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.communicator.send_input({"type": "websocket.receive", "text": text})  # "" too

    async def frame(self, timeout: float = WAIT_S) -> dict[str, Any]:
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", output
        return json.loads(output["text"])

    async def frames(self, count: int) -> list[dict[str, Any]]:
        return [await self.frame() for _ in range(count)]

    async def frames_until_close(self) -> tuple[list[dict[str, Any]], int | None]:
        frames = []
        while True:
            output = await self.communicator.receive_output(WAIT_S)
            if output["type"] == "websocket.close":
                return frames, output.get("code")
            frames.append(json.loads(output["text"]))

    async def close_code(self) -> int | None:
        frames, code = await self.frames_until_close()
        assert frames == [], f"expected a close, got {frames}"
        return code

    async def still_answers(self) -> bool:
        """A ping gets a pong, and nothing else came first."""
        await self.send({"type": "ping"})
        return await self.frame() == {"type": "pong"}

    async def shut(self) -> None:
        await self.communicator.disconnect(timeout=WAIT_S)


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [frame["notification"]["seq"] for frame in frames if frame["type"] == "notification"]


# --- the handshake: credentials ---------------------------------------------------------------


def test_a_bearer_token_opens_the_socket_with_a_hello(alice, store_notices) -> None:
    store_notices(alice, count=3)
    Notification.objects.filter(user=alice, seq=1).update(read_at=timezone.now())
    token = token_issue(user=alice)

    assert hello_of(bearer(token)) == {"type": "hello", "user": "alice", "unread": 3, "last_seq": 3}


def test_a_new_user_is_greeted_with_empty_counters(alice) -> None:
    token = token_issue(user=alice)

    assert hello_of(bearer(token)) == {"type": "hello", "user": "alice", "unread": 0, "last_seq": 0}


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer not-a-real-token")],
        [(b"authorization", b"Bearer ")],
        [(b"authorization", b"Basic YWxpY2U6Y29ycmVjdC1ob3JzZQ==")],
        [(b"cookie", b"sessionid=no-such-session-key-at-all")],
    ],
    ids=["none", "bad-token", "empty-token", "basic-auth", "bad-session"],
)
def test_a_missing_or_bad_credential_is_accepted_then_closed_4401(alice, headers) -> None:
    async def scenario() -> tuple[bool, int | None]:
        socket = Socket(headers)
        connected, _ = await socket.open()
        code = await socket.close_code()
        await socket.shut()
        return connected, code

    assert run(scenario()) == (True, UNAUTHENTICATED)


def test_a_token_in_the_url_is_not_accepted(alice) -> None:
    token = token_issue(user=alice)

    assert close_code_of(path=f"{PATH}?token={token}") == UNAUTHENTICATED


def test_a_bad_bearer_token_does_not_fall_back_to_the_session(client, alice) -> None:
    headers = [*session_cookie(client, alice), (b"authorization", b"Bearer not-a-real-token")]

    assert close_code_of(headers) == UNAUTHENTICATED


def test_a_revoked_token_is_closed_4401(alice, rings) -> None:
    token = token_issue(user=alice)
    tokens_revoke(user=alice)

    assert close_code_of(bearer(token)) == UNAUTHENTICATED


def test_the_session_cookie_opens_the_socket(client, alice) -> None:
    headers = session_cookie(client, alice)

    assert hello_of(with_origin("http://testserver", headers))["user"] == "alice"


def test_the_session_of_a_deactivated_user_is_closed_4401(client, alice) -> None:
    headers = session_cookie(client, alice)
    alice.is_active = False
    alice.save()

    assert close_code_of(headers) == UNAUTHENTICATED


def ws_ticket(user) -> str:  # type: ignore[no-untyped-def]
    """A ticket as a cross-origin page gets one: POST /api/ws-ticket/ with the user's API token."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=user)}")
    return api.post("/api/ws-ticket/").json()["ticket"]


def test_a_ticket_opens_one_socket_only(alice) -> None:
    ticket = ws_ticket(alice)

    async def scenario() -> tuple[dict[str, Any], int | None]:
        first = Socket(path=f"{PATH}?ticket={ticket}")
        hello = await first.open_authenticated()
        second = Socket(path=f"{PATH}?ticket={ticket}")
        await second.open()
        code = await second.close_code()
        await first.shut()
        await second.shut()
        return hello, code

    hello, second_code = run(scenario())
    assert hello["user"] == "alice"
    assert second_code == UNAUTHENTICATED


def test_an_expired_ticket_is_closed_4401(alice) -> None:
    ticket = ws_ticket(alice)
    SocketTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert close_code_of(path=f"{PATH}?ticket={ticket}") == UNAUTHENTICATED


# --- the handshake: Origin ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin", ["http://evil.com", "http://localhost.evil.com", "http://evil-localhost", "null", "file://", "localhost"]
)
def test_a_foreign_origin_is_refused_before_accept_and_logged(
    client, alice, origin: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = with_origin(origin, session_cookie(client, alice))

    async def scenario() -> bool:
        socket = Socket(headers)
        connected, _ = await socket.open()
        return connected

    with caplog.at_level(logging.WARNING, logger="delivery.auth"):
        assert run(scenario()) is False
    assert f"websocket refused: origin {origin!r} is not allowed" in caplog.text


def test_a_refused_origin_does_not_use_up_the_ticket_it_carried(alice) -> None:
    ticket = ws_ticket(alice)

    async def scenario() -> bool:
        socket = Socket(with_origin("http://evil.com", []), path=f"{PATH}?ticket={ticket}")
        connected, _ = await socket.open()
        return connected

    assert run(scenario()) is False
    assert ticket_redeem(ticket) is not None


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://localhost", "localhost"),
        ("http://localhost:80", "localhost"),
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("HTTP://LocalHost:8000", "localhost:8000"),
        (None, "127.0.0.1:8000"),
    ],
)
def test_our_own_origin_and_no_origin_may_connect(alice, origin: str | None, host: str) -> None:
    headers = [(b"host", host.encode()), *bearer(token_issue(user=alice))]
    if origin is not None:
        headers = with_origin(origin, headers, host=host)

    assert hello_of(headers)["user"] == "alice"


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:1", "127.0.0.1:8000"),  # another port of our host
        ("https://127.0.0.1", "127.0.0.1:8000"),  # another scheme
        ("https://127.0.0.1:8000", "127.0.0.1:8000"),  # a page over https, a socket over ws
        ("http://127.0.0.1:8000", "evil.com:8000"),  # a host we do not serve
    ],
)
def test_another_port_or_scheme_of_our_host_is_another_origin(
    client, alice, origin: str, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = with_origin(origin, session_cookie(client, alice), host=host)

    async def scenario() -> bool:
        socket = Socket(headers)
        connected, _ = await socket.open()
        return connected

    with caplog.at_level(logging.WARNING, logger="delivery.auth"):
        assert run(scenario()) is False
    assert "websocket refused" in caplog.text


def test_behind_a_proxy_that_ends_tls_an_https_page_may_connect(alice, settings) -> None:
    headers = with_origin("https://testserver", bearer(token_issue(user=alice)))
    forwarded = [(b"x-forwarded-proto", b"https"), *headers]

    async def accepted() -> bool:
        socket = Socket(forwarded)
        connected, _ = await socket.open()
        return connected

    assert run(accepted()) is False  # the forwarded scheme is not trusted unless configured
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # DJANGO_HTTPS=1
    assert hello_of(forwarded)["user"] == "alice"


def test_an_extra_configured_origin_may_connect(alice, settings) -> None:
    settings.WS_ALLOWED_ORIGINS = ["https://app.example.com"]
    headers = with_origin("https://app.example.com", bearer(token_issue(user=alice)))

    assert hello_of(headers)["user"] == "alice"


# --- client frames ----------------------------------------------------------------------------


@pytest.fixture
def alice_headers(alice) -> list[tuple[bytes, bytes]]:
    return bearer(token_issue(user=alice))


def test_ping_gets_pong(alice_headers) -> None:
    async def scenario() -> bool:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        answered = await socket.still_answers()
        await socket.shut()
        return answered

    assert run(scenario())


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('"ping"', "invalid_frame"),
        ('{"kind": "ping"}', "invalid_frame"),
        ('{"type": 7}', "invalid_frame"),
        ('{"type": "subscribe", "group": "user.1"}', "unknown_type"),
    ],
)
def test_a_frame_it_cannot_take_gets_an_error_and_the_socket_stays_open(alice_headers, frame: str, code: str) -> None:
    async def scenario() -> tuple[dict[str, Any], bool]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send(frame)
        error = await socket.frame()
        answered = await socket.still_answers()
        await socket.shut()
        return error, answered

    error, still_answers = run(scenario())
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["detail"]
    assert still_answers


def test_a_deeply_nested_frame_gets_an_error_and_the_socket_stays_open(alice_headers) -> None:
    async def scenario() -> tuple[dict[str, Any], bool]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send("[" * 30_000 + "]" * 30_000)
        error = await socket.frame(timeout=1)  # an answer is immediate; a dead consumer gives none
        answered = await socket.still_answers()
        await socket.shut()
        return error, answered

    error, still_answers = run(scenario())
    assert (error["type"], error["code"]) == ("error", "invalid_json")
    assert still_answers


def test_a_binary_frame_gets_an_error_and_the_socket_stays_open(alice_headers) -> None:
    async def scenario() -> tuple[dict[str, Any], bool]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.communicator.send_to(bytes_data=b'{"type": "ping"}')
        error = await socket.frame()
        answered = await socket.still_answers()
        await socket.shut()
        return error, answered

    error, still_answers = run(scenario())
    assert error["code"] == "unsupported_frame"
    assert still_answers


def test_a_frame_of_exactly_64_kib_is_taken(alice_headers) -> None:
    prefix, suffix = '{"type": "ping", "pad": "', '"}'
    frame = prefix + "x" * (FRAME_MAX_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(frame.encode()) == FRAME_MAX_BYTES == 64 * 1024

    async def scenario() -> dict[str, Any]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send(frame)
        answer = await socket.frame()
        await socket.shut()
        return answer

    assert run(scenario()) == {"type": "pong"}


@pytest.mark.parametrize("frame", ["x" * 70_000, '{"type": "ping", "pad": "' + "é" * 33_000 + '"}'])
def test_a_frame_over_64_kib_closes_the_socket_4413(alice_headers, frame: str) -> None:
    async def scenario() -> int | None:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send(frame)
        code = await socket.close_code()
        await socket.shut()
        return code

    assert run(scenario()) == TOO_LARGE


def test_a_binary_frame_over_64_kib_closes_the_socket_4413(alice_headers) -> None:
    async def scenario() -> int | None:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.communicator.send_to(bytes_data=b"x" * (FRAME_MAX_BYTES + 1))
        code = await socket.close_code()
        await socket.shut()
        return code

    assert run(scenario()) == TOO_LARGE


def test_a_handful_of_bad_frames_is_not_abuse(alice_headers) -> None:
    async def scenario() -> tuple[list[str], bool]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        for _ in range(10):
            await socket.send("not json")
        errors = [frame["code"] for frame in await socket.frames(10)]
        answered = await socket.still_answers()
        await socket.shut()
        return errors, answered

    errors, still_answers = run(scenario())
    assert errors == ["invalid_json"] * 10
    assert still_answers


def test_a_stream_of_bad_frames_closes_the_socket_4429(alice_headers) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        for _ in range(25):
            await socket.send("not json")
        result = await socket.frames_until_close()
        await socket.shut()
        return result

    errors, code = run(scenario())
    assert code == ABUSE
    assert 20 <= len(errors) < 25
    assert {frame["type"] for frame in errors} == {"error"}


def test_a_flood_of_frames_closes_the_socket_4429(alice_headers) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        for _ in range(200):
            await socket.send({"type": "ping"})
        result = await socket.frames_until_close()
        await socket.shut()
        return result

    pongs, code = run(scenario())
    assert code == ABUSE
    assert 60 <= len(pongs) < 200
    assert {frame["type"] for frame in pongs} == {"pong"}


# --- resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("after_seq", ["abc", -1, 1.5, True, None, [1]])
def test_a_cursor_that_is_no_whole_number_gets_invalid_cursor(alice_headers, after_seq: object) -> None:
    async def scenario() -> tuple[dict[str, Any], bool]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send({"type": "resume", "after_seq": after_seq})
        error = await socket.frame()
        answered = await socket.still_answers()
        await socket.shut()
        return error, answered

    error, still_answers = run(scenario())
    assert (error["type"], error["code"]) == ("error", "invalid_cursor")
    assert still_answers


@pytest.mark.parametrize("after_seq", [3, 10**6, 2**70])
def test_a_cursor_from_the_future_gets_resync(alice, alice_headers, store_notices, after_seq: int) -> None:
    store_notices(alice, count=2)

    async def scenario() -> dict[str, Any]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send({"type": "resume", "after_seq": after_seq})
        answer = await socket.frame()
        await socket.shut()
        return answer

    assert run(scenario()) == {"type": "resync", "last_seq": 2}


def test_a_cursor_older_than_what_is_kept_gets_resync(alice, alice_headers, store_notices) -> None:
    store_notices(alice, count=3)
    Notification.objects.filter(user=alice, seq=1).delete()  # retention removed the oldest

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send({"type": "resume", "after_seq": 0})
        too_old = await socket.frame()
        await socket.send({"type": "resume", "after_seq": 1})
        replay = await socket.frames(3)
        await socket.shut()
        return too_old, replay

    too_old, replay = run(scenario())
    assert too_old["type"] == "resync"
    assert seqs(replay) == [2, 3]
    assert replay[-1] == {"type": "resumed", "count": 2}


def test_resume_replays_only_notifications_after_seq_in_order(alice, bob, alice_headers, store_notices) -> None:
    store_notices(alice, bob, count=4)
    stored = {n.seq: n for n in Notification.objects.filter(user=alice)}

    async def scenario() -> list[dict[str, Any]]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send({"type": "resume", "after_seq": 1})
        frames = await socket.frames(4)
        await socket.shut()
        return frames

    frames = run(scenario())
    assert seqs(frames) == [2, 3, 4]
    assert [frame["notification"]["id"] for frame in frames[:3]] == [stored[seq].pk for seq in (2, 3, 4)]
    assert all(frame["unread"] == 4 for frame in frames[:3])
    assert frames[3] == {"type": "resumed", "count": 3}


def test_resume_at_the_latest_seq_replays_nothing(alice, alice_headers, store_notices) -> None:
    store_notices(alice, count=2)

    async def scenario() -> dict[str, Any]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send({"type": "resume", "after_seq": 2})
        answer = await socket.frame()
        await socket.shut()
        return answer

    assert run(scenario()) == {"type": "resumed", "count": 0}


def test_a_resume_beyond_one_replay_gets_resync_and_the_socket_goes_on_from_the_end(
    alice, alice_headers, store_notices
) -> None:
    store_notices(alice, count=REPLAY_MAX + 2)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send({"type": "resume", "after_seq": 1})  # REPLAY_MAX + 1 to send: too many
        too_far = [await socket.frame()]
        await socket.send({"type": "resume", "after_seq": 2})  # exactly REPLAY_MAX: replayed
        replay = await socket.frames(REPLAY_MAX + 1)
        await socket.shut()
        return too_far, replay

    too_far, replay = run(scenario())
    assert too_far == [{"type": "resync", "last_seq": REPLAY_MAX + 2}]
    assert seqs(replay) == list(range(3, REPLAY_MAX + 3))
    assert replay[-1] == {"type": "resumed", "count": REPLAY_MAX}


def test_resumes_in_a_row_beyond_the_burst_are_refused(alice, alice_headers) -> None:
    async def scenario() -> list[dict[str, Any]]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        for _ in range(NotificationConsumer.resumes_burst + 1):
            await socket.send({"type": "resume", "after_seq": 0})
        answers = await socket.frames(NotificationConsumer.resumes_burst + 1)
        assert await socket.still_answers()
        await socket.shut()
        return answers

    answers = run(scenario())
    assert answers[:-1] == [{"type": "resumed", "count": 0}] * NotificationConsumer.resumes_burst
    assert answers[-1]["type"] == "error"
    assert answers[-1]["code"] == "too_many_resumes"


def test_the_socket_after_the_per_user_cap_is_closed_with_4409(alice, alice_headers, bob, settings) -> None:
    settings.WS_SOCKETS_PER_USER_MAX = 2
    bob_headers = bearer(token_issue(user=bob))

    async def scenario() -> tuple[int | None, int | None, bool]:
        first, second = Socket(alice_headers), Socket(alice_headers)
        await first.open_authenticated()
        await second.open_authenticated()
        refused = await close_code_of_async(alice_headers)
        bobs = Socket(bob_headers)
        await bobs.open_authenticated()  # the cap is per user
        await first.shut()
        third = Socket(alice_headers)
        await third.open_authenticated()  # a closed socket gave its slot back
        again = await close_code_of_async(alice_headers)
        usable = await second.still_answers()
        for socket in (second, third, bobs):
            await socket.shut()
        return refused, again, usable

    refused, again, usable = run(scenario())
    assert refused == again == TOO_MANY_SOCKETS
    assert usable


def test_the_slots_of_a_web_process_that_died_are_given_back_at_the_cap(alice, alice_headers, settings) -> None:
    settings.WS_SOCKETS_PER_USER_MAX = 2
    client = redis.Redis.from_url(settings.REDIS_URL)
    slots = f"{settings.REDIS_NAMESPACE}:sockets:{alice.pk}"
    # Two sockets held by another web process: alive while its heartbeat key is.
    client.zadd(slots, {"other|specific.a": 1, "other|specific.b": 1})
    client.set(heartbeat_prefix() + "other", 1, ex=60)
    try:
        assert close_code_of(alice_headers) == TOO_MANY_SOCKETS
        client.delete(heartbeat_prefix() + "other")  # that process died: its heartbeat lapsed
        assert hello_of(alice_headers)["user"] == "alice"
        assert client.zcard(slots) == 0  # the dead process's slots are gone, and ours was released
    finally:
        client.delete(slots, heartbeat_prefix() + "other")


# --- read state -------------------------------------------------------------------------------------


def test_mark_read_of_another_users_id_is_not_found_and_changes_nothing(
    alice, bob, alice_headers, store_notices
) -> None:
    (bobs,) = store_notices(bob)

    async def scenario() -> tuple[dict[str, Any], bool]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send({"type": "mark_read", "ids": [bobs.pk]})
        error = await socket.frame()
        answered = await socket.still_answers()
        await socket.shut()
        return error, answered

    error, still_answers = run(scenario())
    assert (error["type"], error["code"]) == ("error", "not_found")
    assert still_answers
    assert Notification.objects.get(pk=bobs.pk).read_at is None
    assert bob.inbox.unread == 1


@pytest.mark.parametrize("ids", [[], "1", [0], [-3], [2**63], [True], ["1"], None, list(range(1, 1002))])
def test_mark_read_with_ids_that_are_no_ids_gets_invalid_ids(alice_headers, ids: object) -> None:
    async def scenario() -> dict[str, Any]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send({"type": "mark_read", "ids": ids})
        error = await socket.frame()
        await socket.shut()
        return error

    error = run(scenario())
    assert (error["type"], error["code"]) == ("error", "invalid_ids")


def test_mark_read_of_ones_own_id_tells_every_tab_the_new_unread_count(alice, alice_headers, store_notices) -> None:
    first, _second = store_notices(alice, count=2)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        this_tab, other_tab = Socket(alice_headers), Socket(alice_headers)
        await this_tab.open_authenticated()
        await other_tab.open_authenticated()
        await this_tab.send({"type": "mark_read", "ids": [first.pk]})
        seen_here, seen_there = await this_tab.frame(), await other_tab.frame()
        await this_tab.shut()
        await other_tab.shut()
        return seen_here, seen_there

    seen_here, seen_there = run(scenario())
    assert seen_here == seen_there == {"type": "read", "ids": [first.pk], "unread": 1}
    assert Notification.objects.get(pk=first.pk).read_at is not None


def test_mark_all_read_tells_the_tab_which_ids_were_read(alice, bob, alice_headers, store_notices) -> None:
    alices = store_notices(alice, count=3)
    store_notices(bob)

    async def scenario() -> dict[str, Any]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await socket.send({"type": "mark_all_read"})
        answer = await socket.frame()
        await socket.shut()
        return answer

    assert run(scenario()) == {"type": "read", "ids": sorted(n.pk for n in alices), "unread": 0}
    assert bob.inbox.unread == 1


# --- doorbells --------------------------------------------------------------------------------------


def doorbell_message(notification: Notification, *, unread: int) -> dict[str, Any]:
    """The doorbell a worker rings for one stored notification."""
    return notifications_created_message([Stored(notification, unread)])


def test_a_delivered_event_reaches_the_open_socket(alice, bob, alice_headers) -> None:
    emit("notice", recipients=[alice], data={"title": "Deploy finished"})

    async def scenario() -> tuple[dict[str, Any], bool]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await database_sync_to_async(deliver_due)()
        frame = await socket.frame()
        answered = await socket.still_answers()
        await socket.shut()
        return frame, answered

    frame, still_answers = run(scenario())
    stored = Notification.objects.get(user=alice)
    assert frame["type"] == "notification"
    assert frame["unread"] == 1
    assert frame["notification"]["id"] == stored.pk
    assert (frame["notification"]["seq"], frame["notification"]["title"]) == (1, "Deploy finished")
    assert still_answers


def test_a_doorbell_past_a_gap_sends_the_missing_notifications_in_order(alice, alice_headers, store_notices) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], bool]:
        socket = Socket(alice_headers)
        hello = await socket.open_authenticated()
        assert hello["last_seq"] == 0
        stored = await database_sync_to_async(store_notices)(alice, count=3)  # rings for 1 and 2 went missing
        await get_channel_layer().group_send(user_group(alice.pk), doorbell_message(stored[2], unread=3))
        frames = await socket.frames(3)
        answered = await socket.still_answers()
        await socket.shut()
        return frames, answered

    frames, still_answers = run(scenario())
    assert seqs(frames) == [1, 2, 3]
    assert still_answers  # and nothing else arrived before the pong


def rung_as(message: dict[str, Any], title: str) -> dict[str, Any]:
    """The doorbell with its frames' titles changed, to tell a frame sent from the ring
    from one read from the database."""
    frames = [json.loads(frame) for frame in message["frames"]]
    for frame in frames:
        frame["notification"]["title"] = title
    return {**message, "frames": [json.dumps(frame) for frame in frames]}


def test_rings_that_cross_on_the_way_are_sent_in_order_without_reading_the_database(
    alice, alice_headers, store_notices
) -> None:
    async def scenario() -> list[dict[str, Any]]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        stored = await database_sync_to_async(store_notices)(alice, count=4)
        earlier = notifications_created_message([Stored(n, 0) for n in stored[:2]])
        later = notifications_created_message([Stored(n, 0) for n in stored[2:]])
        layer, group = get_channel_layer(), user_group(alice.pk)
        await layer.group_send(group, rung_as(later, "rung"))  # the second worker's ring first
        await layer.group_send(group, rung_as(earlier, "rung"))
        frames = await socket.frames(4)
        answered = await socket.still_answers()
        await socket.shut()
        assert answered
        return frames

    frames = run(scenario())
    assert seqs(frames) == [1, 2, 3, 4]
    assert {frame["notification"]["title"] for frame in frames} == {"rung"}


def test_a_ring_that_never_comes_is_read_from_the_database_after_a_moment(alice, alice_headers, store_notices) -> None:
    async def scenario() -> list[dict[str, Any]]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        stored = await database_sync_to_async(store_notices)(alice, count=3)
        later = notifications_created_message([Stored(stored[2], 0)])
        await get_channel_layer().group_send(user_group(alice.pk), rung_as(later, "rung"))
        frames = await socket.frames(3)
        await socket.shut()
        return frames

    frames = run(scenario())
    assert seqs(frames) == [1, 2, 3]
    assert [frame["notification"]["title"] for frame in frames] == ["Notice 1", "Notice 2", "Notice 3"]  # as stored


def test_a_doorbell_for_a_seq_already_sent_sends_nothing(alice, alice_headers, store_notices) -> None:
    async def scenario() -> list[int]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        first, second = await database_sync_to_async(store_notices)(alice, count=2)
        layer, group = get_channel_layer(), user_group(alice.pk)
        await layer.group_send(group, doorbell_message(second, unread=2))
        sent = seqs(await socket.frames(2))
        for late_or_repeated in (first, second, second):
            await layer.group_send(group, doorbell_message(late_or_repeated, unread=2))
        (third,) = await database_sync_to_async(store_notices)(alice, title="Third")
        # The layer keeps one group's messages in order: had a repeat been sent, it would come first.
        await layer.group_send(group, doorbell_message(third, unread=3))
        sent += seqs([await socket.frame()])
        await socket.shut()
        return sent

    assert run(scenario()) == [1, 2, 3]


def test_the_next_seq_is_forwarded_from_the_doorbell_itself(alice, alice_headers, store_notices) -> None:
    async def scenario() -> dict[str, Any]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        (stored,) = await database_sync_to_async(store_notices)(alice)
        message = doorbell_message(stored, unread=1)
        frame = json.loads(message["frames"][0])
        frame["notification"]["title"] = "as rung"
        message["frames"][0] = json.dumps(frame)
        await get_channel_layer().group_send(user_group(alice.pk), message)
        frame = await socket.frame()
        await socket.shut()
        return frame

    frame = run(scenario())
    assert frame["notification"]["title"] == "as rung"  # no database read on the common path
    assert frame["unread"] == 1


def test_another_users_doorbell_never_reaches_the_socket(alice, bob, alice_headers, store_notices) -> None:
    async def scenario() -> dict[str, Any]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        (bobs,) = await database_sync_to_async(store_notices)(bob)
        (alices,) = await database_sync_to_async(store_notices)(alice)
        layer = get_channel_layer()
        await layer.group_send(user_group(bob.pk), doorbell_message(bobs, unread=1))
        await layer.group_send(user_group(alice.pk), doorbell_message(alices, unread=1))
        frame = await socket.frame()  # bob's, had it leaked, would have come first
        await socket.shut()
        return frame

    frame = run(scenario())
    assert frame["notification"]["id"] == Notification.objects.get(user=alice).pk


def test_live_pushes_plus_a_resumed_replay_equal_what_is_stored(alice, alice_headers) -> None:
    """The delivery invariant in one process: no gaps, no duplicates, nothing foreign."""

    def deliver(title: str) -> None:
        emit("notice", recipients=[alice], data={"title": title})
        deliver_due()

    async def scenario() -> list[int]:
        received: list[int] = []
        first_tab = Socket(alice_headers)
        await first_tab.open_authenticated()
        for number in range(3):
            await database_sync_to_async(deliver)(f"live {number}")
        received += seqs(await first_tab.frames(3))
        await first_tab.shut()

        for number in range(2):  # while the tab is closed
            await database_sync_to_async(deliver)(f"missed {number}")

        reconnected = Socket(alice_headers)
        hello = await reconnected.open_authenticated()
        assert hello["last_seq"] == 5
        await reconnected.send({"type": "resume", "after_seq": received[-1]})
        replay = await reconnected.frames(3)
        assert replay[-1] == {"type": "resumed", "count": 2}
        received += seqs(replay)
        await reconnected.shut()
        return received

    received = run(scenario())
    stored = list(Notification.objects.filter(user=alice).order_by("seq").values_list("seq", flat=True))
    assert received == stored == [1, 2, 3, 4, 5]


# --- credentials that end -------------------------------------------------------------------------


def test_revoking_the_token_closes_its_sockets_4401_and_leaves_the_session_socket(client, alice) -> None:
    token = token_issue(user=alice)
    cookie = session_cookie(client, alice)

    async def scenario() -> tuple[int | None, bool]:
        by_token, by_session = Socket(bearer(token)), Socket(cookie)
        await by_token.open_authenticated()
        await by_session.open_authenticated()
        await database_sync_to_async(tokens_revoke)(user=alice)
        code = await by_token.close_code()
        answered = await by_session.still_answers()
        await by_token.shut()
        await by_session.shut()
        return code, answered

    code, session_socket_answers = run(scenario())
    assert code == UNAUTHENTICATED
    assert session_socket_answers


def test_revoking_the_token_closes_sockets_opened_with_its_tickets(alice) -> None:
    ticket = ws_ticket(alice)

    async def scenario() -> int | None:
        socket = Socket(path=f"{PATH}?ticket={ticket}")
        await socket.open_authenticated()
        await database_sync_to_async(tokens_revoke)(user=alice)
        code = await socket.close_code()
        await socket.shut()
        return code

    assert run(scenario()) == UNAUTHENTICATED


def test_logging_out_closes_that_sessions_sockets_4401_and_no_others(client, alice) -> None:
    cookie = session_cookie(client, alice)
    other_device = session_cookie(Client(), alice)

    async def scenario() -> tuple[int | None, bool]:
        this_session, other_session = Socket(cookie), Socket(other_device)
        await this_session.open_authenticated()
        await other_session.open_authenticated()
        response = await database_sync_to_async(client.post)("/accounts/logout/")
        assert response.status_code == 302
        code = await this_session.close_code()
        answered = await other_session.still_answers()
        await this_session.shut()
        await other_session.shut()
        return code, answered

    code, other_session_answers = run(scenario())
    assert code == UNAUTHENTICATED
    assert other_session_answers


# --- reconciling: what repairs a lost ring ------------------------------------------------------------


@pytest.fixture
def reconcile_quickly(settings) -> float:
    settings.WS_RECONCILE_INTERVAL_S = 0.2
    return 0.2


def test_a_notification_whose_ring_was_lost_still_arrives(
    alice, alice_headers, reconcile_quickly, store_notices
) -> None:
    async def scenario() -> dict[str, Any]:
        socket = Socket(alice_headers)
        await socket.open_authenticated()
        await database_sync_to_async(store_notices)(alice)  # stored, never rung
        frame = await socket.frame()
        await socket.shut()
        return frame

    frame = run(scenario())
    assert (frame["type"], frame["notification"]["seq"]) == ("notification", 1)


def test_a_socket_whose_session_ended_without_a_ring_is_closed_4401(client, alice, reconcile_quickly) -> None:
    cookie = session_cookie(client, alice)

    async def scenario() -> int | None:
        socket = Socket(cookie)
        await socket.open_authenticated()
        await database_sync_to_async(Session.objects.all().delete)()  # expired and cleared, say
        code = await socket.close_code()
        await socket.shut()
        return code

    assert run(scenario()) == UNAUTHENTICATED


def test_a_socket_whose_user_changed_password_is_closed_4401(client, alice, reconcile_quickly) -> None:
    cookie = session_cookie(client, alice)

    def change_password() -> None:
        alice.set_password("an-entirely-new-password")
        alice.save()

    async def scenario() -> int | None:
        socket = Socket(cookie)
        await socket.open_authenticated()
        await database_sync_to_async(change_password)()
        code = await socket.close_code()
        await socket.shut()
        return code

    assert run(scenario()) == UNAUTHENTICATED
