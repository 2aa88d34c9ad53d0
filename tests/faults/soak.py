"""`make soak`: ten users with three tabs each, events for MINUTES minutes on the production
topology (`make serve`: nginx, two web processes, two workers, beat, under supervisord), and
every so often a fault, each kind once in a random order, then again: a worker killed or
frozen, one of its pool children killed, a web process killed, beat killed, Redis (channel
layer, and broker unless RabbitMQ is) restarted empty, PostgreSQL stopped for a while, and
with `--broker rabbitmq` every broker connection dropped (what clients see of a broker
restart). Nothing is restarted here: the shipped supervision does that. At the end: the
oracle for every tab, and whether the processes' memory stayed flat.

    python -m tests.faults.soak [--minutes 10] [--seed N] [--rate 5] [--broker redis|rabbitmq]

Exit status 0 only if the promise held. Not part of `make test` (it runs for minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
from collections import Counter
from pathlib import Path
from typing import Any

import django
import psutil

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "soak-only")
django.setup()

from tests.faults.harness import FaultStack, build_fault_stack, open_tabs, oracle_problems, wait_until  # noqa: E402
from tests.faults.serving import start_served  # noqa: E402
from tests.servers import postgres_bin  # noqa: E402

USERS = tuple(f"user{number}" for number in range(10))
FAULT_EVERY_S = (20, 45)
DATABASE_DOWN_S = 10


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} soak: {message}", flush=True)


def rss_mib(rpc: Any) -> dict[str, float]:
    """Resident memory of each supervised program with its children (Celery's pool), by group."""
    sizes: dict[str, float] = {}
    for info in rpc.supervisor.getAllProcessInfo():
        if info["statename"] != "RUNNING":
            continue
        try:
            parent = psutil.Process(info["pid"])
            family = [parent, *parent.children(recursive=True)]
            sizes[info["group"]] = sizes.get(info["group"], 0) + sum(p.memory_info().rss for p in family) / 2**20
        except psutil.NoSuchProcess:
            continue
    return sizes


def kill_with_children(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        parent = psutil.Process(pid)
        for process in [*parent.children(recursive=True), parent]:
            process.send_signal(sig)
    except psutil.NoSuchProcess:
        pass


async def inject(stack: FaultStack, rpc: Any, fault: str, rng: random.Random) -> None:
    log(f"fault: {fault}")
    worker = f"worker:worker_{rng.randrange(2)}"
    if fault == "worker killed":
        kill_with_children(rpc.supervisor.getProcessInfo(worker)["pid"])
    elif fault == "worker frozen":
        os.kill(rpc.supervisor.getProcessInfo(worker)["pid"], signal.SIGSTOP)  # the watchdog's job
    elif fault == "pool child killed":
        for child in psutil.Process(rpc.supervisor.getProcessInfo(worker)["pid"]).children():
            child.kill()
    elif fault == "web killed":
        os.kill(rpc.supervisor.getProcessInfo(f"web:web_{rng.randrange(2)}")["pid"], signal.SIGKILL)
    elif fault == "beat killed":
        os.kill(rpc.supervisor.getProcessInfo("beat")["pid"], signal.SIGKILL)
    elif fault == "redis restarted empty":
        assert stack.redis is not None
        stack.redis.shutdown_nosave()
        await asyncio.sleep(2)
        stack.redis.start()
    elif fault == "broker connections dropped":
        assert stack.rabbitmq is not None
        stack.rabbitmq.close_connections()
    elif fault == "database down":
        assert stack.postgres is not None
        stack.postgres.kill()
        await asyncio.sleep(DATABASE_DOWN_S)
        stack.postgres.start()


async def soak(stack: FaultStack, rpc: Any, *, minutes: float, rate: float, rng: random.Random) -> int:
    faults = [
        "worker killed",
        "worker frozen",
        "pool child killed",
        "web killed",
        "beat killed",
        "redis restarted empty",
    ]
    if stack.postgres is not None:
        faults.append("database down")
    if stack.rabbitmq is not None:
        faults.append("broker connections dropped")
    tabs = open_tabs(stack, USERS, per_user=3)
    await wait_until(lambda: all(tab.resumes for tab in tabs), timeout=60)
    accepted: Counter[str] = Counter()
    refused = 0
    memory = [rss_mib(rpc)]
    deadline = time.monotonic() + minutes * 60
    next_fault = time.monotonic() + rng.uniform(*FAULT_EVERY_S)
    next_sample = time.monotonic() + 60
    injected: Counter[str] = Counter()
    deck: list[str] = []
    fault_task: asyncio.Task[None] | None = None
    while time.monotonic() < deadline:
        user = rng.choice(USERS)
        try:
            await asyncio.to_thread(stack.emit, [user], f"for {user} #{accepted[user] + 1}")
            accepted[user] += 1
        except (urllib.error.URLError, OSError):
            refused += 1  # the web process or the database is down: not emitted, not owed
        if time.monotonic() > next_fault and (fault_task is None or fault_task.done()):
            # Concurrent with the emitting: requests arrive while the fault lasts.
            if not deck:  # every kind of fault once, in a random order, then again
                deck = rng.sample(faults, len(faults))
            fault = deck.pop()
            injected[fault] += 1
            fault_task = asyncio.create_task(inject(stack, rpc, fault, rng))
            next_fault = time.monotonic() + rng.uniform(*FAULT_EVERY_S)
        if time.monotonic() > next_sample:
            memory.append(rss_mib(rpc))
            log(f"memory (MiB): {', '.join(f'{k} {v:.0f}' for k, v in memory[-1].items())}")
            next_sample += 60
        await asyncio.sleep(1 / rate)

    if fault_task is not None:
        await fault_task
    log(f"stopped emitting: {sum(accepted.values())} accepted, {refused} refused; faults {dict(injected)}")
    expected = dict(accepted)
    await wait_until(lambda: all(tab.cursor == expected.get(tab.user, 0) for tab in tabs), timeout=120)
    for tab in tabs:
        await tab.stop()
    supervised = stack.processes[-1].log().splitlines()
    restarts = [line for line in supervised if "watchdog: restart" in line or " exited: " in line]
    log(f"restarts by the shipped supervision: {len(restarts)}")
    for line in restarts:
        log(f"  {line}")

    problems = oracle_problems(stack, tabs, expected=expected)
    for problem in problems:
        log(f"PROBLEM: {problem}")
    grown = {
        name: (memory[-1].get(name, 0), memory[0].get(name, 0))
        for name in ("web", "worker", "nginx")
        if name in memory[0] and memory[-1].get(name, 0) > 2 * memory[0][name] + 50
    }
    for name, (last, first) in grown.items():
        log(f"PROBLEM: {name} memory grew from {first:.0f} to {last:.0f} MiB")
    log("the promise held" if not problems and not grown else "the promise did NOT hold")
    return 0 if not problems and not grown else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=5, help="events per second")
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    log(f"seed {seed} (rerun with --seed {seed})")
    workdir = Path(tempfile.mkdtemp(prefix="notify-soak-"))
    stack = build_fault_stack(
        workdir, postgres=postgres_bin() is not None, rabbitmq=args.broker == "rabbitmq", users=USERS
    )
    try:
        _supervisord, rpc = start_served(
            stack, workdir / "run", WEB_PROCESSES="2", WORKER_PROCESSES="2", WORKER_LIVENESS_TIMEOUT_S="30"
        )
        return asyncio.run(soak(stack, rpc, minutes=args.minutes, rate=args.rate, rng=random.Random(seed)))
    finally:
        stack.stop_all()
        if stack.postgres is not None:
            shutil.rmtree(stack.postgres.workdir, ignore_errors=True)
        if stack.rabbitmq is not None:
            stack.rabbitmq.delete()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
