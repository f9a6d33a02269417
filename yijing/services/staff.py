"""Staff accounts managed from the desk: create, deactivate, reset a password, grants, own password.

An admin manages the staff of their own subtree only: a staff member is "in scope" when every one
of their grants lies inside the admin's :data:`Permission.STAFF_MANAGE` subtrees (so a district
admin can neither see nor reset the city's admin). Every change is audited and drops the cached
principal; deactivating or resetting a password also revokes the account's tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select

from yijing import policies
from yijing.actor import Actor
from yijing.errors import Conflict, Forbidden, InvalidInput, NotFound
from yijing.extensions import db
from yijing.models import Jurisdiction
from yijing.models.user import Role, RoleGrant, User, UserKind
from yijing.pagination import Page, SortKey, paginate
from yijing.policies import ROLES_WITH, Permission, Principal
from yijing.services import audit
from yijing.services import auth as auth_service
from yijing.services.jurisdictions import in_subtrees

STAFF_ROLE_VALUES = (Role.DESK, Role.LEADER, Role.ADMIN)
MIN_PASSWORD_LENGTH = 10
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")


@dataclass(frozen=True, slots=True)
class StaffGrant:
    """One role a staff account holds, and where."""

    role: str
    jurisdiction: Jurisdiction


@dataclass(frozen=True, slots=True)
class StaffAccount:
    """A staff account as the desk manages it: the user and every grant it holds."""

    id: int
    username: str | None
    display_name: str
    is_active: bool
    must_change_password: bool
    last_login_at: datetime | None
    created_at: datetime
    grants: list[StaffGrant]


def check_password_policy(password: str, username: str | None = None) -> None:
    """At least 10 characters with a letter and a digit, not the username: else 400 with the reason."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"密码至少 {MIN_PASSWORD_LENGTH} 位")
    if not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        problems.append("密码须同时包含字母和数字")
    if username and username.strip().lower() in password.lower():
        problems.append("密码不能包含用户名")
    if problems:
        message = "；".join(problems)
        raise InvalidInput(message, code="weak_password", fields={"password": problems})


def permissions_of(principal: Principal) -> list[str]:
    """The permissions ``principal`` holds somewhere: what the console shows and hides."""
    return sorted(p.value for p in Permission if policies.scope_paths(principal, p))


@dataclass(frozen=True, slots=True)
class DeskMe(auth_service.Me):
    """``/me`` for the desk: the profile and the permissions held somewhere (the console's menus)."""

    permissions: list[str]


def desk_me(principal: Principal) -> DeskMe:
    """``/desk/auth/me``: the profile and the permissions held somewhere."""
    me = auth_service.me(principal.user_id, principal.profile)
    return DeskMe(
        **{f.name: getattr(me, f.name) for f in fields(auth_service.Me)},
        permissions=permissions_of(principal),
    )


def _manage_paths(principal: Principal) -> list[str]:
    return policies.require_somewhere(principal, Permission.STAFF_MANAGE)


def _grants_of(user_ids: Sequence[int]) -> dict[int, list[StaffGrant]]:
    rows = db.session.execute(
        select(RoleGrant.user_id, RoleGrant.role, Jurisdiction)
        .join(Jurisdiction, Jurisdiction.id == RoleGrant.jurisdiction_id)
        .where(RoleGrant.user_id.in_(user_ids))
        .order_by(RoleGrant.id)
    ).all()
    out: dict[int, list[StaffGrant]] = {i: [] for i in user_ids}
    for user_id, role, place in rows:
        out[user_id].append(StaffGrant(role=role, jurisdiction=place))
    return out


def _account(user: User, grants: list[StaffGrant]) -> StaffAccount:
    return StaffAccount(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        is_active=user.is_active,
        must_change_password=user.must_change_password,
        last_login_at=user.last_login_at,
        created_at=user.created_at,
        grants=grants,
    )


