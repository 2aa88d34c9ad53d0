"""Worker liveness: the ping task, the check command, the watchdog's verdict."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from workers.liveness import liveness_age, liveness_file, worker_name
from workers.tasks import worker_ping_task
from workers.watchdog import stale_workers


@pytest.fixture(autouse=True)
def liveness_dir(settings, tmp_path: Path) -> Path:
    settings.WORKER_LIVENESS_DIR = str(tmp_path / "liveness")
    return tmp_path / "liveness"


def age_file(name: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(liveness_file(name), (then, then))


def test_a_ping_run_by_the_worker_refreshes_its_liveness_file() -> None:
    assert liveness_age("worker") is None

    worker_ping_task.apply(args=("worker",))

    assert liveness_age("worker") < 1


def test_worker_alive_passes_a_fresh_worker_and_fails_a_silent_or_unknown_one(settings, capsys) -> None:
    settings.WORKER_LIVENESS_TIMEOUT_S = 60
    worker_ping_task.apply(args=("worker",))
    call_command("worker_alive", "worker")
    assert "worker: alive" in capsys.readouterr().out

    age_file("worker", 61)
    with pytest.raises(CommandError, match=r"worker: last liveness ping 61 s ago \(limit 60 s\)"):
        call_command("worker_alive", "worker")
    call_command("worker_alive", "worker", "--max-age", "120")
    with pytest.raises(CommandError, match="no liveness ping ever ran"):
        call_command("worker_alive", "other")


def test_the_name_is_the_supervisor_process_name_when_there_is_one(monkeypatch) -> None:
    monkeypatch.delenv("SUPERVISOR_PROCESS_NAME", raising=False)
    assert worker_name("celery@host/1") == "celery@host_1"
    monkeypatch.setenv("SUPERVISOR_PROCESS_NAME", "worker")
    assert worker_name("celery@host") == "worker"


def process(name: str, *, group: str = "worker", state: str = "RUNNING", up_s: float = 300) -> dict:
    now = int(time.time())
    return {"name": name, "group": group, "statename": state, "now": now, "start": now - up_s}


def test_the_watchdog_picks_running_workers_that_went_silent_after_their_grace() -> None:
    for name in ("fresh", "silent", "young", "stopped", "web"):
        worker_ping_task.apply(args=(name,))
    age_file("silent", 90)
    age_file("young", 90)
    age_file("stopped", 90)
    age_file("web", 90)

    found = stale_workers(
        [
            process("fresh"),
            process("silent"),
            process("never"),
            process("young", up_s=30),  # not judged before it ran timeout_s
            process("stopped", state="STOPPED"),
            process("web", group="web"),
        ],
        timeout_s=60,
    )

    assert found == [("worker:silent", "last ping 90 s ago"), ("worker:never", "never pinged")]
