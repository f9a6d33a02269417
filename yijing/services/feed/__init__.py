"""The 24-hour police station feed: posts by police units, read mostly from Redis.

Who sees what
    A post's scope is the city or one district. A reader sees the city's posts plus one district's:
    the ``district_id`` filter when given, else the logged-in user's home district
    (``users.home_jurisdiction_id`` resolved upwards; ``PUT /api/v1/me/district`` sets it).
    A post's detail is public once it is live, whatever its scope.

Visibility
    A post is live when its status is ``published``, or ``scheduled`` with ``published_at <= now``:
    the read path filters on the time itself, so a scheduled post is never shown early and is shown
    on time even when the publishing job (:func:`publish_due`) is late. The job then flips the status,
    invalidates caches and requests the alert push.

Feed pages (``GET /api/v1/feed``)
    Redis holds, per (scope, kind filter), the first :data:`CACHE_SIZE` items and a version number.
    A reader fetches the versions and pages of its one or two scopes in one MGET and merges them (the
    city's keys are named ``city``, so an anonymous reader needs nothing else). Items are cached in wire
    format, so a hit decodes JSON and sorts at most 2 × 20 items and runs no schema dump. A page
    counts only when its stored version equals the current one; writers INCR the versions of exactly the
    (scope, kind) pairs a change touches, after the commit. A reader that built a page from a snapshot
    taken before a change writes it under the old version, so it is never served after the change. A page
    also expires when the next scheduled post of its scope falls due. On a miss, the missing scopes are
    built by one UNION ALL statement: one backward range scan of ``ix_posts_feed`` per scope, stopping
    after the page. Later pages (a cursor) are one such statement too.
    The first page of each view (the city alone, or the city and one district; per kind and limit) is
    also kept rendered, as the response bytes, behind a line naming the scope versions it was built
    from (:func:`~yijing.services.feed.pages.first_page`, yijing/web/rendered.py): a hit is one MGET of
    those versions and the bytes, and nothing is decoded or dumped. Its cost does not depend on how
    many posts there are; a miss is the per-scope path above (index scans that stop after the page).
    A logged-in reader's own first page (no ``district_id``) reads the token, the principal, the
    scopes of its home and that MGET in one script (:func:`~yijing.services.feed.pages.reader_first_page`).

Post detail (``GET /api/v1/feed/{id}``)
    One Lua call returns the cached detail and the pending counter deltas and counts the view. A miss is
    one primary-key query; the result is stored with SET NX so that it never overwrites what a writer
    stored. Writers store the fresh detail (or a tombstone when it is withdrawn) after their commit, so a
    withdrawn post is gone at once even if a reader was rebuilding it; the counter flush only deletes the
    details of the posts it touched.

Counters
    Views: HINCRBY into a Redis hash; :func:`flush_counters` claims the hash atomically (RENAME into a
    "flushing" hash that carries a batch id), applies it to ``posts.view_count`` in one transaction that
    also records the batch id (unique), then deletes the claimed hash only if it still holds that batch.
    A crash before the commit leaves the claimed hash to the next run; after the commit, the next run
    finds the batch recorded and only deletes it: a view is neither lost nor counted twice.
    Likes: the truth is one ``post_likes`` row per (post, user) under a unique constraint, inserted with
    ON CONFLICT DO NOTHING — liking twice, or a burst of concurrent likes, is exactly one like per user,
    with no lock on the post row. A Redis delta (+1/-1, only when a row was inserted/deleted) makes the
    shown count live; the flush recomputes ``posts.like_count`` from the rows (idempotent), and
    :func:`reconcile_counts` recomputes recent posts hourly, so losing Redis loses nothing.
    Comments: ``posts.comment_count`` changes in the transaction that makes a comment visible or not.
    Shown counts are the stored ones plus the pending deltas: exact at rest, off by a few for a moment
    around a flush. Feed items carry the stored counts (refreshed with the page).

Layout
    The package is split by subject; callers use the names re-exported here
    (``from yijing.services import feed as feed_service; feed_service.feed(...)``): ``common`` (limits,
    scopes, Redis keys), ``scopes`` (which city or district a reader sees), ``pages`` (the feed),
    ``detail`` (one post), ``counters`` (likes, the flush and reconcile jobs), ``desk`` (writing) and
    ``publication`` (the scheduled-publication and alert-push jobs).
"""

from yijing.services.feed.common import (
    ALERT_BATCH,
    ALERT_BATCHES_PER_JOB,
    ALERT_RETRY_AFTER,
    AREA_TTL,
    CACHE_SIZE,
    CITY,
    DESK_KINDS,
    FLUSH_RECORD_RETENTION,
    MAX_IMAGES,
    POST_PAGE,
    RECONCILE_WINDOW,
    SCOPE_LEVELS,
    SUMMARY_CHARS,
    TOMBSTONE,
    TOMBSTONE_TTL,
    Scope,
)
from yijing.services.feed.counters import (
    LikeState,
    flush_counters,
    like,
    reconcile_counts,
    unlike,
)
from yijing.services.feed.desk import (
    DeskPost,
    after_publish,
    bump_pages,
    create_live_post,
    create_post,
    desk_get,
    desk_list,
    desk_view,
    publish_post,
    request_alert_broadcast,
    set_pinned,
    update_post,
    validate_images,
    withdraw_post,
    withdraw_system,
)
from yijing.services.feed.detail import (
    PostDetail,
    ReaderPostDetail,
    live_post,
    post_detail,
    refresh_details,
)
from yijing.services.feed.pages import (
    FeedItem,
    FeedJurisdiction,
    ReaderFirstPage,
    feed,
    first_page,
    reader_first_page,
    serves_rendered,
)
from yijing.services.feed.publication import (
    fan_out_alert,
    publish_due,
)
from yijing.services.feed.scopes import (
    district_of,
    reader_scopes,
    require_district,
    set_home_district,
)

__all__ = [
    "ALERT_BATCH",
    "ALERT_BATCHES_PER_JOB",
    "ALERT_RETRY_AFTER",
    "AREA_TTL",
    "CACHE_SIZE",
    "CITY",
    "DESK_KINDS",
    "FLUSH_RECORD_RETENTION",
    "MAX_IMAGES",
    "POST_PAGE",
    "RECONCILE_WINDOW",
    "SCOPE_LEVELS",
    "SUMMARY_CHARS",
    "TOMBSTONE",
    "TOMBSTONE_TTL",
    "DeskPost",
    "FeedItem",
    "FeedJurisdiction",
    "LikeState",
    "PostDetail",
    "ReaderFirstPage",
    "ReaderPostDetail",
    "Scope",
    "after_publish",
    "bump_pages",
    "create_live_post",
    "create_post",
    "desk_get",
    "desk_list",
    "desk_view",
    "district_of",
    "fan_out_alert",
    "feed",
    "first_page",
    "flush_counters",
    "like",
    "live_post",
    "post_detail",
    "publish_due",
    "publish_post",
    "reader_first_page",
    "reader_scopes",
    "reconcile_counts",
    "refresh_details",
    "request_alert_broadcast",
    "require_district",
    "serves_rendered",
    "set_home_district",
    "set_pinned",
    "unlike",
    "update_post",
    "validate_images",
    "withdraw_post",
    "withdraw_system",
]
