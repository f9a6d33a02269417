"""Maps: offline by default (no tile requested), tiles from MAP_TILE_URL when one is configured."""

from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture
def tile_url(app):
    original = app.config["YIJING"]
    app.config["YIJING"] = dataclasses.replace(original, map_tile_url="http://tiles.test/{z}/{x}/{y}.png")
    yield "http://tiles.test/"
    app.config["YIJING"] = original


def _open_task_map(tab) -> None:
    tab.login("desk-kdl")
    tab.go("巡逻任务")
    tab.page.locator("[data-test=new-task]").click()
    tab.page.locator("[data-test=task-map] [data-test=map-scale]").wait_for()


def test_without_a_tile_url_the_map_is_drawn_offline(desk, staff):
    staff("desk-kdl", "desk", "150203")
    tab = desk()
    _open_task_map(tab)
    assert tab.page.locator("[data-test=task-map] [data-test=map-tile]").count() == 0
    assert "离线底图" in tab.page.locator("[data-test=task-map]").text_content()
    tab.shot("offline")
    # the fixture fails the test had the page asked any other host for anything


def test_with_a_tile_url_the_map_draws_its_tiles(desk, staff, tile_url):
    from tests.fixtures.clues import make_image

    staff("desk-kdl", "desk", "150203")
    tab = desk()
    asked: list[str] = []

    def serve(route) -> None:
        asked.append(route.request.url)
        route.fulfill(status=200, content_type="image/png", body=make_image("PNG", (256, 256)))

    tab.page.route(tile_url + "**", serve)  # registered after the guard: answered here, never sent
    _open_task_map(tab)
    tab.page.locator("[data-test=task-map] [data-test=map-tile]").first.wait_for(state="attached")
    tab.page.wait_for_load_state("networkidle")
    assert asked and all(u.startswith(tile_url) for u in asked)
    z = {u.removeprefix(tile_url).split("/")[0] for u in asked}
    assert len(z) == 1 and 12 <= int(z.pop()) <= 18
    assert "瓦片底图" in tab.page.locator("[data-test=task-map]").text_content()
    tab.shot("tiles")
