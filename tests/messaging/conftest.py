"""Messaging's fixtures: those of tests/events (fast hashing, a private channel-layer prefix, the doorbell recorder)."""

from tests.events.conftest import fast_password_hashing, private_channel_layer, rings

__all__ = ["fast_password_hashing", "private_channel_layer", "rings"]
