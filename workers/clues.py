"""Jobs that follow a clue's submission: the text check and duplicate matching, and their sweeper.

Both jobs are idempotent (they do nothing once their result is recorded), so a retry, a second
enqueue by the sweeper or a replayed job is harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from yijing import jobs
from yijing.services import clues

log = logging.getLogger(__name__)


def check_content(clue_id: int) -> str | None:
    """WeChat's text check on the clue; the verdict flags the clue, it never hides it."""
    return clues.check_content(clue_id)


def match_duplicates(clue_id: int) -> int:
    """Record open clues of the same category nearby and close in time."""
    return clues.match_duplicates(clue_id)


def sweep(min_age_seconds: int = 120, max_age_hours: int = 24) -> int:
    """Enqueue the follow-up jobs of clues whose jobs never ran (Redis down at submission, a lost
    worker). Clues older than ``max_age_hours`` are left for the desk, which sees them unchecked."""
    specs = clues.unfinished_followups(timedelta(seconds=min_age_seconds), timedelta(hours=max_age_hours))
    for spec in specs:
        jobs.enqueue(spec)
    if specs:
        log.info("clue sweeper enqueued jobs", extra={"count": len(specs)})
    return len(specs)
