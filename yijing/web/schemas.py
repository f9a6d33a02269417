"""Schemas shared by the mini-program API and the desk."""

from __future__ import annotations

from marshmallow import Schema, fields


class JurisdictionSummarySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)
    level = fields.String(dump_only=True)


class JurisdictionSchema(JurisdictionSummarySchema):
    parent_id = fields.Integer(dump_only=True, allow_none=True)
    code = fields.String(dump_only=True, allow_none=True)
    lat = fields.Float(dump_only=True, allow_none=True)
    lng = fields.Float(dump_only=True, allow_none=True)


class GrantSchema(Schema):
    role = fields.String(dump_only=True)
    jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True)


class MeSchema(Schema):
    id = fields.Integer(dump_only=True)
    kind = fields.String(dump_only=True, metadata={"description": "wechat 或 staff"})
    display_name = fields.String(dump_only=True)
    username = fields.String(dump_only=True, allow_none=True)
    phone_masked = fields.String(dump_only=True, allow_none=True)
    home_jurisdiction = fields.Nested(JurisdictionSummarySchema, dump_only=True, allow_none=True)
    roles = fields.List(fields.String(), dump_only=True)
    grants = fields.List(fields.Nested(GrantSchema), dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class TokenSchema(Schema):
    token = fields.String(dump_only=True)
    token_type = fields.Constant("Bearer", dump_only=True)
    expires_at = fields.DateTime(dump_only=True)
    user = fields.Nested(MeSchema, dump_only=True)


class ErrorDetailSchema(Schema):
    code = fields.String()
    message = fields.String()
    fields = fields.Dict()


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema)
