"""Plain Django views: the demo page, /healthz and JSON 404s under /api/."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie

from delivery.health import health_report
from events.signals import sign_in_id


@login_required
@ensure_csrf_cookie
def demo_page(request: HttpRequest) -> HttpResponse:
    """A bell, an unread count, a list and toasts, fed by the socket (delivery/static)."""
    session_key = request.session.session_key
    return render(request, "delivery/demo.html", {"sign_in": sign_in_id(session_key) if session_key else ""})


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    report = health_report()
    down = [name for name, state in report.items() if state != "ok"]
    body = {"status": "ok" if not down else "unavailable", "down": down, "checks": report}
    return JsonResponse(body, status=503 if down else 200)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return HttpResponse("Not found.", status=404, content_type="text/plain")
