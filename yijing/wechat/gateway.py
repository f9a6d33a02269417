"""The backend's one WeChat server-API client, built on wechatpy's ``WeChatClient``.

What it adds to wechatpy (see docs/wechat.md): a configurable base URL for every call, login
without an access token, one cross-process token refresher (Redis cache + Redis lock + ``stable_token``),
exactly one refresh-and-retry on 40001/42001, the v2 content-security calls, ``miniprogram_state`` on
subscribe messages, and translation of every failure into :mod:`yijing.wechat.errors`.

wechatpy is used through its public API only: ``RedisStorage`` as the token cache (read and written
through ``WeChatClient.session`` under the client's own key names) and ``fetch_access_token``
overridden as its hook, so that wechatpy never fetches a token from its hard-coded host. The HTTP
calls themselves go through the gateway's own urllib3 pool (:func:`_pool`): keep-alive connections
per process, the proxy and CA settings read from the environment once, when the gateway is made.
wechatpy's ``requests`` session reads them again on every request (``HTTP(S)_PROXY``, ``NO_PROXY``,
``~/.netrc``) and wechatpy offers no public way to hand it another; that lookup and the rest of
``requests``' per-request bookkeeping (merging settings, cookies, hooks) were about 40 % of a delivery
worker's CPU per message (docs/performance.md, "Delivering notifications"). wechatpy has no
``stable_token`` call at all.

Never logged: the secret, access tokens, session keys (nor openids, message contents or phone numbers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import urllib3
from redis import Redis
from redis.exceptions import LockError
from wechatpy import WeChatClient
from wechatpy.session.redisstorage import RedisStorage

from yijing.telemetry import count_wechat_error
from yijing.wechat.errors import WeChatError, WeChatUnavailable, error_for

logger = logging.getLogger(__name__)

#: Answers that mean "this access token is no good": invalid credential, invalid token, expired token.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
#: A cached token is dropped this many seconds before WeChat says it expires.
TOKEN_SAFETY_MARGIN = 300
MINIPROGRAM_STATES = frozenset({"developer", "trial", "formal"})
#: Kept-alive connections to WeChat per process (a requests session's default).
POOL_MAXSIZE = 10


class _GatewayClient(WeChatClient):
    """wechatpy client whose token fetch goes through the gateway, never to the hard-coded host."""

    def __init__(self, appid: str, secret: str, *, token_fetcher: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(appid, secret, **kwargs)
        self._token_fetcher = token_fetcher

    def fetch_access_token(self) -> dict[str, Any]:
        return {"access_token": self._token_fetcher()}


class WeChatGateway:
    """Calls the WeChat server API for one mini-program.

    ``base_url`` is ``https://api.weixin.qq.com`` in production (the fake's URL in tests); ``timeout`` is
    the per-request connect/read timeout in seconds; ``miniprogram_state`` (developer/trial/formal)
    is the mini-program version subscribe messages open; Redis keys start with ``key_prefix + "wx"``.
    """

    def __init__(
        self,
        appid: str,
        secret: str,
        base_url: str,
        redis: Redis,
        *,
        timeout: float = 5.0,
        miniprogram_state: str = "formal",
        key_prefix: str = "yj:",
    ) -> None:
        if miniprogram_state not in MINIPROGRAM_STATES:
            raise ValueError(f"miniprogram_state must be one of {sorted(MINIPROGRAM_STATES)}")
        self.appid = appid
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.miniprogram_state = miniprogram_state
        self._secret = secret
        self._redis = redis
        self._key_prefix = key_prefix
        self._lock_name = f"{key_prefix}wx:lock:access_token:{appid}"
        self._http = _pool(self.base_url)
        self._http_timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._held = threading.local()  # the token held by token_held(), per thread
        self.client = _GatewayClient(
            appid,
            secret,
            token_fetcher=self.access_token,
            session=RedisStorage(redis, prefix=f"{key_prefix}wx"),
            timeout=timeout,
            auto_retry=False,
        )

    def __repr__(self) -> str:
        return f"WeChatGateway(appid={self.appid!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the gateway's own pooled HTTP connections."""
        self._http.clear()

    # -- login (no access token) --

    def code_to_session(self, js_code: str) -> dict[str, Any]:
        """Exchange a ``wx.login`` code: ``{"openid", "session_key", "unionid"?}``.

        Uses only appid + secret, so a token outage cannot break login.
        """
        params = {
            "appid": self.appid,
            "secret": self._secret,
            "js_code": js_code,
            "grant_type": "authorization_code",
        }
        result = self._request("GET", "sns/jscode2session", params=params)
        return {k: v for k, v in result.items() if k not in ("errcode", "errmsg")}

    # -- access token --

    def access_token(self, force_refresh: bool = False) -> str:
        """The shared access token; fetched under a Redis lock by one process at a time when missing.

        ``force_refresh`` replaces the cached token, unless another process already replaced it.
        """
        held = getattr(self._held, "token", None)
        if held and not force_refresh:
            return held
        cached = self._cached_token()
        if not cached or force_refresh:
            cached = self._refresh(stale=cached if force_refresh else None, force=force_refresh)
        if held is not None:
            self._held.token = cached
        return cached

    @contextlib.contextmanager
    def token_held(self) -> Iterator[None]:
        """Inside the block, the access token read from Redis once serves every call of this thread
        (a delivery batch: one Redis round trip per batch, not per message). A token WeChat refuses
        is still refreshed and retried once (:meth:`_call`), and the fresh one is held instead."""
        self._held.token = ""
        try:
            yield
        finally:
            self._held.token = None

    def _cached_token(self) -> str | None:
        token = self.client.session.get(self.client.access_token_key)
        return token if isinstance(token, str) and token else None

    def _refresh(self, *, stale: str | None, force: bool) -> str:
        lock = self._redis.lock(
            self._lock_name,
            timeout=3 * self.timeout + 5,  # outlives a fetch, never a dead holder for long
            blocking_timeout=2 * self.timeout + 1,
        )
        if not lock.acquire():
            cached = self._cached_token()
            if cached and cached != stale:
                return cached
            raise WeChatUnavailable(None, "timed out waiting for the access token lock")
        try:
            cached = self._cached_token()
            if cached and cached != stale:
                return cached  # another process refreshed while this one waited
            return self._fetch_stable_token(force)
        finally:
            try:
                lock.release()
            except LockError:
                logger.warning("wechat access token lock expired before release")

    def _fetch_stable_token(self, force: bool) -> str:
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self._secret,
            "force_refresh": force,
        }
        result = self._request("POST", "cgi-bin/stable_token", body=body)
        token = result.get("access_token")
        if not isinstance(token, str) or not token:
            raise WeChatUnavailable(None, "stable_token answer has no access_token")
        expires_in = int(result.get("expires_in") or 7200)
        margin = TOKEN_SAFETY_MARGIN if expires_in > 2 * TOKEN_SAFETY_MARGIN else expires_in // 2
        ttl = max(expires_in - margin, 1)
        session = self.client.session
        session.set(self.client.access_token_key, token, ttl)
        # wechatpy's own access_token property refetches 60 s before this instant.
        session.set(self.client.access_token_expires_at_key, int(time.time()) + ttl + 60, ttl)
        logger.info("wechat access token fetched (force_refresh=%s, cached %d s)", force, ttl)
        return token

    # -- token-bearing calls --

    def get_phone_number(self, code: str) -> dict[str, Any]:
        """Exchange a ``getPhoneNumber`` button code for ``phone_info``."""
        result = self._call("wxa/business/getuserphonenumber", {"code": code})
        phone_info = result.get("phone_info")
        if not isinstance(phone_info, dict):
            raise WeChatUnavailable(None, "getuserphonenumber answer has no phone_info")
        return phone_info

    def send_subscribe_message(
        self, openid: str, template_id: str, data: Mapping[str, Any], page: str | None = None
    ) -> dict[str, Any]:
        """Send a subscribe message; ``data`` maps field to value (``"text"`` or ``{"value": "text"}``)."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: v if isinstance(v, Mapping) else {"value": str(v)} for k, v in data.items()},
            "miniprogram_state": self.miniprogram_state,
            "lang": "zh_CN",
        }
        if page:
            body["page"] = page
        return self._call("cgi-bin/message/subscribe/send", body)

    def msg_sec_check(self, openid: str, content: str, scene: int) -> dict[str, Any]:
        """Text check v2; ``result["result"]["suggest"]`` is pass, review or risky."""
        body = {"version": 2, "openid": openid, "scene": scene, "content": content}
        return self._call("wxa/msg_sec_check", body)

    def media_check_async(self, openid: str, media_url: str, media_type: int, scene: int) -> dict[str, Any]:
        """Start an asynchronous media check v2 (media_type 1 audio, 2 image); returns ``trace_id``."""
        body = {
            "media_url": media_url,
            "media_type": media_type,
            "version": 2,
            "openid": openid,
            "scene": scene,
        }
        return self._call("wxa/media_check_async", body)

    def _call(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with the access token; on a token error refresh it once and retry once."""
        token = self.access_token()
        try:
            return self._post(endpoint, body, token)
        except WeChatError as exc:
            if exc.errcode not in TOKEN_ERRCODES:
                raise
            logger.info("wechat %s: token refused (errcode %s), refreshing once", endpoint, exc.errcode)
        return self._post(endpoint, body, self.access_token(force_refresh=True))

    def _post(self, endpoint: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        """POST ``body`` with the token in the query string."""
        return self._request("POST", endpoint, params={"access_token": token}, body=body)

    # -- every HTTP call --

    def _request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One call (``body`` sent as UTF-8 JSON); an HTTP error, a non-JSON answer or an ``errcode``
        raises :class:`WeChatError`."""
        started = time.monotonic()
        url = f"{self.base_url}/{endpoint}"
        if params:
            url = f"{url}?{urlencode(params)}"
        try:
            response = self._http.request(
                method,
                url,
                body=json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None,
                headers=_JSON_HEADERS if body is not None else None,
                timeout=self._http_timeout,
                retries=False,
                redirect=False,
            )
            if response.status >= 400:
                raise WeChatUnavailable(None, f"HTTP {response.status}", http_status=response.status)
            try:
                # As wechatpy decodes: lenient about bytes that are not UTF-8 and control characters.
                result = json.loads(response.data.decode("utf-8", "ignore"), strict=False)
            except ValueError:
                raise WeChatUnavailable(None, "answer is not JSON") from None
            if not isinstance(result, dict):
                raise WeChatUnavailable(None, "answer is not a JSON object")
            errcode = int(result.get("errcode") or 0)
            if errcode:
                raise error_for(errcode, str(result.get("errmsg", errcode)))
        except WeChatError as exc:
            raise self._log_failure(endpoint, started, exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise self._log_failure(endpoint, started, _translate_http(exc)) from None
        logger.info("wechat %s ok in %.0f ms", endpoint, _ms(started))
        return result

    def _log_failure(self, endpoint: str, started: float, exc: WeChatError) -> WeChatError:
        logger.warning("wechat %s failed in %.0f ms: %s", endpoint, _ms(started), exc)
        count_wechat_error(self._redis, self._key_prefix, exc.errcode)
        return exc


_JSON_HEADERS = {"Content-Type": "application/json"}


def _pool(base_url: str) -> urllib3.PoolManager:
    """Keep-alive connections for calls to ``base_url``, the environment's settings read once, now.

    Every call goes to one host, so its proxy cannot change but with the environment: the
    ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` a process starts with are honoured (as
    ``requests`` reads them), later changes are not. Certificates are checked against
    ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` when set, else certifi's bundle (what ``requests``
    uses). ``~/.netrc`` is not read: WeChat takes no HTTP authentication.
    """
    # What a requests session would use for this URL, asked once.
    found = requests.Session().merge_environment_settings(base_url, {}, None, None, None)
    verify, proxies = found["verify"], found["proxies"]
    ca_certs = verify if isinstance(verify, str) else requests.utils.DEFAULT_CA_BUNDLE_PATH
    options: dict[str, Any] = {"ca_certs": ca_certs, "maxsize": POOL_MAXSIZE}
    proxy = proxies.get(urlsplit(base_url).scheme) or proxies.get("all")
    if not proxy:
        return urllib3.PoolManager(**options)
    if proxy.startswith("socks"):
        from urllib3.contrib.socks import SOCKSProxyManager  # needs PySocks, as requests does

        return SOCKSProxyManager(proxy, **options)
    return urllib3.ProxyManager(proxy, **options)


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _translate_http(exc: urllib3.exceptions.HTTPError) -> WeChatUnavailable:
    """Only the exception's class: its text can contain the URL, hence the secret or access token."""
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2, but is a refusal, not a time-out.
    if isinstance(exc, urllib3.exceptions.TimeoutError) and not isinstance(
        exc, urllib3.exceptions.NewConnectionError
    ):
        return WeChatUnavailable(None, f"timed out ({type(exc).__name__})")
    return WeChatUnavailable(None, f"network error ({type(exc).__name__})")
