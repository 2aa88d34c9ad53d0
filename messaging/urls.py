from django.urls import path

from messaging.api import message_create

urlpatterns = [path("", message_create, name="message-create")]
