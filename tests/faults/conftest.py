"""Fixtures for the fault-injection suite: a whole stack on servers of the test's own."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import FaultStack, build_fault_stack
from tests.servers import postgres_bin, rabbitmqctl

MakeStack = Callable[..., FaultStack]

# The scenarios where the broker matters run on both: Redis (the default) and RabbitMQ (the
# production recommendation, docs/DESIGN.md), each on a vhost of its own.
BROKERS = pytest.mark.parametrize("broker", ["redis", "rabbitmq"])


@pytest.fixture
def make_fault_stack(tmp_path: Path) -> Iterator[MakeStack]:
    """make_fault_stack(postgres=False, broker="redis", **env) -> a migrated FaultStack with
    users alice, bob and the staff user ops, and its own Redis; nothing started yet."""
    stacks: list[FaultStack] = []

    def make(
        *,
        postgres: bool = False,
        rabbitmq: bool = False,
        broker: str = "redis",
        users: tuple[str, ...] = ("alice", "bob"),
        **overrides: str,
    ) -> FaultStack:
        rabbitmq = rabbitmq or broker == "rabbitmq"
        if postgres and postgres_bin() is None:
            pytest.skip("PostgreSQL server binaries are not installed")
        if rabbitmq and rabbitmqctl() is None:
            pytest.skip("RabbitMQ is not installed (apt-get install rabbitmq-server)")
        stack = build_fault_stack(tmp_path, postgres=postgres, rabbitmq=rabbitmq, users=users, **overrides)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop_all()
        if stack.postgres is not None:
            shutil.rmtree(stack.postgres.workdir, ignore_errors=True)
        if stack.rabbitmq is not None:
            stack.rabbitmq.delete()
