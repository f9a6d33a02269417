"""The OpenAPI document and the offline docs page."""

from __future__ import annotations

import re


def test_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    login = spec["paths"]["/api/v1/auth/wechat-login"]["post"]
    assert login["summary"]
    me = spec["paths"]["/api/v1/me"]["get"]
    assert me["security"] == [{"bearerAuth": []}]
    assert "/api/v1/desk/auth/login" in spec["paths"]


def test_docs_page_loads_nothing_from_the_internet(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls, "the page should load Swagger UI"
    for url in urls:
        assert url.startswith("/"), f"{url} is not served by the app"
        with client.get(url) as asset:
            assert asset.status_code == 200
