"""LOG_FORMAT: plain text by default, one JSON object per line on request, nothing else refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.live import ROOT

LOG_A_LINE = "import logging; logging.getLogger('notify.check').warning('disk %s full', 'very', extra={'user_id': 7})"


def run_with(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", LOG_A_LINE],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SECRET_KEY": "logging-test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_json_logs_are_one_object_per_line_with_the_fields_renamed() -> None:
    done = run_with(LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "notify.check" in line]
    record = json.loads(line)
    assert (record["level"], record["logger"], record["message"], record["user_id"]) == (
        "WARNING",
        "notify.check",
        "disk very full",
        7,
    )
    assert {"time", "process"} <= record.keys()


def test_plain_logs_by_default_and_an_unknown_format_is_refused() -> None:
    plain = run_with()
    assert "WARNING notify.check: disk very full" in plain.stderr

    refused = subprocess.run(
        [sys.executable, "-c", "import project.settings"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SECRET_KEY": "logging-test", "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "LOG_FORMAT must be 'plain' or 'json', not 'xml'" in refused.stderr
