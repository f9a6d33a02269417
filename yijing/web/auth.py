"""Bearer-token authentication for views, and the actor passed on to services."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Request, g, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin

from yijing.actor import Actor
from yijing.errors import Forbidden, Unauthorized
from yijing.policies import Principal
from yijing.services import auth as auth_service

F = TypeVar("F", bound=Callable[..., Any])
SECURITY = [{"bearerAuth": []}]

# Who each part of the API is for, by URL prefix. A token of the other side is refused before the
# view looks anything up, so nobody can tell an existing id from a missing one by 403 vs 404.
STAFF_PREFIXES = ("/api/v1/desk/",)
RESIDENT_PREFIXES = ("/api/v1/tasks", "/api/v1/volunteers")
STAFF_ROLES = frozenset({"desk", "leader", "admin"})
STAFF_ONLY = (403, "staff_only", "值班台接口仅限民警和工作人员使用，请用值班台账号登录")
RESIDENT_ONLY = (403, "resident_only", "该接口仅限小程序用户（群众、义警）使用")


def audience_of(path: str) -> str | None:
    """``staff``, ``resident`` or None (anyone) for a request path or an OpenAPI path."""
    if path.startswith(STAFF_PREFIXES):
        return "staff"
    if any(path == p or path.startswith(p + "/") for p in RESIDENT_PREFIXES):
        return "resident"
    return None


def _check_audience(principal: Principal) -> None:
    audience = audience_of(request.path)
    if audience == "staff" and not any(g.role in STAFF_ROLES for g in principal.grants):
        raise Forbidden(STAFF_ONLY[2], code=STAFF_ONLY[1])
    if audience == "resident" and principal.kind != "wechat":
        raise Forbidden(RESIDENT_ONLY[2], code=RESIDENT_ONLY[1])


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _document_security(fn: Callable[..., Any], optional: bool) -> None:
    apidoc = copy.deepcopy(getattr(fn, "_apidoc", {}))
    apidoc.setdefault("manual_doc", {})["security"] = [*SECURITY, {}] if optional else SECURITY
    fn._apidoc = apidoc  # type: ignore[attr-defined]


# What a staff account that must change its password may still call.
PASSWORD_CHANGE_ENDPOINTS = frozenset({"desk_auth.me", "desk_auth.change_password", "desk_auth.logout"})


def _refuse_until_password_changed(principal: Principal) -> None:
    profile = principal.profile or {}
    if profile.get("must_change_password") and request.endpoint not in PASSWORD_CHANGE_ENDPOINTS:
        raise Forbidden("请先修改初始密码", code="password_change_required")


def login_required(fn: F) -> F:
    """Reject the request with 401 unless it carries a valid, unexpired bearer token."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = bearer_token()
        if token is None:
            raise Unauthorized("请先登录", code="missing_token")
        g.principal = auth_service.authenticate(token)
        _check_audience(g.principal)
        _refuse_until_password_changed(g.principal)
        return fn(*args, **kwargs)

    _document_security(wrapper, optional=False)
    return wrapper  # type: ignore[return-value]


def login_optional(fn: F) -> F:
    """Authenticate when a token is given (a bad token is still a 401); anonymous otherwise."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = bearer_token()
        g.principal = auth_service.authenticate(token) if token else None
        if g.principal is not None:
            _check_audience(g.principal)
        return fn(*args, **kwargs)

    _document_security(wrapper, optional=True)
    return wrapper  # type: ignore[return-value]


def login_optional_in_view(fn: F) -> F:
    """:func:`login_optional` for a view that authenticates in its own first Redis read.

    The feed's logged-in first page resolves the token, the reader's scopes and the rendered page in
    one round trip (``feed.reader_first_page``); authenticating first would cost a round trip of its
    own. The view takes the token from :func:`pending_token` and hands the principal it got to
    :func:`use_principal`, or calls :func:`resolve_optional_principal`. A view that did neither, or
    that failed (its arguments refused, say), is authenticated after it (a bad token is a 401 all
    the same, its answer discarded), so nobody is taken for anonymous by mistake.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.principal = None
        g.pending_token = bearer_token()
        try:
            result = fn(*args, **kwargs)
        except Exception:
            resolve_optional_principal()  # a bad token's 401 before the view's error, as ever
            raise
        resolve_optional_principal()
        return result

    _document_security(wrapper, optional=True)
    return wrapper  # type: ignore[return-value]


