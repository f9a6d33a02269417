"""Going on and off duty, location pings, the on-duty search for the desk, and keeping the
Redis index (:mod:`yijing.services.duty_index`) in line with the database.

The database row is the truth (``volunteers.on_duty``, the last synced location); Redis holds
every ping. A ping costs one indexed SELECT and one Redis round trip; it writes the location to
the database at most every ``DUTY_DB_SYNC_SECONDS`` (or at once when Redis is unreachable), so
100,000 volunteers pinging every minute do not become 1,700 UPDATEs a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from redis.exceptions import RedisError
from sqlalchemy import select, update

from yijing import policies
from yijing.config import settings
from yijing.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from yijing.extensions import db, redis_key
from yijing.models import Jurisdiction, Volunteer, VolunteerStatus
from yijing.models.base import utcnow
from yijing.policies import Permission, Principal
from yijing.services import auth as auth_service
from yijing.services import duty_index, jurisdictions, volunteers
from yijing.services.duty_index import DutyEntry

log = logging.getLogger(__name__)

T = TypeVar("T")

# Radius of a point search unless given, and the largest allowed.
DEFAULT_RADIUS_M = 3000
MAX_POINT_RADIUS_M = 50_000
# "Inside my jurisdiction": everyone whose home is in the subtree, nearest to its centre first.
JURISDICTION_RADIUS_M = 300_000


@dataclass(frozen=True)
class RebuildResult:
    added: int
    removed: int


@dataclass(frozen=True, slots=True)
class DutyState:
    """A volunteer's duty as the mini-program shows it."""

    on_duty: bool
    since: datetime | None
    last_ping_at: datetime | None
    ping_window_seconds: int
    indexed: bool | None  # whether the Redis index took the change (None: not asked)


@dataclass(frozen=True, slots=True)
class Origin:
    lat: float
    lng: float


@dataclass(frozen=True, slots=True)
class OnDutySearch:
    """The desk's on-duty search: where it searched, how far, and who it found, nearest first."""

    origin: Origin
    radius_m: float
    items: list[duty_index.Hit]


def entry_for(volunteer: Volunteer, path: str) -> DutyEntry:
    return DutyEntry(
        volunteer_id=volunteer.id,
        user_id=volunteer.user_id,
        category=volunteer.category,
        path=path,
        jurisdiction_id=volunteer.jurisdiction_id,
        name_masked=volunteer.name_masked,
        team_id=volunteer.team_id,
    )


def _mine(user_id: int) -> tuple[Volunteer, str]:
    row = db.session.execute(
        select(Volunteer, Jurisdiction.path)
        .join(Jurisdiction, Jurisdiction.id == Volunteer.jurisdiction_id)
        .where(Volunteer.open_user_id == user_id)
    ).first()
    if row is None:
        raise NotFound("您还没有提交义警申请", code="no_application")
    return row[0], row[1]


def _state(
    volunteer: Volunteer, *, indexed: bool | None = None, last_ping_at: datetime | None = None
) -> DutyState:
    return DutyState(
        on_duty=volunteer.on_duty,
        since=volunteer.duty_started_at if volunteer.on_duty else None,
        last_ping_at=last_ping_at or volunteer.duty_seen_at,
        ping_window_seconds=settings().duty_ping_window_seconds,
        indexed=indexed,
    )


def _index_add(entry: DutyEntry, lat: float, lng: float) -> bool:
    try:
        duty_index.add(entry, lat, lng)
    except RedisError as exc:
        log.warning("duty index unavailable", extra={"volunteer_id": entry.volunteer_id, "error": str(exc)})
        return False
    return True


def _index_remove(volunteer_id: int) -> None:
    try:
        duty_index.remove(volunteer_id)
    except RedisError as exc:
        log.warning("duty index unavailable", extra={"volunteer_id": volunteer_id, "error": str(exc)})


def set_duty(user_id: int, on_duty: bool, lat: float | None, lng: float | None) -> DutyState:
    """Go on duty at a location, or off duty. Only approved, not suspended volunteers go on duty."""
    volunteer, path = _mine(user_id)
    now = utcnow()
    if not on_duty:
        volunteer.on_duty = False
        state = _state(volunteer)
        db.session.commit()
        _index_remove(volunteer.id)
        return state
    volunteers.ensure_approved(volunteer)
    if lat is None or lng is None:
        raise InvalidInput(
            "上岗需要当前位置", code="location_required", fields={"lat": ["必填"], "lng": ["必填"]}
        )
    if not volunteer.on_duty:
        volunteer.on_duty = True
        volunteer.duty_started_at = now
    volunteer.duty_seen_at = now
    volunteer.duty_lat, volunteer.duty_lng = lat, lng
    state, entry = _state(volunteer), entry_for(volunteer, path)
    db.session.commit()
    # After the commit: if Redis is down the database has it and the index is rebuilt from it.
    return dataclasses.replace(state, indexed=_index_add(entry, lat, lng))


