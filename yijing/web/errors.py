"""One JSON error shape for every error: ``{"error": {"code", "message", "fields"}}``."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, jsonify
from flask_limiter.errors import RateLimitExceeded
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from yijing.errors import DomainError
from yijing.extensions import db

log = logging.getLogger(__name__)

HTTP_MESSAGES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "请求格式有误，请检查后重试"),
    401: ("unauthorized", "请先登录"),
    403: ("forbidden", "您没有权限进行此操作"),
    404: ("not_found", "请求的地址不存在"),
    405: ("method_not_allowed", "该地址不支持此请求方法"),
    409: ("conflict", "操作与当前状态冲突，请刷新后重试"),
    413: ("payload_too_large", "提交的内容过大"),
    415: ("unsupported_media_type", "不支持的内容类型，请以 JSON 提交"),
    422: ("invalid_input", "提交的内容有误，请按提示修改"),
    429: ("rate_limited", "操作太频繁，请稍后再试"),
    500: ("internal_error", "服务器出错了，我们会尽快处理，请稍后再试"),
    503: ("service_unavailable", "服务暂时不可用，请稍后再试"),
}

FIELD_MESSAGES = {
    "Missing data for required field.": "必填",
    "Field may not be null.": "不能为空",
    "Not a valid string.": "应为文本",
    "Not a valid utf-8 string.": "应为 UTF-8 文本",
    "Not a valid integer.": "应为整数",
    "Not a valid number.": "应为数字",
    "Number too large.": "数值过大",
    "Special numeric values (nan or infinity) are not permitted.": "不能是 NaN 或 Infinity",
    "Not a valid boolean.": "应为是或否（true/false）",
    "Not a valid datetime.": "应为带时区的 ISO 8601 时间",
    "Not a valid aware datetime.": "应为带时区的 ISO 8601 时间，如 2026-05-01T08:00:00+08:00",
    "Not a valid naive datetime.": "应为不带时区的时间",
    "Not a valid date.": "应为日期（YYYY-MM-DD）",
    "Not a valid time.": "应为时间（HH:MM:SS）",
    "Not a valid period of time.": "应为时长",
    "Not a valid list.": "应为列表",
    "Not a valid tuple.": "应为数组",
    "Not a valid mapping type.": "应为对象",
    "Not a valid UUID.": "应为 UUID",
    "Not a valid URL.": "应为网址",
    "Not a valid email address.": "应为电子邮箱地址",
    "Unknown field.": "不认识的字段",
    "Invalid value.": "取值无效",
    "Invalid input.": "取值无效",
    "Invalid type.": "类型不对",
    "Invalid input type.": "类型不对：请求体应为 JSON 对象",
    "String does not match expected pattern.": "格式不对",
    "Invalid JSON body.": "请求体不是有效的 JSON",
}

# Marshmallow's messages with values in them: (English pattern, Chinese template).
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^Must be one of: (.*)\.$"), "取值不在允许范围内：{0}"),
    (re.compile(r"^Length must be between (\S+) and (\S+)\.$"), "长度应在 {0} 到 {1} 之间"),
    (re.compile(r"^Length must be (\S+)\.$"), "长度应为 {0}"),
    (re.compile(r"^Shorter than minimum length (\S+)\.$"), "长度不能少于 {0}"),
    (re.compile(r"^Longer than maximum length (\S+)\.$"), "长度不能超过 {0}"),
    (
        re.compile(
            r"^Must be (greater than or equal to|greater than) (\S+)"
            r" and (less than or equal to|less than) (\S+)\.$"
        ),
        "数值应{0}{1}且{2}{3}",
    ),
    (
        re.compile(
            r"^Must be (greater than or equal to|greater than|less than or equal to|less than) (\S+)\.$"
        ),
        "数值应{0}{1}",
    ),
    (re.compile(r"^Must be equal to (.*)\.$"), "应等于 {0}"),
    (re.compile(r"^\"?(.*?)\"? cannot be formatted as an? (.*)\.$"), "不能格式化为所需类型"),
    (re.compile(r"^Not a valid (.*)\.$"), "格式不对"),
    (re.compile(r"^One or more of the choices you made was (not )?in: (.*)\.$"), "所选的值不在允许范围内"),
]
_COMPARISONS = {
    "greater than or equal to": "不小于 ",
    "greater than": "大于 ",
    "less than or equal to": "不大于 ",
    "less than": "小于 ",
}


def _is_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def translate_message(message: str) -> str:
    """One marshmallow/webargs message in Chinese (messages already in Chinese are kept)."""
    if message in FIELD_MESSAGES:
        return FIELD_MESSAGES[message]
    if _is_chinese(message):
        return message
    for pattern, template in _PATTERNS:
        match = pattern.match(message)
        if match:
            return template.format(*(_COMPARISONS.get(g, g) for g in match.groups(default="")))
    return "取值无效"


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def error_response(status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> Response:
    response = jsonify(error_body(code, message, fields))
    response.status_code = status
    return response


def _translate(messages: Any) -> Any:
    """Marshmallow's English messages → Chinese, keeping the nesting of fields."""
    if isinstance(messages, dict):
        return {str(key): _translate(value) for key, value in messages.items()}
    if isinstance(messages, list | tuple):
        return [_translate(m) for m in messages]
    if isinstance(messages, str):
        return translate_message(messages)
    return messages


