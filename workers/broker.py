"""What the relay asks the broker: is anything waiting in the task queue?"""

from __future__ import annotations

import logging

from celery import current_app
from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


def broker_queue_is_empty() -> bool:
    """Whether no task waits in the default queue (Redis or RabbitMQ). A queue the broker
    does not know, as after a Redis restarted empty, counts as empty; so does one that
    cannot be counted just now: the relay then re-drives, which is always safe."""
    app = current_app
    try:
        with app.connection_for_read() as connection:
            declared = connection.default_channel.queue_declare(queue=app.conf.task_default_queue, passive=True)
            return declared.message_count == 0
    except (ChannelError, KombuOperationalError, RedisError, OSError) as exc:
        logger.info("could not count the broker queue (%r); treating it as empty", exc)
        return True
