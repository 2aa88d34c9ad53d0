"""The README's commands, typed in a second terminal while `make run` runs, on a machine with
no Redis and nothing set: a fresh clone, the embedded Redis, SQLite, an empty environment."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.with_redis import free_port
from tests.live import ROOT

pytestmark = [pytest.mark.live, pytest.mark.faults]


def bare_env(**extra: str) -> dict[str, str]:
    """A new terminal's environment: nothing of ours, not even the virtualenv on PATH."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p)
    return {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", **extra}


def shell_block(readme: str, after: str) -> str:
    """The first ```bash block after the line containing `after`."""
    start = readme.index(after)
    match = re.search(r"```bash\n(.*?)```", readme[start:], re.DOTALL)
    assert match, f"no bash block after {after!r}"
    return match.group(1)


def second_terminal(clone: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=clone,
        env=bare_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def get_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (our own server)
        return json.loads(response.read())


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_the_readme_commands_work_beside_make_run_and_ctrl_c_ends_it_cleanly(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    port = free_port()
    log = (tmp_path / "make-run.log").open("w+")
    # -o: the virtualenv is installed already (it is this checkout's); nothing else differs.
    make_run = subprocess.Popen(
        ["make", "-o", ".venv/.run-deps", "run"],
        cwd=clone,
        env=bare_env(PORT=str(port), REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"),  # no Redis answers there
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own terminal's process group, for the Ctrl-C below
    )
    try:
        base = f"http://127.0.0.1:{port}"
        login_page = f"{base}/accounts/login/"
        wait_for(lambda: urllib.request.urlopen(login_page, timeout=2).status == 200, 120, "make run")  # noqa: S310

        readme = (clone / "README.md").read_text().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        emitted = second_terminal(clone, shell_block(readme, "From the shell or other services"))
        assert emitted.returncode == 0, emitted.stdout + emitted.stderr
        assert "Traceback" not in emitted.stderr, emitted.stderr
        assert json.loads(emitted.stdout.strip().splitlines()[-1])["id"] > 0  # curl's 202 answer

        token = second_terminal(clone, ".venv/bin/python manage.py issue_token alice")
        assert token.returncode == 0, token.stderr
        titles: set[str] = set()

        def delivered() -> bool:
            titles.update(n["title"] for n in get_json(f"{base}/api/notifications/", token.stdout.strip())["results"])
            return {"Deploy finished", "Hi"} <= titles

        # Handed to make run's own broker at once; through the wrong Redis it would wait for the
        # relay to notice after the lease (15 s).
        wait_for(delivered, 10, f"the README's notices (got {titles})")
    finally:
        os.killpg(make_run.pid, signal.SIGINT)  # Ctrl-C in make run's terminal
        try:
            status = make_run.wait(60)
        finally:
            if make_run.poll() is None:
                os.killpg(make_run.pid, signal.SIGKILL)
    log.seek(0)
    output = log.read()
    # make itself takes the Ctrl-C and ends by it, as a terminal expects; what it must not do
    # is report its recipe failing ("make: *** [Makefile:13: run] Error 130").
    assert status in (0, -signal.SIGINT), output[-3000:]
    assert "make: ***" not in output, output[-3000:]
    after = second_terminal(clone, ".venv/bin/python manage.py issue_token alice")
    assert after.returncode != 0  # make run is gone: its settings are not borrowed any more
