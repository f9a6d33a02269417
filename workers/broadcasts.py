"""The mass-alert fan-out: chunks written in a job run while the pace allows, the rest scheduled."""

from __future__ import annotations

import time

from yijing.services import broadcasts

#: A run writes chunks back to back for at most this long, then hands the worker back.
RUN_BUDGET_SECONDS = 5.0


def fan_out(broadcast_id: int) -> int | None:
    """Write the broadcast's next chunks of notifications and schedule what comes after them.

    Chunks follow each other in this run while the broadcast's rate needs no pause (up to
    ``RUN_BUDGET_SECONDS``); a pause of a second or more is a delayed job instead (RQ's scheduler,
    which every worker runs, enqueues it when due), so no worker is held waiting. Cancelling takes
    effect at the next chunk; a chain broken by a crash is revived by the sweeper.
    """
    started = time.monotonic()
    while True:
        delay = broadcasts.fan_out_step(broadcast_id)
        if delay is None:
            return None
        if delay > 0 or time.monotonic() - started > RUN_BUDGET_SECONDS:
            broadcasts.enqueue_fan_out(broadcast_id, delay=delay)
            return delay
