"""Teams: one per community, with a liaison officer (a desk user) and a captain (a volunteer)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select

from yijing import policies
from yijing.actor import Actor
from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db
from yijing.models import Jurisdiction, Role, RoleGrant, Team, User, Volunteer, VolunteerStatus
from yijing.models.base import utcnow
from yijing.models.jurisdiction import JurisdictionLevel
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, jurisdictions, outbox
from yijing.sql import insert_ignore

# Members shown on a team's page: the approved and the suspended (who still belong to it).
MEMBER_STATUSES = (VolunteerStatus.APPROVED, VolunteerStatus.SUSPENDED)


@dataclass(frozen=True, slots=True)
class Captain:
    """The team's captain as shown: the volunteer record and its masked name."""

    volunteer_id: int
    name_masked: str


@dataclass(frozen=True, slots=True)
class TeamView:
    """What the API shows about a team (masked names only); the liaison is the desk user."""

    id: int
    name: str
    community: Jurisdiction
    liaison: User | None
    captain: Captain | None
    member_count: int
    created_at: datetime
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class TeamDetail(TeamView):
    """A team with its members (approved and suspended), for the desk."""

    members: list[Volunteer]


_View = TypeVar("_View", bound=TeamView)


@dataclass(frozen=True, slots=True)
class LiaisonCandidate:
    """A desk user a team manager may name as liaison, by the jurisdiction of their nearest grant."""

    id: int
    display_name: str
    jurisdiction: Jurisdiction
    current: bool


def default_name(community: Jurisdiction) -> str:
    return f"{community.name}义警队"


def _community(community_id: int) -> Jurisdiction:
    community = jurisdictions.get(community_id)
    if community.level != JurisdictionLevel.COMMUNITY:
        raise InvalidInput(
            "队伍只能建在社区（村）一级",
            code="not_a_community",
            fields={"community_id": ["请选择社区（村）"]},
        )
    return community


def ensure_team(community: Jurisdiction) -> Team:
    """The community's team, created on first use (in the caller's transaction, race-free)."""
    insert_ignore(
        db.session(),
        Team,
        {
            "jurisdiction_id": community.id,
            "name": default_name(community),
            "version": 0,
            "created_at": utcnow(),
        },
    )
    return db.session.scalars(select(Team).where(Team.jurisdiction_id == community.id)).one()


def _get(team_id: int) -> Team:
    team = db.session.get(Team, team_id)
    if team is None:
        raise NotFound("队伍不存在", code="team_not_found")
    return team


def _captain(team: Team) -> Volunteer | None:
    if team.captain_user_id is None:
        return None
    return db.session.scalar(
        select(Volunteer).where(
            Volunteer.team_id == team.id,
            Volunteer.user_id == team.captain_user_id,
            Volunteer.status == VolunteerStatus.APPROVED,
        )
    )


def _member_count(team_id: int) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(Volunteer)
        .where(Volunteer.team_id == team_id, Volunteer.status == VolunteerStatus.APPROVED)
    )


def _shown(cls: type[_View], team: Team, **more: Any) -> _View:
    captain = _captain(team)
    return cls(
        id=team.id,
        name=team.name,
        community=team.community,
        liaison=None if team.liaison_user_id is None else db.session.get(User, team.liaison_user_id),
        captain=Captain(volunteer_id=captain.id, name_masked=captain.name_masked) if captain else None,
        member_count=_member_count(team.id),
        created_at=team.created_at,
        updated_at=team.updated_at,
        **more,
    )


def view(team: Team) -> TeamView:
    """What the API shows about a team (masked names only)."""
    return _shown(TeamView, team)


def _detail(team: Team) -> TeamDetail:
    members = db.session.scalars(
        select(Volunteer)
        .where(Volunteer.team_id == team.id, Volunteer.status.in_(MEMBER_STATUSES))
        .order_by(Volunteer.volunteer_number, Volunteer.id)
    ).all()
    return _shown(TeamDetail, team, members=list(members))


def list_for_staff(
    principal: Principal, *, jurisdiction_id: int | None, cursor: str | None, limit: int
) -> Page[TeamView]:
    """Teams in the staff member's jurisdiction (or a subtree of it), by community."""
    paths = policies.require_somewhere(principal, Permission.JURISDICTION_READ)
    stmt = select(Team).join(Jurisdiction, Jurisdiction.id == Team.jurisdiction_id)
    if jurisdiction_id is not None:
        root = jurisdictions.get(jurisdiction_id)
        policies.require(principal, Permission.JURISDICTION_READ, root.path)
        paths = [root.path]
    stmt = stmt.where(jurisdictions.in_subtrees(Jurisdiction.path, paths))
    page = paginate(stmt, [SortKey(Team.id)], lambda t: [t.id], cursor=cursor, limit=limit)
    return Page(items=[view(t) for t in page.items], next_cursor=page.next_cursor)


def detail_for_staff(principal: Principal, team_id: int) -> TeamDetail:
    team = _get(team_id)
    policies.require(principal, Permission.JURISDICTION_READ, team.community.path)
    return _detail(team)


def create(principal: Principal, community_id: int, name: str | None, actor: Actor) -> TeamView:
    """Create the team of a community (before its first volunteer is approved)."""
    community = _community(community_id)
    policies.require(principal, Permission.TEAM_MANAGE, community.path)
    if db.session.scalar(select(Team.id).where(Team.jurisdiction_id == community.id)) is not None:
        raise Conflict("该社区已有队伍（一个社区一支队伍）", code="team_exists")
    team = Team(jurisdiction_id=community.id, name=(name or "").strip() or default_name(community), version=0)
    db.session.add(team)
    db.session.flush()
    audit.record(actor, "team.create", "team", team.id, data={"community_id": community.id})
    db.session.commit()
    return view(team)


