"""Fixtures for the fault-injection suite: a whole stack on servers of the test's own."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import FaultStack, fault_env
from tests.servers import PrivatePostgres, PrivateRedis, postgres_bin

MakeStack = Callable[..., FaultStack]


@pytest.fixture
def make_fault_stack(tmp_path: Path) -> Iterator[MakeStack]:
    """make_fault_stack(postgres=False, **env) -> a migrated FaultStack with users
    alice, bob and the staff user ops, and its own Redis; nothing started yet."""
    stacks: list[FaultStack] = []
    pg_dirs: list[Path] = []

    def make(*, postgres: bool = False, **overrides: str) -> FaultStack:
        redis = PrivateRedis(workdir=tmp_path).start()
        cluster = None
        if postgres:
            if postgres_bin() is None:
                pytest.skip("PostgreSQL server binaries are not installed")
            # Outside tmp_path: the postgres user cannot enter root's pytest folders.
            pg_dir = Path(tempfile.mkdtemp(prefix="notify-faults-pg-"))
            pg_dirs.append(pg_dir)
            cluster = PrivatePostgres(workdir=pg_dir).init()
            cluster.start()
            cluster.create_database("notify")
            database_url = cluster.url("notify")
        else:
            database_url = f"sqlite:///{tmp_path / 'faults.sqlite3'}"
        stack = FaultStack(
            env=fault_env(database_url=database_url, redis=redis, **overrides),
            workdir=tmp_path,
            redis=redis,
            postgres=cluster,
        )
        stacks.append(stack)
        stack.manage("migrate", "--verbosity", "0")
        for username in ("alice", "bob"):
            stack.add_user(username)
        stack.add_user("ops", staff=True)
        return stack

    yield make
    for stack in stacks:
        stack.stop_all()
    for pg_dir in pg_dirs:
        shutil.rmtree(pg_dir, ignore_errors=True)
