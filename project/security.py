"""HTTP hardening: the Content-Security-Policy, and how a locked-out sign-in is answered.

The demo page and the login page load their script and style from /static/ and have no
inline script or style, so the policy can be strict. JSON and static responses need none.
"""

from __future__ import annotations

from collections.abc import Callable

from axes.helpers import get_cool_off
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",  # CSP3: 'self' covers ws:/wss: to this host and port
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


def client_address(request: HttpRequest) -> str | None:
    """The client's address, as the web server saw it: daphne facing clients puts the peer
    there, and behind `make serve`'s nginx (only) daphne takes it from X-Forwarded-For."""
    return request.META.get("REMOTE_ADDR")


def sign_in_locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: object
) -> HttpResponse:
    """Too many failed sign-ins for this username or from this address: 429, the login page
    saying why, and Retry-After."""
    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 3600
    response = render(
        request,
        "registration/login.html",
        {"form": AuthenticationForm(request), "locked_out_minutes": max(1, round(seconds / 60))},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response
