"""The desk console page is served by the app with its own assets (no CDN)."""

from __future__ import annotations

import re


def test_console_page_and_assets(client):
    page = client.get("/desk/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "工作人员登录" in html
    assets = re.findall(r'(?:src|href)="(/desk/static/[^"]+)"', html)
    assert len(assets) == 2
    for url in assets:
        with client.get(url) as asset:
            assert asset.status_code == 200
    with client.get("/desk/static/console.js") as script:
        source = script.get_data(as_text=True)
    assert "/api/v1/desk/auth/login" in source
    assert "://" not in source, "the console loads nothing from elsewhere"
