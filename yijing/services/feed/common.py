"""What the parts of the feed share: its limits, what a scope is, and the Redis keys."""

from __future__ import annotations

import re
from datetime import timedelta

from yijing.extensions import redis_key
from yijing.models import (
    JurisdictionLevel,
    PostKind,
)
from yijing.pagination import DEFAULT_LIMIT

#: Items kept per cached (scope, kind) page; a first page of up to this many (the mini-program asks
#: for the default 20) is answered from Redis. Larger pages decode and sort more on every hit.
CACHE_SIZE = DEFAULT_LIMIT


SUMMARY_CHARS = 120


MAX_IMAGES = 9


TOMBSTONE = "-"


TOMBSTONE_TTL = 60


AREA_TTL = 3600


#: Desk-created kinds; ``qa`` posts come from answered messages.
DESK_KINDS = tuple(k.value for k in PostKind if k != PostKind.QA)


SCOPE_LEVELS = (JurisdictionLevel.CITY.value, JurisdictionLevel.DISTRICT.value)


ALERT_BATCH = 1000


ALERT_BATCHES_PER_JOB = 20


#: A requested alert push still not done after this long is requested again.
ALERT_RETRY_AFTER = timedelta(minutes=15)


RECONCILE_WINDOW = timedelta(days=30)


#: Flush batch ids are kept this long (a claimed batch is retried within minutes).
FLUSH_RECORD_RETENTION = timedelta(days=7)


#: A feed scope as the cache names it: :data:`CITY` or a district's jurisdiction id.
Scope = str | int


CITY = "city"


_IMAGE_URL = re.compile(r"^https?://[^\s]{1,490}$")


def _k_page(scope: Scope, kind: str | None) -> str:
    return redis_key("feed", "page", scope, kind or "*")


def _k_rendered(scopes: list[Scope], kind: str | None, limit: int) -> str:
    """The rendered first page of a reader who sees ``scopes`` (yijing.web.rendered)."""
    return redis_key("feed", "rendered", "+".join(str(s) for s in scopes), kind or "*", limit)


def _k_ver(scope: Scope, kind: str | None) -> str:
    return redis_key("feed", "ver", scope, kind or "*")


def _k_post(post_id: int) -> str:
    return redis_key("feed", "post", post_id)


def _k_counter(name: str, flushing: bool = False) -> str:
    return redis_key("feed", name, "flushing") if flushing else redis_key("feed", name)


#: The mini-program page of a post (the one its subscribe-message templates name).
POST_PAGE = "pages/feed/detail/index"
