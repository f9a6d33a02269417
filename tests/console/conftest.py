"""Browser tests of the desk console: Playwright drives Debian's Chromium against the real app.

The session's app (PostgreSQL, Redis, the fake WeChat) is served by a werkzeug server in
a thread on a free loopback port; the console is built first (``scripts/build_console.py``, a no-op
when up to date). Chromium is told to resolve no host but the loopback one, and every request the
page makes elsewhere is aborted and fails the test. Screenshots go to ``YIJING_TEST_ARTIFACTS``
(default: ``<tmp>/yijing-console-artifacts``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.fixtures.jobs import worker_env

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("YIJING_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("YIJING_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "yijing-console-artifacts")
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
PASSWORD = "correct horse battery"  # what the ``staff`` fixture gives every account


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (CI=true: the browser tests need it)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def console_build() -> Path:
    """The built console (built now when its sources or the API changed)."""
    if os.environ.get("YIJING_TEST_DB", "sqlite") != "postgresql":
        pytest.skip("browser tests run in the PostgreSQL run")
    if shutil.which("npm") is None:
        _missing("npm is not installed: the console cannot be built")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_console.py")], cwd=ROOT, check=True)
    return ROOT / "desk" / "console" / "dist"


@pytest.fixture(scope="session")
def live_url(app: Flask, console_build: Path) -> Iterator[str]:
    """The session's app served over HTTP on a free loopback port (PostgreSQL runs only: the browser
    tests check the console against the production database; the SQLite run skips them)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        _missing(f"{CHROMIUM} is missing (make chromium, or apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
    manager = sync_playwright().start()
    browser = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    manager.stop()


class Desk:
    """One browser tab on the console, with the helpers the scenarios share."""

    def __init__(self, page: Any, base: str, name: str) -> None:
        self.page = page
        self.base = base
        self.name = name
        self.shots = 0
        self.outside: list[str] = []

    def open(self, path: str = "/desk/") -> None:
        self.page.goto(self.base + path)

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.open("/desk/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        self.page.get_by_role("button", name="登录").click()

    def nav(self) -> list[str]:
        self.page.wait_for_selector("[data-test=nav] .el-menu-item")
        return [t.strip() for t in self.page.locator("[data-test=nav] .el-menu-item").all_inner_texts()]

    def go(self, title: str) -> None:
        self.page.locator("[data-test=nav] .el-menu-item", has_text=title).click()

    def shot(self, label: str) -> Path:
        self.shots += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{self.shots:02d}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def desk(chromium: Any, live_url: str, request: pytest.FixtureRequest) -> Iterator[Callable[[], Desk]]:
    """Open a fresh browser context (its own session storage) per call: ``tab = desk()``."""
    contexts: list[Any] = []
    tabs: list[Desk] = []

    def open_tab() -> Desk:
        context = chromium.new_context(
            locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1366, "height": 900}
        )
        context.set_default_timeout(15000)
        contexts.append(context)
        page = context.new_page()
        tab = Desk(page, live_url, f"{request.node.name}-{len(tabs) + 1}")

        def guard(route: Any) -> None:
            url = route.request.url
            if url.startswith(live_url) or url.startswith(("data:", "blob:")):
                route.continue_()
            else:
                tab.outside.append(url)
                route.abort()

        page.route("**/*", guard)
        tabs.append(tab)
        return tab

    yield open_tab
    for tab in tabs:
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            tab.shot("failed")
    for context in contexts:
        context.close()
    for tab in tabs:
        assert not tab.outside, f"the console tried to reach another host: {tab.outside}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture
def rq_worker(
    app: Flask, database_url: str, redis_url: str, fake_wechat: Any, tmp_path: Path
) -> Iterator[None]:
    """A real RQ worker (``flask yijing worker``) on the session's database and Redis for one test."""
    env = worker_env(app, database_url, redis_url, fake_wechat.base_url)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "yijing", "worker", "--no-scheduler"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield
    worker.terminate()
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=5)
    log.close()
