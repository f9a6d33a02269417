"""Errors raised by :class:`yijing.wechat.WeChatGateway`.

Hierarchy (catch :class:`WeChatError` to catch everything the gateway raises):

* :class:`WeChatError` -- WeChat answered with a non-zero ``errcode`` (e.g. 40029 invalid code).
* :class:`WeChatUnavailable` (subclass) -- no usable answer: network error, timeout, HTTP 4xx/5xx, a body
  that is not JSON, or WeChat's ``-1`` "system busy". ``errcode`` is ``None`` (``-1`` for system busy);
  ``http_status`` is set for HTTP errors. Retrying later may succeed.
* :class:`WeChatRateLimited` (subclass) -- a quota/frequency answer (45009, 45011...). Retry later.
"""

from __future__ import annotations

RATE_LIMIT_ERRCODES = frozenset({45009, 45011})
SYSTEM_BUSY_ERRCODE = -1


class WeChatError(Exception):
    """WeChat refused a call; ``errcode``/``errmsg`` are WeChat's (errmsg usually ends with ``rid: ...``)."""

    def __init__(self, errcode: int | None, errmsg: str) -> None:
        super().__init__(errcode, errmsg)
        self.errcode = errcode
        self.errmsg = errmsg

    def __str__(self) -> str:
        return f"WeChat error {self.errcode}: {self.errmsg}"


class WeChatUnavailable(WeChatError):
    """WeChat could not be reached or gave no usable answer (transient)."""

    def __init__(self, errcode: int | None, errmsg: str, *, http_status: int | None = None) -> None:
        super().__init__(errcode, errmsg)
        self.http_status = http_status

    def __str__(self) -> str:
        return f"WeChat unavailable: {self.errmsg}"


class WeChatRateLimited(WeChatError):
    """WeChat refused the call because a quota or frequency limit was reached."""


def error_for(errcode: int, errmsg: str) -> WeChatError:
    """The exception for a WeChat answer carrying a non-zero ``errcode``."""
    if errcode in RATE_LIMIT_ERRCODES:
        return WeChatRateLimited(errcode, errmsg)
    if errcode == SYSTEM_BUSY_ERRCODE:
        return WeChatUnavailable(errcode, errmsg)
    return WeChatError(errcode, errmsg)
