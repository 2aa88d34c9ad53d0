"""The baseline's one HTTP endpoint: POST /api/events/, as the product's."""

from django.urls import path

from bench.naive.views import event_create

urlpatterns = [path("api/events/", event_create)]
