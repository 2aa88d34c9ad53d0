"""Servers of a test's own (Redis, PostgreSQL) that it may stop, kill and restart.

The machine's shared services are never touched: every server here runs on a free port
in a temporary folder and is gone when the test ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from devtools.with_redis import free_port, start_redis_server


@dataclass
class PrivateRedis:
    """A redis-server without persistence: a restart forgets every key, group and queue."""

    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/1"

    def start(self) -> PrivateRedis:
        """Start (or restart, on the same port) with nothing in it."""
        self.port = self.port or free_port()
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = start_redis_server(self.port, str(self.workdir), log)
        return self

    def shutdown_nosave(self) -> None:
        """What a crash of a Redis without persistence looks like: everything in it is gone."""
        client = redis.Redis.from_url(self.url)
        with contextlib.suppress(redis.ConnectionError, redis.ResponseError):
            client.shutdown(nosave=True)  # the connection dies with the server
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster; run as the `postgres` user (it refuses to run as root)."""

    workdir: Path
    port: int = 0

    @property
    def datadir(self) -> Path:
        return self.workdir / "pgdata"

    def url(self, database: str = "notify") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> PrivatePostgres:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries are not installed")
        self.bin = bin_dir
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.workdir, "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust")
        return self

    def start(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.workdir / "postgres.log"),
            "-o",
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "start",
        )

    def kill(self) -> None:
        """Stop at once, as a crash would (no checkpoint, clients cut off)."""
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> None:
        self._as_postgres(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), name)

    def _as_postgres(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, cwd=self.workdir, timeout=60)


RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")


def rabbitmqctl() -> str | None:
    return shutil.which("rabbitmqctl") or next(iter(glob.glob("/usr/sbin/rabbitmqctl")), None)


@dataclass
class RabbitVhost:
    """A virtual host of its own on the machine's RabbitMQ (its queues, exchanges and
    messages are the test's alone), deleted with everything in it at the end."""

    name: str

    @property
    def broker_url(self) -> str:
        return f"{RABBITMQ_URL}/{self.name}"

    def create(self) -> RabbitVhost:
        self._ctl("add_vhost", self.name)
        self._ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def close_connections(self) -> None:
        """What the clients see of a broker restart: every connection to this vhost dropped."""
        self._ctl("close_all_connections", "-p", self.name, "fault test: connections closed")

    def queue_types(self) -> dict[str, str]:
        """Each queue of this vhost with its type (classic, quorum)."""
        lines = self._ctl("list_queues", "-p", self.name, "--no-table-headers", "name", "type").splitlines()
        return dict(line.split("\t")[:2] for line in lines if "\t" in line)

    def delete(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("delete_vhost", self.name)

    def _ctl(self, *args: str) -> str:
        command = rabbitmqctl()
        if command is None:
            raise RuntimeError("rabbitmqctl is not installed")
        return subprocess.run([command, "-q", *args], check=True, capture_output=True, text=True, timeout=60).stdout
