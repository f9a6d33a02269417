"""The OpenAPI document and the offline docs page."""

from __future__ import annotations

import os
import re
import subprocess
import sys


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


def test_idempotency_key_is_documented_where_it_is_honoured(app, client):
    """Every operation whose view honours ``Idempotency-Key`` lists the header, and no other does."""
    spec = client.get("/api/v1/openapi.json").get_json()
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
        and any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", []))
    }
    honoured = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, "accepts_idempotency_key", False):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            honoured |= {(m, path) for m in rule.methods if m == "POST"}
    assert documented == honoured
    # The ones the README promises, including the two whose keys the services handle themselves.
    assert {
        ("POST", "/api/v1/media"),
        ("POST", "/api/v1/clues"),
        ("POST", "/api/v1/desk/tasks"),
    } <= documented
    header = next(
        p for p in spec["paths"]["/api/v1/media"]["post"]["parameters"] if p.get("name") == "Idempotency-Key"
    )
    assert header["in"] == "header" and header["schema"]["maxLength"] == 128


def test_the_document_is_the_same_in_every_process():
    """Workers behind one load balancer serve one document: string hashing (a per-process seed)
    must not choose which message describes an error code."""
    script = (
        "import json, sys\n"
        "from yijing import create_app\n"
        "from yijing.config import Config\n"
        "app = create_app(Config.from_env({'DATABASE_URL': 'sqlite://', 'REDIS_URL': 'redis://127.0.0.1:1/0'}))\n"
        "with app.test_client() as c:\n"
        "    sys.stdout.write(json.dumps(c.get('/api/v1/openapi.json').get_json(), sort_keys=True))\n"
    )
    documents = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=120
        )
        documents.add(out.stdout)
    assert len(documents) == 1
    assert '"/api/v1/me"' in documents.pop()
