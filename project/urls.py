"""URLs: the demo page, the JSON API, health, metrics, login/logout and the admin."""

from django.contrib import admin
from django.urls import include, path

from project.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("delivery.api_urls")),
    path("metrics", metrics_view, name="metrics"),
    path("", include("delivery.urls")),
]

handler404 = "delivery.views.not_found"
