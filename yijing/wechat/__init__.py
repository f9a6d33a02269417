"""The project's one WeChat server-API client; see :class:`WeChatGateway`."""

from yijing.wechat.errors import WeChatError, WeChatRateLimited, WeChatUnavailable
from yijing.wechat.gateway import WeChatGateway

__all__ = ["WeChatError", "WeChatGateway", "WeChatRateLimited", "WeChatUnavailable"]
