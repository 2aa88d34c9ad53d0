from importlib import import_module

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Events (outbox)"

    def ready(self) -> None:
        from django.conf import settings

        from events import builtin, signals  # noqa: F401 (registers types and receivers)

        # Event types of code that is not a Django app of its own.
        for module in settings.EVENT_TYPE_MODULES:
            import_module(module)
