"""The desk console's built files are served by the app at /desk/ (no CDN)."""

from __future__ import annotations

import desk.console as console


def test_without_a_build_the_page_says_how_to_build(client, monkeypatch, tmp_path):
    monkeypatch.setattr(console, "DIST", tmp_path / "missing")
    page = client.get("/desk/")
    assert page.status_code == 503
    assert "make console" in page.get_data(as_text=True)


def test_built_page_assets_and_deep_links(client, monkeypatch, tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text('<script type="module" src="/desk/assets/index-abc.js"></script>')
    (tmp_path / "assets" / "index-abc.js").write_text("console.log(1)")
    monkeypatch.setattr(console, "DIST", tmp_path)

    page = client.get("/desk/")
    assert page.status_code == 200 and "/desk/assets/index-abc.js" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-cache"
    page.close()
    with client.get("/desk/assets/index-abc.js") as asset:
        assert asset.status_code == 200
        assert "max-age=31536000" in asset.headers["Cache-Control"]
    assert client.get("/desk/assets/nope.js").status_code == 404
    with client.get("/desk/clues") as deep:  # a console route survives a reload
        assert deep.status_code == 200 and "index-abc.js" in deep.get_data(as_text=True)
