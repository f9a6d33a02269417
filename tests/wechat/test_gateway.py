"""WeChatGateway against the fake WeChat server and a real Redis (DB 11 by default)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import requests
import urllib3

from fakewechat import DEFAULT_APPID, DEFAULT_SECRET, FakeWeChatServer, fake_openid, fake_unionid
from yijing.wechat import WeChatError, WeChatGateway, WeChatRateLimited, WeChatUnavailable

LOGIN = "/sns/jscode2session"
STABLE_TOKEN = "/cgi-bin/stable_token"
SEND = "/cgi-bin/message/subscribe/send"
MSG_CHECK = "/wxa/msg_sec_check"
PHONE = "/wxa/business/getuserphonenumber"

MakeGateway = Callable[..., WeChatGateway]


@pytest.fixture
def fake(fake_wechat: FakeWeChatServer) -> FakeWeChatServer:
    fake_wechat.state.reset()
    return fake_wechat


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """The suite's Redis (``redis_url`` fails the run under CI=true when Redis is missing)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"yjtest:wechat:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def make_gateway(fake: FakeWeChatServer, redis_client: redis.Redis, key_prefix: str) -> Iterator[MakeGateway]:
    made: list[WeChatGateway] = []

    def make(**kwargs: Any) -> WeChatGateway:
        kwargs.setdefault("secret", DEFAULT_SECRET)
        kwargs.setdefault("timeout", 2.0)
        gateway = WeChatGateway(
            DEFAULT_APPID, base_url=fake.base_url, redis=redis_client, key_prefix=key_prefix, **kwargs
        )
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


@pytest.fixture
def gateway(make_gateway: MakeGateway) -> WeChatGateway:
    return make_gateway(miniprogram_state="developer")


def token_fetches(fake: FakeWeChatServer) -> int:
    return len(fake.state.requests(STABLE_TOKEN)) + len(fake.state.requests("/cgi-bin/token"))


# -- login --


def test_code_to_session_success_needs_no_token(gateway: WeChatGateway, fake: FakeWeChatServer) -> None:
    first = gateway.code_to_session("alice.1")
    second = gateway.code_to_session("alice.2")

    openid = fake_openid("alice", DEFAULT_APPID)
    assert first["openid"] == second["openid"] == openid
    assert first["unionid"] == fake_unionid("alice")
    assert second["session_key"] == fake.state.session_key_for(openid)
    assert gateway.code_to_session("bob")["openid"] != openid

    assert token_fetches(fake) == 0
    logins = fake.state.requests(LOGIN)
    assert len(logins) == 3
    assert "access_token" not in logins[0].args
    assert logins[0].args == {
        "appid": DEFAULT_APPID,
        "secret": DEFAULT_SECRET,
        "js_code": "alice.1",
        "grant_type": "authorization_code",
    }


def test_code_to_session_works_while_tokens_fail(gateway: WeChatGateway, fake: FakeWeChatServer) -> None:
    fake.state.fail(STABLE_TOKEN, http_status=500, times=5)
    assert gateway.code_to_session("carol.1")["openid"] == fake_openid("carol")


def test_code_to_session_reused_code(gateway: WeChatGateway) -> None:
    gateway.code_to_session("alice.1")
    with pytest.raises(WeChatError) as caught:
        gateway.code_to_session("alice.1")
    assert caught.value.errcode == 40163
    assert "rid: " in caught.value.errmsg


@pytest.mark.parametrize(("code", "errcode"), [("invalid-code", 40029), ("blocked.1", 40226)])
def test_code_to_session_refused(gateway: WeChatGateway, code: str, errcode: int) -> None:
    with pytest.raises(WeChatError) as caught:
        gateway.code_to_session(code)
    assert caught.value.errcode == errcode
    assert not isinstance(caught.value, WeChatUnavailable)


def test_code_to_session_rate_limited(gateway: WeChatGateway, fake: FakeWeChatServer) -> None:
    fake.state.fail(LOGIN, errcode=45011)
    with pytest.raises(WeChatRateLimited) as caught:
        gateway.code_to_session("alice.1")
    assert caught.value.errcode == 45011


def test_wrong_secret(make_gateway: MakeGateway) -> None:
    gateway = make_gateway(secret="wrong")
    with pytest.raises(WeChatError) as caught:
        gateway.access_token()
    assert caught.value.errcode == 40125
    with pytest.raises(WeChatError) as caught:
        gateway.code_to_session("alice.1")
    assert caught.value.errcode == 40125


# -- access token --


