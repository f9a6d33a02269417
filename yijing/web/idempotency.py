"""The ``Idempotency-Key`` header on creating POSTs: phones retry on bad networks."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, g, request

from yijing.errors import DomainError
from yijing.services import idempotency
from yijing.web.errors import handle_domain_error

F = TypeVar("F", bound=Callable[..., Any])
HEADER = "Idempotency-Key"
# Answers that a retry should not see again: try the request anew instead.
_NOT_STORED = {401, 408, 429}


def accepts_idempotency_key(fn: F) -> F:
    """Mark a view that honours ``Idempotency-Key`` (the OpenAPI document then lists the header)."""
    fn.accepts_idempotency_key = True  # type: ignore[attr-defined]
    return fn


def _scope() -> str:
    principal = getattr(g, "principal", None)
    return f"user:{principal.user_id}" if principal else f"ip:{request.remote_addr}"


def idempotent(fn: F) -> F:
    """Replay the stored answer for a key already seen; 422 when the key comes with another body.

    Place it under ``login_required`` (the key is scoped per user) and above the schema decorators.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return fn(*args, **kwargs)
        digest = hashlib.sha256(request.method.encode() + b" " + request.get_data()).hexdigest()
        endpoint = f"{request.method} {request.path}"
        claim = idempotency.claim(_scope(), key.strip(), endpoint, digest)
        if claim.is_replay:
            response = Response(claim.body, status=claim.status, mimetype="application/json")
            response.headers["Idempotent-Replayed"] = "true"
            return response
        assert claim.record_id is not None
        try:
            response = fn(*args, **kwargs)
        except DomainError as exc:
            response = handle_domain_error(exc)
        except Exception:
            idempotency.release(claim.record_id)
            raise
        if not isinstance(response, Response):
            idempotency.release(claim.record_id)
            return response
        if response.status_code >= 500 or response.status_code in _NOT_STORED:
            idempotency.release(claim.record_id)
        else:
            idempotency.complete(claim.record_id, response.status_code, response.get_data(as_text=True))
        return response

    return accepts_idempotency_key(wrapper)  # type: ignore[arg-type]
