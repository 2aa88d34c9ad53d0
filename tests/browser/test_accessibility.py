"""axe-core (from npm, `make test` installs it) on the demo and login pages: no serious or
critical violations, at desktop and phone widths, with the inbox closed and open."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from events import emit
from tests.browser.helpers import chromium, create_users, expect, log_in, open_inbox
from tests.conftest import wait_until_delivered
from tests.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.live]

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
if not AXE.exists() and shutil.which("npm") is None:
    pytest.skip("npm is missing, so axe-core is not installed", allow_module_level=True)

DEVICES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 740}, "is_mobile": True, "has_touch": True},
}


def serious_violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations
                .filter(v => v.impact === "serious" || v.impact === "critical")
                .map(v => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map(n => n.target.join(" ")).join(", ")})`);
        }"""
    )
    return list(found)


@pytest.mark.parametrize(("device", "scheme"), [("desktop", "light"), ("phone", "dark")])
def test_no_serious_accessibility_violations(
    live_stack: LiveStack, transactional_db: None, device: str, scheme: str
) -> None:
    assert AXE.exists(), "axe-core is not installed: run `npm ci` (make test does)"
    create_users("alice")
    alice = get_user_model().objects.get(username="alice")
    emit("notice", recipients=[alice], data={"title": "Build passed", "body": "main is green", "url": "/"})
    emit("notice", recipients=[alice], data={"title": "Invoice due"})
    wait_until_delivered()

    with chromium() as browser:
        # The page's Content-Security-Policy refuses injected scripts, axe-core's too.
        context = browser.new_context(**DEVICES[device], color_scheme=scheme, bypass_csp=True)
        page = context.new_page()
        page.goto(f"{live_stack.http_url}/accounts/login/?reason=signed_out")
        expect(page.get_by_test_id("login-reason")).to_be_visible()
        found = {"login page": serious_violations(page)}

        log_in(page, live_stack.http_url, "alice")
        expect(page.get_by_test_id("notification-item")).to_have_count(3)
        found["demo page"] = serious_violations(page)
        open_inbox(page)
        found["inbox open"] = serious_violations(page)
        page.get_by_test_id("account-menu").click()
        found["account menu open"] = serious_violations(page)

    assert found == {"login page": [], "demo page": [], "inbox open": [], "account menu open": []}
