"""Logging in (WeChat code, staff password), bearer tokens, and the principal behind a token."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.exceptions import RedisError
from sqlalchemy import delete, select, update

from yijing import cache, pii
from yijing.actor import Actor
from yijing.config import settings
from yijing.errors import Conflict, Forbidden, InvalidInput, RateLimited, ServiceUnavailable, Unauthorized
from yijing.extensions import db, redis_client, redis_key, wechat
from yijing.models import AuthToken, Jurisdiction, Role, RoleGrant, TokenAudience, User, UserKind
from yijing.models.base import utcnow
from yijing.policies import Grant, Principal
from yijing.services import audit
from yijing.wechat.errors import WeChatError, WeChatRateLimited, WeChatUnavailable

log = logging.getLogger(__name__)
_hasher = PasswordHasher()
# Cached token → user look-ups live briefly so that a revocation during a Redis outage is bounded.
TOKEN_CACHE_SECONDS = 60
PRINCIPAL_CACHE_SECONDS = 300
SESSION_KEY_CONTEXT = "user.session_key"
PHONE_CONTEXT = "user.phone"

# code2Session answers that mean "this code is no good": ask the user to try again.
_BAD_CODE_ERRORS = {40029, 40163}


@dataclass(frozen=True, slots=True)
class Me:
    """What ``/me`` shows: the cached profile (``profile``) with the user's role names.

    ``home_jurisdiction`` and ``grants`` keep the profile's own format (the principal's cache
    entry); the schema reads them by key."""

    id: int
    kind: str
    display_name: str
    username: str | None
    phone_masked: str | None
    home_jurisdiction: dict[str, Any] | None
    grants: list[dict[str, Any]]
    roles: list[str]
    created_at: datetime
    must_change_password: bool


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new bearer token and the user it was issued to, as ``/me`` shows them."""

    token: str
    expires_at: datetime
    user: Me


@dataclass(frozen=True, slots=True)
class PhoneBound:
    phone_masked: str


