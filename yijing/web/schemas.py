"""Schemas shared by the mini-program API and the desk."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


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


# -- clues (issue 5): shared by the mini-program and the desk --


class PlaceSchema(Schema):
    lat = fields.Float(required=True, validate=validate.Range(min=-90, max=90))
    lng = fields.Float(required=True, validate=validate.Range(min=-180, max=180))
    address = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))


class PhotoSchema(Schema):
    id = fields.String(dump_only=True, metadata={"description": "图片 id（上传接口返回的 id）"})
    url = fields.String(
        dump_only=True,
        metadata={"description": "需登录访问；凭查询码查看时在请求头 X-Clue-Tracking-Code 带上查询码"},
    )
    width = fields.Integer(dump_only=True)
    height = fields.Integer(dump_only=True)


class ClueSummarySchema(Schema):
    id = fields.Integer(dump_only=True)
    category = fields.String(dump_only=True)
    category_label = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    status_label = fields.String(dump_only=True)
    description = fields.String(dump_only=True)
    place = fields.Nested(PlaceSchema, dump_only=True)
    occurred_at = fields.DateTime(dump_only=True, allow_none=True)
    anonymous = fields.Boolean(dump_only=True)
    urgent = fields.Boolean(dump_only=True)
    photo_count = fields.Integer(dump_only=True)
    valid = fields.Boolean(dump_only=True, allow_none=True, metadata={"description": "办结时认定是否有效"})
    transfer_target = fields.String(dump_only=True, allow_none=True)
    transfer_reference = fields.String(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
    closed_at = fields.DateTime(dump_only=True, allow_none=True)
