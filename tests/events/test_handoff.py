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
        self.gate = threading.Event()
        self.entered = threading.Event()
        if open_:
            self.gate.set()

    def __call__(self, event_id: int) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.published.append(event_id)


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

    def slow_publish(event_id: int) -> None:
        time.sleep(0.02)
        published.append(event_id)

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

    def flaky_publish(event_id: int) -> None:
        if event_id == 1:
            raise ConnectionError("broker down")
        published.append(event_id)

    hand_off = EventHandOff(publish=flaky_publish)
    with caplog.at_level(logging.WARNING, logger="events.handoff"):
        hand_off.submit(1)
        hand_off.submit(2)
        assert hand_off.flush(timeout=5)

    assert published == [2]
    (record,) = [r for r in caplog.records if r.name == "events.handoff"]
    assert record.levelno == logging.WARNING
    assert "could not hand event 1 to the broker" in record.getMessage()
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
        "hand-off queue full; event 4 left for the outbox relay"
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
    hand_off = EventHandOff(publish=lambda event_id: None)
    hand_off.submit(1)

    assert hand_off._thread is not None
    assert hand_off._thread.daemon
