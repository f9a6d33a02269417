"""The OpenAPI document as the contract: every operation lists each error status it can answer,
with the real error shape and the machine codes behind each status.

- :class:`Blueprint` is flask-smorest's, with the strict parser of :mod:`yijing.web.inputs` and
  64-bit bounds on the integers of every arguments schema. Every blueprint of the API uses it.
- :class:`ErrorResponsesPlugin` (an apispec plugin) replaces the library's default error
  responses by ``ErrorResponse`` answers, per status, for each operation: the statuses every
  request can meet (401 without a token, 415 for a body that is not JSON, 422 for arguments,
  503 …) and the domain errors its view can raise, found by reading the view and the functions
  of ``yijing`` it calls (``raise Conflict(…, code="task_full")`` → 409 ``task_full``).
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import types
from collections.abc import Callable, Iterable
from typing import Any

import flask_smorest
import marshmallow as ma
from apispec import BasePlugin
from flask import Flask, request
from werkzeug.datastructures import MultiDict

from yijing import errors as domain_errors
from yijing.web import auth, inputs

ERROR_SCHEMA_NAME = "ErrorResponse"
_OURS = ("yijing.", "workers.")

# Statuses any request may meet, by what the operation has; code → what it means.
GENERIC: dict[int, dict[str, str]] = {
    400: {"invalid_json": "请求体不是有效的 JSON（或不是 UTF-8、嵌套过深、含 NaN）"},
    401: {
        "missing_token": "未带登录凭证",
        "invalid_token": "登录凭证无效",
        "token_expired": "登录已过期",
    },
    403: {"forbidden": "无权进行此操作"},
    404: {"not_found": "地址或编号不存在（编号超出 64 位整数范围也是 404）"},
    409: {"conflict": "与已有数据冲突"},
    413: {"payload_too_large": "提交的内容过大"},
    415: {"unsupported_media_type": "请求体不是 JSON（Content-Type 须为 application/json）"},
    422: {"invalid_input": "参数或请求体有误，fields 按字段给出中文说明"},
    429: {"rate_limited": "操作太频繁，响应头 Retry-After 给出等待秒数"},
    503: {"service_unavailable": "数据库或 Redis 暂时不可用，响应头 Retry-After 给出建议的重试秒数"},
}
STATUS_TITLES = {
    400: "请求格式有误",
    401: "未登录或登录失效",
    403: "无权访问",
    404: "不存在",
    409: "与当前状态冲突",
    413: "内容过大",
    415: "不支持的内容类型",
    422: "提交的内容有误",
    429: "操作太频繁",
    503: "服务暂时不可用",
}
PAGINATION_CODES = {"invalid_cursor": "分页游标无效（伪造、损坏或与列表不符），请从第一页重新加载"}


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the API's parser and bounded integers."""

    ARGUMENTS_PARSER = inputs.PARSER

    def arguments(
        self, schema: Any, *, fast: Callable[[MultiDict[str, str]], Any] | None = None, **kwargs: Any
    ) -> Callable[..., Any]:
        """flask-smorest's, and with ``fast`` (query arguments only) a hot path: ``fast(request.args)``
        parses the common, plainly written query by hand into what the schema would load, or answers
        None for anything else, which the schema parses as ever (the document is the schema's)."""
        instance = schema() if isinstance(schema, type) else schema
        inputs.bound_integers(instance)
        if kwargs.get("location", "json") == "json" and "required" not in kwargs:
            # A body is required when one of its fields is; otherwise it may be left out.
            kwargs["required"] = any(f.required for f in instance.fields.values() if not f.dump_only)
        decorate = super().arguments(instance, **kwargs)
        if fast is None:
            return decorate
        if kwargs.get("location") != "query" or {"as_kwargs", "arg_name"} & kwargs.keys():
            raise ValueError("a fast path parses the query string into the view's last argument only")

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            parsed = decorate(func)

            @functools.wraps(parsed)
            def wrapper(*args: Any, **kw: Any) -> Any:
                values = fast(request.args)
                return parsed(*args, **kw) if values is None else func(*args, values, **kw)

            return wrapper

        return decorator


# -- which domain errors can a view raise ------------------------------------------------------------


def _error_classes() -> dict[type, tuple[int, str, str]]:
    found = {}
    for value in vars(domain_errors).values():
        if isinstance(value, type) and issubclass(value, domain_errors.DomainError):
            found[value] = (value.status, value.code, value.message)
    return found


def _constant(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values) or None
    return None


def _resolve(node: ast.AST, namespace: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, namespace)
        if isinstance(owner, types.ModuleType | type):
            return getattr(owner, node.attr, None)
    return None


