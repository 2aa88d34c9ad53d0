"""Celery tasks: thin entry points that load ids and call services."""
