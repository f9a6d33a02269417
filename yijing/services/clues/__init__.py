"""Clues (线索): reporting, the reporter's own view, and desk triage through one state machine.

Rules that matter here:

* The clue is committed before anything else happens; the content check and duplicate matching
  are jobs enqueued after the commit (and found again by a sweeper if Redis was down), and the
  reporter's notifications are outbox rows written in the same transaction as each change.
* An anonymous reporter is never named to staff: no clear user id is stored with the clue (the
  link is encrypted, plus a keyed blind index for "my clues"), the reporter's thread messages
  carry no author, their photos lose their owner, and what the reporter's notifications, points
  and retried requests store is keyed so that it does not point back at the clue.
* Every status change goes through :func:`transition` and :data:`TRANSITIONS`.

The package is split by subject; callers use the names re-exported here
(``from yijing.services import clues as clue_service; clue_service.submit(...)``):

* ``common``: constants, the state machine, the reporter's identity, where a clue belongs;
* ``submission``: :func:`submit`;
* ``reporter``: the reporter's views and replies, who may see a clue photo;
* ``triage``: the desk's queue, views, assignment and :func:`transition`;
* ``canned``: canned replies;
* ``followups``: the job bodies (content check, duplicate matching, the sweeper's list).
"""

from yijing.services.clues.canned import (
    canned_replies,
    canned_reply,
    create_canned_reply,
    delete_canned_reply,
    update_canned_reply,
)
from yijing.services.clues.common import (
    ANONYMOUS_CLUE_NO,
    CLOCK_SKEW,
    CLUE_PAGE,
    CONTENT_CHECK_MAX_CHARS,
    CONTENT_CHECK_SCENE,
    DEFAULT_PUBLIC_NOTES,
    MAX_PHOTOS,
    MESSAGE_CONTEXT,
    NOTIFY_CONTEXT,
    POINTS_CONTEXT,
    REPORTER_CONTEXT,
    STATES,
    SUBMIT_CONTEXT,
    TRACKING_ALPHABET,
    TRACKING_CONTEXT,
    TRACKING_LENGTH,
    TRACKING_SEED_CONTEXT,
    TRANSFER_LABELS,
    TRANSITIONS,
    locate,
    reported_by,
    reporter_user_id,
)
from yijing.services.clues.followups import (
    check_content,
    followup_jobs,
    match_duplicates,
    unfinished_followups,
)
from yijing.services.clues.reporter import (
    ReporterClue,
    ReporterClueItem,
    SubmittedClue,
    may_see_photo,
    own_clue,
    own_clues,
    reply_as_reporter,
    reply_with_code,
    reporter_view,
    tracked_clue,
)
from yijing.services.clues.submission import (
    Submitted,
    submit,
)
from yijing.services.clues.triage import (
    DeskClue,
    DeskClueItem,
    QueueFilters,
    ask,
    assign,
    desk_clue,
    desk_view,
    queue,
    set_urgency,
    transition,
)

__all__ = [
    "ANONYMOUS_CLUE_NO",
    "CLOCK_SKEW",
    "CLUE_PAGE",
    "CONTENT_CHECK_MAX_CHARS",
    "CONTENT_CHECK_SCENE",
    "DEFAULT_PUBLIC_NOTES",
    "MAX_PHOTOS",
    "MESSAGE_CONTEXT",
    "NOTIFY_CONTEXT",
    "POINTS_CONTEXT",
    "REPORTER_CONTEXT",
    "STATES",
    "SUBMIT_CONTEXT",
    "TRACKING_ALPHABET",
    "TRACKING_CONTEXT",
    "TRACKING_LENGTH",
    "TRACKING_SEED_CONTEXT",
    "TRANSFER_LABELS",
    "TRANSITIONS",
    "DeskClue",
    "DeskClueItem",
    "QueueFilters",
    "ReporterClue",
    "ReporterClueItem",
    "Submitted",
    "SubmittedClue",
    "ask",
    "assign",
    "canned_replies",
    "canned_reply",
    "check_content",
    "create_canned_reply",
    "delete_canned_reply",
    "desk_clue",
    "desk_view",
    "followup_jobs",
    "locate",
    "match_duplicates",
    "may_see_photo",
    "own_clue",
    "own_clues",
    "queue",
    "reply_as_reporter",
    "reply_with_code",
    "reported_by",
    "reporter_user_id",
    "reporter_view",
    "set_urgency",
    "submit",
    "tracked_clue",
    "transition",
    "unfinished_followups",
    "update_canned_reply",
]