def pending_token() -> str | None:
    """The bearer token a :func:`login_optional_in_view` view has not authenticated yet."""
    return g.get("pending_token")


def use_principal(principal: Principal) -> None:
    """The principal the view's own read authenticated (:func:`login_optional_in_view`)."""
    g.pending_token = None
    g.principal = principal
    _check_audience(principal)


def resolve_optional_principal() -> Principal | None:
    """Authenticate the pending token, if any (:func:`login_optional_in_view`); the principal or None."""
    token = g.get("pending_token")
    if token is not None:
        use_principal(auth_service.authenticate(token))
    return g.get("principal")


def login_required_in_view(fn: F) -> F:
    """:func:`login_required` for a view that authenticates in its own first Redis read.

    The desk's on-duty search (``duty.on_duty_json``) and cached summary
    (``reports.summary_json_for_token``) resolve the token in the same round trip as their own
    read. The view takes the token with :func:`take_pending_token` (a request
    without one is a 401 before the view runs) and hands the principal it got to :func:`admit`
    before it authorises or answers anything. A view that failed before admitting anyone (its
    arguments refused, say) is authenticated and admitted first, so a bad token is a 401 and the
    wrong audience a 403 ahead of the view's error, as with :func:`login_required`; a view that
    returned without admitting anyone is authenticated and admitted before its answer leaves.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = bearer_token()
        if token is None:
            raise Unauthorized("请先登录", code="missing_token")
        g.principal = None
        g.pending_token = token
        try:
            result = fn(*args, **kwargs)
        except Unauthorized:
            raise
        except Exception:
            _admit_pending()
            raise
        _admit_pending()
        return result

    _document_security(wrapper, optional=False)
    return wrapper  # type: ignore[return-value]


def take_pending_token() -> str:
    """The bearer token of a :func:`login_required_in_view` view, for the view to resolve.

    It stays pending until :func:`admit`: whatever the view raises before then (a refused period,
    say) is preceded by the token's own 401 or 403, as with :func:`login_required`.
    """
    token = g.get("pending_token")
    if token is None:
        raise Unauthorized("请先登录", code="missing_token")
    return token


def admit(principal: Principal) -> None:
    """What :func:`login_required` checks once the token is resolved: the audience, then a password
    that must be changed first. For :func:`login_required_in_view` views."""
    g.pending_token = None
    g.principal = principal
    _check_audience(principal)
    _refuse_until_password_changed(principal)


def _admit_pending() -> None:
    token = g.get("pending_token")
    if token is not None:
        g.pending_token = None
        admit(auth_service.authenticate(token))


class NoCookieSession(SecureCookieSessionInterface):
    """The API and the console authenticate with bearer tokens; nothing reads Flask's cookie session.

    Flask's default interface builds an itsdangerous signer and looks for a cookie on every request
    (about 25 µs of CPU, docs/performance.md); this one hands out the read-only null session at once.
    """

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: SessionMixin, response: object) -> None:
        return None


def current_principal() -> Principal:
    principal = getattr(g, "principal", None)
    if principal is None:
        raise Unauthorized("请先登录", code="missing_token")
    return principal


def optional_principal() -> Principal | None:
    return getattr(g, "principal", None)


def current_actor() -> Actor:
    principal = getattr(g, "principal", None)
    return Actor(
        user_id=principal.user_id if principal else None,
        ip=request.remote_addr,
        request_id=getattr(g, "request_id", None),
    )