def hash_token(token: str) -> str:
    """The token's key in the database and in the cache (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _issue_token(user: User, audience: TokenAudience) -> tuple[str, datetime]:
    config = settings()
    ttl = config.staff_token_ttl if audience == TokenAudience.DESK else config.user_token_ttl
    prefix = "yjd_" if audience == TokenAudience.DESK else "yjm_"
    token = prefix + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=ttl)
    db.session.add(
        AuthToken(token_hash=hash_token(token), user_id=user.id, audience=audience, expires_at=expires_at)
    )
    return token, expires_at


def wechat_login(code: str, actor: Actor) -> IssuedToken:
    """Exchange a ``wx.login`` code; create the user on first login. WeChat is asked first,
    so a failure there creates nothing."""
    try:
        session = wechat().code_to_session(code)
    except WeChatRateLimited:
        raise RateLimited("登录过于频繁，请稍后再试", code="wechat_rate_limited") from None
    except WeChatUnavailable:
        raise ServiceUnavailable("微信服务暂时无法连接，请稍后再试", code="wechat_unavailable") from None
    except WeChatError as exc:
        if exc.errcode in _BAD_CODE_ERRORS:
            raise Unauthorized(
                "登录凭证无效或已使用，请重新打开小程序后再试", code="invalid_login_code"
            ) from None
        if exc.errcode == 40226:
            raise Forbidden("该微信账号存在风险，暂时无法登录", code="wechat_user_blocked") from None
        if exc.errcode == -1:
            raise ServiceUnavailable("微信服务繁忙，请稍后再试", code="wechat_unavailable") from None
        raise
    openid = session["openid"]
    user = db.session.scalar(select(User).where(User.openid == openid))
    if user is None:
        user = User(kind=UserKind.WECHAT, openid=openid, display_name="")
        db.session.add(user)
    elif not user.is_active:
        raise Forbidden("该账号已停用", code="account_disabled")
    elif user.cancel_requested_at is not None:
        # Logging in during the cooling-off period withdraws the cancellation (yijing.services.account).
        user.cancel_requested_at = None
        user.cancel_due_at = None
        audit.record(actor, "account.cancel_withdraw", "user", user.id, data={"how": "login"})
    user.unionid = session.get("unionid") or user.unionid
    user.session_key_enc = pii.encrypt(session["session_key"], context=SESSION_KEY_CONTEXT)
    user.last_login_at = utcnow()
    db.session.flush()
    token, expires_at = _issue_token(user, TokenAudience.MINIPROGRAM)
    db.session.commit()
    log.info("wechat login", extra={"user_id": user.id})
    return IssuedToken(token=token, expires_at=expires_at, user=me(user.id))


def bind_phone(user_id: int, code: str) -> PhoneBound:
    """Bind the phone from the phone-number button; answers it masked."""
    try:
        info = wechat().get_phone_number(code)
    except WeChatUnavailable:
        raise ServiceUnavailable("微信服务暂时无法连接，请稍后再试", code="wechat_unavailable") from None
    except WeChatError as exc:
        if exc.errcode in _BAD_CODE_ERRORS:
            raise InvalidInput(
                "手机号授权已失效，请重新点击授权", code="invalid_phone_code", fields={"code": ["无效"]}
            ) from None
        raise
    phone = str(info.get("purePhoneNumber") or info.get("phoneNumber") or "")
    if not phone:
        raise ServiceUnavailable("微信未返回手机号，请稍后再试", code="wechat_unavailable")
    user = db.session.get(User, user_id)
    if user is None:
        raise Unauthorized()
    user.phone_enc = pii.encrypt(phone, context=PHONE_CONTEXT)
    user.phone_hash = pii.blind_index(phone, context=PHONE_CONTEXT)
    db.session.commit()
    forget_principal(user_id)
    return PhoneBound(phone_masked=pii.mask_phone(phone))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def revoke_all_tokens(user_id: int) -> list[str]:
    """Revoke every live token of a user (in the caller's transaction); returns their hashes so the
    caller drops them from the cache after the commit (:func:`forget_tokens`)."""
    hashes = list(
        db.session.scalars(
            select(AuthToken.token_hash).where(AuthToken.user_id == user_id, AuthToken.revoked_at.is_(None))
        )
    )
    db.session.execute(
        update(AuthToken)
        .where(AuthToken.user_id == user_id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return hashes


def forget_tokens(hashes: list[str]) -> None:
    if hashes:
        cache.delete(*(("tok", h) for h in hashes))


def staff_login(username: str, password: str, actor: Actor) -> IssuedToken:
    """Password login for staff. The same answer for an unknown user and a wrong password."""
    user = db.session.scalar(
        select(User).where(User.username == username.strip(), User.kind == UserKind.STAFF)
    )
    failure = Unauthorized("用户名或密码错误", code="invalid_credentials")
    if user is None or not user.password_hash:
        _hasher.hash(password)  # spend the same time as a real check
        raise failure
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise failure from None
    if not user.is_active:
        raise Forbidden("该账号已停用", code="account_disabled")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    token, expires_at = _issue_token(user, TokenAudience.DESK)
    audit.record(actor, "staff.login", "user", user.id)
    db.session.commit()
    return IssuedToken(token=token, expires_at=expires_at, user=me(user.id))


def logout(token: str) -> None:
    token_hash = hash_token(token)
    db.session.execute(
        update(AuthToken)
        .where(AuthToken.token_hash == token_hash, AuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    db.session.commit()
    cache.delete(("tok", token_hash))


# One round trip for the hot path: the token entry, the principal it points to, and the rendered
# ``/me`` body when it was rendered from exactly that principal entry (its first line is the entry:
# an entry rebuilt or dropped since retires the body, wherever the profile was invalidated).
_TOKEN_AND_PROFILE = """
local token = redis.call('GET', KEYS[1])
if not token then return {'', '', ''} end
local uid = cjson.decode(token)['uid']
local profile = redis.call('GET', ARGV[1] .. uid)
if not profile then return {token, '', ''} end
local me = redis.call('GET', ARGV[2] .. uid)
if me and string.sub(me, 1, #profile + 1) == profile .. '\\n' then
  return {token, profile, string.sub(me, #profile + 2)}
end
return {token, profile, ''}
"""


def _cached_token_and_profile(
    token_hash: str,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, bytes | None]:
    try:
        script = redis_client().register_script(_TOKEN_AND_PROFILE)
        token, data, me_body = script(
            keys=[redis_key("tok", token_hash)], args=[redis_key("principal", ""), redis_key("me", "")]
        )
    except RedisError as exc:
        log.warning("token cache unavailable, using the database", extra={"error": str(exc)})
        return None, None, None
    return (json.loads(token) if token else None), (json.loads(data) if data else None), (me_body or None)


def authenticate(token: str) -> Principal:
    """The principal behind a bearer token: one Redis round trip on a hit, indexed queries on a miss."""
    token_hash = hash_token(token)
    cached, data, me_body = _cached_token_and_profile(token_hash)
    return _resolve(token_hash, cached, data, me_body)


#: How a Redis script that authenticates in its own round trip begins (the feed's first page, the
#: desk's on-duty search and summary): ``KEYS[1]`` is the token's cache key, ``ARGV[1]`` the prefix
#: of the principals' entries. Without the token's entry it answers ``{}``, without the principal's
#: ``{token}``; after it, ``token`` and ``profile`` hold both raw, for :func:`authenticate_cached`.
TOKEN_AND_PROFILE_LUA = """
local token = redis.call('GET', KEYS[1])
if not token then return {} end
local profile = redis.call('GET', ARGV[1] .. cjson.decode(token)['uid'])
if not profile then return {token} end
"""


#: The web layer's checks of who may call an endpoint at all (audience, a password to change first),
#: for a service that resolves the token in its own Redis read: called with the principal as soon as
#: the token is resolved, before anything is authorised or read for the caller (yijing.web.auth.admit).
Admit = Callable[[Principal], None]


def authenticate_cached(token: str, cached_token: bytes | None, cached_profile: bytes | None) -> Principal:
    """:func:`authenticate`, for a caller whose own Redis script read the token's cache entry
    (``tok``) and the principal's (``principal``) raw, in the same round trip as its own keys
    (the feed's logged-in first page). None for an entry the script did not find."""
    return _resolve(
        hash_token(token),
        json.loads(cached_token) if cached_token else None,
        json.loads(cached_profile) if cached_profile else None,
        None,
    )


def _resolve(
    token_hash: str, cached: dict[str, Any] | None, data: dict[str, Any] | None, me_body: bytes | None
) -> Principal:
    now = utcnow().timestamp()
    if cached is None:
        row = db.session.execute(
            select(AuthToken.user_id, AuthToken.expires_at, AuthToken.revoked_at).where(
                AuthToken.token_hash == token_hash
            )
        ).first()
        if row is None or row.revoked_at is not None:
            raise Unauthorized("登录状态无效，请重新登录", code="invalid_token")
        cached = {"uid": row.user_id, "exp": row.expires_at.timestamp()}
        if cached["exp"] > now:
            cache.set_json(cached, min(TOKEN_CACHE_SECONDS, int(cached["exp"] - now)), "tok", token_hash)
    if cached["exp"] <= now:
        raise Unauthorized("登录已过期，请重新登录", code="token_expired")
    if data is None or data["id"] != cached["uid"]:
        return _principal_from(profile(int(cached["uid"])))
    return _principal_from(data, me_body)


def _principal_from(data: dict[str, Any], rendered_me: bytes | None = None) -> Principal:
    return Principal(
        user_id=data["id"],
        kind=data["kind"],
        grants=tuple(Grant(g["role"], g["jurisdiction"]["id"], g["path"]) for g in data["grants"]),
        profile=data,
        rendered_me=rendered_me,
    )


def profile(user_id: int) -> dict[str, Any]:
    """What ``/me`` shows and what authorisation needs, cached per user."""
    data = cache.get_json("principal", user_id)
    if data is not None:
        return data
    user = db.session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("账号不存在或已停用", code="invalid_token")
    rows = db.session.execute(
        select(RoleGrant.role, Jurisdiction.id, Jurisdiction.name, Jurisdiction.level, Jurisdiction.path)
        .join(Jurisdiction, Jurisdiction.id == RoleGrant.jurisdiction_id)
        .where(RoleGrant.user_id == user_id)
        .order_by(RoleGrant.id)
    ).all()
    home = db.session.get(Jurisdiction, user.home_jurisdiction_id) if user.home_jurisdiction_id else None
    phone = pii.decrypt(user.phone_enc, context=PHONE_CONTEXT) if user.phone_enc else None
    data = {
        "id": user.id,
        "kind": user.kind,
        "display_name": user.display_name,
        "username": user.username,
        "phone_masked": pii.mask_phone(phone) if phone else None,
        "home_jurisdiction": (
            {"id": home.id, "name": home.name, "level": home.level} if home is not None else None
        ),
        "grants": [
            {"role": r.role, "path": r.path, "jurisdiction": {"id": r.id, "name": r.name, "level": r.level}}
            for r in rows
        ],
        "created_at": user.created_at.isoformat(),
        "must_change_password": bool(user.must_change_password),
    }
    cache.set_json(data, PRINCIPAL_CACHE_SECONDS, "principal", user_id)
    return data


def load_principal(user_id: int) -> Principal:
    return _principal_from(profile(user_id))


def forget_principal(user_id: int) -> None:
    """Drop the cached principal after a commit that changed the user or their grants."""
    cache.delete(("principal", user_id))


def create_staff(username: str, password: str, display_name: str = "") -> User:
    username = username.strip()
    if len(password) < 10:
        raise InvalidInput("密码至少 10 位", fields={"password": ["密码至少 10 位"]})
    if db.session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"用户名 {username} 已存在", code="username_taken")
    user = User(
        kind=UserKind.STAFF,
        username=username,
        password_hash=hash_password(password),
        display_name=display_name or username,
    )
    db.session.add(user)
    db.session.commit()
    return user


def grant_role(user_id: int, role: Role, jurisdiction_id: int, actor: Actor) -> RoleGrant:
    """Grant ``role`` over a jurisdiction's subtree; granting twice keeps one grant."""
    existing = db.session.scalar(
        select(RoleGrant).where(
            RoleGrant.user_id == user_id,
            RoleGrant.role == role,
            RoleGrant.jurisdiction_id == jurisdiction_id,
        )
    )
    if existing is not None:
        return existing
    grant = RoleGrant(
        user_id=user_id, role=role, jurisdiction_id=jurisdiction_id, granted_by_id=actor.user_id
    )
    db.session.add(grant)
    audit.record(
        actor, "role.grant", "user", user_id, data={"role": role, "jurisdiction_id": jurisdiction_id}
    )
    db.session.commit()
    forget_principal(user_id)
    return grant


def revoke_role(user_id: int, role: Role, jurisdiction_id: int, actor: Actor) -> bool:
    """Revoke ``role`` over a jurisdiction; False when the user did not hold it.

    Like :func:`grant_role` it commits the session (with whatever else the caller changed in it).
    """
    deleted = db.session.execute(
        delete(RoleGrant).where(
            RoleGrant.user_id == user_id,
            RoleGrant.role == role,
            RoleGrant.jurisdiction_id == jurisdiction_id,
        )
    ).rowcount
    if deleted:
        audit.record(
            actor, "role.revoke", "user", user_id, data={"role": role, "jurisdiction_id": jurisdiction_id}
        )
    db.session.commit()
    forget_principal(user_id)
    return bool(deleted)


#: Renders ``/me`` for the rendered cache: the blueprint's schema dump, as the response bytes.
RenderMe = Callable[[Me], bytes]


def me_body(principal: Principal, render: RenderMe) -> bytes:
    """``/me`` as response bytes (yijing.web.rendered): the hot read of a logged-in client.

    A hit is the body :func:`authenticate` found beside the principal's cache entry, in the same
    round trip, so it dumps nothing. A miss renders :func:`me` of the request's profile with
    ``render`` and stores it behind that profile's cache entry as it is serialised: the token's
    script serves it only while the principal entry is still exactly that, so whatever retires
    the profile (:func:`forget_principal`, a rebuild with changed data, the TTL) retires it too.
    """
    if principal.rendered_me is not None:
        return principal.rendered_me
    data = principal.profile if principal.profile is not None else profile(principal.user_id)
    body = render(me(principal.user_id, data))
    cache.set_bytes(
        json.dumps(data, default=str).encode() + b"\n" + body,
        PRINCIPAL_CACHE_SECONDS,
        "me",
        principal.user_id,
    )
    return body


def me(user_id: int, known: Mapping[str, Any] | None = None) -> Me:
    """The profile with its role names; a WeChat user is a resident by being one.

    ``known`` is a profile already loaded in this request (``Principal.profile``).
    """
    data = known if known is not None else profile(user_id)
    roles = {g["role"] for g in data["grants"]}
    if data["kind"] == UserKind.WECHAT:
        roles.add(Role.RESIDENT)
    return Me(
        id=data["id"],
        kind=data["kind"],
        display_name=data["display_name"],
        username=data["username"],
        phone_masked=data["phone_masked"],
        home_jurisdiction=data["home_jurisdiction"],
        grants=data["grants"],
        roles=sorted(roles),
        created_at=datetime.fromisoformat(data["created_at"]),
        must_change_password=bool(data.get("must_change_password")),
    )
