"""Resume flood: what sockets that stop reading and ask for replays cost the web process.

The product only (the baseline has no resume). One user with an inbox of `--flood-inbox`
notifications; `--flood-sockets` sockets with a one-frame receive queue (they stop reading
at once) each send 60 `resume` from ever later seqs, then drop without a close frame. The
same sockets opened and dropped without a frame are the baseline of the same run. Measured:
the web process's RSS before, at its peak (sampled every 0.1 s) and 10 s after the drop.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.meters import rss_mib
from bench.session import Session

RESUMES_PER_SOCKET = 60
SETTLE_S = 10.0


def run(session: Session) -> dict[str, Any]:
    options = session.options
    made = session.product_emitter.ask(60, cmd="users", prefix="flood", count=1)
    (token,) = session.product_emitter.ask(60, cmd="tokens", user_ids=made["ids"])["tokens"]
    session.product_emitter.ask(
        600, cmd="fill", user_id=made["ids"][0], count=options.flood_inbox, tag="flood", timeout=300
    )
    tabs = session.product.child("bench.tabs", "tabs-flood")
    pid = session.product.pid("web")
    rows: list[dict[str, Any]] = []
    try:
        for label, resumes in (("sockets only", 0), ("resume flood", RESUMES_PER_SOCKET)):
            before = rss_mib(pid)
            peak = PeakRss(pid)
            answered = tabs.ask(
                300,
                cmd="flood",
                url=session.product.ws_url,
                token=token,
                sockets=options.flood_sockets,
                resumes=resumes,
                hold_s=5.0,
            )
            time.sleep(SETTLE_S)
            rows.append(
                {
                    "label": label,
                    "resumes": resumes,
                    "before_mib": before,
                    "peak_mib": peak.stop(),
                    "after_mib": rss_mib(pid),
                    **answered,
                }
            )
            session.progress.step(
                f"{label}: web RSS {before:.0f} -> peak {rows[-1]['peak_mib']:.0f} -> {rows[-1]['after_mib']:.0f} MiB"
            )
    finally:
        tabs.stop()
    return {"inbox": options.flood_inbox, "sockets": options.flood_sockets, "rows": rows}


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
