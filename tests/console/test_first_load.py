"""The first load of /desk/ is small: pages load their code when opened (ECharts only on 参与情况)."""

from __future__ import annotations

import json
import time

from tests.console.conftest import ARTIFACTS

BUDGET_BYTES = 700_000  # uncompressed JS + CSS + HTML of the login page
BUDGET_SECONDS = 3.0  # to the login form on localhost


def test_first_load_is_small_and_charts_load_only_when_opened(desk, staff, record_property):
    staff("leader-zt", "leader", "150203-01-01")
    tab = desk()
    shipped: dict[str, int] = {}

    def count(response) -> None:
        if response.url.startswith(tab.base + "/desk/"):
            shipped[response.url.removeprefix(tab.base)] = len(response.body())

    tab.page.on("response", count)
    started = time.perf_counter()
    tab.open("/desk/")
    tab.page.wait_for_selector("input[name=username]")
    interactive = time.perf_counter() - started
    tab.page.wait_for_load_state("networkidle")
    first = sum(shipped.values())
    figures = {
        "first_load_bytes": first,
        "files": len(shipped),
        "time_to_login_form_s": round(interactive, 3),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "first-load.json").write_text(json.dumps({**figures, "by_file": shipped}, indent=2))
    for key, value in figures.items():
        record_property(key, value)
    print(f"first load of /desk/: {figures}")
    assert first < BUDGET_BYTES, figures
    assert interactive < BUDGET_SECONDS, figures
    assert not [u for u in shipped if "Participation" in u or "echarts" in u.lower()]

    tab.login("leader-zt")
    tab.nav()
    before = set(shipped)
    tab.go("参与情况")
    tab.page.wait_for_selector("[data-test=series-chart] canvas")
    opened = set(shipped) - before
    assert any("Participation" in u for u in opened), opened
