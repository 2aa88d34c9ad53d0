from django.contrib import admin

from messaging.models import Message

admin.site.register(Message)
