"""A fake of the WeChat server API (api.weixin.qq.com) for tests and local runs."""

from fakewechat.app import create_fake_app
from fakewechat.server import FakeWeChatServer
from fakewechat.state import (
    DEFAULT_APPID,
    DEFAULT_SECRET,
    FakeWeChatState,
    RecordedRequest,
    fake_openid,
    fake_unionid,
)

__all__ = [
    "DEFAULT_APPID",
    "DEFAULT_SECRET",
    "FakeWeChatServer",
    "FakeWeChatState",
    "RecordedRequest",
    "create_fake_app",
    "fake_openid",
    "fake_unionid",
]
