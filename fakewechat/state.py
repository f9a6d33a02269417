"""Thread-safe in-memory state of the fake WeChat API server."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any

DEFAULT_APPID = "wxfa4e000000000000"
DEFAULT_SECRET = "fake-wechat-secret"
TOKEN_LIFETIME = 7200


def rid() -> str:
    """A request id shaped like the ones WeChat appends to every errmsg."""
    return f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode().rstrip("=")


def fake_openid(name: str, appid: str = DEFAULT_APPID) -> str:
    """The openid the fake gives user ``name`` (the part of a login code before the first dot)."""
    return "o" + _digest(f"openid:{appid}:{name}")[:27]


def fake_unionid(name: str) -> str:
    """The unionid the fake gives user ``name`` (the same for every appid)."""
    return "o" + _digest(f"unionid:{name}")[:27]


def user_name_of_code(js_code: str) -> str:
    """``alice.1`` and ``alice.2`` belong to user ``alice``; a code without a dot is its own user."""
    return js_code.split(".", 1)[0] if "." in js_code else js_code


@dataclass
class RecordedRequest:
    """One request the fake answered (control endpoints excepted)."""

    method: str
    path: str
    args: dict[str, str]
    json: Any
    time: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Failure:
    """An injected answer for the next call(s) to one path."""

    errcode: int | None = None
    errmsg: str | None = None
    http_status: int | None = None
    delay: float | None = None
    times: int = 1


@dataclass
class Token:
    appid: str
    expires_at: float
    status: str = "valid"  # "valid" | "expired" | "invalid"


@dataclass
class _Data:
    tokens: dict[str, Token] = field(default_factory=dict)
    stable_tokens: dict[str, str] = field(default_factory=dict)
    used_codes: set[str] = field(default_factory=set)
    session_keys: dict[str, str] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: dict[str, deque[Failure]] = field(default_factory=dict)
    media_checks: list[dict[str, Any]] = field(default_factory=list)


class FakeWeChatState:
    """Everything the fake remembers; every public method is safe to call from any thread.

    ``apps`` maps appid to secret; it and ``token_lifetime`` are configuration and survive :meth:`reset`.
    """

    def __init__(self, apps: dict[str, str] | None = None, *, token_lifetime: int = TOKEN_LIFETIME) -> None:
        self.apps: dict[str, str] = dict(apps or {DEFAULT_APPID: DEFAULT_SECRET})
        self.token_lifetime = token_lifetime
        self.with_unionid = True
        self._lock = threading.RLock()
        self._data = _Data()

    # -- control operations (also exposed under /__fake__/) --

    def reset(self) -> None:
        """Forget tokens, codes, session keys, recorded requests and injected failures."""
        with self._lock:
            self._data = _Data()

    def fail(
        self,
        path: str,
        *,
        errcode: int | None = None,
        errmsg: str | None = None,
        http_status: int | None = None,
        delay: float | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls to ``path`` wait ``delay`` seconds and/or answer with
        HTTP ``http_status`` or WeChat error ``errcode`` (a delay alone then answers normally)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        if http_status is not None and not 400 <= HTTPStatus(http_status) <= 599:
            raise ValueError("http_status must be an HTTP error status")
        failure = Failure(errcode, errmsg, http_status, delay, times)
        with self._lock:
            self._data.failures.setdefault(path, deque()).append(failure)

    def take_failure(self, path: str) -> Failure | None:
        """Consume one use of the oldest failure injected for ``path``."""
        with self._lock:
            queue = self._data.failures.get(path)
            if not queue:
                return None
            failure = queue[0]
            failure.times -= 1
            if failure.times <= 0:
                queue.popleft()
            return failure

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 42001."""
        self._set_token_status("expired")

    def invalidate_tokens(self) -> None:
        """Every token issued so far now answers 40001."""
        self._set_token_status("invalid")

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, oldest first, optionally only those to ``path``."""
        with self._lock:
            return [r for r in self._data.requests if path is None or r.path == path]

    # -- inspection helpers for tests --

    def session_key_for(self, openid: str) -> str | None:
        """The latest session_key issued to ``openid``."""
        with self._lock:
            return self._data.session_keys.get(openid)

    def valid_tokens(self) -> list[str]:
        with self._lock:
            now = time.time()
            return [
                t for t, info in self._data.tokens.items() if info.status == "valid" and info.expires_at > now
            ]

    def media_checks(self) -> list[dict[str, Any]]:
        """Accepted media_check_async calls: trace_id, media_url, media_type, openid, scene."""
        with self._lock:
            return [dict(m) for m in self._data.media_checks]

    # -- used by the app --

    def record(self, method: str, path: str, args: dict[str, str], body: Any) -> None:
        with self._lock:
            self._data.requests.append(RecordedRequest(method, path, args, body, time.time()))

    def issue_token(self, appid: str, *, stable: bool, force_refresh: bool = False) -> tuple[str, int]:
        """A token and its remaining lifetime; a non-forced stable_token call reuses the current one."""
        with self._lock:
            now = time.time()
            if stable and not force_refresh:
                current = self._data.stable_tokens.get(appid)
                info = self._data.tokens.get(current or "")
                if info and info.status == "valid" and info.expires_at > now + 1:
                    return current or "", int(info.expires_at - now)
            token = "FAKE_" + secrets.token_urlsafe(48)
            self._data.tokens[token] = Token(appid, now + self.token_lifetime)
            if stable:
                self._data.stable_tokens[appid] = token
            return token, self.token_lifetime

    def check_token(self, token: str | None) -> tuple[str | None, int]:
        """(appid, 0) for a usable token, else (None, errcode): 41001 missing, 40001 bad, 42001 expired."""
        if not token:
            return None, 41001
        with self._lock:
            info = self._data.tokens.get(token)
            if info is None or info.status == "invalid":
                return None, 40001
            if info.status == "expired" or info.expires_at <= time.time():
                return None, 42001
            return info.appid, 0

    def use_code(self, js_code: str) -> bool:
        """Mark a login code used; False when it already was."""
        with self._lock:
            if js_code in self._data.used_codes:
                return False
            self._data.used_codes.add(js_code)
            return True

    def new_session_key(self, openid: str) -> str:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        with self._lock:
            self._data.session_keys[openid] = key
        return key

    def add_media_check(self, check: dict[str, Any]) -> None:
        with self._lock:
            self._data.media_checks.append(dict(check))

    def _set_token_status(self, status: str) -> None:
        with self._lock:
            for info in self._data.tokens.values():
                info.status = status
