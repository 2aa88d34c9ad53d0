"""emit(): one INSERT of the event row in the caller's transaction; the hand-off follows the commit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models, transaction

from events.handoff import hand_off
from events.models import Event
from events.outbox import event_insert
from events.registry import InvalidEventData, get_event_type

IDEMPOTENCY_KEY_MAX = 200
# An escaped NUL: "\u0000" after an even number of backslashes (an odd one escapes the "\").
NUL_IN_JSON = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
DATA_MAX_BYTES = 32 * 1024  # the rendered frame must stay far under the socket's 64 KiB cap


def emit(
    type: str,
    *,
    recipients: Iterable[AbstractBaseUser | int],
    actor: AbstractBaseUser | None = None,
    target: models.Model | None = None,
    data: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Event:
    """Record a domain event for delivery to `recipients`; returns at once, no network I/O.

    Inside `transaction.atomic()` the event shares the caller's fate: a rollback delivers
    nothing, and delivery starts only after commit. With an `idempotency_key` that was
    emitted before, the earlier event is returned and nothing new is delivered.
    """
    event_type = get_event_type(type)
    payload = _checked_data(data)
    event_type.validate(payload)
    recipient_ids = _recipient_ids(recipients)
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX
    ):
        raise ValueError(f"idempotency_key must be a string of 1 to {IDEMPOTENCY_KEY_MAX} characters")

    event = Event(
        type=event_type.name,
        actor=actor,
        data=payload,
        recipient_ids=recipient_ids,
        idempotency_key=idempotency_key,
    )
    if target is not None:
        event.target_type = target._meta.label_lower
        event.target_id = str(target.pk)
    event, created = event_insert(event)
    if created:
        # At once in autocommit; after the caller's commit inside atomic(); never on rollback.
        transaction.on_commit(partial(hand_off.submit, event.pk), robust=True)
    return event


def _checked_data(data: Mapping[str, Any] | None) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidEventData("data must be a JSON object (a mapping)")
    try:
        encoded = json.dumps(data, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEventData(f"data must be JSON-serialisable (no NaN or Infinity): {exc}") from None
    except RecursionError:
        raise InvalidEventData("data is nested too deeply to be JSON") from None
    if NUL_IN_JSON.search(encoded):
        # Valid JSON, but PostgreSQL's jsonb cannot store it.
        raise InvalidEventData("data must not contain NUL characters (\\u0000)")
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError:
        # Half of a UTF-16 pair ("\ud800") is no text: no database column or socket frame
        # can carry it, and it would only be found in the worker, which would dead-letter it.
        raise InvalidEventData("data must be valid Unicode text (no lone surrogates such as \\ud800)") from None
    if size > DATA_MAX_BYTES:
        raise InvalidEventData(f"data is larger than {DATA_MAX_BYTES} bytes as JSON")
    return json.loads(encoded)


def _recipient_ids(recipients: Iterable[AbstractBaseUser | int]) -> list[int]:
    if isinstance(recipients, (str, bytes)) or not isinstance(recipients, Iterable):
        raise ValueError("recipients must be a list of users or user ids")
    ids: set[int] = set()
    for recipient in recipients:
        if isinstance(recipient, AbstractBaseUser):
            if recipient.pk is None:
                raise ValueError("recipients must be saved users")
            ids.add(int(recipient.pk))
        elif isinstance(recipient, int) and not isinstance(recipient, bool):
            ids.add(recipient)
        else:
            raise ValueError(f"recipients must be users or user ids, not {recipient!r}")
    if not ids:
        raise ValueError("emit() needs at least one recipient")
    return sorted(ids)
