"""`manage.py worker_alive NAME`: exit 0 if the worker ran a liveness ping recently, else 1."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers.liveness import liveness_age


class Command(BaseCommand):
    help = "Liveness check for one Celery worker (its supervisor process name or Celery hostname)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--max-age", type=float, default=None, help="seconds (WORKER_LIVENESS_TIMEOUT_S)")

    def handle(self, *args: Any, name: str, max_age: float | None, **options: Any) -> None:
        limit = settings.WORKER_LIVENESS_TIMEOUT_S if max_age is None else max_age
        age = liveness_age(name)
        if age is None:
            raise CommandError(f"{name}: no liveness ping ever ran")
        if age > limit:
            raise CommandError(f"{name}: last liveness ping {age:.0f} s ago (limit {limit:.0f} s)")
        self.stdout.write(f"{name}: alive, last ping {age:.1f} s ago")
