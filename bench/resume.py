"""Resume: a tab that missed N notifications reconnects and asks for everything after 0.

The product only: the baseline stores nothing, so a tab that was away has nothing to resume
from (what it missed is gone). Each repeat uses a user of its own whose N notifications were
delivered while no tab was open; the tab connects, reads its hello, sends `resume` and
counts the replayed frames until `resumed`.
"""

from __future__ import annotations

from typing import Any

from bench.session import Session


def run(session: Session) -> dict[str, Any]:
    options = session.options
    made = session.product_emitter.ask(60, cmd="users", prefix="r", count=options.resume_repeats)
    tokens = session.product_emitter.ask(60, cmd="tokens", user_ids=made["ids"])["tokens"]
    tabs = session.product.child("bench.tabs", "tabs-resume")
    tries: list[dict[str, Any]] = []
    try:
        for number, (user_id, token) in enumerate(zip(made["ids"], tokens, strict=True), start=1):
            filled = session.product_emitter.ask(
                600, cmd="fill", user_id=user_id, count=options.resume, tag=f"resume {number}", timeout=300
            )
            result = tabs.ask(120, cmd="resume", url=session.product.ws_url, token=token, after_seq=0, timeout=60)
            result["filled_s"] = filled["seconds"]
            tries.append(result)
            session.progress.step(
                f"resume #{number}: {result['received']} of {result['wanted']} in {result['all_s']:.2f} s "
                f"(hello after {result['hello_s'] * 1000:.0f} ms)"
            )
    finally:
        tabs.stop()
    return {"missed": options.resume, "tries": tries}