def test_token_cached_and_shared(
    make_gateway: MakeGateway, fake: FakeWeChatServer, redis_client: redis.Redis, key_prefix: str
) -> None:
    one, two = make_gateway(), make_gateway()
    token = one.access_token()
    assert two.access_token() == token
    assert one.access_token() == token
    assert token_fetches(fake) == 1
    assert fake.state.requests(STABLE_TOKEN)[0].json == {
        "grant_type": "client_credential",
        "appid": DEFAULT_APPID,
        "secret": DEFAULT_SECRET,
        "force_refresh": False,
    }
    ttl = redis_client.ttl(f"{key_prefix}wx:{DEFAULT_APPID}_access_token")
    assert 7200 - 400 < ttl <= 7200 - 300


def test_token_fetched_once_under_concurrency(make_gateway: MakeGateway, fake: FakeWeChatServer) -> None:
    fake.state.fail(STABLE_TOKEN, delay=0.3)  # widen the race window
    gateways = [make_gateway() for _ in range(5)]
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda g=g: tokens.append(g.access_token())) for g in gateways]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens) == 5
    assert len(set(tokens)) == 1
    assert token_fetches(fake) == 1


def test_force_refresh(gateway: WeChatGateway, fake: FakeWeChatServer) -> None:
    old = gateway.access_token()
    new = gateway.access_token(force_refresh=True)
    assert new != old
    assert gateway.access_token() == new
    assert [r.json["force_refresh"] for r in fake.state.requests(STABLE_TOKEN)] == [False, True]


@pytest.mark.parametrize(("spoil", "errcode"), [("invalidate_tokens", 40001), ("expire_tokens", 42001)])
def test_bad_token_refreshed_once_and_retried(
    gateway: WeChatGateway, fake: FakeWeChatServer, spoil: str, errcode: int
) -> None:
    old = gateway.access_token()
    getattr(fake.state, spoil)()

    assert gateway.send_subscribe_message("openid-1", "tmpl-1", {"thing1": "hi"})["errcode"] == 0

    sends = fake.state.requests(SEND)
    assert len(sends) == 2
    assert sends[0].args["access_token"] == old
    assert sends[1].args["access_token"] == gateway.access_token() != old
    assert [r.json["force_refresh"] for r in fake.state.requests(STABLE_TOKEN)] == [False, True]


def test_persistent_bad_token_raises_after_one_retry(gateway: WeChatGateway, fake: FakeWeChatServer) -> None:
    fake.state.fail(MSG_CHECK, errcode=40001, times=10)
    with pytest.raises(WeChatError) as caught:
        gateway.msg_sec_check("openid-1", "hello", 2)
    assert caught.value.errcode == 40001
    assert len(fake.state.requests(MSG_CHECK)) == 2
    assert token_fetches(fake) == 2


def test_other_errors_not_retried(gateway: WeChatGateway, fake: FakeWeChatServer) -> None:
    fake.state.fail(SEND, errcode=43101)
    with pytest.raises(WeChatError) as caught:
        gateway.send_subscribe_message("openid-1", "tmpl-1", {"thing1": "hi"})
    assert caught.value.errcode == 43101
    assert len(fake.state.requests(SEND)) == 1
    assert token_fetches(fake) == 1


# -- unavailability --


@pytest.mark.parametrize("path", [LOGIN, STABLE_TOKEN, MSG_CHECK])
def test_http_5xx_is_unavailable(gateway: WeChatGateway, fake: FakeWeChatServer, path: str) -> None:
    fake.state.fail(path, http_status=502)
    with pytest.raises(WeChatUnavailable) as caught:
        if path == LOGIN:
            gateway.code_to_session("alice.1")
        else:
            gateway.msg_sec_check("openid-1", "hello", 2)
    assert caught.value.http_status == 502
    assert caught.value.errcode is None


def test_system_busy_is_unavailable(gateway: WeChatGateway, fake: FakeWeChatServer) -> None:
    fake.state.fail(PHONE, errcode=-1)
    with pytest.raises(WeChatUnavailable) as caught:
        gateway.get_phone_number("phone-13812345678")
    assert caught.value.errcode == -1


@pytest.mark.parametrize("path", [LOGIN, STABLE_TOKEN, SEND])
def test_timeout_is_unavailable(make_gateway: MakeGateway, fake: FakeWeChatServer, path: str) -> None:
    gateway = make_gateway(timeout=0.2)
    fake.state.fail(path, delay=0.6)
    with pytest.raises(WeChatUnavailable, match="timed out"):
        if path == LOGIN:
            gateway.code_to_session("alice.1")
        else:
            gateway.send_subscribe_message("openid-1", "tmpl-1", {"thing1": "hi"})


