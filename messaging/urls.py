from django.urls import path

from messaging.api import MessageCreate

urlpatterns = [path("", MessageCreate.as_view(), name="message-create")]