def ping(user_id: int, lat: float, lng: float) -> DutyState:
    """A location ping while on duty: refreshes the index and, now and then, the database."""
    volunteer, path = _mine(user_id)
    if volunteer.status != VolunteerStatus.APPROVED or not volunteer.on_duty:
        _index_remove(volunteer.id)
        raise Conflict("您当前不在岗，请先点击“上岗”", code="not_on_duty")
    now = utcnow()
    indexed = _index_add(entry_for(volunteer, path), lat, lng)
    sync = timedelta(seconds=settings().duty_db_sync_seconds)
    state = _state(volunteer, indexed=indexed, last_ping_at=now)
    if not indexed or volunteer.duty_seen_at is None or now - volunteer.duty_seen_at >= sync:
        volunteer.duty_seen_at = now
        volunteer.duty_lat, volunteer.duty_lng = lat, lng
        db.session.commit()
    return state


def my_state(user_id: int) -> DutyState:
    volunteer, _ = _mine(user_id)
    last_ping_at = None
    if volunteer.on_duty:
        with contextlib.suppress(RedisError):  # the database's last synced ping will do
            last_ping_at = duty_index.last_seen(volunteer.id)
    return _state(volunteer, last_ping_at=last_ping_at)


# -- keeping the index in line with the database --------------------------------------------------


def _on_duty_rows(batch: int = duty_index.BATCH) -> Iterator[tuple[Volunteer, str]]:
    stmt = (
        select(Volunteer, Jurisdiction.path)
        .join(Jurisdiction, Jurisdiction.id == Volunteer.jurisdiction_id)
        .where(Volunteer.on_duty.is_(True), Volunteer.status == VolunteerStatus.APPROVED)
        .execution_options(yield_per=batch)
    )
    yield from db.session.execute(stmt)  # rows unpack as (volunteer, path)


def rebuild_index() -> RebuildResult:
    """Make the index match the database: add every on-duty volunteer (keeping fresher pings
    already in Redis) and drop everyone who is not on duty. Safe to run on a live system."""
    on_duty: set[int] = set()

    def items() -> Iterator[tuple[DutyEntry, float, float, float | None]]:
        for volunteer, path in _on_duty_rows():
            if volunteer.duty_lat is None or volunteer.duty_lng is None:
                continue
            on_duty.add(volunteer.id)
            seen = volunteer.duty_seen_at or volunteer.duty_started_at or utcnow()
            yield entry_for(volunteer, path), volunteer.duty_lat, volunteer.duty_lng, seen.timestamp()

    added = duty_index.add_many(items(), keep_newer=True)
    removed = 0
    for volunteer_id in duty_index.members() - on_duty:
        duty_index.remove(volunteer_id)
        removed += 1
    duty_index.mark_built()
    db.session.rollback()
    return RebuildResult(added=added, removed=removed)


def evict_stale() -> int:
    """Drop volunteers whose last ping is older than the window, and mark them off duty.

    Rebuilds the index first when Redis lost it (its marker is gone). Returns how many went.
    """
    if not duty_index.is_built():
        result = rebuild_index()
        log.warning("duty index was missing and has been rebuilt", extra={"added": result.added})
    evicted = duty_index.evict_stale()
    for start in range(0, len(evicted), duty_index.BATCH):
        chunk = evicted[start : start + duty_index.BATCH]
        db.session.execute(
            update(Volunteer)
            .where(Volunteer.id.in_(chunk), Volunteer.on_duty.is_(True))
            .values(on_duty=False)
        )
        db.session.commit()
    if evicted:
        log.info("stale volunteers went off duty", extra={"count": len(evicted)})
    return len(evicted)


# -- the desk's on-duty search ----------------------------------------------------------------------


def _common_partition(paths: Sequence[str]) -> str | None:
    partitions = {duty_index.partition_of(p) for p in paths}
    if len(partitions) == 1:
        return partitions.pop()
    return None


def _planned(
    principal: Principal,
    lat: float | None,
    lng: float | None,
    radius_m: float | None,
    jurisdiction_id: int | None,
) -> tuple[Origin, float, list[str]]:
    """Where a staff member's search looks, how far, and within which subtrees (403 unless allowed)."""
    paths = policies.require_somewhere(principal, Permission.VOLUNTEER_LOCATE)
    root: Jurisdiction | None = None
    if jurisdiction_id is not None:
        root = jurisdictions.get(jurisdiction_id)
        policies.require(principal, Permission.VOLUNTEER_LOCATE, root.path)
        paths = [root.path]
    if lat is None or lng is None:
        if root is None:
            if len(paths) != 1:
                raise InvalidInput(
                    "请指定辖区或位置", code="origin_required", fields={"jurisdiction_id": ["请指定辖区"]}
                )
            root = db.session.scalar(select(Jurisdiction).where(Jurisdiction.path == paths[0]))
        if root is None or root.lat is None or root.lng is None:
            raise InvalidInput(
                "该辖区没有中心点坐标，请改用位置搜索", code="no_centre", fields={"lat": ["请提供位置"]}
            )
        lat, lng = root.lat, root.lng
        radius = radius_m or JURISDICTION_RADIUS_M
    else:
        radius = _point_radius(radius_m)
    db.session.rollback()  # nothing to write; release the connection before talking to Redis
    return Origin(lat=lat, lng=lng), radius, paths


