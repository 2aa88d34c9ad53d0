"""Settings of the baseline: no database, no apps of ours, the same channel layer as the product."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "bench-naive-only")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "bench.naive.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
# The staff token the ingest view accepts (bench.stack.naive_stack makes one per run).
NAIVE_STAFF_TOKEN = os.environ.get("NAIVE_STAFF_TOKEN", "")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), "max_connections": 2000}],
            "prefix": os.environ.get("REDIS_NAMESPACE", "naive"),
        },
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
