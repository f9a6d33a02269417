"""Scopes: the city and its districts, and which of them a reader sees."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select

from yijing import cache
from yijing.actor import Actor
from yijing.errors import InvalidInput, NotFound
from yijing.extensions import db
from yijing.models import (
    Jurisdiction,
    JurisdictionLevel,
    User,
)
from yijing.services import audit, jurisdictions
from yijing.services import auth as auth_service
from yijing.services.feed.common import AREA_TTL, CITY, Scope


def _area(jurisdiction_id: int) -> dict[str, Any]:
    """``{"city", "district", "level"}`` of a jurisdiction (ids of its city and district ancestors)."""
    cached = cache.get_json("feed", "area", jurisdiction_id)
    if cached is not None:
        return cached
    node = db.session.get(Jurisdiction, jurisdiction_id)
    if node is None:
        raise NotFound("辖区不存在", code="jurisdiction_not_found")
    ids = jurisdictions.path_ids(node.path)
    levels = dict(
        db.session.execute(select(Jurisdiction.id, Jurisdiction.level).where(Jurisdiction.id.in_(ids))).all()
    )
    area = {
        "city": next((i for i in ids if levels.get(i) == JurisdictionLevel.CITY), None),
        "district": next((i for i in ids if levels.get(i) == JurisdictionLevel.DISTRICT), None),
        "level": node.level,
    }
    cache.set_json(area, AREA_TTL, "feed", "area", jurisdiction_id)
    return area


def _city_id() -> int | None:
    cached = cache.get_json("feed", "city")
    if cached is not None:
        return cached or None
    city = db.session.scalar(
        select(Jurisdiction.id)
        .where(Jurisdiction.level == JurisdictionLevel.CITY)
        .order_by(Jurisdiction.id)
        .limit(1)
    )
    # No city yet (the tree is not imported): remember that only briefly.
    cache.set_json(city or 0, AREA_TTL if city else 10, "feed", "city")
    return city


def district_of(jurisdiction_id: int) -> int | None:
    """The district a jurisdiction lies in (itself when it is one), or None (the city, or none)."""
    return _area(jurisdiction_id)["district"]


def require_district(district_id: int, field: str = "district_id") -> None:
    """Check that ``district_id`` is a district-level jurisdiction; 422 naming ``field`` if not."""
    try:
        area = _area(district_id)
    except NotFound:
        raise InvalidInput(
            "所选辖区不存在", code="invalid_district", fields={field: ["辖区不存在"]}
        ) from None
    if area["level"] != JurisdictionLevel.DISTRICT:
        raise InvalidInput(
            "请选择一个区（旗县）", code="invalid_district", fields={field: ["应为区（旗县）一级的辖区"]}
        )


def reader_scopes(
    user_id: int | None, district_id: int | None, profile: Mapping[str, Any] | None = None
) -> list[Scope]:
    """The scopes a reader sees: the city, and the chosen district or the user's home district.

    The city is named :data:`CITY` rather than by id, so that an anonymous first page needs no look-up.
    ``profile`` is the user's profile when the request already loaded it (saves reading it again).
    """
    if district_id is not None:
        require_district(district_id)
        return [CITY, district_id]
    if user_id is not None and profile is None:
        profile = auth_service.profile(user_id)
    home = profile["home_jurisdiction"] if profile is not None else None
    if not home or home["level"] == JurisdictionLevel.CITY:
        return [CITY]
    if home["level"] == JurisdictionLevel.DISTRICT:
        return [CITY, home["id"]]
    district = _area(home["id"])["district"]
    return [CITY, district] if district else [CITY]


def _scope_ids(scopes: Sequence[Scope]) -> dict[Scope, int]:
    """Scope → jurisdiction id (the city's looked up); a scope that does not exist is left out."""
    ids: dict[Scope, int] = {}
    for scope in scopes:
        scope_id = _city_id() if scope == CITY else scope
        if isinstance(scope_id, int):
            ids[scope] = scope_id
    return ids


def _scopes_of(jurisdiction_ids: Iterable[int]) -> list[Scope]:
    """The cache names of these scopes (the city's is :data:`CITY`)."""
    city = _city_id()
    return [CITY if jid == city else jid for jid in jurisdiction_ids]


def set_home_district(user_id: int, district_id: int, actor: Actor) -> auth_service.Me:
    """Follow a district: it becomes the user's home, unless the home already lies inside it."""
    require_district(district_id)
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("用户不存在", code="user_not_found")
    if user.home_jurisdiction_id is None or district_of(user.home_jurisdiction_id) != district_id:
        user.home_jurisdiction_id = district_id
        audit.record(actor, "user.home_district", "user", user_id, data={"district_id": district_id})
        db.session.commit()
        auth_service.forget_principal(user_id)
    return auth_service.me(user_id)
