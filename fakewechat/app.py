"""A Flask app that answers like api.weixin.qq.com (the subset the backend uses), plus a control API."""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import time
from collections.abc import Callable
from functools import wraps
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, jsonify, request

from fakewechat.state import FakeWeChatState, fake_openid, fake_unionid, rid, user_name_of_code

ERRMSGS: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code,",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    40163: "code been used,",
    40226: "high risk user, login blocked,",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code,",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    47001: "data format error",
    47003: "argument invalid!",
}

# Subscribe-message value limits per field type (characters), from WeChat's documentation.
FIELD_LIMITS: dict[str, int] = {
    "thing": 20,
    "phrase": 5,
    "name": 10,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "character_string": 32,
    "phone_number": 17,
    "car_number": 8,
    "amount": 32,
}
MINIPROGRAM_STATES = frozenset({"developer", "trial", "formal"})
CONTROL_PREFIX = "/__fake__/"

View = Callable[..., Any]


def error(errcode: int, errmsg: str | None = None, status: int = 200) -> tuple[Response, int]:
    """A WeChat error answer; like WeChat, the errmsg ends with `` rid: ...``."""
    text = errmsg or ERRMSGS.get(errcode, "error")
    return jsonify({"errcode": errcode, "errmsg": f"{text} rid: {rid()}"}), status


def _json_body() -> dict[str, Any] | None:
    body = request.get_json(force=True, silent=True)
    return body if isinstance(body, dict) else None


def _check_app(state: FakeWeChatState, appid: str | None, secret: str | None) -> tuple[Response, int] | None:
    if not appid:
        return error(41002)
    if appid not in state.apps:
        return error(40013)
    if not secret:
        return error(41004)
    if state.apps[appid] != secret:
        return error(40125)
    return None


def _deterministic_phone(code: str) -> str:
    return "13" + str(int(hashlib.sha256(code.encode()).hexdigest(), 16) % 10**9).zfill(9)


def _text_verdict(content: str) -> tuple[str, int]:
    if "风险" in content or "risky" in content:
        return "risky", 20006
    if "待审" in content or "review" in content:
        return "review", 21000
    return "pass", 100


