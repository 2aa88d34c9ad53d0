"""The web process's watch over its sockets, against the real Redis and database: the
reconcile of all of them at once, a probe that notices a subscription that went deaf (and
not one that is merely busy), the resubscription that mends it, and the catch-up of the
sockets that missed rings meanwhile."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from knox.models import AuthToken

from delivery import socket_watch as watch_module
from delivery.credentials import Credential, credentials_valid, token_authenticate, token_issue
from delivery.socket_watch import LayerProbe, Probe, SocketWatch, pubsub_connections

GROUP = "deafness-test"


async def _subscribed_channel(layer: Any) -> str:
    channel = await layer.new_channel()
    await layer.group_add(GROUP, channel)
    return channel


async def _rung_and_heard(layer: Any, channel: str) -> bool:
    """A ring to GROUP reaches `channel` within a second (read from the layer's queue, since
    a timed-out receive() makes channels_redis unsubscribe the channel)."""
    queue = layer._get_layer().channels[channel]
    await layer.group_send(GROUP, {"type": "check"})
    for _ in range(100):
        if not queue.empty():
            queue.get_nowait()
            return True
        await asyncio.sleep(0.01)
    return False


def _end_the_receive_loop(layer: Any) -> None:
    for shard in layer._get_layer()._shards:
        shard._receive_task.cancel()  # as if it had died: channels_redis never starts another


async def _unsubscribe_behind_its_back(layer: Any) -> None:
    for shard in layer._get_layer()._shards:
        await shard._pubsub.unsubscribe()  # channels_redis still believes everything subscribed
    await asyncio.sleep(0.3)  # the receive loop reads the confirmations


@pytest.mark.parametrize("break_it", ["receive loop ended", "unsubscribed behind its back"])
def test_a_deaf_subscription_is_noticed_and_subscribed_again(break_it: str) -> None:
    async def scenario() -> tuple[Probe, bool, Probe, Probe, bool]:
        layer = get_channel_layer()
        assert isinstance(layer, RedisPubSubChannelLayer)
        channel = await _subscribed_channel(layer)
        probe = LayerProbe(layer)
        await probe.start()
        before = await probe.check()
        if break_it == "receive loop ended":
            _end_the_receive_loop(layer)
        else:
            await _unsubscribe_behind_its_back(layer)
        heard_while_broken = await _rung_and_heard(layer, channel)
        while_broken = await probe.check()
        await probe.resubscribe()
        after = await probe.check()
        heard_after = await _rung_and_heard(layer, channel)
        await probe.stop()
        await layer.flush()
        return before, heard_while_broken, while_broken, after, heard_after

    before, heard_while_broken, while_broken, after, heard_after = asyncio.run(scenario())

    assert before is Probe.SUBSCRIBED
    assert not heard_while_broken, "the fault should make the layer deaf"
    assert while_broken is Probe.DEAF
    assert after is Probe.SUBSCRIBED
    assert heard_after, "after the resubscription the group's rings arrive again"


def test_a_busy_event_loop_is_not_taken_for_a_deaf_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # The loop blocked longer than the probe waits, while rings pile up unread: at worst
    # the probe cannot tell (unreachable), and it never says deaf, which would resubscribe.
    monkeypatch.setattr(watch_module, "PROBE_TIMEOUT_S", 0.2)

    async def scenario() -> Probe:
        layer = get_channel_layer()
        await _subscribed_channel(layer)
        probe = LayerProbe(layer)
        await probe.start()
        for number in range(200):
            await layer.group_send(GROUP, {"type": "check", "n": number})
        asyncio.get_running_loop().call_soon(time.sleep, 1.0)
        outcome = await probe.check()
        await probe.stop()
        await layer.flush()
        return outcome

    assert asyncio.run(scenario()) is not Probe.DEAF


def test_a_probe_of_a_redis_that_is_gone_says_unreachable_not_deaf(settings: Any) -> None:
    layers = {"default": {**settings.CHANNEL_LAYERS["default"]}}
    layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "hosts": ["redis://127.0.0.1:9/0"]}
    settings.CHANNEL_LAYERS = layers

    async def scenario() -> Probe:
        probe = LayerProbe(get_channel_layer())
        probe.channel = "never-subscribed"
        return await probe.check()

    assert asyncio.run(scenario()) is Probe.UNREACHABLE


@dataclass(eq=False)
class FakeSocket:
    user_id: int
    cursor: int
    credential: Credential = field(default_factory=lambda: Credential(kind="token", ref="none"))
    caught_up: list[int] = field(default_factory=list)
    joined: int = 0
    ended: bool = False

    async def catch_up_now(self) -> None:
        self.caught_up.append(self.cursor)

    async def join_groups(self) -> None:
        self.joined += 1

    async def end_for_credential(self) -> None:
        self.ended = True


def _token_credential(user: Any) -> Credential:
    found = token_authenticate(token_issue(user=user))
    assert found is not None
    return found[1]


def test_the_tokens_of_many_sockets_are_checked_in_one_query(alice, bob, django_assert_num_queries) -> None:
    credentials = [(_token_credential(alice), alice.pk) for _ in range(20)]
    credentials += [(_token_credential(bob), bob.pk) for _ in range(20)]
    AuthToken.objects.filter(digest=credentials[3][0].ref).delete()
    held = [*credentials, (credentials[0][0], bob.pk)]  # alice's token, claimed for bob

    with django_assert_num_queries(1):
        valid = credentials_valid(held)

    assert valid == [index != 3 for index in range(40)] + [False]


@pytest.mark.django_db(transaction=True)
def test_a_reconcile_closes_the_ended_rejoins_the_others_and_catches_up_those_behind(
    store_notices, alice, bob, close_async_db_connections
) -> None:
    store_notices(alice, count=2)
    ended = FakeSocket(alice.pk, 0, credential=Credential(kind="token", ref="revoked"))
    behind = FakeSocket(alice.pk, 1, credential=_token_credential(alice))
    current = FakeSocket(alice.pk, 2, credential=_token_credential(alice))
    quiet = FakeSocket(bob.pk, 0, credential=_token_credential(bob))
    watch = SocketWatch()
    watch.sockets.update([ended, behind, current, quiet])

    asyncio.run(watch.reconcile_all())

    assert ended.ended
    assert ended.joined == 0
    assert ended.caught_up == []
    assert [s.ended for s in (behind, current, quiet)] == [False, False, False]
    assert [s.joined for s in (behind, current, quiet)] == [1, 1, 1]
    assert behind.caught_up == [1]
    assert current.caught_up == []
    assert quiet.caught_up == []


@pytest.mark.django_db(transaction=True)
def test_only_sockets_behind_their_inbox_catch_up(store_notices, alice, bob, close_async_db_connections) -> None:
    store_notices(alice, count=3)
    store_notices(bob, count=1)
    behind, current, other_behind, no_inbox = (
        FakeSocket(alice.pk, 1),
        FakeSocket(alice.pk, 3),
        FakeSocket(bob.pk, 0),
        FakeSocket(10**9, 0),
    )
    watch = SocketWatch()
    watch.sockets.update([behind, current, other_behind, no_inbox])

    count = asyncio.run(watch.catch_up_all())

    assert count == 2
    assert behind.caught_up == [1]
    assert other_behind.caught_up == [0]
    assert current.caught_up == []
    assert no_inbox.caught_up == []


@pytest.mark.django_db(transaction=True)
def test_the_watch_mends_a_deaf_layer_and_the_sockets_catch_up(
    store_notices, alice, monkeypatch: pytest.MonkeyPatch, settings: Any, close_async_db_connections
) -> None:
    monkeypatch.setattr(watch_module, "PROBE_EVERY_S", 0.05)
    settings.WS_RECONCILE_INTERVAL_S = 3600  # the catch-up must come from the mend

    async def scenario() -> tuple[FakeSocket, bool]:
        layer = get_channel_layer()
        channel = await _subscribed_channel(layer)
        socket = FakeSocket(alice.pk, 0)
        watch = SocketWatch()
        watch.add(socket, layer)
        await asyncio.sleep(0.3)  # a probe or two heard
        _end_the_receive_loop(layer)
        await asyncio.to_thread(store_notices, alice, count=2)  # their rings would be lost now
        for _ in range(100):
            if socket.caught_up:
                break
            await asyncio.sleep(0.05)
        heard = await _rung_and_heard(layer, channel)
        watch.discard(socket)
        await layer.flush()
        return socket, heard

    socket, heard = asyncio.run(scenario())

    assert socket.caught_up == [0], "the socket should catch up once the layer hears again"
    assert heard, "the watch should have subscribed the group again"


def test_only_the_pub_sub_layer_has_connections_to_watch(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    async def scenario() -> list[Any]:
        return pubsub_connections(get_channel_layer())

    assert asyncio.run(scenario()) == []
