"""Settings, read from the environment (12-factor). Every variable is optional; see README."""

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is not set. Set it, or set DJANGO_DEBUG=1 for a local run.")
    SECRET_KEY = "insecure-local-only-key-never-use-in-production"  # noqa: S105 (debug only)

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [],
)
# Extra browser origins (scheme://host[:port]) allowed to open the WebSocket, besides
# the pages served from ALLOWED_HOSTS. Cross-origin clients also need a ticket (§5).
WS_ALLOWED_ORIGINS = env.list("WS_ALLOWED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "knox",
    "axes",
    "django_ratelimit",
    "events",
    "delivery",
    "workers",
    "messaging",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "project.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: it turns a refused (locked-out) sign-in into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
# An empty variable counts as unset, as with every variable here.
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # Daphne, the worker and beat all write: IMMEDIATE takes the write lock at
            # BEGIN, so a transaction never fails half-way with "database is locked",
            # and the timeout makes writers queue instead of failing at once.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        }
    )
    # One connection kept per thread: opening one costs a file open and the PRAGMAs above, and
    # daphne runs every database call of its sockets on one thread (a reconnect storm of 1,000
    # tabs is 3,000 calls in a few seconds).
    DATABASES["default"]["CONN_MAX_AGE"] = None
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A file, not ":memory:", so the daphne and Celery processes that the end-to-end
    # tests start can open the test database too; one per run, so runs never collide.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"notify-test-{os.getpid()}.sqlite3")}
elif env.bool("DATABASE_POOL", default=False):
    # Set by project/asgi.py: an ASGI server runs each request's sync code in a thread of
    # its own, and a persistent connection per thread opens one per request until the
    # server has hundreds (Django's docs advise against CONN_MAX_AGE under ASGI). A pool
    # bounds what one web process holds; requests wait for a free connection instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # After a database restart every pooled connection is dead: with health checks, Django
    # has the pool check each one before handing it out (ConnectionPool.check_connection,
    # one empty round trip) and replace a dead one, instead of failing a request with it.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
        "timeout": 10,
        # psycopg_pool retries a failed connect with doubling delays for 5 minutes by default:
        # after a 30 s outage its next attempt can be 30 s away, and requests time out waiting.
        # Giving up after 5 s lets the next request start a fresh attempt at once.
        "reconnect_timeout": 5,
    }
else:
    # Workers, beat and commands: one thread each, so one persistent connection each.
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Set DJANGO_STATIC_ROOT to collect static files there; without it WhiteNoise serves
# them straight from the apps, so no collectstatic step is needed.
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default="") or None
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# DJANGO_HTTPS=1: the site is served over TLS (terminated by nginx or a load balancer in
# front, which sets X-Forwarded-Proto): plain HTTP is redirected, cookies are Secure, and
# browsers are told to use HTTPS only (HSTS, DJANGO_HSTS_SECONDS, a year by default; start
# lower when trying it). `manage.py check --deploy` is clean with it.
HTTPS = env.bool("DJANGO_HTTPS", default=False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=365 * 24 * 3600)
    # Both are commitments for the whole domain (README, "Running it in production").
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
    # /healthz answers load balancers and probes over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]