def create_fake_app(state: FakeWeChatState | None = None) -> Flask:
    """Build the fake; ``app.extensions["fakewechat"]`` holds its :class:`FakeWeChatState`."""
    state = state or FakeWeChatState()
    app = Flask(__name__)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["fakewechat"] = state

    def with_token(view: View) -> View:
        @wraps(view)
        def wrapper() -> Any:
            appid, errcode = state.check_token(request.args.get("access_token"))
            if appid is None:
                return error(errcode)
            return view(appid)

        return wrapper

    @app.before_request
    def record_and_inject() -> Any:
        if request.path.startswith(CONTROL_PREFIX):
            return None
        body = request.get_json(force=True, silent=True) if request.get_data() else None
        state.record(request.method, request.path, request.args.to_dict(), body)
        failure = state.take_failure(request.path)
        if failure is None:
            return None
        if failure.delay:
            time.sleep(failure.delay)
        if failure.http_status:
            phrase = HTTPStatus(failure.http_status).phrase
            html = f"<html><body><h1>{failure.http_status} {phrase}</h1></body></html>"
            return Response(html, status=failure.http_status, mimetype="text/html")
        if failure.errcode is not None:
            return error(failure.errcode, failure.errmsg)
        return None

    # -- access tokens --

    @app.get("/cgi-bin/token")
    def token() -> Any:
        args = request.args
        if args.get("grant_type") != "client_credential":
            return error(40002)
        if bad := _check_app(state, args.get("appid"), args.get("secret")):
            return bad
        access_token, expires_in = state.issue_token(args["appid"], stable=False)
        return jsonify({"access_token": access_token, "expires_in": expires_in})

    @app.post("/cgi-bin/stable_token")
    def stable_token() -> Any:
        body = _json_body()
        if body is None:
            return error(47001)
        if body.get("grant_type") != "client_credential":
            return error(40002)
        if bad := _check_app(state, body.get("appid"), body.get("secret")):
            return bad
        access_token, expires_in = state.issue_token(
            body["appid"], stable=True, force_refresh=bool(body.get("force_refresh"))
        )
        return jsonify({"access_token": access_token, "expires_in": expires_in})

    # -- login and phone number --

    @app.get("/sns/jscode2session")
    def jscode2session() -> Any:
        args = request.args
        if bad := _check_app(state, args.get("appid"), args.get("secret")):
            return bad
        if args.get("grant_type") != "authorization_code":
            return error(40002)
        js_code = args.get("js_code", "")
        if not js_code:
            return error(41008)
        if js_code.startswith("invalid"):
            return error(40029)
        if js_code.startswith("blocked"):
            return error(40226)
        if not state.use_code(js_code):
            return error(40163)
        name = user_name_of_code(js_code)
        openid = fake_openid(name, args["appid"])
        answer = {"session_key": state.new_session_key(openid), "openid": openid}
        if state.with_unionid:
            answer["unionid"] = fake_unionid(name)
        return jsonify(answer)

    @app.post("/wxa/business/getuserphonenumber")
    @with_token
    def getuserphonenumber(appid: str) -> Any:
        body = _json_body()
        code = body.get("code") if body else None
        if not code or not isinstance(code, str):
            return error(47001)
        if code.startswith("invalid"):
            return error(40029)
        match = re.fullmatch(r"phone-(\d+)", code)
        phone = match.group(1) if match else _deterministic_phone(code)
        info = {
            "phoneNumber": phone,
            "purePhoneNumber": phone,
            "countryCode": 86,
            "watermark": {"timestamp": int(time.time()), "appid": appid},
        }
        return jsonify({"errcode": 0, "errmsg": "ok", "phone_info": info})

    # -- subscribe messages --

    @app.post("/cgi-bin/message/subscribe/send")
    @with_token
    def subscribe_send(appid: str) -> Any:
        body = _json_body()
        if body is None:
            return error(47001)
        if not body.get("touser"):
            return error(40003)
        if not body.get("template_id"):
            return error(40037)
        state_name = body.get("miniprogram_state", "formal")
        if state_name not in MINIPROGRAM_STATES:
            return error(47003, f"argument invalid! miniprogram_state {state_name!r} is invalid")
        data = body.get("data")
        if not isinstance(data, dict) or not data:
            return error(47003, "argument invalid! data is empty or not an object")
        for name, item in data.items():
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                return error(47003, f"argument invalid! data.{name}.value is missing or not a string")
            if not item["value"]:
                return error(47003, f"argument invalid! data.{name}.value is empty")
            limit = FIELD_LIMITS.get(name.rstrip("0123456789"))
            if limit is not None and len(item["value"]) > limit:
                return error(47003, f"argument invalid! data.{name}.value exceeds limit {limit}")
        return jsonify({"errcode": 0, "errmsg": "ok", "msgid": random.randint(10**18, 2**63 - 1)})

    # -- content security (v2) --

    @app.post("/wxa/msg_sec_check")
    @with_token
    def msg_sec_check(appid: str) -> Any:
        body = _json_body()
        if body is None or str(body.get("version")) != "2" or not body.get("openid"):
            return error(47001)
        if body.get("scene") not in (1, 2, 3, 4) or not isinstance(body.get("content"), str):
            return error(47001)
        suggest, label = _text_verdict(body["content"])
        detail = [
            {"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90},
            {"strategy": "keyword", "errcode": 0, "suggest": suggest, "label": label, "level": 20},
        ]
        return jsonify(
            {
                "errcode": 0,
                "errmsg": "ok",
                "result": {"suggest": suggest, "label": label},
                "detail": detail,
                "trace_id": secrets.token_hex(12),
            }
        )

    @app.post("/wxa/media_check_async")
    @with_token
    def media_check_async(appid: str) -> Any:
        body = _json_body()
        if body is None or str(body.get("version")) != "2" or not body.get("openid"):
            return error(47001)
        if not body.get("media_url") or body.get("media_type") not in (1, 2):
            return error(47001)
        if body.get("scene") not in (1, 2, 3, 4):
            return error(47001)
        trace_id = secrets.token_hex(12)
        state.add_media_check(
            {
                "trace_id": trace_id,
                "appid": appid,
                "media_url": body["media_url"],
                "media_type": body["media_type"],
                "openid": body["openid"],
                "scene": body["scene"],
            }
        )
        return jsonify({"errcode": 0, "errmsg": "ok", "trace_id": trace_id})

    # -- control API --

    @app.post(CONTROL_PREFIX + "reset")
    def control_reset() -> Any:
        state.reset()
        return jsonify({"ok": True})

    @app.get(CONTROL_PREFIX + "requests")
    def control_requests() -> Any:
        return jsonify([r.to_dict() for r in state.requests(request.args.get("path"))])

    @app.post(CONTROL_PREFIX + "fail")
    def control_fail() -> Any:
        body = _json_body() or {}
        if not isinstance(body.get("path"), str):
            return jsonify({"ok": False, "error": "path is required"}), 400
        try:
            state.fail(
                body["path"],
                errcode=body.get("errcode"),
                errmsg=body.get("errmsg"),
                http_status=body.get("http_status"),
                delay=body.get("delay"),
                times=int(body.get("times") or 1),
            )
        except (TypeError, ValueError) as exc:
            return jsonify({"ok": False, "error": str(exc)}), 400
        return jsonify({"ok": True})

    @app.post(CONTROL_PREFIX + "expire-tokens")
    def control_expire_tokens() -> Any:
        state.expire_tokens()
        return jsonify({"ok": True})

    @app.post(CONTROL_PREFIX + "invalidate-tokens")
    def control_invalidate_tokens() -> Any:
        state.invalidate_tokens()
        return jsonify({"ok": True})

    @app.get(CONTROL_PREFIX + "session-key")
    def control_session_key() -> Any:
        openid = request.args.get("openid", "")
        return jsonify({"openid": openid, "session_key": state.session_key_for(openid)})

    @app.get(CONTROL_PREFIX + "media-checks")
    def control_media_checks() -> Any:
        return jsonify(state.media_checks())

    return app