def _leaves(fields: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted field path, first message) of every field with an error, in order."""
    if isinstance(fields, dict):
        found: list[tuple[str, str]] = []
        for key, value in fields.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            found.extend(_leaves(value, name))
        return found
    if isinstance(fields, list) and fields and all(isinstance(m, str) for m in fields):
        return [(prefix or "请求体", fields[0])]
    if isinstance(fields, list):
        return [leaf for item in fields for leaf in _leaves(item, prefix)]
    return [(prefix or "请求体", str(fields))]


def naming_fields(message: str, fields: dict[str, Any], limit: int = 3) -> str:
    """``message`` followed by the fields at fault: "提交的内容有误…：title：必填；lat：应为数字"."""
    leaves = _leaves(fields)
    if not leaves:
        return message
    shown = "；".join(f"{name}：{problem}" for name, problem in leaves[:limit])
    more = f" 等 {len(leaves)} 处" if len(leaves) > limit else ""
    return f"{message}：{shown}{more}"


def _flatten_locations(messages: dict[str, Any]) -> dict[str, Any]:
    """webargs nests errors by location (``json``, ``query``…); the API shows fields only."""
    fields: dict[str, Any] = {}
    for location, errors in messages.items():
        if isinstance(errors, dict):
            fields.update(errors)
        else:
            fields[location] = errors
    return fields


def handle_domain_error(exc: DomainError) -> Response:
    db.session.rollback()
    message = exc.message
    if exc.fields and message == HTTP_MESSAGES[422][1]:  # the generic text: say which fields
        message = naming_fields(message, exc.fields)
    return error_response(exc.status, exc.code, message, exc.fields)


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    code, message = HTTP_MESSAGES.get(status, ("http_error", exc.description or "请求失败"))
    fields: dict[str, Any] = {}
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    if messages:
        fields = _translate(_flatten_locations(messages))
        if status == 400 and "Invalid JSON body." in str(messages):
            reason = data.get("reason") if isinstance(data.get("reason"), str) else None
            code, fields = "invalid_json", {}
            message = "请求体不是有效的 JSON，请检查格式" + (
                f"（{reason}）" if reason and _is_chinese(reason) else ""
            )
        elif status == 404:
            message = naming_fields("请求的地址不存在", fields)
        else:
            message = naming_fields(message, fields)
    elif status == 400 and "JSON" in (exc.description or ""):
        code, message = "invalid_json", "请求体不是有效的 JSON，请检查格式"
    response = error_response(status, code, message, fields)
    if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def handle_rate_limit(exc: RateLimitExceeded) -> Response:
    from yijing.web.ratelimit import describe

    rule = describe(exc.limit.limit) if getattr(exc, "limit", None) else str(exc.description)
    return error_response(429, "rate_limited", f"操作太频繁，请稍后再试（{rule}）")


def handle_integrity_error(exc: IntegrityError) -> Response:
    db.session.rollback()
    log.warning("integrity error", extra={"error": str(exc.orig)})
    return error_response(409, "conflict", "数据与已有记录冲突，请刷新后重试")


def handle_unexpected(exc: Exception) -> Response:
    db.session.rollback()
    log.exception("unhandled error")
    return error_response(500, *HTTP_MESSAGES[500])


def register_error_handlers(app: Flask) -> None:
    """Registered after flask-smorest so these replace its default HTTP error handler."""
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(RateLimitExceeded, handle_rate_limit)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(IntegrityError, handle_integrity_error)
    app.register_error_handler(Exception, handle_unexpected)