@functools.cache
def _errors_of(fn: Callable[..., Any], depth: int) -> frozenset[tuple[int, str, str]]:
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return frozenset()
    namespace = dict(getattr(fn, "__globals__", {}))
    classes = _error_classes()
    found: set[tuple[int, str, str]] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _resolve(node.func, namespace)
        if isinstance(target, type) and target in classes:
            status, code, message = classes[target]
            keywords = {k.arg: k.value for k in node.keywords}
            if "status" in keywords and isinstance(keywords["status"], ast.Constant):
                status = int(keywords["status"].value)
            code = _constant(keywords.get("code")) or code
            message = (
                _constant(keywords.get("message"))
                or _constant(node.args[0] if node.args else None)
                or message
            )
            found.add((status, code, message))
        elif (
            depth > 0 and inspect.isfunction(target) and target.__module__.startswith(("yijing.", "workers."))
        ):
            found |= _errors_of(inspect.unwrap(target), depth - 1)
    return frozenset(found)


@functools.cache
def raised_errors(view: Callable[..., Any], depth: int = 4) -> frozenset[tuple[int, str, str]]:
    """(status, code, message) of the domain errors ``view`` and what it calls can raise."""
    return _errors_of(inspect.unwrap(view), depth)


@functools.cache
def _is_rate_limited(view: Callable[..., Any]) -> bool:
    try:
        return "@limiter.limit" in inspect.getsource(inspect.unwrap(view))
    except (OSError, TypeError):
        return False


# -- the document -----------------------------------------------------------------------------------


def _describe(status: int, codes: dict[str, str]) -> dict[str, Any]:
    lines = [f"- `{code}`：{meaning}" for code, meaning in sorted(codes.items())]
    response: dict[str, Any] = {
        "description": f"{STATUS_TITLES.get(status, '错误')}。error.code 可能为：\n" + "\n".join(lines),
        "content": {"application/json": {"schema": ERROR_SCHEMA_NAME}},
        "x-error-codes": sorted(codes),
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {"description": "建议等待的秒数", "schema": {"type": "integer", "minimum": 0}}
        }
    return response


def error_statuses(
    operation: dict[str, Any],
    view: Callable[..., Any] | None,
    method: str,
    has_path_params: bool,
    path: str | None = None,
) -> dict[int, dict[str, str]]:
    """Each error status the operation can answer → its codes and what they mean."""
    statuses: dict[int, dict[str, str]] = {503: dict(GENERIC[503])}

    def add(status: int, codes: dict[str, str]) -> None:
        statuses.setdefault(status, {}).update(codes)

    security = operation.get("security") or []
    if security:
        optional = {} in security
        add(401, {k: v for k, v in GENERIC[401].items() if not (optional and k == "missing_token")})
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "query" for p in parameters if isinstance(p, dict)):
        add(422, GENERIC[422])
    if any(isinstance(p, dict) and p.get("name") == "cursor" for p in parameters):
        add(422, PAGINATION_CODES)
    body = operation.get("requestBody")
    if body:
        add(400, GENERIC[400])
        add(413, GENERIC[413])
        add(422, GENERIC[422])
        if "application/json" in body.get("content", {}):
            add(415, GENERIC[415])
    if has_path_params:
        add(404, GENERIC[404])
    if method in {"post", "put", "patch", "delete"}:
        add(409, GENERIC[409])
    if getattr(view, "accepts_idempotency_key", False):
        add(422, GENERIC[422])
        add(422, {"idempotency_key_reused": "同一个 Idempotency-Key 配了另一内容的请求"})
    if view is not None:
        if _is_rate_limited(view):
            add(429, GENERIC[429])
        # Sorted: a code raised with two messages is described the same in every process.
        for status, code, message in sorted(raised_errors(view)):
            add(status, {code: message})
    for extra in getattr(view, "_extra_errors", ()):  # declared with :func:`errors`
        add(extra[0], {extra[1]: extra[2]})
    if security and path is not None:
        audience = auth.audience_of(path)
        if audience is not None:
            status, code, message = auth.STAFF_ONLY if audience == "staff" else auth.RESIDENT_ONLY
            add(status, {code: message})
    return statuses


def errors(*declared: tuple[int, str, str]) -> Callable[[Any], Any]:
    """Declare errors the reader cannot find in the code: ``@errors((403, "staff_only", "…"))``."""

    def decorator(fn: Any) -> Any:
        fn._extra_errors = (*getattr(fn, "_extra_errors", ()), *declared)
        return fn

    return decorator


IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "重试同一请求时带上同一个键（1 到 128 个可见字符）：服务端只执行一次，"
    "重试得到第一次的结果；同一个键配另一内容的请求答 422 idempotency_key_reused",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}


class ErrorResponsesPlugin(BasePlugin):
    """Every operation: the error statuses it can answer, in the API's one error shape."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.app = app

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        view = self.app.view_functions.get(rule.endpoint) if rule is not None else None
        has_path_params = bool(rule is not None and rule.arguments)
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict) or method == "parameters":
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("default", None)
            for status in [s for s in responses if str(s).isdigit() and int(s) >= 400]:
                responses.pop(status)
            for status, codes in sorted(
                error_statuses(operation, view, method, has_path_params, rule.rule if rule else None).items()
            ):
                responses[str(status)] = _describe(status, codes)
            if getattr(view, "accepts_idempotency_key", False):
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY_PARAMETER)


def register_error_schema(spec: Any, schema: type[ma.Schema]) -> None:
    spec.components.schema(ERROR_SCHEMA_NAME, schema=schema)


def iter_operations(spec: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation
