"""Resume flood: what sockets that stop reading and ask for replays cost the web process.

The product only (the baseline has no resume). One user with an inbox of `--flood-inbox`
notifications; `--flood-sockets` sockets with a one-frame receive queue (they stop reading
at once) each send 60 `resume`, every one from within REPLAY_MAX of the end of the inbox
(after_seq = inbox - REPLAY_MAX + i % 10), so each resume the server accepts is a full replay
of ~200 notifications into a socket that does not read; then they drop without a close frame.
The same sockets opened and dropped without a frame are the baseline of the same run.
Measured: the web process's RSS before, at its peak (sampled every 0.1 s) and 10 s after the
drop; what the web process says it sent (its /metrics: replays and notification frames) and
why it closed sockets (its log); and what each socket shows at the drop without reading
(bench/tabs.py `flood`).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from bench.meters import rss_mib
from bench.session import Session

RESUMES_PER_SOCKET = 60
REPLAY_MAX = 200  # delivery.consumers.REPLAY_MAX: a resume further behind is answered with `resync`
SETTLE_S = 10.0
CLOSING = re.compile(r"closing socket of user \d+: ([a-z ]+)")  # the consumer's warnings
SERVER_COUNTS = {
    "replays": "notify_replay_notifications_count",
    "replayed": "notify_replay_notifications_sum",
    "frames_sent": "notify_notification_frames_sent_total",
}


def run(session: Session) -> dict[str, Any]:
    options = session.options
    made = session.product_emitter.ask(60, cmd="users", prefix="flood", count=1)
    (token,) = session.product_emitter.ask(60, cmd="tokens", user_ids=made["ids"])["tokens"]
    session.product_emitter.ask(
        600, cmd="fill", user_id=made["ids"][0], count=options.flood_inbox, tag="flood", timeout=300
    )
    after_seqs = [max(0, options.flood_inbox - REPLAY_MAX) + i % 10 for i in range(RESUMES_PER_SOCKET)]
    tabs = session.product.child("bench.tabs", "tabs-flood")
    pid = session.product.pid("web")
    web_log = session.product.processes["web"].log_path
    rows: list[dict[str, Any]] = []
    try:
        for label, resumes in (("sockets only", []), ("resume flood", after_seqs)):
            before = rss_mib(pid)
            counts = server_counts(session.product.http_url)
            log_offset = web_log.stat().st_size
            peak = PeakRss(pid)
            answered = tabs.ask(
                300,
                cmd="flood",
                url=session.product.ws_url,
                token=token,
                sockets=options.flood_sockets,
                after_seqs=resumes,
                hold_s=5.0,
            )
            time.sleep(SETTLE_S)
            sent = server_counts(session.product.http_url)
            rows.append(
                {
                    "label": label,
                    "resumes": len(resumes),
                    "after_seqs": [min(resumes), max(resumes)] if resumes else None,
                    "before_mib": before,
                    "peak_mib": peak.stop(),
                    "after_mib": rss_mib(pid),
                    "server": {name: sent[name] - counts[name] for name in SERVER_COUNTS},
                    "server_closed": dict(Counter(CLOSING.findall(read_from(web_log, log_offset)))),
                    **answered,
                }
            )
            row = rows[-1]
            session.progress.step(
                f"{label}: web RSS {before:.0f} -> peak {row['peak_mib']:.0f} -> {row['after_mib']:.0f} MiB; "
                f"{row['server']['replays']:.0f} replays, {row['server']['replayed']:.0f} notifications replayed"
            )
    finally:
        tabs.stop()
    return {"inbox": options.flood_inbox, "sockets": options.flood_sockets, "rows": rows}


def server_counts(http_url: str) -> dict[str, float]:
    """The web process's own counters (GET /metrics, open to loopback clients); NaN if refused."""
    try:
        with urllib.request.urlopen(f"{http_url}/metrics", timeout=30) as response:  # noqa: S310 (our own stack)
            text = response.read().decode()
    except OSError:  # METRICS_TOKEN set in the environment: /metrics wants it
        text = ""
    values = dict(re.findall(r"^(\w+) (\S+)$", text, re.MULTILINE))
    return {name: float(values.get(metric, "nan")) for name, metric in SERVER_COUNTS.items()}


def read_from(path: Path, offset: int) -> str:
    with path.open("rb") as log_file:
        log_file.seek(offset)
        return log_file.read().decode(errors="replace")


class PeakRss:
    """The highest RSS of a process, sampled in a thread until stop()."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mib(pid)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stopping.wait(0.1):
            self.peak = max(self.peak, rss_mib(self.pid))

    def stop(self) -> float:
        self.stopping.set()
        self.thread.join()
        return self.peak
