from django.urls import path

from delivery import views

urlpatterns = [
    path("", views.demo_page, name="demo"),
    path("healthz", views.healthz, name="healthz"),
]
