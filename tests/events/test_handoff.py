"""The hand-off: publishes committed events from a thread, so no caller ever waits for the broker."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from events import handoff
from events.handoff import EventHandOff


class GatedPublisher:
    """A publish that records ids, and blocks while the gate is closed (a slow broker)."""

    def __init__(self, *, open_: bool = True) -> None:
        self.published: list[int] = []
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        if open_:
            self.gate.set()

    def __call__(self, event_ids: list[int]) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.published.extend(event_ids)
        self.batches.append(list(event_ids))


def test_submit_returns_at_once_while_the_broker_is_slow() -> None:
    publisher = GatedPublisher(open_=False)
    hand_off = EventHandOff(publish=publisher)
    try:
        started = time.monotonic()
        for event_id in range(1, 6):
            hand_off.submit(event_id)
        elapsed = time.monotonic() - started

        assert elapsed < 0.5
        assert publisher.entered.wait(5)
        assert publisher.published == []
    finally:
        publisher.gate.set()
    assert hand_off.flush(timeout=5)
    assert publisher.published == [1, 2, 3, 4, 5]


def test_flush_waits_until_everything_submitted_was_published() -> None:
    published: list[int] = []

    def slow_publish(event_ids: list[int]) -> None:
        time.sleep(0.02)
        published.extend(event_ids)

    hand_off = EventHandOff(publish=slow_publish)
    for event_id in range(10):
        hand_off.submit(event_id)

    assert hand_off.flush(timeout=5) is True
    assert published == list(range(10))


def test_flush_gives_up_after_its_timeout_while_the_broker_hangs() -> None:
    publisher = GatedPublisher(open_=False)
    hand_off = EventHandOff(publish=publisher)
    hand_off.submit(1)
    try:
        assert hand_off.flush(timeout=0.2) is False
    finally:
        publisher.gate.set()
    assert hand_off.flush(timeout=5) is True


def test_a_publish_that_raises_is_logged_and_the_next_event_still_goes_out(caplog: pytest.LogCaptureFixture) -> None:
    published: list[int] = []

    def flaky_publish(event_ids: list[int]) -> None:
        if 1 in event_ids:
            raise ConnectionError("broker down")
        published.extend(event_ids)

    hand_off = EventHandOff(publish=flaky_publish)
    with caplog.at_level(logging.WARNING, logger="events.handoff"):
        hand_off.submit(1)
        assert hand_off.flush(timeout=5)
        hand_off.submit(2)
        assert hand_off.flush(timeout=5)

    assert published == [2]
    (record,) = [r for r in caplog.records if r.name == "events.handoff"]
    assert record.levelno == logging.WARNING
    assert "could not hand 1 event(s) to the broker (first 1)" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ConnectionError


def test_a_full_queue_drops_the_event_with_a_warning_and_does_not_block(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(handoff, "QUEUE_MAX", 2)
    publisher = GatedPublisher(open_=False)
    hand_off = EventHandOff(publish=publisher)
    try:
        hand_off.submit(1)
        assert publisher.entered.wait(5)  # 1 is in the publisher's hands; the queue is empty
        with caplog.at_level(logging.WARNING, logger="events.handoff"):
            hand_off.submit(2)
            hand_off.submit(3)
            started = time.monotonic()
            hand_off.submit(4)  # the queue holds 2 and 3: no room
            assert time.monotonic() - started < 0.5
    finally:
        publisher.gate.set()

    assert hand_off.flush(timeout=5)
    assert publisher.published == [1, 2, 3]
    assert [r.getMessage() for r in caplog.records if r.name == "events.handoff"] == [
        "hand-off queue full; event 4 left for the outbox sweep"
    ]


def test_a_hand_off_inherited_across_a_fork_starts_a_thread_of_its_own() -> None:
    publisher = GatedPublisher()
    hand_off = EventHandOff(publish=publisher)
    hand_off.submit(1)
    assert hand_off.flush(timeout=5)
    parents_thread = hand_off._thread

    hand_off._pid = -1  # what a forked child sees: the parent's pid, and no running thread
    hand_off.submit(2)

    assert hand_off.flush(timeout=5)
    assert hand_off._thread is not parents_thread
    assert hand_off._thread is not None
    assert hand_off._thread.is_alive()
    assert publisher.published == [1, 2]


def test_the_thread_is_a_daemon_so_it_never_holds_a_process_open() -> None:
    hand_off = EventHandOff(publish=lambda event_ids: None)
    hand_off.submit(1)

    assert hand_off._thread is not None
    assert hand_off._thread.daemon


def test_what_accumulates_while_a_publish_is_under_way_goes_out_as_one_batch() -> None:
    publisher = GatedPublisher(open_=False)
    hand_off = EventHandOff(publish=publisher)
    try:
        hand_off.submit(1)
        assert publisher.entered.wait(5)  # 1 is being published; the broker is slow
        for event_id in range(2, 102):
            hand_off.submit(event_id)
    finally:
        publisher.gate.set()

    assert hand_off.flush(timeout=5)
    assert publisher.batches == [[1], list(range(2, 102))]


def test_a_batch_is_capped_so_one_task_message_stays_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff, "BATCH_MAX", 10)
    publisher = GatedPublisher(open_=False)
    hand_off = EventHandOff(publish=publisher)
    try:
        hand_off.submit(0)
        assert publisher.entered.wait(5)
        for event_id in range(1, 26):
            hand_off.submit(event_id)
    finally:
        publisher.gate.set()

    assert hand_off.flush(timeout=5)
    assert [len(batch) for batch in publisher.batches] == [1, 10, 10, 5]
    assert publisher.published == list(range(26))


def test_at_exit_a_process_publishes_what_it_submitted_and_waits_no_longer_than_it_must() -> None:
    published: list[int] = []
    hand_off = EventHandOff(publish=lambda event_ids: (time.sleep(0.05), published.extend(event_ids)))
    hand_off.submit(1)
    hand_off.submit(2)

    started = time.monotonic()
    hand_off.flush_at_exit()

    assert published == [1, 2]
    assert time.monotonic() - started < handoff.EXIT_FLUSH_S


def test_at_exit_a_hung_broker_delays_the_exit_by_at_most_the_exit_flush_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff, "EXIT_FLUSH_S", 0.3)
    publisher = GatedPublisher(open_=False)
    hand_off = EventHandOff(publish=publisher)
    hand_off.submit(1)
    hand_off.submit(2)
    try:
        started = time.monotonic()
        hand_off.flush_at_exit()
        elapsed = time.monotonic() - started
    finally:
        publisher.gate.set()

    assert 0.25 < elapsed < 2.0


class SentTasks:
    """Stands in for the broker's send: records each deliver_events task's event ids."""

    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[list[int]] = []
        self.fail = fail

    def __call__(self, event_ids: list[int]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append(list(event_ids))


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> SentTasks:
    sent = SentTasks()
    monkeypatch.setattr(handoff, "send_delivery_task", sent)
    handoff.delivery_started()  # nothing queued from an earlier test
    return sent


def test_while_a_delivery_task_waits_in_the_queue_no_other_is_published(sent_tasks: SentTasks) -> None:
    for event_id in range(1, 51):
        handoff.publish_delivery([event_id])

    assert sent_tasks.sent == [[1]]  # the queued task claims events 2-50 when it starts


def test_a_task_that_started_lets_the_next_events_publish_a_task_of_their_own(sent_tasks: SentTasks) -> None:
    handoff.publish_delivery([1])
    handoff.publish_delivery([2])
    handoff.delivery_started()  # the worker took task [1]; its claim will not see later commits
    handoff.publish_delivery([3])
    handoff.publish_delivery([4])

    assert sent_tasks.sent == [[1], [3]]


def test_a_lost_task_holds_publishing_back_only_until_the_mark_expires(
    sent_tasks: SentTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handoff, "DELIVERY_QUEUED_S", 1)
    handoff.publish_delivery([1])  # published, then lost: it never starts
    handoff.publish_delivery([2])
    time.sleep(1.5)
    handoff.publish_delivery([3])

    assert sent_tasks.sent == [[1], [3]]


def test_a_publish_that_fails_clears_the_mark_so_the_next_event_tries_again(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = SentTasks(fail=True)
    monkeypatch.setattr(handoff, "send_delivery_task", broken)
    handoff.delivery_started()
    with pytest.raises(ConnectionError):
        handoff.publish_delivery([1])

    working = SentTasks()
    monkeypatch.setattr(handoff, "send_delivery_task", working)
    handoff.publish_delivery([2])

    assert working.sent == [[2]]


def test_without_redis_every_hand_off_is_published(sent_tasks: SentTasks, settings, caplog) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="events.handoff"):
        handoff.publish_delivery([1])
        handoff.publish_delivery([2])
        handoff.delivery_started()

    assert sent_tasks.sent == [[1], [2]]
    assert "could not read the queued-delivery mark" in caplog.text
