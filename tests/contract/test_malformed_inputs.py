"""The malformed classes of issue 12, sent to every operation that takes them (walked from the
OpenAPI document): each answer is a 4xx in the one error shape with a Chinese message, never a 5xx.

- integers at or beyond 2^63 in every integer path parameter, query parameter and JSON field;
- a JSON body nested 10,000 levels deep;
- a lone surrogate and a NUL in every string query parameter and JSON field;
- forged and garbled cursors on every list;
- a body sent as text/plain or form-encoded (415, never read as an empty body).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

HUGE = 2**63
BODY_METHODS = {"post", "put", "patch", "delete"}


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


FORGED_CURSORS = [
    _cursor([None, None]),
    _cursor([None]),
    _cursor([HUGE * 4, HUGE * 4]),
    _cursor([HUGE * 4]),
    _cursor([[[[[[1]]]]], {"a": 1}]),
    _cursor(["x", "y", "z"]),
    _cursor([{"dt": "not a time"}, 1]),
    _cursor([True, {"dt": "2026-01-01T00:00:00+08:00"}, "1"]),
    _cursor("[" * 5000 + "]" * 5000),
    base64.urlsafe_b64encode(b"[" * 3000).decode(),
    "%%%not-base64%%%",
    "A" * 5000,
    _cursor([1.5e308 * 10, 1]),
    _cursor(["\x00", 1]),
]
# Well formed, only odd: a time without its offset is read as UTC (a page, or a 4xx; never a 5xx).
ODD_CURSORS = [_cursor([{"dt": "2026-01-01T00:00:00"}, 1]), _cursor([{"dt": "0001-01-01T00:00:00+14:00"}, 1])]


def assert_shape(response: Any, what: str) -> dict:
    assert 400 <= response.status_code < 500, (
        what,
        response.status_code,
        response.get_data(as_text=True)[:500],
    )
    assert response.content_type.startswith("application/json"), what
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "fields"}, what
    assert re.search("[\u4e00-\u9fff]", error["message"]), (what, error)
    assert isinstance(error["fields"], dict), what
    return error


@pytest.fixture
def spec(client) -> dict:
    return client.get("/api/v1/openapi.json").get_json()


@pytest.fixture
def actors(staff, wechat_login) -> dict[str, dict[str, str]]:
    return {"admin": staff("malformed-admin", "admin", "150200"), "resident": wechat_login("malformed")}


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    out = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"} and "logout" not in path:
                shared = item.get("parameters", [])
                out.append(
                    (path, method, {**operation, "parameters": shared + operation.get("parameters", [])})
                )
    return out


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _fill(path: str, params: list[dict], override: dict[str, Any] | None = None) -> str:
    values = {p["name"]: 1 for p in params if p["in"] == "path"}
    values.update(override or {})
    return re.sub(r"{(\w+)}", lambda m: str(values.get(m.group(1), 1)), path)


def _json_body(spec: dict, operation: dict) -> dict | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return _resolve(spec, content["application/json"]["schema"])


def _send(client: Any, method: str, url: str, headers: dict, **kwargs: Any) -> Any:
    return client.open(url, method=method.upper(), headers=headers, **kwargs)


def test_huge_integers_in_every_path_query_and_body(client, spec, actors):
    sent = 0
    for path, method, operation in _operations(spec):
        params = operation["parameters"]
        for who, headers in actors.items():
            for p in params:
                schema = p.get("schema", {})
                if schema.get("type") == "integer" or (
                    schema.get("type") == "array" and schema.get("items", {}).get("type") == "integer"
                ):
                    if p["in"] == "path":
                        url = _fill(path, params, {p["name"]: HUGE})
                        response = _send(
                            client, method, url, headers, json={} if method in BODY_METHODS else None
                        )
                    else:
                        url = _fill(path, params)
                        response = _send(
                            client,
                            method,
                            url,
                            headers,
                            query_string={p["name"]: str(HUGE)},
                            json={} if method in BODY_METHODS else None,
                        )
                    assert_shape(response, f"{who} {method} {path} {p['name']}={HUGE}")
                    sent += 1
            body = _json_body(spec, operation)
            if body:
                for name, prop in body.get("properties", {}).items():
                    if prop.get("readOnly"):
                        continue
                    if prop.get("type") == "integer" or prop.get("items", {}).get("type") == "integer":
                        value = [HUGE] if prop.get("type") == "array" else HUGE
                        response = _send(client, method, _fill(path, params), headers, json={name: value})
                        error = assert_shape(response, f"{who} {method} {path} body {name}")
                        sent += 1
                        if response.status_code == 422 and name in error["fields"]:
                            assert name in error["message"], error
    assert sent > 100


def test_deep_json_on_every_json_body_operation(client, spec, actors):
    deep = "[" * 10_000 + "]" * 10_000
    sent = 0
    for path, method, operation in _operations(spec):
        if _json_body(spec, operation) is None:
            continue
        url = _fill(path, operation["parameters"])
        for who, headers in {"anonymous": {}, **actors}.items():
            for body in (deep, '{"a":' * 10_000 + "1" + "}" * 10_000):
                response = _send(client, method, url, headers, data=body, content_type="application/json")
                assert_shape(response, f"{who} {method} {path} deep")
                sent += 1
    assert sent > 50


@pytest.mark.parametrize("bad", ["\ud800", "a\x00b"], ids=["lone-surrogate", "nul"])
def test_surrogates_and_nul_in_every_string(client, spec, actors, bad):
    sent = 0
    for path, method, operation in _operations(spec):
        params = operation["parameters"]
        url = _fill(path, params)
        for who, headers in actors.items():
            strings = [
                p["name"]
                for p in params
                if p["in"] == "query" and p.get("schema", {}).get("type") == "string"
            ]
            for name in strings:
                response = _send(
                    client,
                    method,
                    url,
                    headers,
                    query_string={name: "a\x00b"},
                    json={} if method in BODY_METHODS else None,
                )
                assert_shape(response, f"{who} {method} {path} ?{name}=NUL")
                sent += 1
            body = _json_body(spec, operation)
            if body:
                names = [n for n, p in body.get("properties", {}).items() if not p.get("readOnly")]
                for name in names:
                    raw = json.dumps({name: bad}, ensure_ascii=True)
                    response = _send(client, method, url, headers, data=raw, content_type="application/json")
                    error = assert_shape(response, f"{who} {method} {path} {name}={bad!r}")
                    sent += 1
                    if response.status_code == 422 and name in error["fields"]:
                        assert name in error["message"], error
    assert sent > 100


def test_nul_in_a_desk_login_username(client):
    response = client.post("/api/v1/desk/auth/login", json={"username": "ad\x00min", "password": "x"})
    error = assert_shape(response, "login with NUL")
    assert response.status_code == 422 and "username" in error["fields"] and "username" in error["message"]


def test_forged_cursors_on_every_list(client, spec, actors):
    sent = 0
    for path, method, operation in _operations(spec):
        if not any(p["name"] == "cursor" for p in operation["parameters"]):
            continue
        url = _fill(path, operation["parameters"])
        for who, headers in actors.items():
            for cursor in FORGED_CURSORS:
                response = _send(client, method, url, headers, query_string={"cursor": cursor})
                error = assert_shape(response, f"{who} {path} cursor={cursor[:40]}")
                sent += 1
                if response.status_code == 422:
                    assert "cursor" in error["fields"] and "cursor" in error["message"], error
            for cursor in ODD_CURSORS:
                response = _send(client, method, url, headers, query_string={"cursor": cursor})
                if response.status_code != 200:
                    assert_shape(response, f"{who} {path} odd cursor={cursor[:40]}")
    assert sent > 100


def test_a_body_that_is_not_json_is_415_never_an_empty_body(client, spec, actors):
    sent = 0
    for path, method, operation in _operations(spec):
        if _json_body(spec, operation) is None:
            continue
        url = _fill(path, operation["parameters"])
        for who, headers in actors.items():
            for content_type, data in (
                ("text/plain", '{"reason": "原因写在这里"}'),
                ("application/x-www-form-urlencoded", "reason=%E5%8E%9F%E5%9B%A0"),
            ):
                response = _send(client, method, url, headers, data=data, content_type=content_type)
                if response.status_code in (401, 403, 404, 429):
                    assert_shape(response, f"{who} {method} {path} {content_type}")
                    continue
                error = assert_shape(response, f"{who} {method} {path} {content_type}")
                assert response.status_code == 415, (who, method, path, content_type, error)
                assert error["code"] == "unsupported_media_type"
                sent += 1
    assert sent > 20


def test_the_operations_the_issue_names_no_longer_drop_the_body(client, tasks, volunteers, staff):
    desk = staff("desk-415", "desk", "150203")
    headers, _ = volunteers.approved(desk, "v415")
    task = tasks.create(desk)
    for url in (f"/api/v1/tasks/{task['id']}/accept", f"/api/v1/tasks/{task['id']}/withdraw"):
        response = client.post(url, data="reason=有事", headers=headers, content_type="text/plain")
        assert assert_shape(response, url)["code"] == "unsupported_media_type"
        assert response.status_code == 415
    mine = client.get("/api/v1/tasks/mine", headers=headers).get_json()["items"]
    assert mine == [], "the refused accept must not have taken a place"


def test_nul_in_headers_and_path_strings(client, actors, tree):
    headers = actors["resident"]
    response = client.post("/api/v1/tasks/1/accept", json={}, headers={**headers, "Idempotency-Key": "k\x00"})
    error = assert_shape(response, "Idempotency-Key with NUL")
    assert response.status_code == 422 and "Idempotency-Key" in error["fields"]
    for path in ("/api/v1/media/ab%00cd", "/api/v1/media/%ED%A0%80"):
        assert_shape(client.get(path, headers=headers), path)
    photo = client.get("/api/v1/media/abcd", headers={"X-Clue-Tracking-Code": "AB\x00CD"})
    assert_shape(photo, "tracking code with NUL")
