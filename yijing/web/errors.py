"""One JSON error shape for every error: ``{"error": {"code", "message", "fields"}}``."""

from __future__ import annotations

import logging
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
    "Not a valid integer.": "应为整数",
    "Not a valid number.": "应为数字",
    "Not a valid boolean.": "应为是或否",
    "Not a valid datetime.": "应为带时区的 ISO 8601 时间",
    "Not a valid date.": "应为日期（YYYY-MM-DD）",
    "Not a valid list.": "应为列表",
    "Not a valid mapping type.": "应为对象",
    "Unknown field.": "不认识的字段",
    "Invalid value.": "取值无效",
}


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def error_response(status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> Response:
    response = jsonify(error_body(code, message, fields))
    response.status_code = status
    return response


def _translate(messages: Any) -> Any:
    """Marshmallow's English messages → Chinese, keeping the nesting of fields."""
    if isinstance(messages, dict):
        return {key: _translate(value) for key, value in messages.items()}
    if isinstance(messages, list):
        return [_translate(m) for m in messages]
    if isinstance(messages, str):
        if messages in FIELD_MESSAGES:
            return FIELD_MESSAGES[messages]
        if messages.startswith("Must be one of"):
            return "取值不在允许范围内：" + messages.removeprefix("Must be one of: ").rstrip(".")
        if (
            messages.startswith("Length must be")
            or messages.startswith("Shorter than")
            or messages.startswith("Longer than")
        ):
            return "长度不符合要求（" + messages + "）"
        if messages.startswith("Must be greater") or messages.startswith("Must be less"):
            return "数值超出范围（" + messages + "）"
    return messages


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
    return error_response(exc.status, exc.code, exc.message, exc.fields)


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    code, message = HTTP_MESSAGES.get(status, ("http_error", exc.description or "请求失败"))
    fields: dict[str, Any] = {}
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    if messages:
        fields = _translate(_flatten_locations(messages))
        if status == 400 and "Invalid JSON body." in str(messages):
            code, message, fields = "invalid_json", "请求体不是有效的 JSON，请检查格式", {}
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
