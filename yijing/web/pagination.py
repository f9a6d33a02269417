"""Query arguments and the response envelope of every cursor-paginated list."""

from __future__ import annotations

from functools import cache

from marshmallow import Schema, fields, validate

from yijing.pagination import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT


class PageArgsSchema(Schema):
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(max=MAX_CURSOR_LENGTH, error="分页游标 cursor 无效，请从第一页重新加载"),
        metadata={
            "description": "上一页返回的 next_cursor（原样传回；伪造或损坏的游标答 422 invalid_cursor）"
        },
    )
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))


@cache
def page_of(item_schema: type[Schema]) -> type[Schema]:
    """``{"items": [...], "next_cursor": "..."|null}`` for ``item_schema`` (one class per item type)."""
    name = item_schema.__name__.removesuffix("Schema") + "PageSchema"
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema)),
            "next_cursor": fields.String(allow_none=True),
        },
        name=name,
    )
