"""The input contract, in one place: whatever a client sends, it gets a 4xx in the error shape.

- Path converters: an ``int`` beyond a PostgreSQL ``bigint`` is a 404 naming the parameter (no
  such row can exist); a string with a NUL is a 404 too.
- One webargs parser for every ``@blp.arguments``: a body whose Content-Type is not JSON is a 415
  (never read as an empty body); the JSON is decoded strictly (UTF-8, no NaN/Infinity, at most
  :data:`MAX_DEPTH` levels); strings holding a NUL or a lone surrogate and integers outside 64 bits
  are a 422 naming the field, wherever they are in the body or the query.
- Every integer field of an arguments schema gets a 64-bit range unless it has a narrower one,
  so the bound is also in the OpenAPI document.
- Flask's own JSON loading (``request.get_json``) never raises a ``RecursionError``.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Iterator
from typing import Any

import marshmallow as ma
from flask import Flask, Request, request
from flask.json.provider import DefaultJSONProvider
from marshmallow import fields, validate
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException, NotFound, UnsupportedMediaType
from werkzeug.routing import IntegerConverter, PathConverter, Rule, UnicodeConverter
from werkzeug.routing.converters import ValidationError as RoutingValidationError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_DEPTH = 32
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")

MSG_BAD_CHARS = "不能包含空字符（NUL）或无效的 Unicode 字符"
MSG_TOO_LARGE = f"数值超出范围（应在 {INT64_MIN} 到 {INT64_MAX} 之间）"
MSG_TOO_DEEP = f"嵌套层级过深（最多 {MAX_DEPTH} 层）"
MSG_NOT_FINITE = "不能是 NaN 或 Infinity"


class InvalidJSON(ValueError):
    """The body is not JSON we accept (the error handler answers 400 ``invalid_json``)."""


# -- path parameters ------------------------------------------------------------------------------


class PathParamNotFound(NotFound):
    """A path parameter no row can match: 404 in the shape, naming the parameter."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__()
        self.data = {"messages": {"path": {name: [problem]}}}


class NamedConverterRule(Rule):
    """Tells each converter the name of the variable it converts (for the error's ``fields``)."""

    def get_converter(self, variable_name: str, converter_name: str, args: Any, kwargs: Any) -> Any:
        converter = super().get_converter(variable_name, converter_name, args, kwargs)
        converter.variable_name = variable_name
        return converter


class Int64Converter(IntegerConverter):
    """``<int:…>``: an id; beyond a PostgreSQL ``bigint`` it cannot exist."""

    variable_name = "id"

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", INT64_MAX)
        super().__init__(map, *args, **kwargs)

    def to_python(self, value: str) -> Any:
        try:
            number = int(value)
        except ValueError:
            raise RoutingValidationError() from None
        if number > INT64_MAX or number < INT64_MIN:
            raise PathParamNotFound(self.variable_name, MSG_TOO_LARGE)
        return super().to_python(value)


class CleanStringConverter(UnicodeConverter):
    """``<string:…>`` and ``<…>``: no NUL (PostgreSQL refuses it in text)."""

    variable_name = "key"

    def to_python(self, value: str) -> Any:
        if _BAD_CHARS.search(value):
            raise PathParamNotFound(self.variable_name, MSG_BAD_CHARS)
        return value


class CleanPathConverter(PathConverter):
    variable_name = "path"

    def to_python(self, value: str) -> Any:
        if _BAD_CHARS.search(value):
            raise PathParamNotFound(self.variable_name, MSG_BAD_CHARS)
        return value


def init_converters(app: Flask) -> None:
    """Before any blueprint is registered (rules pick their converters when they are added)."""
    app.url_rule_class = NamedConverterRule
    app.url_map.converters["int"] = Int64Converter
    app.url_map.converters["default"] = CleanStringConverter
    app.url_map.converters["string"] = CleanStringConverter
    app.url_map.converters["path"] = CleanPathConverter


# -- JSON decoding --------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} {MSG_NOT_FINITE}")


def loads_strict(data: str | bytes) -> Any:
    """JSON as the API accepts it: UTF-8, no NaN/Infinity, nesting bounded."""
    if isinstance(data, bytes | bytearray):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJSON("请求体不是有效的 UTF-8") from None
    if _nesting_exceeds(data, MAX_DEPTH):
        raise InvalidJSON(MSG_TOO_DEEP)
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidJSON(MSG_TOO_DEEP) from None
    except json.JSONDecodeError as exc:
        raise InvalidJSON(str(exc)) from None


def _nesting_exceeds(text: str, limit: int) -> bool:
    """Whether brackets (outside strings) nest deeper than ``limit``; a cheap scan before parsing."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


class StrictJSONProvider(DefaultJSONProvider):
    """``request.get_json`` (rate-limit keys, the idempotency layer) with the same strict decoding."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_strict(s)


# -- the values inside a body or a query ----------------------------------------------------------


