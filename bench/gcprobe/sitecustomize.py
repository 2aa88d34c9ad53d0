"""Bench-only: log the garbage collector's pauses of every process started with this folder
on PYTHONPATH and BENCH_GC_LOG set (`bench.delivery --gc-log`). Never used in production.

Each collection that is of generation 2 or takes over 5 ms is appended to
$BENCH_GC_LOG.<pid> as a line: wall time, generation, seconds, objects collected.
"""

import gc
import os
import time

_prefix = os.environ.get("BENCH_GC_LOG")
if _prefix:
    _started: dict[int, float] = {}

    def _note(phase: str, info: dict) -> None:
        generation = info["generation"]
        if phase == "start":
            _started[generation] = time.perf_counter()
            return
        took = time.perf_counter() - _started.pop(generation, time.perf_counter())
        if generation == 2 or took > 0.005:
            with open(f"{_prefix}.{os.getpid()}", "a") as out:
                out.write(f"{time.time():.3f} {generation} {took:.5f} {info.get('collected', 0)}\n")

    gc.callbacks.append(_note)

# An experiment for the report, not a fix applied anywhere: BENCH_GC_FREEZE_AFTER=N makes
# daphne call gc.freeze() N seconds after it starts (its app loaded, no socket yet open), as
# a `gc.freeze()` at the end of project/asgi.py would.
_freeze_after = os.environ.get("BENCH_GC_FREEZE_AFTER")
if _freeze_after:
    import sys
    import threading

    if sys.argv and sys.argv[0].endswith("daphne"):

        def _freeze() -> None:
            gc.collect()
            gc.freeze()

        threading.Timer(float(_freeze_after), _freeze).start()
