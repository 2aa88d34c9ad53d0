"""Channel-layer group names: one per user, one per credential (to close its sockets)."""

import hashlib


def user_group(user_id: int) -> str:
    """Every socket of this user joins it; notifications and read changes go here."""
    return f"user.{user_id}"


def session_group(session_key: str) -> str:
    """Sockets opened with this login session; logging out rings it."""
    return f"session.{_digest(session_key)}"


def token_group(token_digest: str) -> str:
    """Sockets opened with this API token; revoking the token rings it."""
    return f"token.{_digest(token_digest)}"


def _digest(secret: str) -> str:
    # Group names sit in Redis in the clear: never put a credential there, only a hash.
    return hashlib.sha256(secret.encode()).hexdigest()[:40]
