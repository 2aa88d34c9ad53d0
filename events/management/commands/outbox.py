"""`manage.py outbox [--json]`: the outbox's state for an operator (pending by age, dead letters)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from events.selectors import outbox_state


class Command(BaseCommand):
    help = "Show the outbox: events pending (by age), held by workers, deferred, and dead letters."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", dest="as_json", action="store_true", help="one JSON object, for scripts")

    def handle(self, *args: Any, as_json: bool = False, **options: Any) -> None:
        state = outbox_state()
        if as_json:
            self.stdout.write(json.dumps(state.as_dict(), indent=2))
            return
        oldest = "-" if state.oldest_pending_age_s is None else f"{state.oldest_pending_age_s:.1f} s"
        self.stdout.write(f"pending      {state.pending} (oldest {oldest})")
        for bucket, count in state.pending_by_age.items():
            self.stdout.write(f"  {bucket:>7}  {count}")
        self.stdout.write(f"in flight    {state.in_flight}")
        self.stdout.write(f"deferred     {state.deferred}")
        self.stdout.write(f"dead         {state.dead}" + (" (retry them in the admin)" if state.dead else ""))
        for dead in state.recent_dead:
            self.stdout.write(f"  #{dead.id} {dead.type}: {dead.error.splitlines()[0] if dead.error else ''}")
