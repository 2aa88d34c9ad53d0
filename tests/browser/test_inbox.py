"""The inbox as people use it, in Chromium against real daphne and Celery: the bell's drawer and
its paging, the Unread / All filter, rows that open their link, bursts, focus, desktop alerts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from delivery.models import Notification
from events import emit
from messaging.services import message_send
from tests.browser.helpers import (
    chromium,
    create_users,
    expect,
    in_a_thread,
    items,
    log_in,
    open_inbox,
    watch_errors,
)
from tests.conftest import wait_until_delivered
from tests.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.live]

PHONE = {"viewport": {"width": 390, "height": 640}, "is_mobile": True, "has_touch": True}


def seqs_shown(page) -> list[int]:
    rows = page.get_by_test_id("notification-item")
    return [int(seq) for seq in rows.evaluate_all("rows => rows.map(row => row.dataset.seq)")]


def scroll_to_the_end(page) -> None:
    """Scroll the drawer down until it has loaded its oldest notification."""
    scroll = page.get_by_test_id("inbox-scroll")
    foot = page.get_by_test_id("inbox-foot")
    for _ in range(20):
        scroll.evaluate("node => { node.scrollTop = node.scrollHeight; }")
        if foot.get_attribute("data-state") == "end":
            return
        page.wait_for_timeout(200)
    expect(foot).to_have_attribute("data-state", "end")


def test_the_drawer_scrolls_on_its_own_pages_to_the_oldest_and_filters_unread(
    live_stack: LiveStack, transactional_db: None
) -> None:
    create_users("alice")
    alice = get_user_model().objects.get(username="alice")
    for n in range(120):
        emit("notice", recipients=[alice], data={"title": f"notice {n}"})
    wait_until_delivered()

    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        errors = watch_errors(page)
        log_in(page, live_stack.http_url, "alice")
        # The badge stops at "99+", as wide as the bell; the bell's label says the whole count
        # (the page's own sign-in is read here).
        expect(page.get_by_test_id("unread-count")).to_have_text("99+")
        expect(page.get_by_role("button", name=re.compile("120 unread notifications"))).to_have_count(1)
        inbox = open_inbox(page)
        expect(page.get_by_test_id("bell")).to_have_attribute("aria-expanded", "true")
        expect(items(page, "New sign-in")).to_have_count(1)  # the newest: this page's own sign-in
        assert len(seqs_shown(page)) < 121, "the first page is a page, not everything"

        scroll_to_the_end(page)
        shown = seqs_shown(page)
        assert shown == list(range(121, 0, -1)), "newest first, each once, down to the oldest"
        expect(items(page, "notice 0")).to_have_count(1)
        expect(page.get_by_test_id("inbox-foot")).to_have_text("That's all of them.")
        # The drawer scrolls, the page does not grow with the list.
        box = inbox.bounding_box()
        assert box is not None
        assert box["y"] + box["height"] <= 800
        assert page.evaluate("() => document.documentElement.scrollHeight") <= 900

        page.get_by_test_id("filter-unread").click()
        expect(items(page, "New sign-in")).to_have_count(0)  # read: not under Unread
        scroll_to_the_end(page)
        assert seqs_shown(page) == list(range(120, 0, -1))

        page.get_by_test_id("mark-all-read").click()
        expect(page.get_by_test_id("inbox-empty")).to_have_text("You're all caught up: nothing unread.")
        expect(page.get_by_test_id("notification-item")).to_have_count(0)
        expect(page.get_by_test_id("unread-count")).to_have_text("0")
        page.get_by_test_id("filter-all").click()
        expect(page.get_by_test_id("notification-item").first).to_have_attribute("data-seq", "121")
        expect(page.locator(".item.is-unread")).to_have_count(0)

        page.keyboard.press("Escape")
        expect(inbox).to_be_hidden()
        expect(page.get_by_test_id("bell")).to_be_focused()
        assert errors == []
    assert Notification.objects.filter(user=alice, read_at__isnull=True).count() == 0


def test_a_new_user_sees_an_empty_state(live_stack: LiveStack, transactional_db: None) -> None:
    create_users("alice")
    with chromium() as browser:
        page = browser.new_context().new_page()
        log_in(page, live_stack.http_url, "alice")
        open_inbox(page)
        page.get_by_test_id("filter-unread").click()  # its own sign-in is read
        expect(page.get_by_test_id("inbox-empty")).to_be_visible()
        expect(page.get_by_test_id("inbox-empty")).to_have_text("You're all caught up: nothing unread.")


def test_a_row_opens_its_link_on_click_or_enter_and_is_read(live_stack: LiveStack, transactional_db: None) -> None:
    create_users("alice")
    alice = get_user_model().objects.get(username="alice")
    emit("notice", recipients=[alice], data={"title": "clicked", "url": "/?opened=click"})
    emit("notice", recipients=[alice], data={"title": "entered", "url": "/?opened=enter"})
    wait_until_delivered()

    with chromium() as browser:
        page = browser.new_context().new_page()
        errors = watch_errors(page)
        base = live_stack.http_url
        log_in(page, base, "alice")
        expect(page.get_by_test_id("unread-count")).to_have_text("2")

        open_inbox(page)
        items(page, "clicked").click()  # anywhere on the row, not a small link
        expect(page).to_have_url(f"{base}/?opened=click")
        expect(page.get_by_test_id("unread-count")).to_have_text("1")

        open_inbox(page)
        items(page, "entered").locator(".item-main").focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{base}/?opened=enter")
        expect(page.get_by_test_id("unread-count")).to_have_text("0")
        assert errors == []

    read = in_a_thread(
        lambda: dict(Notification.objects.filter(user=alice, event_type="notice").values_list("title", "read_at"))
    )
    assert set(read) == {"clicked", "entered"}
    assert all(read.values()), read


def test_a_burst_collapses_into_one_toast_that_opens_the_unread(live_stack: LiveStack, transactional_db: None) -> None:
    create_users("alice")
    alice = get_user_model().objects.get(username="alice")

    with chromium() as browser:
        page = browser.new_context(**PHONE).new_page()
        log_in(page, live_stack.http_url, "alice")
        in_a_thread(lambda: [emit("notice", recipients=[alice], data={"title": f"burst {n}"}) for n in range(12)])
        expect(page.get_by_test_id("unread-count")).to_have_text("12")
        toasts = page.get_by_test_id("toast")
        expect(toasts).to_have_count(1)
        expect(toasts).to_contain_text("12 new notifications")

        toasts.locator(".toast-main").click()
        expect(page.get_by_test_id("inbox")).to_be_visible()
        expect(page.get_by_test_id("filter-unread")).to_have_attribute("aria-pressed", "true")
        expect(items(page, "burst")).to_have_count(12)
        expect(toasts).to_have_count(0)


@pytest.mark.parametrize(
    "device",
    [{"viewport": {"width": 1280, "height": 420}}, PHONE | {"viewport": {"width": 390, "height": 420}}],
    ids=["desktop", "phone"],
)
def test_keyboard_focus_is_never_hidden_under_the_header(
    live_stack: LiveStack, transactional_db: None, device: dict
) -> None:
    create_users("alice")
    with chromium() as browser:
        page = browser.new_context(**device).new_page()
        log_in(page, live_stack.http_url, "alice")
        header = page.locator("#topbar").bounding_box()
        assert header is not None
        assert header["height"] <= 72, f"the header wraps: {header['height']} px tall"
        assert page.evaluate("() => document.documentElement.scrollHeight > innerHeight"), "the page must scroll"

        page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
        page.locator("body").focus()
        hidden: list[str] = []
        for _ in range(14):
            page.keyboard.press("Shift+Tab")  # upwards: each control is above the last
            where = page.evaluate(
                """() => {
                    const node = document.activeElement;
                    if (!node || node === document.body || node.closest('#topbar')) return null;
                    const box = node.getBoundingClientRect();
                    return {name: node.id || node.dataset.testid || node.tagName, top: box.top,
                            header: document.getElementById('topbar').getBoundingClientRect().bottom};
                }"""
            )
            if where and where["top"] < where["header"]:
                hidden.append(f"{where['name']} at {where['top']:.0f} px, header ends at {where['header']:.0f}")
        assert hidden == []


def test_desktop_alerts_are_opt_in_and_alert_while_hidden(live_stack: LiveStack, transactional_db: None) -> None:
    create_users("alice")
    alice = get_user_model().objects.get(username="alice")

    with chromium() as browser:
        context = browser.new_context(permissions=["notifications"])
        # Record each system notification the page creates (the real constructor still runs),
        # and let the test say when the page is hidden.
        context.add_init_script(
            """
            const Real = window.Notification;
            window.__alerts = [];
            window.Notification = class extends Real {
              constructor(title, options) {
                super(title, options);
                window.__alerts.push({title: title, body: (options || {}).body || ""});
              }
            };
            Object.defineProperty(document, "visibilityState", {get: () => window.__hidden ? "hidden" : "visible"});
            """
        )
        page = context.new_page()
        errors = watch_errors(page)
        log_in(page, live_stack.http_url, "alice")
        toggle = open_inbox(page).get_by_test_id("desktop-alerts")
        expect(toggle).to_have_attribute("data-state", "off")  # allowed by the browser, but not chosen

        in_a_thread(lambda: emit("notice", recipients=[alice], data={"title": "before opting in"}))
        expect(items(page, "before opting in")).to_have_count(1)

        toggle.click()
        expect(toggle).to_have_attribute("data-state", "on")
        expect(toggle).to_have_text("Desktop alerts: on")

        in_a_thread(lambda: emit("notice", recipients=[alice], data={"title": "while visible"}))
        expect(items(page, "while visible")).to_have_count(1)
        page.evaluate("() => { window.__hidden = true; document.dispatchEvent(new Event('visibilitychange')); }")
        in_a_thread(lambda: emit("notice", recipients=[alice], data={"title": "while hidden", "body": "look"}))
        expect(items(page, "while hidden")).to_have_count(1)
        assert page.evaluate("() => window.__alerts") == [{"title": "while hidden", "body": "look"}]

        page.reload()  # the choice is kept
        expect(open_inbox(page).get_by_test_id("desktop-alerts")).to_have_attribute("data-state", "on")
        assert errors == []


def test_screenshots_of_the_inbox(live_stack: LiveStack, transactional_db: None, tmp_path: Path) -> None:
    """The pictures in the README: `make screenshots` writes them to docs/img/."""
    out = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    create_users("alice", "bob")
    alice, bob = get_user_model().objects.get(username="alice"), get_user_model().objects.get(username="bob")
    for title, body in [
        ("Build 1432 passed", "main is green again"),
        ("Invoice INV-2291 is due", "Due on Friday: 1,250.00 EUR"),
        ("Maria commented on your pull request", "Looks good, one nit on the retry loop."),
    ]:
        emit("notice", recipients=[alice], data={"title": title, "body": body})
    wait_until_delivered()

    with chromium() as browser:
        for name, device in (("desktop", {"viewport": {"width": 1200, "height": 720}}), ("phone", PHONE)):
            context = browser.new_context(**device, color_scheme="light")
            page = context.new_page()
            log_in(page, live_stack.http_url, "alice")
            in_a_thread(lambda: message_send(sender=bob, recipient=alice, text="Are we still on for lunch?"))
            expect(page.get_by_test_id("toast")).to_contain_text("New message from bob")
            open_inbox(page)
            expect(items(page, "New message from bob").first).to_be_visible()
            path = out / f"demo-{name}.png"
            page.screenshot(path=str(path), animations="disabled")
            assert path.stat().st_size > 10_000
            context.close()


def test_the_client_module_works_on_its_own_with_its_documented_events(
    live_stack: LiveStack, transactional_db: None
) -> None:
    create_users("alice")
    alice = get_user_model().objects.get(username="alice")
    with chromium() as browser:
        page = browser.new_context().new_page()
        errors = watch_errors(page)
        log_in(page, live_stack.http_url, "alice")
        expect(items(page, "New sign-in")).to_have_count(1)  # delivered before the second client starts
        # A second client in the page, as another app would use it: import, listen, start.
        page.evaluate(
            """async () => {
                const { NotificationClient } = await import("/static/delivery/notifications.js");
                const seen = window.__seen = {status: [], notification: [], read: [], reload: []};
                const client = window.__client = new NotificationClient({ apiBase: "/api/" });
                for (const type of Object.keys(seen)) {
                    client.addEventListener(type, (event) => seen[type].push(event.detail));
                }
                client.start();
            }"""
        )
        page.wait_for_function("() => window.__seen.status.some(detail => detail.status === 'live')")
        in_a_thread(lambda: emit("notice", recipients=[alice], data={"title": "to any page"}))
        page.wait_for_function("() => window.__seen.notification.length === 1")
        detail = page.evaluate("() => window.__seen.notification[0]")
        assert detail["notification"]["title"] == "to any page"
        assert (detail["unread"], detail["replay"]) == (1, False)
        assert page.evaluate("() => window.__seen.reload.map(detail => detail.reason)") == ["initial"]

        page.evaluate("() => window.__client.markRead([window.__seen.notification[0].notification.id])")
        page.wait_for_function("() => window.__seen.read.length === 1")
        assert page.evaluate("() => window.__seen.read[0].unread") == 0
        expect(page.get_by_test_id("unread-count")).to_have_text("0")  # the demo's own client heard it too
        assert errors == []
