"""Domain errors. Services raise them; one handler turns each into the shared JSON error shape."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """An expected failure with a machine code and a zh-CN message a person can act on."""

    status = 400
    code = "bad_request"
    message = "请求有误，请检查后重试"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        fields: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.fields = fields or {}
        if status is not None:
            self.status = status
        super().__init__(f"{self.code}: {self.message}")


class InvalidInput(DomainError):
    status = 422
    code = "invalid_input"
    message = "提交的内容有误，请按提示修改"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    message = "请先登录"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    message = "您没有权限进行此操作"


class NotFound(DomainError):
    status = 404
    code = "not_found"
    message = "要找的内容不存在"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    message = "操作与当前状态冲突，请刷新后重试"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"
    message = "操作太频繁，请稍后再试"


class ServiceUnavailable(DomainError):
    status = 503
    code = "service_unavailable"
    message = "服务暂时不可用，请稍后再试"
