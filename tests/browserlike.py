"""An HTTP client that behaves like a browser session: cookies, CSRF token, Referer."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

CHROME_ON_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


class BrowserSession:
    def __init__(self, base_url: str, user_agent: str = CHROME_ON_LINUX) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.opener.addheaders = [("User-Agent", user_agent)]
        self.last_headers: dict[str, str] = {}

    @property
    def cookies(self) -> dict[str, str]:
        return {cookie.name: cookie.value for cookie in self.jar}

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def login(self, username: str, password: str) -> None:
        self.opener.open(f"{self.base_url}/accounts/login/", timeout=10).read()
        self._post_form("/accounts/login/", {"username": username, "password": password})
        if "sessionid" not in self.cookies:
            raise AssertionError(f"login as {username} failed")

    def login_status(self, username: str, password: str) -> int:
        """Try to sign in: 200 (signed in, or the form again: see `cookies`), or the error status,
        with its headers in `last_headers` (429 when locked out)."""
        self.opener.open(f"{self.base_url}/accounts/login/", timeout=10).read()
        try:
            self._post_form("/accounts/login/", {"username": username, "password": password})
        except urllib.error.HTTPError as error:
            self.last_headers = dict(error.headers)
            return error.code
        return 200

    def logout(self) -> None:
        self._post_form("/accounts/logout/", {})

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 (our test server)
            f"{self.base_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **self._csrf_headers()},
        )
        with self.opener.open(request, timeout=10) as response:
            return json.loads(response.read())

    def _post_form(self, path: str, fields: dict[str, str]) -> None:
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")})
        request = urllib.request.Request(  # noqa: S310 (our test server)
            f"{self.base_url}{path}", data=data.encode(), headers=self._csrf_headers()
        )
        self.opener.open(request, timeout=10).read()

    def _csrf_headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.cookies.get("csrftoken", ""), "Referer": f"{self.base_url}/"}