def _check_liaison(user_id: int, community: Jurisdiction) -> None:
    rows = db.session.execute(
        select(Jurisdiction.path)
        .join(RoleGrant, RoleGrant.jurisdiction_id == Jurisdiction.id)
        .join(User, User.id == RoleGrant.user_id)
        .where(RoleGrant.user_id == user_id, RoleGrant.role == Role.DESK, User.is_active.is_(True))
    ).scalars()
    if not any(community.path.startswith(path) for path in rows):
        raise InvalidInput(
            "联络民警须是辖区覆盖该社区的值班台民警",
            code="invalid_liaison",
            fields={"liaison_user_id": ["不是负责该社区的值班台民警"]},
        )


def _liaison_grants(community: Jurisdiction) -> list[tuple[User, Jurisdiction]]:
    """Active desk users with a desk grant on the community or one of its ancestors."""
    ancestors = [community.path[: i + 1] for i, ch in enumerate(community.path) if ch == "/"]  # self included
    rows = db.session.execute(
        select(User, Jurisdiction)
        .join(RoleGrant, RoleGrant.user_id == User.id)
        .join(Jurisdiction, Jurisdiction.id == RoleGrant.jurisdiction_id)
        .where(RoleGrant.role == Role.DESK, User.is_active.is_(True), Jurisdiction.path.in_(ancestors))
        .order_by(User.display_name, User.id, Jurisdiction.path)
    ).all()
    return [(user, where) for user, where in rows]


def liaison_candidates(principal: Principal, team_id: int) -> list[LiaisonCandidate]:
    """The desk staff a team manager may name as the team's liaison officer.

    Those whose desk grant covers the team's community (the same rule ``update`` checks), shown by
    display name and the jurisdiction of their grant only: no username, no phone.
    """
    team = _get(team_id)
    community = team.community
    policies.require(principal, Permission.TEAM_MANAGE, community.path)
    seen: dict[int, LiaisonCandidate] = {}
    for user, where in _liaison_grants(community):
        # The nearest grant to the community names the officer's post best.
        seen[user.id] = LiaisonCandidate(
            id=user.id,
            display_name=user.display_name,
            jurisdiction=where,
            current=user.id == team.liaison_user_id,
        )
    return sorted(seen.values(), key=lambda c: (not c.current, c.display_name, c.id))


def _captain_candidate(volunteer_id: int, team: Team) -> Volunteer:
    volunteer = db.session.get(Volunteer, volunteer_id)
    if volunteer is None or volunteer.team_id != team.id or volunteer.status != VolunteerStatus.APPROVED:
        raise InvalidInput(
            "队长须是本队审核通过的义警",
            code="invalid_captain",
            fields={"captain_volunteer_id": ["不是本队审核通过的义警"]},
        )
    return volunteer


def update(principal: Principal, team_id: int, changes: dict[str, Any], actor: Actor) -> TeamView:
    """Rename a team or change its liaison officer or captain (``None`` clears one)."""
    team = _get(team_id)
    community = team.community
    policies.require(principal, Permission.TEAM_MANAGE, community.path)
    before = {
        "name": team.name,
        "liaison_user_id": team.liaison_user_id,
        "captain_user_id": team.captain_user_id,
    }
    new_captain: Volunteer | None = None
    if "name" in changes and changes["name"] is not None:
        team.name = changes["name"].strip() or team.name
    if "liaison_user_id" in changes:
        if changes["liaison_user_id"] is not None:
            _check_liaison(changes["liaison_user_id"], community)
        team.liaison_user_id = changes["liaison_user_id"]
    if "captain_volunteer_id" in changes:
        if changes["captain_volunteer_id"] is None:
            team.captain_user_id = None
        else:
            new_captain = _captain_candidate(changes["captain_volunteer_id"], team)
            team.captain_user_id = new_captain.user_id
    after = {
        "name": team.name,
        "liaison_user_id": team.liaison_user_id,
        "captain_user_id": team.captain_user_id,
    }
    if after == before:
        return view(team)
    team.version += 1
    team.updated_at = utcnow()
    audit.record(
        actor,
        "team.update",
        "team",
        team.id,
        reason=changes.get("reason"),
        data={"before": before, "after": after},
    )
    if new_captain is not None and before["captain_user_id"] != new_captain.user_id:
        outbox.notify(
            new_captain.user_id,
            "team.captain",
            title="您已被任命为义警队长",
            body=f"您已被任命为{team.name}队长",
            dedupe_key=f"team:{team.id}:captain:{team.version}",
            data={"team_id": team.id},
            page="pages/volunteer/team",
        )
    db.session.commit()
    return view(team)


def clear_captain_if(team_id: int | None, user_id: int) -> bool:
    """Drop ``user_id`` as captain of the team (in the caller's transaction); True if they were."""
    if team_id is None:
        return False
    team = db.session.get(Team, team_id)
    if team is None or team.captain_user_id != user_id:
        return False
    team.captain_user_id = None
    team.version += 1
    team.updated_at = utcnow()
    return True


def my_team(user_id: int) -> TeamView:
    """The team of the user's approved (or suspended) volunteer record."""
    volunteer = db.session.scalar(
        select(Volunteer).where(Volunteer.open_user_id == user_id, Volunteer.status.in_(MEMBER_STATUSES))
    )
    if volunteer is None or volunteer.team_id is None:
        raise NotFound("审核通过后才会加入所在社区的队伍", code="no_team")
    return view(_get(volunteer.team_id))