def _in_scope_clause(paths: Sequence[str]) -> Any:
    """A staff user all of whose grants lie in ``paths`` and who holds at least one."""
    outside = (
        select(RoleGrant.id)
        .join(Jurisdiction, Jurisdiction.id == RoleGrant.jurisdiction_id)
        .where(RoleGrant.user_id == User.id, ~in_subtrees(Jurisdiction.path, paths))
    )
    inside = (
        select(RoleGrant.id)
        .join(Jurisdiction, Jurisdiction.id == RoleGrant.jurisdiction_id)
        .where(RoleGrant.user_id == User.id, in_subtrees(Jurisdiction.path, paths))
    )
    return exists(inside) & ~exists(outside)


def list_staff(principal: Principal, q: str | None, *, cursor: str | None, limit: int) -> Page[StaffAccount]:
    """Staff accounts of my subtree, newest first; ``q`` matches username or display name."""
    paths = _manage_paths(principal)
    stmt = select(User).where(User.kind == UserKind.STAFF, _in_scope_clause(paths))
    if q and q.strip():
        pattern = f"%{q.strip().lower()}%"
        stmt = stmt.where(
            or_(func.lower(User.username).like(pattern), func.lower(User.display_name).like(pattern))
        )
    page = paginate(stmt, [SortKey(User.id, descending=True)], lambda u: [u.id], cursor=cursor, limit=limit)
    grants = _grants_of([u.id for u in page.items])
    return Page(items=[_account(u, grants[u.id]) for u in page.items], next_cursor=page.next_cursor)


def _managed_user(principal: Principal, user_id: int) -> User:
    paths = _manage_paths(principal)
    user = db.session.get(User, user_id)
    if user is None or user.kind != UserKind.STAFF:
        raise NotFound("没有这个工作人员账号", code="staff_not_found")
    in_scope = db.session.scalar(select(User.id).where(User.id == user_id, _in_scope_clause(paths)))
    if in_scope is None:
        raise Forbidden("该账号不在您的管理范围内", code="out_of_jurisdiction")
    return user


def _grantable_jurisdiction(principal: Principal, role: str, jurisdiction_id: int) -> Jurisdiction:
    if role not in STAFF_ROLE_VALUES:
        raise InvalidInput(
            "只能授予值班民警、负责人或管理员角色", code="invalid_role", fields={"role": ["角色无效"]}
        )
    place = db.session.get(Jurisdiction, jurisdiction_id)
    if place is None:
        raise InvalidInput(
            "辖区不存在", code="jurisdiction_not_found", fields={"jurisdiction_id": ["辖区不存在"]}
        )
    policies.require(principal, Permission.STAFF_MANAGE, place.path)
    return place


def get_staff(principal: Principal, user_id: int) -> StaffAccount:
    user = _managed_user(principal, user_id)
    return _account(user, _grants_of([user.id])[user.id])


def create_staff(
    principal: Principal,
    actor: Actor,
    *,
    username: str,
    display_name: str,
    password: str,
    role: str,
    jurisdiction_id: int,
) -> StaffAccount:
    """A new staff account with one grant; it must change its password at the first login."""
    username = username.strip()
    if not USERNAME_PATTERN.match(username):
        raise InvalidInput(
            "用户名为 3–64 位字母、数字、下划线、点或横线",
            code="invalid_username",
            fields={"username": ["用户名格式不正确"]},
        )
    place = _grantable_jurisdiction(principal, role, jurisdiction_id)
    check_password_policy(password, username)
    if db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise Conflict(f"用户名 {username} 已存在", code="username_taken", fields={"username": ["已被使用"]})
    user = User(
        kind=UserKind.STAFF,
        username=username,
        password_hash=auth_service.hash_password(password),
        display_name=display_name.strip() or username,
        must_change_password=True,
    )
    db.session.add(user)
    db.session.flush()
    db.session.add(
        RoleGrant(user_id=user.id, role=role, jurisdiction_id=place.id, granted_by_id=actor.user_id)
    )
    audit.record(actor, "staff.create", "user", user.id, data={"role": role, "jurisdiction_id": place.id})
    db.session.commit()
    return get_staff(principal, user.id)