def test_connection_refused_is_unavailable(redis_client: redis.Redis, key_prefix: str) -> None:
    with FakeWeChatServer() as gone:
        base_url = gone.base_url
    gateway = WeChatGateway(DEFAULT_APPID, DEFAULT_SECRET, base_url, redis_client, key_prefix=key_prefix)
    try:
        with pytest.raises(WeChatUnavailable, match="network error"):
            gateway.code_to_session("alice.1")
    finally:
        gateway.close()


# -- the calls --


def test_subscribe_message_shape(gateway: WeChatGateway, fake: FakeWeChatServer) -> None:
    answer = gateway.send_subscribe_message(
        "openid-1",
        "tmpl-1",
        {"thing1": "巡逻提醒", "time2": {"value": "2024-05-01 08:00"}},
        page="pages/index",
    )
    assert answer["errcode"] == 0
    assert isinstance(answer["msgid"], int)
    (sent,) = fake.state.requests(SEND)
    assert sent.json == {
        "touser": "openid-1",
        "template_id": "tmpl-1",
        "page": "pages/index",
        "data": {"thing1": {"value": "巡逻提醒"}, "time2": {"value": "2024-05-01 08:00"}},
        "miniprogram_state": "developer",
        "lang": "zh_CN",
    }


def test_subscribe_message_bad_field(gateway: WeChatGateway) -> None:
    with pytest.raises(WeChatError) as caught:
        gateway.send_subscribe_message("openid-1", "tmpl-1", {"thing1": "x" * 21})
    assert caught.value.errcode == 47003
    assert "thing1" in caught.value.errmsg


@pytest.mark.parametrize(
    ("content", "suggest", "label"),
    [("这条有风险", "risky", 20006), ("needs review", "review", 21000), ("平安无事", "pass", 100)],
)
def test_msg_sec_check(
    gateway: WeChatGateway, fake: FakeWeChatServer, content: str, suggest: str, label: int
) -> None:
    answer = gateway.msg_sec_check("openid-1", content, 3)
    assert answer["result"] == {"suggest": suggest, "label": label}
    assert answer["trace_id"]
    assert fake.state.requests(MSG_CHECK)[0].json == {
        "version": 2,
        "openid": "openid-1",
        "scene": 3,
        "content": content,
    }


def test_media_check_async(gateway: WeChatGateway, fake: FakeWeChatServer) -> None:
    answer = gateway.media_check_async("openid-1", "https://example.com/a.jpg", 2, 1)
    (check,) = fake.state.media_checks()
    assert answer["trace_id"] == check["trace_id"]
    assert check["media_url"] == "https://example.com/a.jpg"


def test_phone_number(gateway: WeChatGateway) -> None:
    info = gateway.get_phone_number("phone-13812345678")
    assert info["purePhoneNumber"] == info["phoneNumber"] == "13812345678"
    assert info["countryCode"] == 86
    assert info["watermark"]["appid"] == DEFAULT_APPID

    other = gateway.get_phone_number("some-code")["purePhoneNumber"]
    assert other == gateway.get_phone_number("some-code")["purePhoneNumber"]
    assert len(other) == 11
    assert other.startswith("1")

    with pytest.raises(WeChatError) as caught:
        gateway.get_phone_number("invalid-1")
    assert caught.value.errcode == 40029


def test_secrets_never_logged(
    gateway: WeChatGateway, fake: FakeWeChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="yijing.wechat")
    session = gateway.code_to_session("alice.1")
    gateway.msg_sec_check(session["openid"], "hello", 1)
    fake.state.invalidate_tokens()
    gateway.msg_sec_check(session["openid"], "hello", 1)
    fake.state.fail(LOGIN, http_status=503)
    with pytest.raises(WeChatUnavailable):
        gateway.code_to_session("alice.2")
    assert caplog.records
    tokens = [r.args["access_token"] for r in fake.state.requests(MSG_CHECK)]
    for secret in [DEFAULT_SECRET, session["session_key"], *tokens]:
        assert secret not in caplog.text


# -- the fake's HTTP control API --


