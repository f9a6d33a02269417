"""Subscribe-message templates: configuration, field limits, times in Asia/Shanghai."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from fakewechat.app import FIELD_LIMITS as FAKE_FIELD_LIMITS
from yijing.config import Config, ConfigError
from yijing.wechat.templates import (
    FIELD_LIMITS,
    TemplateConfigError,
    fit,
    load_templates,
    parse_templates,
)

KINDS_OF_OTHER_ISSUES = [
    "volunteer.application_decided",
    "volunteer.suspended",
    "volunteer.reinstated",
    "task.invitation",
    "task.reminder",
    "task.cancelled",
    "task.filled",
    "clue.status_changed",
    "clue.question",
    "message.answered",
    "comment.hidden",
    "alert",
]


def test_limits_match_wechat():
    assert FIELD_LIMITS == FAKE_FIELD_LIMITS
    assert FIELD_LIMITS["thing"] == 20 and FIELD_LIMITS["phrase"] == 5 and FIELD_LIMITS["name"] == 10


@pytest.mark.parametrize(
    ("field_type", "value", "expected"),
    [
        (
            "thing",
            "昆都仑区沼潭街道与友谊社区交界处重点路段夜间巡逻",
            "昆都仑区沼潭街道与友谊社区交界处重点路…",
        ),
        ("thing", "  短  文本 ", "短 文本"),
        ("phrase", "审核已通过啦！OK", "审核已通过"),
        ("name", "欧阳娜娜娜娜娜娜娜娜娜娜", "欧阳娜娜娜娜娜娜娜娜"),
        ("number", "编号 12345", "12345"),
        ("character_string", "A" * 40, "A" * 32),
        ("phone_number", "+86 138-0000-0000-0000", "+86 138-0000-0000"),
        ("car_number", "蒙B12345678", "蒙B123456"),
        ("thing", "", "无"),
        ("phrase", "123", "无"),
    ],
)
def test_values_are_cut_to_fit(field_type, value, expected):
    out = fit(field_type, value)
    assert out == expected
    assert len(out) <= FIELD_LIMITS[field_type]


def test_times_and_dates_are_shown_in_shanghai():
    moment = datetime(2026, 5, 1, 16, 30, tzinfo=UTC)
    assert fit("time", moment) == "2026年05月02日 00:30"
    assert fit("date", moment) == "2026年05月02日"
    assert fit("time", "2026-05-01T16:30:00+00:00") == "2026年05月02日 00:30"
    assert fit("time", "2026-05-01T08:00:00") == "2026年05月01日 16:00"  # naive is UTC


def test_demo_templates_cover_every_kind_and_render_within_limits():
    registry = load_templates(None, None)
    assert registry.is_demo
    now = datetime.now(UTC)
    for kind in KINDS_OF_OTHER_ISSUES:
        template = registry.for_kind(kind)
        assert template is not None, kind
        rendered = template.render(title="标" * 60, body="内" * 300, data={}, created_at=now, kind=kind)
        for name, value in rendered.items():
            field_type = name.rstrip("0123456789")
            assert value, (kind, name)
            assert len(value) <= FIELD_LIMITS.get(field_type, 40), (kind, name, value)
    assert registry.for_kind("something.unknown") is None  # inbox only
    assert registry.for_kind("alert").long_term is True
    assert registry.for_kind("task.invitation").urgent is True


def test_render_prefers_data_then_falls_back():
    registry = load_templates(None, None)
    template = registry.for_kind("task.invitation")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with_data = template.render(
        title="标题", body="", data={"task_title": "护校安园", "place": "一中门口"}, created_at=now, kind="x"
    )
    assert with_data["thing1"] == "护校安园" and with_data["thing3"] == "一中门口"
    assert with_data["time2"] == "2026年01月01日 08:00"
    bare = template.render(title="标题", body="", data={}, created_at=now, kind="x")
    assert bare["thing1"] == "标题" and bare["thing3"] == "详见小程序"


def _config(**templates):
    return {"templates": templates}


def test_fallback_template_for_kinds_without_their_own():
    registry = parse_templates(
        _config(
            **{"*": {"template_id": "generic", "fields": {"thing1": ["title"], "time2": ["created_at"]}}}
        ),
        source="test",
    )
    assert registry.for_kind("anything").template_id == "generic"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"nope": {}}, "templates"),
        (_config(a={"fields": {"thing1": ["title"]}}), "template_id"),
        (_config(a={"template_id": "t", "fields": {}}), "fields"),
        (_config(a={"template_id": "t", "fields": {"weird1": ["title"]}}), "unknown field type"),
        (_config(a={"template_id": "t", "fields": {"thing1": ["nowhere"]}}), "not one of"),
        (_config(a={"template_id": "t", "fields": {"thing1": {"default": 3, "from": ["title"]}}}), "text"),
        (_config(a={"template_id": "t", "long_term": "yes", "fields": {"thing1": ["title"]}}), "long_term"),
        (
            _config(
                a={"template_id": "t", "long_term": True, "fields": {"thing1": ["title"]}},
                b={"template_id": "t", "fields": {"thing1": ["title"]}},
            ),
            "long_term for some",
        ),
    ],
)
def test_bad_configuration_is_refused_with_a_reason(config, message):
    with pytest.raises(TemplateConfigError, match=message):
        parse_templates(config, source="test")


def test_configuration_from_env_json_or_file(tmp_path):
    config = _config(
        **{"alert": {"template_id": "REAL-alert", "long_term": True, "fields": {"thing1": ["title"]}}}
    )
    from_env = Config.from_env({"WECHAT_TEMPLATES": json.dumps(config)})
    assert from_env.wechat_templates.for_kind("alert").template_id == "REAL-alert"
    assert not from_env.wechat_templates.is_demo
    path = tmp_path / "templates.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    from_file = Config.from_env({"WECHAT_TEMPLATES_FILE": str(path)})
    assert from_file.wechat_templates.source == str(path)
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_env({"WECHAT_TEMPLATES": "{"})
    with pytest.raises(ConfigError, match="cannot read"):
        Config.from_env({"WECHAT_TEMPLATES_FILE": str(tmp_path / "missing.json")})


def test_production_refuses_the_demo_templates():
    with pytest.raises(ConfigError, match="demo subscribe-message templates"):
        Config.from_env({"YIJING_ENV": "production"})


def test_notification_settings_from_env():
    config = Config.from_env(
        {
            "WECHAT_SEND_RATE_PER_MINUTE": "600",
            "BROADCAST_RATE_PER_MINUTE": "9000",
            "NOTIFY_RETRY_BACKOFF": "5, 10,20",
            "NOTIFY_BATCH_SIZE": "50",
        }
    )
    assert config.wechat_send_rate_per_minute == 600
    assert config.broadcast_rate_per_minute == 600  # never above the shared sending rate
    assert config.notify_retry_backoff == (5, 10, 20)
    assert config.notify_batch_size == 50
    with pytest.raises(ConfigError, match="NOTIFY_RETRY_BACKOFF"):
        Config.from_env({"NOTIFY_RETRY_BACKOFF": "soon"})
