"""Sending at a fixed rate from one thread, open loop: each send is due at start + n / rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bench.numbers import percentile

R = TypeVar("R")


def paced(*, rate: float, seconds: float, recipients: Sequence[R], send: Callable[[R, str], Any]) -> dict[str, Any]:
    """Call `send(recipient, body)` `rate` times a second for `seconds`, round robin; `body`
    is the wall time just before the call, which the tab that receives it subtracts.
    Answers per recipient (in the order given) how many were sent, and the calls' cost."""
    total = int(rate * seconds)
    counts = [0] * len(recipients)
    call_s: list[float] = []
    behind_max = 0.0
    first = time.time()
    start = time.monotonic()
    for number in range(total):
        due = start + number / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        else:
            behind_max = max(behind_max, now - due)
        index = number % len(recipients)
        t0 = time.time()
        send(recipients[index], repr(t0))
        call_s.append(time.time() - t0)
        counts[index] += 1
    elapsed = time.monotonic() - start
    call_ms = sorted(1000 * value for value in call_s)
    return {
        "emitted": total,
        "seconds": elapsed,
        "achieved": total / elapsed if elapsed else 0.0,
        "behind_max_s": behind_max,
        "call_ms_p50": percentile(call_ms, 0.5),
        "call_ms_p99": percentile(call_ms, 0.99),
        "counts": counts,
        "first": first,
        "ended": time.time(),
    }
