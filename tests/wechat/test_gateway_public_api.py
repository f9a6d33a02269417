"""The gateway uses wechatpy through its public API; the fake WeChat is not part of the package."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from wechatpy import WeChatClient

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "yijing" / "wechat" / "gateway.py"


def test_the_gateway_touches_no_private_wechatpy_attribute_and_rewrites_no_base_url():
    source = GATEWAY.read_text(encoding="utf-8")
    assert not re.search(r"\bclient\._\w", source), "a private wechatpy attribute is used"
    assert not re.search(r"API_BASE_URL\s*=", source), "wechatpy's API_BASE_URL is rewritten"


def test_calls_go_to_the_configured_base_url_with_wechatpys_class_untouched(app_ctx, fake_wechat):
    from yijing.extensions import wechat

    gateway = wechat()
    assert "API_BASE_URL" not in vars(gateway.client) and "API_BASE_URL" not in vars(gateway.client.wxa)
    assert WeChatClient.API_BASE_URL == "https://api.weixin.qq.com/cgi-bin/"
    gateway.send_subscribe_message("o-someone", "DEMO-tmpl", {"thing1": "巡逻提醒"})
    gateway.msg_sec_check("o-someone", "你好", scene=2)
    paths = [r.path for r in fake_wechat.state.requests()]
    assert paths == ["/cgi-bin/stable_token", "/cgi-bin/message/subscribe/send", "/wxa/msg_sec_check"]


def test_the_fake_wechat_server_is_not_an_installed_package():
    setuptools_config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]
    include = setuptools_config["packages"]["find"]["include"]
    # What setuptools' find_packages(include=...) selects: package folders whose dotted name matches.
    found = [".".join(init.parent.relative_to(ROOT).parts) for init in ROOT.glob("*/**/__init__.py")]
    packages = [name for name in found if any(fnmatch.fnmatchcase(name, pattern) for pattern in include)]
    assert {"yijing", "yijing.wechat", "desk", "miniprogram_api", "workers"} <= set(packages)
    assert not [p for p in packages if p.startswith("fakewechat")]
