from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging (sample domain)"

    def ready(self) -> None:
        from messaging import event_types, signals  # noqa: F401 (registers type and receiver)
