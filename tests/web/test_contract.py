"""Issue 12: the OpenAPI document is the contract; messages in Chinese; tokens refused by audience."""

from __future__ import annotations

import inspect
import re

import marshmallow.fields as ma_fields
import marshmallow.validate as ma_validate

from yijing.web.errors import translate_message

CJK = re.compile("[\u4e00-\u9fff]")


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def test_every_error_response_is_the_real_shape_and_the_library_error_schema_is_gone(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert "Error" not in schemas and "PaginationMetadata" not in schemas
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["required"]) == {"code", "message", "fields"}
    assert "responses" not in spec["components"] or not spec["components"]["responses"]
    count = 0
    for path, method, operation in _operations(spec):
        responses = operation["responses"]
        assert "default" not in responses, (method, path)
        assert "503" in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorResponse", (method, path, status)
                assert response["x-error-codes"], (method, path, status)
                assert CJK.search(response["description"])
        if operation.get("security") == [{"bearerAuth": []}]:
            assert "missing_token" in responses["401"]["x-error-codes"], (method, path)
        body = operation.get("requestBody", {}).get("content", {})
        if "application/json" in body:
            assert "415" in responses and "422" in responses and "400" in responses, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if path.startswith("/api/v1/desk/") and operation.get("security"):
            assert "staff_only" in responses["403"]["x-error-codes"], (method, path)
        count += 1
    assert count > 100


def test_business_errors_are_documented_with_their_codes(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    accept = paths["/api/v1/tasks/{task_id}/accept"]["post"]["responses"]
    assert {"task_full", "invitation_expired"} <= set(accept["409"]["x-error-codes"])
    assert "resident_only" in accept["403"]["x-error-codes"]
    transitions = paths["/api/v1/desk/clues/{clue_id}/transitions"]["post"]["responses"]
    assert "409" in transitions


def test_required_fields_and_bodies_and_the_csv_download(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    application = spec["components"]["schemas"]["Application"]
    assert "employer" in application["required"]
    apply = spec["paths"]["/api/v1/volunteers"]["post"]
    assert apply["requestBody"]["required"] is True
    # A body whose fields are all optional may be left out.
    assert spec["paths"]["/api/v1/tasks/{task_id}/accept"]["post"]["requestBody"]["required"] is False
    download = spec["paths"]["/api/v1/desk/exports/{export_id}/file"]["get"]["responses"]["200"]
    assert list(download["content"]) == ["text/csv"]
    task_id = spec["paths"]["/api/v1/tasks/{task_id}"]["parameters"][0]["schema"]
    assert task_id["maximum"] == 2**63 - 1


def test_every_marshmallow_built_in_message_reaches_the_client_in_chinese():
    messages = set()
    for _, cls in inspect.getmembers(ma_fields, inspect.isclass):
        if issubclass(cls, ma_fields.Field):
            messages |= set(getattr(cls, "default_error_messages", {}).values())
    messages |= {
        ma_validate.Range(min=1).error or "Must be greater than or equal to 1.",
        "Must be greater than or equal to 1 and less than or equal to 100.",
        "Must be less than 5.",
        "Length must be between 2 and 100.",
        "Shorter than minimum length 2.",
        "Must be one of: a, b.",
        "Invalid input type.",
        "Number too large.",
        "Special numeric values (nan or infinity) are not permitted.",
        "Invalid JSON body.",
        "Something no table knows.",
    }
    for message in messages:
        assert CJK.search(translate_message(message)), message


def test_marshmallow_messages_on_the_wire_are_chinese(client, wechat_login):
    headers = wechat_login("zh")
    response = client.post(
        "/api/v1/tasks/1/check-in",
        data='{"lat": NaN, "lng": 1e999}',
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 400 and CJK.search(response.get_json()["error"]["message"])
    response = client.post("/api/v1/tasks/1/check-in", json={"lat": "x", "lng": 1}, headers=headers)
    error = response.get_json()["error"]
    assert response.status_code == 422
    assert error["fields"]["lat"] == ["应为数字"]
    assert "lat" in error["message"]
    response = client.post("/api/v1/tasks/1/check-in", json={"lat": 1, "lng": 2**70}, headers=headers)
    error = response.get_json()["error"]
    assert response.status_code == 422 and "lng" in error["fields"] and "lng" in error["message"]
    response = client.post("/api/v1/auth/wechat-login", json=[1, 2])
    assert response.status_code == 422 and CJK.search(str(response.get_json()["error"]["fields"]))


def test_a_residents_token_is_refused_by_the_desk_before_any_lookup(client, staff, wechat_login, tree):
    resident = wechat_login("probe")
    existing = client.get(f"/api/v1/desk/jurisdictions/{tree['150203']}", headers=resident)
    missing = client.get("/api/v1/desk/jurisdictions/987654", headers=resident)
    assert existing.status_code == missing.status_code == 403
    assert existing.get_json() == missing.get_json()
    assert existing.get_json()["error"]["code"] == "staff_only"


def test_a_staff_token_is_refused_by_resident_only_operations(client, staff, tasks):
    desk = staff("desk-probe", "desk", "150203")
    task = tasks.create(desk)
    existing = client.post(f"/api/v1/tasks/{task['id']}/accept", json={}, headers=desk)
    missing = client.post("/api/v1/tasks/987654/accept", json={}, headers=desk)
    assert existing.status_code == missing.status_code == 403
    assert existing.get_json() == missing.get_json()
    assert existing.get_json()["error"]["code"] == "resident_only"


def test_an_id_beyond_bigint_without_a_token_is_a_404_naming_it(client):
    response = client.get("/api/v1/jurisdictions/9223372036854775808")
    error = response.get_json()["error"]
    assert response.status_code == 404 and error["code"] == "not_found"
    assert "jurisdiction_id" in error["fields"] and "jurisdiction_id" in error["message"]
