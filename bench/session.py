"""One benchmark run: the product stack and the naive stack side by side, and their helpers.

Every scenario of a run uses the same two stacks, so that each of its results can be set
against the baseline measured minutes apart on the same machine, not days apart.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench.meters import CpuMeter
from bench.progress import Progress
from bench.stack import Child, Stack, naive_stack, product_stack

# The processes whose CPU counts as the system's cost per event (the load generators do not).
PIPELINE = {
    "product": ("web", "api", "worker", "beat", "postgres", "redis", "broker", "emitter"),
    "naive": ("web", "api", "redis", "emitter"),
}
LOAD = ("tabs", "http")


@dataclass
class Session:
    options: argparse.Namespace
    progress: Progress
    product: Stack
    naive: Stack
    product_emitters: list[Child]
    naive_emitters: list[Child]
    http: Child
    # What one scenario leaves for the next (users, tokens), and the results by scenario.
    shared: dict[str, Any] = field(default_factory=dict)

    def stack(self, system: str) -> Stack:
        return self.product if system == "product" else self.naive

    @property
    def product_emitter(self) -> Child:
        """The product emitter that also makes users and reads the database."""
        return self.product_emitters[0]

    @property
    def naive_emitter(self) -> Child:
        return self.naive_emitters[0]

    def emitters(self, system: str) -> list[Child]:
        return self.product_emitters if system == "product" else self.naive_emitters

    def cpu_meter(self, system: str, tabs: Child | None = None) -> CpuMeter:
        """CPU of the system's processes, the load generators apart."""
        stack = self.stack(system)
        meter = CpuMeter()
        for name, process in stack.processes.items():
            meter.add_tree(name, process.popen.pid)
        meter.add_tree("redis", stack.redis.process.pid)  # type: ignore[union-attr]
        if stack.broker is not None:
            meter.add_tree("broker", stack.broker.process.pid)  # type: ignore[union-attr]
        if stack.database is not None:
            meter.add_postgres(stack.database)
        meter.add_trees("emitter", [emitter.pid for emitter in self.emitters(system)])
        meter.add_tree("http", self.http.pid)
        if tabs is not None:
            meter.add_tree("tabs", tabs.pid)
        return meter


def pipeline_cpu_s(system: str, used: dict[str, float]) -> float:
    return sum(used.get(name, 0.0) for name in PIPELINE[system])


@contextmanager
def open_session(options: argparse.Namespace, progress: Progress) -> Iterator[Session]:
    with ExitStack() as stack:
        product = stack.enter_context(
            product_stack(postgres=options.postgres, workers=options.workers, keep_logs=options.keep_logs)
        )
        naive = stack.enter_context(naive_stack(keep_logs=options.keep_logs))
        product_emitters = [product.child("bench.emitter", f"emitter-{n}") for n in range(options.emitters)]
        naive_emitters = [naive.child("bench.naive.emitter", f"emitter-{n}") for n in range(options.emitters)]
        for child in (*product_emitters, *naive_emitters):
            stack.callback(child.stop)
        http = product.child("bench.http_load", "http-load")
        stack.callback(http.stop)
        yield Session(
            options=options,
            progress=progress,
            product=product,
            naive=naive,
            product_emitters=product_emitters,
            naive_emitters=naive_emitters,
            http=http,
        )
