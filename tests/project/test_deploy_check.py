"""`manage.py check --deploy` is clean with the production settings the README documents."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.live import ROOT

# README, "Running it in production": the settings for a site served over TLS.
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "a-long-random-production-secret-key-of-more-than-fifty-characters-0123456789",
    "DJANGO_ALLOWED_HOSTS": "notify.example.com",
    "DJANGO_HTTPS": "1",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_HSTS_PRELOAD": "1",
}


def check_deploy(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_documented_production_settings_pass_check_deploy() -> None:
    done = check_deploy(**PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_without_https_check_deploy_names_what_is_missing() -> None:
    done = check_deploy(**{**PRODUCTION, "DJANGO_HTTPS": "0"})
    assert done.returncode != 0
    assert "SESSION_COOKIE_SECURE" in done.stdout + done.stderr
