"""What a web process counts about its sockets, for /metrics (project/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

sockets_open = Gauge("notify_sockets_open", "WebSocket connections open in this web process")
sockets_refused = Counter("notify_sockets_refused", "Sockets refused: their user had WS_SOCKETS_PER_USER_MAX open")
doorbells_received = Counter("notify_doorbells_received", "Doorbells (new notifications) this process's sockets got")
gaps_filled = Counter("notify_gaps_filled", "Doorbell gaps this process's sockets filled from the database")
layer_reconnects = Counter(
    "notify_layer_reconnects", "Times this process's pub/sub connection came back (its sockets then caught up)"
)
layer_probes_failed = Counter(
    "notify_layer_probes_failed", "Checks of this process's pub/sub subscription that found Redis away or it deaf"
)
frames_sent = Counter("notify_notification_frames_sent", "notification frames sent to sockets by this process")
replay_size = Histogram(
    "notify_replay_notifications",
    "Notifications sent by one resume or gap fill",
    buckets=(0, 1, 10, 100, 1_000, 10_000),
)
