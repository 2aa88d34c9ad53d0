"""What the benchmarks measure besides latency: CPU, memory, task run times, database connections."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

TASK_DONE = re.compile(r"Task deliver_events\[[^\]]+\] succeeded in ([0-9.]+)s: (\d+)")


class TaskLog:
    """Reads the run times (and events delivered) of deliver_events tasks from the worker's log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def since_last(self) -> list[tuple[float, int]]:
        with self.path.open("rb") as log_file:
            log_file.seek(self.offset)
            text = log_file.read().decode(errors="replace")
        complete = text.rfind("\n") + 1  # a line still being written waits for the next call
        self.offset += len(text[:complete].encode())
        return [(float(took), int(count)) for took, count in TASK_DONE.findall(text[:complete])]


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (granian runs its app in a child)."""
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def postgres_backends(database: str) -> list[psutil.Process]:
    """The PostgreSQL server processes serving this database (their title names it)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline and cmdline[0].startswith("postgres:") and f" {database} " in f"{cmdline[0]} ":
            found.append(process)
    return found


@dataclass
class CpuSnapshot:
    at: float
    per_source: dict[str, dict[int, float]]
    system_busy: float


class CpuMeter:
    """CPU used by named process trees between two snapshots, in seconds and in % of one
    core (the machine has 200%). Processes that exit between snapshots are not counted."""

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], list[psutil.Process]]] = {}

    def add_tree(self, name: str, pid: int) -> None:
        self.sources[name] = lambda: tree(pid)

    def add_trees(self, name: str, pids: list[int]) -> None:
        self.sources[name] = lambda: [process for pid in pids for process in tree(pid)]

    def add_postgres(self, database: str) -> None:
        self.sources["postgres"] = lambda: postgres_backends(database)

    def snapshot(self) -> CpuSnapshot:
        per_source: dict[str, dict[int, float]] = {}
        for name, processes in self.sources.items():
            times: dict[int, float] = {}
            for process in processes():
                try:
                    cpu = process.cpu_times()
                    times[process.pid] = cpu.user + cpu.system + cpu.children_user + cpu.children_system
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            per_source[name] = times
        system = psutil.cpu_times()
        busy = system.user + system.nice + system.system + system.irq + system.softirq + system.steal
        return CpuSnapshot(at=time.monotonic(), per_source=per_source, system_busy=busy)

    @staticmethod
    def seconds(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
        """CPU seconds per source, plus 'machine' (all of it) and 'wall'."""
        result: dict[str, float] = {}
        for name, times in after.per_source.items():
            earlier = before.per_source.get(name, {})
            result[name] = sum(seconds - earlier.get(pid, 0.0) for pid, seconds in times.items())
        result["machine"] = after.system_busy - before.system_busy
        result["wall"] = max(after.at - before.at, 1e-6)
        return result

    @staticmethod
    def percent(used: dict[str, float]) -> dict[str, float]:
        """`seconds()` as % of one core over the wall time, with 'others' (not ours)."""
        wall = used["wall"]
        result = {name: 100.0 * value / wall for name, value in used.items() if name != "wall"}
        ours = sum(value for name, value in result.items() if name != "machine")
        result["others"] = max(result["machine"] - ours, 0.0)
        return result


def _any_process_ports() -> dict[int, str]:
    """Client ports of every process on the machine connected to PostgreSQL (slower)."""
    owners: dict[int, str] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.raddr and conn.raddr.port == 5432 and conn.pid:
            try:
                owners[conn.laddr.port] = f"{psutil.Process(conn.pid).name()} {conn.pid}"
            except psutil.NoSuchProcess:
                continue
    return owners


class PgConnections:
    """Samples pg_stat_activity for one database and tells which of our processes holds
    each connection (by the client port, looked up in the processes' sockets)."""

    def __init__(self, server_url: str, database: str, roles: dict[str, int], every_s: float = 1.0) -> None:
        self.server_url = server_url
        self.database = database
        self.roles = roles  # name -> root pid; its children are named "<name> child"
        self.every_s = every_s
        self.samples: list[dict[str, Counter[str]]] = []
        self.unknown: Counter[str] = Counter()  # connections no process of ours owned
        self.sessions_at_start = 0
        self.opened = 0  # connections opened between start() and stop()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self, connection: psycopg.Connection[Any]) -> dict[str, Counter[str]]:
        rows = connection.execute(
            "SELECT client_port, state, application_name, left(query, 80) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [self.database],
        ).fetchall()
        owner = self._port_owners()
        if any(port not in owner for port, *_ in rows):
            owner = {**_any_process_ports(), **owner}
        held: dict[str, Counter[str]] = defaultdict(Counter)
        for port, state, application, query in rows:
            name = owner.get(port) or application or "unknown"
            if name not in owner.values():
                self.unknown[f"{port} {application} {state}: {query}"] += 1
            held[name][state or "none"] += 1
        return held

    def _port_owners(self) -> dict[int, str]:
        owners: dict[int, str] = {}
        for name, root in self.roles.items():
            for process in tree(root):
                label = name if process.pid == root else f"{name} child {process.pid}"
                try:
                    for conn in process.net_connections(kind="tcp"):
                        if conn.raddr and conn.raddr.port == 5432:
                            owners[conn.laddr.port] = label
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        return owners

    def sessions(self) -> int:
        """Connections ever opened to the database (PostgreSQL 14+), to count reconnects."""
        with psycopg.connect(f"{self.server_url}/postgres", autocommit=True) as connection:
            row = connection.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [self.database])
            return int(row.fetchone()[0])  # type: ignore[index]

    def start(self) -> PgConnections:
        self.sessions_at_start = self.sessions()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.opened = self.sessions() - self.sessions_at_start

    def _run(self) -> None:
        with psycopg.connect(f"{self.server_url}/postgres", autocommit=True) as connection:
            while not self._stop.is_set():
                self.samples.append(self.sample(connection))
                self._stop.wait(self.every_s)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per holder: connections held at most and on average, and at most in state 'active'."""
        holders = {name for sample in self.samples for name in sample}
        found = {}
        for name in sorted(holders):
            totals = [sum(sample.get(name, Counter()).values()) for sample in self.samples]
            active = [sample.get(name, Counter())["active"] for sample in self.samples]
            found[name] = {
                "max": max(totals),
                "mean": sum(totals) / len(totals),
                "active_max": max(active),
            }
        all_totals = [sum(sum(c.values()) for c in sample.values()) for sample in self.samples]
        found["all"] = {
            "max": max(all_totals, default=0),
            "mean": sum(all_totals) / max(len(all_totals), 1),
            "active_max": max((sum(c["active"] for c in s.values()) for s in self.samples), default=0),
        }
        return found
