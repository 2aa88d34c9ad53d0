"""The demo page in Chromium against real daphne and Celery: tabs stay in step, server text stays inert."""

from __future__ import annotations

import contextlib
import re

import pytest
from django.contrib.auth import get_user_model

from events import emit
from tests.browser.helpers import (
    FIREFOX_ON_ANDROID,
    XSS,
    account_action,
    chromium,
    create_users,
    expect,
    in_a_thread,
    items,
    log_in,
    open_inbox,
    sync_api,
    watch_errors,
)
from tests.conftest import wait_until_delivered
from tests.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_two_tabs_stay_in_step_and_server_text_stays_text(live_stack: LiveStack, transactional_db: None) -> None:
    create_users("alice", "bob")
    base = live_stack.http_url

    with chromium() as browser:
        alice_context, bob_context = browser.new_context(), browser.new_context()
        tab1 = alice_context.new_page()
        error_lists = [watch_errors(tab1)]
        log_in(tab1, base, "alice")
        tab2 = alice_context.new_page()  # the same session: a second tab, not a second login
        error_lists.append(watch_errors(tab2))
        tab2.goto(f"{base}/")
        expect(tab2.get_by_test_id("status")).to_have_attribute("data-state", "live")
        tabs = [tab1, tab2]
        for tab in tabs:
            expect(tab.get_by_test_id("user")).to_have_text("alice")

        # Signing in is itself a notification (auth.new_sign_in), but no news to the browser
        # that signed in: listed, read, never toasted.
        for tab in tabs:
            expect(items(tab, "New sign-in")).to_have_count(1)
            expect(tab.get_by_test_id("unread-count")).to_have_text("0")
            expect(tab.get_by_test_id("toast").filter(has_text="New sign-in")).to_have_count(0)

        bob = bob_context.new_page()
        error_lists.append(watch_errors(bob))
        log_in(bob, base, "bob")
        bob.get_by_test_id("message-to").fill("alice")
        bob.get_by_test_id("message-text").fill(f"hi alice {XSS}")
        bob.get_by_test_id("message-send").click()
        expect(bob.locator("#message-note")).to_have_text("Sent to alice.")

        for tab in tabs:
            message = items(tab, "New message from bob")
            expect(message).to_have_count(1)
            expect(message).to_contain_text(f"hi alice {XSS}")  # the markup, shown as text
            expect(message).to_have_attribute("data-seq", "2")
            expect(message).to_have_class(re.compile(r"\bis-unread\b"))
            expect(tab.get_by_test_id("notification-item").first).to_have_attribute("data-seq", "2")  # newest first
            expect(tab.get_by_test_id("toast").filter(has_text="New message from bob")).to_be_visible()
            expect(tab.get_by_test_id("unread-count")).to_have_text("1")
        expect(items(bob, "New message")).to_have_count(0)  # bob sent it; it is not his

        open_inbox(tab1)
        items(tab1, "New message from bob").get_by_test_id("mark-read").click()
        for tab in tabs:
            expect(tab.get_by_test_id("unread-count")).to_have_text("0")
            expect(items(tab, "New message from bob")).not_to_have_class(re.compile(r"\bis-unread\b"))

        for tab in tabs:
            assert tab.locator("[data-testid=notification-list] img, [data-testid=toast] img").count() == 0
            assert tab.evaluate("() => window.__xss") is None

        # Logging out in one tab closes the other tab's socket (4401): it goes to the login
        # page, which says why.
        account_action(tab1, "logout")
        expect(tab1).to_have_url(re.compile(r"/accounts/login/"))
        expect(tab2).to_have_url(re.compile(r"/accounts/login/"), timeout=5_000)
        expect(tab2.get_by_test_id("login-reason")).to_contain_text("You were signed out")
        expect(tab1.get_by_test_id("login-reason")).to_have_count(0)  # it knows: it logged out
        expect(bob.get_by_test_id("status")).to_have_attribute("data-state", "live")  # another session
        assert error_lists == [[], [], []]


def test_links_only_for_http_and_site_relative_urls(live_stack: LiveStack, transactional_db: None) -> None:
    create_users("alice")
    alice = get_user_model().objects.get(username="alice")
    urls = {
        "script url": "javascript:window.__xss=1",
        "data url": "data:text/html,<script>window.__xss=1</script>",
        "protocol-relative url": "//evil.example/phish",
        "backslash url": "/\\evil.example/phish",
        "site url": "/#messages",
        "web url": "https://example.com/docs?a=1",
    }
    for title, url in urls.items():
        emit("notice", recipients=[alice], data={"title": title, "url": url})

    with chromium() as browser:
        page = browser.new_context().new_page()
        errors = watch_errors(page)
        log_in(page, live_stack.http_url, "alice")
        for title in urls:
            expect(items(page, title)).to_have_count(1)
        for title in ("script url", "data url", "protocol-relative url", "backslash url"):
            expect(items(page, title).locator("a")).to_have_count(0)
        expect(items(page, "site url").locator("a")).to_have_attribute("href", "/#messages")
        expect(items(page, "web url").locator("a")).to_have_attribute("href", "https://example.com/docs?a=1")
        assert page.evaluate("() => window.__xss") is None
        # The client checks on its own too, after parsing, whatever a server lets through.
        hostile = ["/.//evil.example", "/..//evil.example", "/%2e//evil.example", "/a/..//evil.example"]
        checked = page.evaluate(
            "async urls => { const { safeUrl } = await import('/static/delivery/notifications.js');"
            " return urls.map(url => safeUrl(url)); }",
            [*hostile, "/inbox?a=1"],
        )
        assert checked == [None, None, None, None, "/inbox?a=1"]
        assert errors == []
        # The page's Content-Security-Policy holds in the browser: an injected inline script
        # does not run.
        with contextlib.suppress(sync_api.Error):
            page.add_script_tag(content="window.__inline = 1")
        assert page.evaluate("() => window.__inline") is None
        assert any("Content Security Policy" in error for error in errors), errors


