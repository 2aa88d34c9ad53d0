"""manage.py seed_demo: the demo users alice and bob, with a known password (DEBUG only)."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

DEMO_USERS = ("alice", "bob")
DEMO_PASSWORD = "notify-demo"  # noqa: S105 (a published demo password, refused unless DEBUG)


class Command(BaseCommand):
    help = "Create (or reset) the demo users alice and bob. Refuses to run unless DEBUG."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("seed_demo sets a published password; run it with DJANGO_DEBUG=1 only")
        users = get_user_model().objects
        for username in DEMO_USERS:
            user, _ = users.get_or_create(username=username)
            user.set_password(DEMO_PASSWORD)
            user.save()
        self.stdout.write(f"demo users: {', '.join(DEMO_USERS)} / password: {DEMO_PASSWORD}")
