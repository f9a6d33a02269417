"""The one benchmark city every scenario hangs its jurisdictions under.

The app has one city: the first city-level jurisdiction by id (``yijing.services.feed.scopes``
reads the anonymous feed from it). So the scenarios share one root, ``bench-city``, and each puts
its own districts, streets and communities under it (keys starting ``bench-`` or, for the feed,
the Baotou district codes). No scenario creates another city: a second one would either be
ignored by the app or, created first, hide the others' data.
"""

from __future__ import annotations

from typing import Any

CITY_KEY = "bench-city"
CITY_NODE: dict[str, Any] = {
    "key": CITY_KEY,
    "parent_key": None,
    "name": "包头市",
    "level": "city",
    "lat": 40.657,
    "lng": 109.840,
}


def ensure_city() -> int:
    """Create or update ``bench-city`` (needs an app context) and return its id.

    Raises :class:`bench.harness.BenchError` when the database already holds an older city with a
    smaller id (the app would read that one): such a database was filled by something else, and
    ``--fresh-db`` starts over.
    """
    from sqlalchemy import select

    from bench.harness import BenchError
    from yijing.extensions import db
    from yijing.models import Jurisdiction
    from yijing.models.jurisdiction import JurisdictionLevel
    from yijing.services import jurisdictions

    jurisdictions.import_nodes([CITY_NODE])
    city_id = jurisdictions.get_by_key(CITY_KEY).id
    first = db.session.execute(
        select(Jurisdiction.id, Jurisdiction.key)
        .where(Jurisdiction.level == JurisdictionLevel.CITY)
        .order_by(Jurisdiction.id)
        .limit(1)
    ).one()
    if first.id != city_id:
        raise BenchError(
            f"the benchmark database's first city is {first.key!r} (id {first.id}), not {CITY_KEY!r} "
            f"(id {city_id}): the app would read that one. Start over with --fresh-db."
        )
    return city_id