def set_active(principal: Principal, actor: Actor, user_id: int, active: bool, reason: str) -> StaffAccount:
    """Deactivate (its tokens stop working at once) or reactivate a staff account."""
    user = _managed_user(principal, user_id)
    if user.id == principal.user_id and not active:
        raise Conflict("不能停用自己的账号", code="cannot_deactivate_self")
    user.is_active = active
    revoked = [] if active else auth_service.revoke_all_tokens(user.id)
    audit.record(actor, "staff.activate" if active else "staff.deactivate", "user", user.id, reason=reason)
    db.session.commit()
    auth_service.forget_principal(user.id)
    auth_service.forget_tokens(revoked)
    return get_staff(principal, user.id)


def reset_password(principal: Principal, actor: Actor, user_id: int, password: str) -> StaffAccount:
    """A new password chosen by the admin; the user must change it at the next login."""
    user = _managed_user(principal, user_id)
    check_password_policy(password, user.username)
    user.password_hash = auth_service.hash_password(password)
    user.must_change_password = True
    revoked = auth_service.revoke_all_tokens(user.id)
    audit.record(actor, "staff.password_reset", "user", user.id)
    db.session.commit()
    auth_service.forget_principal(user.id)
    auth_service.forget_tokens(revoked)
    return get_staff(principal, user.id)


def force_password_change(principal: Principal, actor: Actor, user_id: int) -> StaffAccount:
    user = _managed_user(principal, user_id)
    user.must_change_password = True
    audit.record(actor, "staff.force_password_change", "user", user.id)
    db.session.commit()
    auth_service.forget_principal(user.id)
    return get_staff(principal, user.id)


def grant(principal: Principal, actor: Actor, user_id: int, role: str, jurisdiction_id: int) -> StaffAccount:
    _managed_user(principal, user_id)
    place = _grantable_jurisdiction(principal, role, jurisdiction_id)
    auth_service.grant_role(user_id, Role(role), place.id, actor)
    return get_staff(principal, user_id)


def revoke(principal: Principal, actor: Actor, user_id: int, role: str, jurisdiction_id: int) -> StaffAccount:
    _managed_user(principal, user_id)
    place = _grantable_jurisdiction(principal, role, jurisdiction_id)
    held = db.session.scalar(select(func.count(RoleGrant.id)).where(RoleGrant.user_id == user_id))
    if held is not None and held <= 1:
        raise Conflict("账号至少保留一个授权；不再使用请停用账号", code="last_grant")
    if user_id == principal.user_id and role in ROLES_WITH[Permission.STAFF_MANAGE]:
        raise Conflict("不能撤销自己的管理员授权", code="cannot_revoke_self")
    auth_service.revoke_role(user_id, Role(role), place.id, actor)
    return get_staff(principal, user_id)


def change_own_password(user_id: int, actor: Actor, current_password: str, new_password: str) -> None:
    """Every staff member changes their own password with the current one; clears the forced change."""
    user = db.session.get(User, user_id)
    if user is None or user.kind != UserKind.STAFF or not user.password_hash:
        raise Forbidden("只有工作人员账号可以修改密码", code="permission_denied")
    if not auth_service.verify_password(user.password_hash, current_password):
        raise InvalidInput(
            "当前密码不正确", code="wrong_password", fields={"current_password": ["当前密码不正确"]}
        )
    if current_password == new_password:
        raise InvalidInput(
            "新密码不能与当前密码相同", code="weak_password", fields={"new_password": ["与当前密码相同"]}
        )
    try:
        check_password_policy(new_password, user.username)
    except InvalidInput as exc:
        raise InvalidInput(
            exc.message, code="weak_password", fields={"new_password": exc.fields["password"]}
        ) from None
    user.password_hash = auth_service.hash_password(new_password)
    user.must_change_password = False
    audit.record(actor, "staff.password_change", "user", user.id)
    db.session.commit()
    auth_service.forget_principal(user.id)