# --- Redis: channel layer and Celery broker ---------------------------------------------
def _with_redis_db(url: str, db: int) -> str:
    """The same Redis URL with another database number."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def _redis_db(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


REDIS_URL = env.str("REDIS_URL", default="") or "redis://127.0.0.1:6379/0"
# Names this deployment's channel-layer keys and Celery queue, so that two stacks can share
# one Redis without taking each other's tasks or doorbells (`make test` picks a fresh one).
REDIS_NAMESPACE = env.str("REDIS_NAMESPACE", default="") or "notify"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=_with_redis_db(REDIS_URL, (_redis_db(REDIS_URL) + 1) % 16))

# "pubsub" (RedisPubSubChannelLayer) or "core" (RedisChannelLayer). docs/DESIGN.md says
# why pubsub is the default: it held at 3,000 frames/s where core collapsed, and its
# subscriptions die with their connection instead of leaving ghosts in Redis.
CHANNEL_LAYER = env.str("CHANNEL_LAYER", default="pubsub")
_redis_host = {
    "address": REDIS_URL,
    # redis-py 8 defaults to a 5 s socket timeout, the same as the core layer's blocking
    # receive: idle consumers then die with 1011. Reads must outlive that poll.
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 15,
    # redis-py's async pool caps at 100; a reconnect storm opens far more at once.
    "max_connections": 2000,
    # So CLIENT LIST tells the channel layer's connections from Celery's and the cache's.
    "client_name": "notify-layer",
}
if CHANNEL_LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_redis_host], "prefix": REDIS_NAMESPACE},
        }
    }
elif CHANNEL_LAYER == "core":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [_redis_host],
                "prefix": REDIS_NAMESPACE,
                # Per web process, not per socket: a backlog over this is dropped
                # silently. The database fills any gap; this only bounds the loss.
                "capacity": 5000,
                "expiry": 60,
                # Same as daphne's --websocket_timeout, so no membership outlives a socket.
                "group_expiry": 86400,
            },
        }
    }
else:
    raise ImproperlyConfigured(f"CHANNEL_LAYER must be 'pubsub' or 'core', not {CHANNEL_LAYER!r}")

# --- Celery ------------------------------------------------------------------------------
CELERY_TASK_DEFAULT_QUEUE = REDIS_NAMESPACE
# The outbox sweep has a queue of its own, which every worker also consumes: a backlog of
# deliveries cannot hold it up (Celery takes from a worker's queues in turn).
OUTBOX_SWEEP_QUEUE = f"{REDIS_NAMESPACE}.sweep"
# RabbitMQ (CELERY_BROKER_URL=amqp://...) gets what Celery recommends for it: quorum queues
# (replicated, durable), publisher confirms, and acks late (set below for every broker).
BROKER_IS_RABBITMQ = urlsplit(CELERY_BROKER_URL).scheme in ("amqp", "amqps", "pyamqp")
_queue_arguments = {"x-queue-type": "quorum"} if BROKER_IS_RABBITMQ else None
CELERY_TASK_QUEUES = [
    Queue(name, queue_arguments=_queue_arguments) for name in (CELERY_TASK_DEFAULT_QUEUE, OUTBOX_SWEEP_QUEUE)
]
CELERY_TASK_ROUTES = {
    "outbox_sweep": {"queue": OUTBOX_SWEEP_QUEUE},
    "workers.tasks.prune_expired_task": {"queue": OUTBOX_SWEEP_QUEUE},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
# A task whose worker died is not handed to another by the broker: the outbox's leases
# bring its events back (workers/tasks.py), whatever became of the broker message.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
if BROKER_IS_RABBITMQ:
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True  # quorum queues allow no global QoS
    CELERY_BROKER_HEARTBEAT = 10
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Longer than any task may run (time limit 300 s), so Redis never hands a running
        # task to a second worker; a lost one is the outbox's business, not the broker's.
        "visibility_timeout": 3600,
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
    }
# Publishing gives up fast: the outbox sweep delivers whatever was not handed over.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Beat's schedule is all intervals: nothing worth a file on disk, so `celery beat` starts
# in a fresh clone with no folder to create first.
CELERY_BEAT_SCHEDULER = "celery.beat:Scheduler"
# Each worker also consumes a queue of its own, where it sends itself liveness pings.
CELERY_WORKER_DIRECT = True

# /metrics answers loopback clients only, or, with a token set, `Authorization: Bearer <token>`.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- Worker liveness (workers/liveness.py) --------------------------------------------------
WORKER_PING_INTERVAL_S = env.float("WORKER_PING_INTERVAL_S", default=5.0)
# A worker whose last ping ran longer ago than this has stopped consuming: restart it.
WORKER_LIVENESS_TIMEOUT_S = env.float("WORKER_LIVENESS_TIMEOUT_S", default=60.0)
WORKER_LIVENESS_DIR = env.str("WORKER_LIVENESS_DIR", default=str(BASE_DIR / "var" / "liveness"))

# --- Events and delivery -----------------------------------------------------------------
# How often beat runs the outbox sweep (the relay): it delivers what nobody holds, such as
# events whose hand-off was lost or whose worker died. /healthz reports it stale after
# three intervals without a run.
EVENTS_RELAY_INTERVAL_S = env.float("EVENTS_RELAY_INTERVAL_S", default=2.0)
# How long a worker owns the events it claimed. Longer than a batch takes (milliseconds
# to a second or two); a worker that dies holding events gives them back when it runs out.
EVENTS_LEASE_S = env.float("EVENTS_LEASE_S", default=15.0)
# Attempts that may end without an answer (the worker died, the lease ran out) before an
# event is dead-lettered. Database and Redis errors do not count.
EVENTS_MAX_ATTEMPTS = env.int("EVENTS_MAX_ATTEMPTS", default=8)

# Extra modules that register event types when Django starts (apps register their own in
# AppConfig.ready()); the fault tests add their poison types this way.
EVENT_TYPE_MODULES = env.list("EVENT_TYPE_MODULES", default=[])

# How often each open socket re-checks its credential, rejoins its groups and fills any gap
# from the database: the most a lost doorbell or logout ring can cost.
WS_RECONCILE_INTERVAL_S = env.float("WS_RECONCILE_INTERVAL_S", default=30.0)
# Open sockets per user, across every web process; the next is closed with 4409.
WS_SOCKETS_PER_USER_MAX = env.int("WS_SOCKETS_PER_USER_MAX", default=100)

# Notifications older than this are deleted (hourly, by beat); a client whose cursor is
# older gets `resync` and reloads. seq numbers are never reused.
NOTIFICATIONS_RETENTION_DAYS = env.int("NOTIFICATIONS_RETENTION_DAYS", default=90)

CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {
        "task": "outbox_sweep",
        "schedule": EVENTS_RELAY_INTERVAL_S,
        # A sweep that could not run in time is dropped, not queued up behind the next.
        "options": {"expires": EVENTS_RELAY_INTERVAL_S},
    },
    "prune-expired": {
        "task": "workers.tasks.prune_expired_task",
        "schedule": 3600.0,
    },
}

# --- API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "project.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["project.api.SafeJSONParser"],
    "EXCEPTION_HANDLER": "project.api.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# --- Rate limits (docs/SECURITY.md) ---------------------------------------------------------
# Counted in Redis, shared by every web process. "600/m" is 600 a minute (s, m, h, d); an
# empty value turns that limit off. Over a limit the API answers 429 with Retry-After.
CACHES = {
    "default": {
        # Django's, with connection pools per process instead of per request (project/cache.py).
        "BACKEND": "project.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_NAMESPACE,
        # A request never waits long on Redis: past these, a limit is not checked (and logged).
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}
# django-ratelimit knows django-redis's backend only; Django's own counts the same way (add is
# SET NX, incr is INCR: atomic in Redis).
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
# Per view scope (a view's `throttle_scope`, "api" for the rest), per user and per API token.
API_RATE_LIMITS = {
    "api": {
        "user": env.str("API_RATE_LIMIT_USER", default="600/m"),
        "token": env.str("API_RATE_LIMIT_TOKEN", default="600/m"),
    },
    # POST /api/messages/: each is a notification on someone else's screen.
    "messages": {"user": env.str("API_RATE_LIMIT_MESSAGES", default="30/m")},
    # POST /api/events/: service traffic with a staff token.
    "events": {"token": env.str("API_RATE_LIMIT_EVENTS", default="60000/m")},
}
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["project.throttling.PerUser", "project.throttling.PerToken"]

# Sign-in (the login page and the admin's), by django-axes: after LOGIN_FAILURE_LIMIT failed
# attempts for one username, or from one client address, sign-in is refused with 429 and
# Retry-After for LOGIN_LOCKOUT_MINUTES, the right password too. Attempts are rows in the
# database (the source of truth, already in the sign-in path).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # SignedInSession already records each sign-in
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_CLIENT_IP_CALLABLE = "project.security.client_address"
AXES_LOCKOUT_CALLABLE = "project.security.sign_in_locked_out"

REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    # Service tokens do not expire on their own; `revoke_token` ends them.
    "TOKEN_TTL": None,
}

# LOG_FORMAT=json: one JSON object per line (timestamp, level, logger, message, and the
# exception when there is one), for log pipelines; plain text otherwise.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # axes says INFO on every start and every failed sign-in; its lockouts are WARNING.
    "loggers": {"django.db.backends": {"level": "INFO"}, "axes": {"level": "WARNING"}},
}
