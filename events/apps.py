from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Events (outbox)"

    def ready(self) -> None:
        from events import builtin, signals  # noqa: F401 (registers types and receivers)
