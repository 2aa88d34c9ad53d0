"""URLs: the demo page, the JSON API, health, login/logout and the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("delivery.api_urls")),
    path("", include("delivery.urls")),
]

handler404 = "delivery.views.not_found"