def _point_radius(radius_m: float | None) -> float:
    return min(radius_m or DEFAULT_RADIUS_M, MAX_POINT_RADIUS_M)


def _unavailable(exc: RedisError) -> ServiceUnavailable:
    log.warning("duty index unavailable", extra={"error": str(exc)})
    return ServiceUnavailable("在岗定位服务暂时不可用，请稍后再试", code="duty_index_unavailable")


def _searched(
    search: Callable[..., T],
    origin: Origin,
    radius: float,
    limit: int,
    categories: Sequence[str] | None,
    paths: list[str],
) -> T:
    """``search`` (:func:`duty_index.search` or :func:`duty_index.search_rows`) within ``paths``;
    503 when the index cannot be reached."""
    try:
        return search(
            origin.lat,
            origin.lng,
            radius,
            limit,
            categories=categories,
            within_paths=paths,
            partition=_common_partition(paths),
        )
    except RedisError as exc:
        raise _unavailable(exc) from None


def search_for_staff(
    principal: Principal,
    *,
    lat: float | None,
    lng: float | None,
    radius_m: float | None,
    jurisdiction_id: int | None,
    categories: Sequence[str] | None,
    limit: int,
) -> OnDutySearch:
    """On-duty volunteers whose home lies in the staff member's jurisdiction (or the one given),
    within a radius of a point, or else nearest the jurisdiction's centre; nearest first."""
    origin, radius, paths = _planned(principal, lat, lng, radius_m, jurisdiction_id)
    hits = _searched(duty_index.search, origin, radius, limit, categories, paths)
    return OnDutySearch(origin=origin, radius_m=radius, items=hits)


def _body(origin: Origin, radius: float, rows: list[duty_index.Row]) -> bytes:
    """The answer as the desk's ``OnDutySchema`` dumps it and the app's JSON provider writes it."""
    items = ",".join(duty_index.item_json(row) for row in rows)
    return (
        f'{{"items":[{items}],"origin":{{"lat":{float(origin.lat)!r},"lng":{float(origin.lng)!r}}},'
        f'"radius_m":{float(radius)!r}}}\n'
    ).encode()


_LOCATE_ROLES = sorted(str(role) for role in policies.ROLES_WITH[Permission.VOLUNTEER_LOCATE])


def on_duty_json(
    token: str,
    admit: auth_service.Admit,
    *,
    lat: float | None,
    lng: float | None,
    radius_m: float | None,
    jurisdiction_id: int | None,
    categories: Sequence[str] | None,
    limit: int,
) -> bytes:
    """:func:`search_for_staff` as the bearer of ``token``, answered as the response bytes.

    A point search within the staff member's own scope (the desk's usual one) reads the token's
    and the principal's cache entries and searches in one round trip
    (:func:`~yijing.services.duty_index.search_as_bearer`). The token is then resolved from those
    entries exactly as :func:`~yijing.services.auth.authenticate` resolves it (401 when bad, expired
    or revoked), ``admit`` runs, the permission is required (403), and the hits are used only when
    the principal's scope paths, and the GEO set they choose, are exactly those the script used;
    anything else (a cache miss, grants changed in between, Redis down) takes the plain way.
    """
    categories = sorted(set(categories or ()))
    found = None
    if lat is not None and lng is not None and jurisdiction_id is None:
        try:
            found = duty_index.search_as_bearer(
                redis_key("tok", auth_service.hash_token(token)),
                redis_key("principal", ""),
                _LOCATE_ROLES,
                lat,
                lng,
                _point_radius(radius_m),
                limit,
                categories=categories,
            )
        except RedisError as exc:
            log.warning("duty index unavailable", extra={"error": str(exc)})
    if found is None:
        principal = auth_service.authenticate(token)
    else:
        principal = auth_service.authenticate_cached(token, found.token, found.profile)
    admit(principal)
    origin, radius, paths = _planned(principal, lat, lng, radius_m, jurisdiction_id)
    if (
        found is not None
        and found.rows is not None
        and found.paths is not None
        and sorted(found.paths) == paths
        and found.key == duty_index.search_key(categories, _common_partition(paths))
    ):
        return _body(origin, radius, found.rows)
    return _body(origin, radius, _searched(duty_index.search_rows, origin, radius, limit, categories, paths))
