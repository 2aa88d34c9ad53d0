"""manage.py revoke_token USERNAME"""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from delivery.credentials import tokens_revoke
from delivery.doorbell import LayerUnavailable


class Command(BaseCommand):
    help = "Revoke every API token of a user and close the sockets opened with them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"unknown user {options['username']!r}")
        try:
            count = tokens_revoke(user=user)
        except LayerUnavailable as exc:
            raise CommandError(f"tokens revoked, but open sockets could not be told: {exc}") from None
        self.stdout.write(f"revoked {count} token(s) of {user.get_username()}")
