"""The Celery app: configured from Django settings (CELERY_*), tasks found in installed apps."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fix-up closes the database connection before and after every task unless
# this is set: each delivery then paid a new PostgreSQL connection. With it, a worker
# process keeps its connection across tasks (closed every this many, and after an error).
app.conf.CELERY_DB_REUSE_MAX = 1000
app.autodiscover_tasks()
