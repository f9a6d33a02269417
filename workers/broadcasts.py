"""The mass-alert fan-out: one chunk per job run, the next chunk scheduled at the broadcast's pace."""

from __future__ import annotations

from yijing.services import broadcasts


def fan_out(broadcast_id: int) -> int | None:
    """Write the next chunk of the broadcast's notifications and schedule the chunk after it.

    Between chunks no worker is held: the pause that keeps the broadcast at its rate is a delayed job
    (RQ's scheduler, which every worker runs, enqueues it when due). Cancelling takes effect at the next
    chunk; a chain broken by a crash is revived by the sweeper.
    """
    delay = broadcasts.fan_out_step(broadcast_id)
    if delay is not None:
        broadcasts.enqueue_fan_out(broadcast_id, delay=delay)
    return delay
