"""Benchmarks of the whole pipeline against the naive tutorial design, on this machine.

    .venv/bin/python -m bench            # every scenario (make bench), about 12 minutes
    .venv/bin/python -m bench --quick    # a smoke run (make bench-quick)

One run starts the product stack (a throwaway PostgreSQL database, private redis-servers,
the web process, a Celery worker and beat) and the baseline of bench/naive side by side on
127.0.0.1, drives both with the same load generators, and writes a Markdown report with
ratios to the baseline, the results as JSON and PNG plots. Never part of the test suite.
Results and the commands that produced them: docs/BENCHMARKS.md.
"""
