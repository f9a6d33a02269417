"""The one exception to "one way from service result to JSON": answers stored already rendered.

Everywhere else a service returns domain objects and the blueprint's marshmallow schema dumps them
(``@blp.response``; docs/architecture.md, "From service result to JSON"). The hottest cached
reads, the first feed page, ``/me`` and the dashboard's summary, are stored in Redis as the response
bytes instead: :func:`render` dumps them with the same schema and the app's JSON provider when the
cache entry is filled, so the bytes are exactly what ``@blp.response`` would send, and
:func:`json_response` serves them as they are. A hit then costs one Redis read (an MGET, or the
token's Lua call) and no decoding, sorting or dumping (docs/performance.md, "Per-request overhead").
The volunteer's task list is put together from cards kept rendered in the task index
(``task_index.card_json``, held equal to ``TaskCardSchema``'s dump by a test) and served by
:func:`json_response` too, and so is the desk's on-duty search, its hits rendered from the index's
script (``duty_index.item_json``, held equal to ``OnDutySchema``'s dump by a test).
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from marshmallow import Schema


def render(schema: Schema, value: Any) -> bytes:
    """``value`` dumped by ``schema``, as the body ``@blp.response`` (``jsonify``) would send."""
    return current_app.json.response(schema.dump(value)).get_data()


def json_response(body: bytes, status: int = 200) -> Response:
    """A JSON response whose body was rendered by :func:`render` (possibly in another request)."""
    return Response(body, status=status, mimetype="application/json")