def test_fake_control_api(fake: FakeWeChatServer) -> None:
    base = fake.base_url
    with requests.Session() as http:
        fail = {"path": LOGIN, "errcode": 40029, "errmsg": "forced", "times": 2}
        assert http.post(f"{base}/__fake__/fail", json=fail, timeout=2).json() == {"ok": True}
        params = {"appid": DEFAULT_APPID, "secret": DEFAULT_SECRET, "grant_type": "authorization_code"}
        for _ in range(2):
            answer = http.get(f"{base}{LOGIN}", params={**params, "js_code": "a.1"}, timeout=2).json()
            assert answer["errcode"] == 40029
            assert answer["errmsg"].startswith("forced rid: ")
        assert "openid" in http.get(f"{base}{LOGIN}", params={**params, "js_code": "a.1"}, timeout=2).json()

        recorded = http.get(f"{base}/__fake__/requests", params={"path": LOGIN}, timeout=2).json()
        assert [r["args"]["js_code"] for r in recorded] == ["a.1"] * 3

        token = http.post(
            f"{base}{STABLE_TOKEN}",
            json={"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET},
            timeout=2,
        ).json()
        assert token["expires_in"] == 7200
        http.post(f"{base}/__fake__/expire-tokens", timeout=2)
        body = {"version": 2, "openid": "o1", "scene": 1, "content": "x"}
        check = http.post(
            f"{base}{MSG_CHECK}", params={"access_token": token["access_token"]}, json=body, timeout=2
        )
        assert check.json()["errcode"] == 42001
        check = http.post(f"{base}{MSG_CHECK}", params={"access_token": "nope"}, json=body, timeout=2)
        assert check.json()["errcode"] == 40001

        assert http.post(f"{base}/__fake__/reset", timeout=2).json() == {"ok": True}
        assert http.get(f"{base}/__fake__/requests", timeout=2).json() == []


def test_a_held_token_is_read_once_and_still_refreshed_when_refused(
    gateway: WeChatGateway, fake: FakeWeChatServer, redis_client: redis.Redis, key_prefix: str
) -> None:
    token = gateway.access_token()
    key = f"{key_prefix}wx:{DEFAULT_APPID}_access_token"
    with gateway.token_held():
        assert gateway.send_subscribe_message("openid-1", "tmpl-1", {"thing1": "hi"})["errcode"] == 0
        redis_client.delete(key)  # gone from Redis: the held one still serves this batch
        assert gateway.send_subscribe_message("openid-2", "tmpl-1", {"thing1": "hi"})["errcode"] == 0
        fake.state.invalidate_tokens()
        assert gateway.send_subscribe_message("openid-3", "tmpl-1", {"thing1": "hi"})["errcode"] == 0
        fresh = gateway.access_token()
        assert gateway.send_subscribe_message("openid-4", "tmpl-1", {"thing1": "hi"})["errcode"] == 0
    used = [r.args["access_token"] for r in fake.state.requests(SEND)]
    assert used == [token, token, token, fresh, fresh] and fresh != token
    assert token_fetches(fake) == 2  # the first token, and the refresh after the refusal


# -- HTTP session: the environment is read once --

PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "requests_ca_bundle",
    "curl_ca_bundle",
)


@pytest.fixture
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_the_proxies_and_ca_bundle_of_the_environment_are_honoured(
    clean_proxy_environment: pytest.MonkeyPatch, redis_client: redis.Redis, key_prefix: str
) -> None:
    env = clean_proxy_environment
    env.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    env.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-ca.pem")

    def make(base_url: str) -> WeChatGateway:
        return WeChatGateway(DEFAULT_APPID, DEFAULT_SECRET, base_url, redis_client, key_prefix=key_prefix)

    proxied = make("https://api.weixin.qq.com")
    assert isinstance(proxied._http, urllib3.ProxyManager)
    assert proxied._http.proxy.url == "http://proxy.example:3128"
    assert proxied._http.connection_pool_kw["ca_certs"] == "/etc/ssl/our-ca.pem"
    env.setenv("NO_PROXY", "api.weixin.qq.com")
    direct = make("https://api.weixin.qq.com")
    assert not isinstance(direct._http, urllib3.ProxyManager)
    # Read when the gateway was made, not at each call.
    env.setenv("HTTPS_PROXY", "http://elsewhere.example:8080")
    assert proxied._http.proxy.url == "http://proxy.example:3128"
    assert not isinstance(direct._http, urllib3.ProxyManager)


def test_a_call_does_not_look_at_the_environment(
    gateway: WeChatGateway, fake: FakeWeChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def looked(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("requests read the environment for a call")

    monkeypatch.setattr(requests.utils, "get_environ_proxies", looked)
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", looked)
    monkeypatch.setattr(requests.sessions, "get_netrc_auth", looked)
    assert gateway.send_subscribe_message("o-someone", "DEMO-tmpl", {"thing1": "巡逻提醒"})["errcode"] == 0
    assert gateway.code_to_session("alice.1")["openid"] == fake_openid("alice", DEFAULT_APPID)