def test_a_tab_resumes_after_the_web_process_dies_and_misses_nothing(
    private_stack: LiveStack, transactional_db: None
) -> None:
    create_users("alice")
    alice = get_user_model().objects.get(username="alice")
    web = private_stack.start_web()
    private_stack.start_worker()

    with chromium() as browser:
        page = browser.new_context().new_page()
        errors = watch_errors(page)
        log_in(page, private_stack.http_url, "alice")
        expect(items(page, "New sign-in")).to_have_count(1)

        web.kill()
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", re.compile(r"offline|reconnecting"))
        for n in (1, 2, 3):
            in_a_thread(lambda n=n: emit("notice", recipients=[alice], data={"title": f"missed {n}"}))
        private_stack.start_web()  # the same port: the tab reconnects on its own and resumes

        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "live", timeout=30_000)
        for n in (1, 2, 3):
            expect(items(page, f"missed {n}")).to_have_count(1)
        expect(page.get_by_test_id("unread-count")).to_have_text("3")  # its own sign-in is read
        seqs = page.get_by_test_id("notification-item").evaluate_all("rows => rows.map(row => row.dataset.seq)")
        assert seqs == ["4", "3", "2", "1"]  # newest first, none twice, none missing
        assert errors == []


def test_sign_out_everywhere_from_the_page_signs_out_the_other_browser_too(
    live_stack: LiveStack, transactional_db: None
) -> None:
    create_users("alice")
    base = live_stack.http_url

    with chromium() as browser:
        laptop, phone = browser.new_context().new_page(), browser.new_context().new_page()
        errors = [watch_errors(laptop), watch_errors(phone)]
        for page in (laptop, phone):
            log_in(page, base, "alice")
            expect(page.get_by_test_id("status")).to_have_attribute("data-state", "live")

        account_action(laptop, "sign-out-everywhere")

        for page in (laptop, phone):  # the phone's socket closes with 4401, and it goes to log in
            expect(page).to_have_url(re.compile(r"/accounts/login/"))
        expect(laptop.get_by_test_id("login-reason")).to_contain_text("You signed out everywhere")
        expect(phone.get_by_test_id("login-reason")).to_contain_text("You were signed out")
        phone.goto(f"{base}/")  # its session is gone for good
        expect(phone).to_have_url(re.compile(r"/accounts/login/"))
        assert errors == [[], []]


def test_offline_shows_at_once_and_what_was_missed_arrives_once_and_in_order(
    live_stack: LiveStack, transactional_db: None
) -> None:
    create_users("alice")
    alice = get_user_model().objects.get(username="alice")

    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        errors = watch_errors(page)
        log_in(page, live_stack.http_url, "alice")
        expect(items(page, "New sign-in")).to_have_count(1)
        status = page.get_by_test_id("status")

        context.set_offline(True)  # the browser's "offline" event; no ping has to time out first
        expect(status).to_have_attribute("data-state", "offline", timeout=2_000)
        expect(status).to_have_text("Offline")
        for n in (1, 2, 3):
            in_a_thread(lambda n=n: emit("notice", recipients=[alice], data={"title": f"while offline {n}"}))
        in_a_thread(wait_until_delivered)
        expect(items(page, "while offline")).to_have_count(0)

        context.set_offline(False)
        expect(status).to_have_attribute("data-state", "live")
        for n in (1, 2, 3):
            expect(items(page, f"while offline {n}")).to_have_count(1)
        seqs = page.get_by_test_id("notification-item").evaluate_all("rows => rows.map(row => row.dataset.seq)")
        assert seqs == ["4", "3", "2", "1"]
        assert errors == []


def test_a_sign_in_alerts_the_other_browsers_not_itself(live_stack: LiveStack, transactional_db: None) -> None:
    create_users("alice")
    base = live_stack.http_url

    with chromium() as browser:
        laptop = browser.new_context().new_page()
        log_in(laptop, base, "alice")
        expect(items(laptop, "New sign-in")).to_have_count(1)
        expect(laptop.get_by_test_id("unread-count")).to_have_text("0")

        phone = browser.new_context(user_agent=FIREFOX_ON_ANDROID).new_page()
        log_in(phone, base, "alice")
        expect(laptop.get_by_test_id("toast").filter(has_text="New sign-in from Firefox Mobile")).to_be_visible()
        expect(items(phone, "New sign-in")).to_have_count(2)  # the laptop's too, from before
        expect(phone.get_by_test_id("toast")).to_have_count(0)
        # Read state is the user's: each browser read its own sign-in, so once the phone has
        # read its own, neither counts one (the laptop was alerted all the same).
        for page in (laptop, phone):
            expect(page.get_by_test_id("unread-count")).to_have_text("0")