def _walk(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(path, problem) for every string, key or integer the database could not take."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _BAD_CHARS.search(item):
                yield where, MSG_BAD_CHARS
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                yield where, MSG_TOO_LARGE
        elif isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and _BAD_CHARS.search(key):
                    yield (*where, _printable(key)), MSG_BAD_CHARS
                    continue
                stack.append((sub, (*where, key)))
        elif isinstance(item, list):
            stack.extend((sub, (*where, i)) for i, sub in enumerate(item))


def _printable(key: str) -> str:
    return _BAD_CHARS.sub("\ufffd", key)


def _nest(errors: list[tuple[tuple[Any, ...], str]]) -> dict[Any, Any]:
    """Marshmallow's shape: ``{"place": {"address": ["…"]}}``; the body itself is ``_schema``."""
    out: dict[Any, Any] = {}
    for path, problem in errors:
        if not path:
            out.setdefault("_schema", []).append(problem)
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node.setdefault(path[-1], []).append(problem)
    return out


def check_values(data: Any) -> None:
    errors = list(_walk(data, ()))
    if errors:
        raise ma.ValidationError(_nest(errors))


# -- the parser -----------------------------------------------------------------------------------


def _has_body(req: Request) -> bool:
    if req.content_length:
        return True
    return bool(req.get_data(cache=True))


_IMMUTABLE_DEFAULTS = (type(None), bool, int, float, str)


def _defaults_are_constant(schema: ma.Schema) -> bool:
    """Whether loading nothing gives ``schema`` the same result every time: no hooks, and every
    field's default a constant (not a callable, nor a mutable value a view could change)."""
    if any(schema._hooks.values()):
        return False
    return all(
        isinstance(field.load_default, _IMMUTABLE_DEFAULTS) or field.load_default is ma.missing
        for field in schema.load_fields.values()
    )


class YijingParser(FlaskParser):
    """webargs as the API wants it (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._empty_query: weakref.WeakKeyDictionary[ma.Schema, dict[str, Any] | None] = (
            weakref.WeakKeyDictionary()
        )

    def parse(self, argmap: Any, req: Request | None = None, **kwargs: Any) -> Any:
        """An empty query string parses once per schema: the first feed page and most list requests
        send none, and loading the defaults through webargs and marshmallow cost about 45 µs of CPU
        a request (docs/performance.md, "Per-request overhead"). Only for a schema whose result
        cannot differ (:func:`_defaults_are_constant`), and each request gets its own dict."""
        if (
            kwargs.get("location") in ("query", "querystring")
            and not kwargs.get("validate")
            and isinstance(argmap, ma.Schema)
            and not (req if req is not None else request).query_string
        ):
            try:
                cached = self._empty_query[argmap]
            except KeyError:
                cached = self._empty_query[argmap] = (
                    super().parse(argmap, req, **kwargs) if _defaults_are_constant(argmap) else None
                )
            if cached is not None:
                return dict(cached)
        return super().parse(argmap, req, **kwargs)

    def _raw_load_json(self, req: Request) -> Any:
        if not _has_body(req):
            return core.missing
        if not core.is_json(req.mimetype):
            raise UnsupportedMediaType()
        try:
            return loads_strict(req.get_data(cache=True))
        except InvalidJSON as exc:
            raise _InvalidJSONBody(str(exc)) from None

    def pre_load(self, location_data: Any, *, schema: ma.Schema, req: Request, location: str) -> Any:
        if location in ("json", "query", "querystring", "form", "headers", "view_args", "path"):
            if location in ("query", "querystring", "form") and hasattr(location_data, "data"):
                check_values({k: location_data.data.getlist(k) for k in location_data.data})
            elif location_data is not core.missing:
                check_values(location_data)
        return location_data


class _InvalidJSONBody(HTTPException):
    code = 400

    def __init__(self, reason: str) -> None:
        super().__init__(description="JSON")
        self.data = {"messages": {"json": ["Invalid JSON body."]}, "reason": reason}


PARSER = YijingParser()


# -- schemas: integers bounded to 64 bits ---------------------------------------------------------


def bound_integers(schema: ma.Schema, _seen: set[int] | None = None) -> ma.Schema:
    """Give every Integer field of ``schema`` (nested too) a 64-bit range unless it has one."""
    seen = _seen if _seen is not None else set()
    if id(schema) in seen:
        return schema
    seen.add(id(schema))
    for field in schema.fields.values():
        _bound_field(field, seen)
    return schema


def _bound_field(field: fields.Field, seen: set[int]) -> None:
    if isinstance(field, fields.Integer):
        ranges = [v for v in field.validators if isinstance(v, validate.Range)]
        if not any(r.min is not None and r.max is not None for r in ranges):
            low = max((r.min for r in ranges if r.min is not None), default=INT64_MIN)
            high = min((r.max for r in ranges if r.max is not None), default=INT64_MAX)
            field.validators.append(validate.Range(min=low, max=high, error=MSG_TOO_LARGE))
    elif isinstance(field, fields.Nested):
        nested = field.schema
        if isinstance(nested, ma.Schema):
            bound_integers(nested, seen)
    elif isinstance(field, fields.List):
        _bound_field(field.inner, seen)
    elif isinstance(field, fields.Tuple):
        for inner in field.tuple_fields:
            _bound_field(inner, seen)
    elif isinstance(field, fields.Dict) and field.value_field is not None:
        _bound_field(field.value_field, seen)
