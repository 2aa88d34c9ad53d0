"""Benchmarks of the whole pipeline on this machine. Never part of the test suite.

    .venv/bin/python -m bench.delivery    # latency and loss, N users x M tabs, events at R/s
    .venv/bin/python -m bench.fanout      # one event to K users
    .venv/bin/python -m bench.emit_cost   # what emitting costs a request, broker up and down
    .venv/bin/python -m bench.task_cost   # each step's CPU for one event, in one process

Each starts a stack of its own (a throwaway PostgreSQL database, a private redis-server,
daphne and a Celery worker) on 127.0.0.1, prints Markdown tables, and removes what it made.
Results and the commands that produced them: docs/BENCHMARKS.md.
"""
