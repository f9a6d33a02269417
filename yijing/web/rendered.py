"""Serving a JSON answer that was serialised before the request: the one exception to "the
blueprint serialises with its marshmallow schema" (see docs/architecture.md, "From service result
to JSON").

A hot cached read (the dashboard's figures) stores its answer as the bytes the same marshmallow
schema and the app's JSON provider produced when the cache entry was filled; a hit sends those
bytes as they are, so the request pays neither the dump of a large nested schema nor the JSON
encoding again, and the answer is byte for byte what the schema would have produced.
"""

from __future__ import annotations

import flask


def json_response(body: bytes, status: int = 200) -> flask.Response:
    """A JSON response whose body is ``body`` (already serialised JSON) as is."""
    return flask.Response(body, status=status, mimetype="application/json")
