"""manage.py issue_token USERNAME [--create]"""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from delivery.credentials import token_issue


class Command(BaseCommand):
    help = "Print a new API token for a user (stored hashed: this is the only time it is shown)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--create", action="store_true", help="create the user if missing")
        parser.add_argument(
            "--staff", action="store_true", help="with --create: a staff user, whose tokens may POST /api/events/"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        user = users.filter(username=options["username"]).first()
        if user is None:
            if not options["create"]:
                raise CommandError(f"unknown user {options['username']!r} (add --create to create it)")
            user = users.create_user(username=options["username"], is_staff=options["staff"])
        self.stdout.write(token_issue(user=user))
