from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery (notifications)"

    def ready(self) -> None:
        from delivery import signals  # noqa: F401 (closes sockets on logout)
