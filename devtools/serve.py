"""`make serve` (`python -m devtools.serve`): the production topology on one machine.

nginx on HOST:PORT in front of WEB_PROCESSES daphne processes (on unix sockets in the run
folder, so only nginx reaches them), WORKER_PROCESSES Celery workers, beat, and the worker
watchdog, all under supervisord (deploy/supervisord.conf), in the foreground; Ctrl-C stops
them all. The nginx configuration is rendered from deploy/nginx.conf.template into the run
folder (NOTIFY_RUN_DIR, default var/run). Arguments go on to supervisord.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX_MISSING = """make serve needs nginx, and it is not installed. Install it with
    sudo apt-get install nginx        (Debian, Ubuntu)
    brew install nginx                (macOS)
then run make serve again."""


def serve_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment supervisord and its programs run with: defaults for what the
    configuration needs, and the venv's and the system's sbin folders on PATH."""
    env = dict(environ)
    defaults = {
        "NOTIFY_RUN_DIR": str(ROOT / "var" / "run"),
        "SUPERVISOR_PORT": "9001",
        "HOST": "127.0.0.1",
        "PORT": "8000",
        "WEB_PROCESSES": "2",
        "WORKER_PROCESSES": "2",
        "WORKER_CONCURRENCY": "2",
    }
    for name, value in defaults.items():
        env.setdefault(name, value)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return env


def render_nginx_conf(env: dict[str, str]) -> Path:
    run_dir = Path(env["NOTIFY_RUN_DIR"])
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / "nginx" / folder).mkdir(parents=True, exist_ok=True)
    servers = "\n".join(
        f"        server unix:{run_dir / f'web_{number}.sock'} max_fails=1 fail_timeout=2s;"
        for number in range(int(env["WEB_PROCESSES"]))
    )
    # Started as root, nginx would run its workers as an unprivileged user that may not
    # reach the sockets in the run folder: they run as the user that started everything.
    user_directive = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    text = (DEPLOY / "nginx.conf.template").read_text()
    rendered = text.format(
        run_dir=run_dir, host=env["HOST"], port=env["PORT"], upstream_servers=servers, user_directive=user_directive
    )
    path = run_dir / "nginx.conf"
    path.write_text(rendered)
    return path


def main(argv: list[str]) -> None:
    env = serve_environment(dict(os.environ))
    if shutil.which("nginx", path=env["PATH"]) is None:
        sys.exit(NGINX_MISSING)
    Path(env["NOTIFY_RUN_DIR"]).mkdir(parents=True, exist_ok=True)
    render_nginx_conf(env)
    supervisord = Path(sys.executable).parent / "supervisord"
    os.execve(supervisord, [str(supervisord), "-c", str(DEPLOY / "supervisord.conf"), *argv], env)


if __name__ == "__main__":
    main(sys.argv[1:])
