"""manage.py emit_event TYPE --to USER[,USER...] [--data JSON] [--key IDEMPOTENCY_KEY]"""

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from events.emitting import emit
from events.handoff import hand_off
from events.registry import InvalidEventData, UnknownEventType

HANDOFF_WAIT_S = 10


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


class Command(BaseCommand):
    help = "Emit a domain event to one or more users and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("type", help="a registered event type, e.g. notice")
        parser.add_argument("--to", required=True, help="comma-separated usernames")
        parser.add_argument("--data", default="{}", help="the event's data, a JSON object")
        parser.add_argument("--key", default=None, help="idempotency key: the same key emits once")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = json.loads(options["data"], parse_constant=_refuse_constant)
        except ValueError as exc:
            raise CommandError(f"--data is not valid JSON: {exc}") from None
        usernames = {name.strip() for name in options["to"].split(",") if name.strip()}
        if not usernames:
            raise CommandError("--to names no user")
        users = list(get_user_model().objects.filter(username__in=usernames))
        missing = usernames - {user.get_username() for user in users}
        if missing:
            raise CommandError(f"unknown user(s): {', '.join(sorted(missing))}")
        try:
            event = emit(options["type"], recipients=users, data=data, idempotency_key=options["key"])
        except (UnknownEventType, InvalidEventData, ValueError) as exc:
            raise CommandError(str(exc).strip("'\"")) from None
        # The hand-off thread is a daemon: give it the chance to publish before we exit.
        # If the broker is down the event waits in the outbox for the relay.
        hand_off.flush(timeout=HANDOFF_WAIT_S)
        self.stdout.write(str(event.pk))
