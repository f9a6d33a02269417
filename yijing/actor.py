"""Who is acting, passed from the HTTP layer (or a CLI/worker) into services."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    ip: str | None = None
    request_id: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        """A job or CLI command acting on its own."""
        return cls(user_id=None, ip=None, request_id=name)
