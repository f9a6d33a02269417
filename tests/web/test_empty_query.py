"""The parser's short way for an empty query string (yijing.web.inputs.YijingParser.parse): the
same arguments as the long way, a fresh dict each time, and only where the result cannot differ."""

from __future__ import annotations

from marshmallow import Schema, fields, pre_load

from yijing.web.inputs import PARSER, YijingParser


class _Constant(Schema):
    limit = fields.Integer(load_default=20)
    kind = fields.String(load_default=None)


class _Callable(Schema):
    tags = fields.List(fields.String(), load_default=list)


class _Hooked(Schema):
    seen = fields.Integer(load_default=0)

    @pre_load
    def count(self, data, **_kwargs):
        return data


def test_an_empty_query_loads_the_defaults_once_per_schema(app):
    schema = _Constant()
    long_way = YijingParser()
    with app.test_request_context("/x"):
        first = PARSER.parse(schema, location="query")
        second = PARSER.parse(schema, location="query")
        assert first == second == _long_way(long_way, schema)
        assert first is not second
        first["limit"] = 5
        assert PARSER.parse(schema, location="query")["limit"] == 20
    assert schema in PARSER._empty_query
    with app.test_request_context("/x?limit=7"):
        assert PARSER.parse(schema, location="query") == {"limit": 7, "kind": None}


def test_schemas_whose_defaults_could_differ_take_the_long_way(app):
    with app.test_request_context("/x"):
        for schema in (_Callable(), _Hooked()):
            PARSER.parse(schema, location="query")
            assert PARSER._empty_query.get(schema, "absent") is None
        callable_default = _Callable()
        assert (
            PARSER.parse(callable_default, location="query")["tags"]
            is not PARSER.parse(callable_default, location="query")["tags"]
        )


def _long_way(parser: YijingParser, schema: Schema) -> dict:
    """The long way: webargs' own parse, never the short one."""
    return super(YijingParser, parser).parse(schema, location="query")
