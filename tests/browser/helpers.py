"""Helpers of the browser tests: a headless Debian Chromium, signing in, finding rows."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

expect = sync_api.expect
T = TypeVar("T")

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery"
FIREFOX_ON_ANDROID = "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0"
XSS = '<img src=x onerror="window.__xss=1">'
# The pipeline runs through a real broker and worker on a shared machine: allow it time.
expect.set_options(timeout=15_000)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium. Start it only after the test's ORM work: Playwright's sync API
    runs an event loop in this thread, and Django refuses ORM calls while one runs."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def in_a_thread(function: Callable[[], T]) -> T:
    """Run ORM code while Playwright's loop holds this thread: in a thread of its own."""

    def run() -> T:
        try:
            return function()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def create_users(*usernames: str) -> None:
    for username in usernames:
        get_user_model().objects.create_user(username=username, password=PASSWORD)


def watch_errors(page: Page) -> list[str]:
    """Uncaught exceptions in the page's scripts and anything the Content-Security-Policy
    refused, to assert there were none."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return errors


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))  # the demo page asks for a login first
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}/")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "live")


def items(page: Page, text: str) -> Locator:
    return page.get_by_test_id("notification-item").filter(has_text=text)


def open_inbox(page: Page) -> Locator:
    """Open the bell's drawer (if it is closed) and return it."""
    inbox = page.get_by_test_id("inbox")
    if not inbox.is_visible():
        page.get_by_test_id("bell").click()
    expect(inbox).to_be_visible()
    return inbox


def account_action(page: Page, testid: str) -> None:
    """Click an item of the account menu (log out, sign out everywhere)."""
    page.get_by_test_id("account-menu").click()
    page.get_by_test_id(testid).click()
