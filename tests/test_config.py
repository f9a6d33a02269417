"""Configuration from the environment; production refuses demo values and the fake WeChat."""

from __future__ import annotations

import base64
import os

import pytest

from yijing.config import ROOT, Config, ConfigError

DEMO_TEMPLATES = ROOT / "yijing" / "wechat" / "templates.demo.json"


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "YIJING_ENV": "production",
        "SECRET_KEY": "x" * 48,
        "DATABASE_URL": "postgresql+psycopg://yijing@db.internal/yijing",
        "REDIS_URL": "redis://cache.internal:6379/0",
        "WECHAT_APPID": "wx0123456789abcdef",
        "WECHAT_SECRET": "real-secret-from-the-vault",
        "WECHAT_API_BASE_URL": "https://api.weixin.qq.com",
        "PII_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
        "PII_HASH_KEY": base64.b64encode(os.urandom(32)).decode(),
        # The city's own templates (here the demo file's content, given as the operator would).
        "WECHAT_TEMPLATES": DEMO_TEMPLATES.read_text(encoding="utf-8"),
    }
    env.update(overrides)
    return env


def test_production_with_real_values_starts():
    config = Config.from_env(production_env())
    assert config.is_production and config.pii_active_key_id == "k1"


def test_development_defaults_work_without_any_variable():
    config = Config.from_env({})
    assert config.env == "development"
    assert config.database_url.startswith("sqlite:///")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"PII_KEYS": ""}, "PII_KEYS"),
        ({"PII_HASH_KEY": ""}, "PII_HASH_KEY"),
        ({"WECHAT_SECRET": ""}, "WECHAT_APPID/WECHAT_SECRET"),
        ({"WECHAT_API_BASE_URL": "http://127.0.0.1:9400"}, "fake WeChat"),
        ({"DATABASE_URL": "sqlite:///x.db"}, "PostgreSQL"),
        ({"WECHAT_TEMPLATES": ""}, "WECHAT_TEMPLATES"),
    ],
)
def test_production_refuses_demo_values(overrides, fragment):
    env = production_env()
    for key, value in overrides.items():
        if value:
            env[key] = value
        else:
            env.pop(key)
    with pytest.raises(ConfigError) as excinfo:
        Config.from_env(env)
    assert fragment in str(excinfo.value)
    assert "YIJING_ENV=production" in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("USER_TOKEN_TTL", "soon"),
        ("USER_TOKEN_TTL", "5"),
        ("PII_KEYS", "k1:tooshort"),
        ("PII_ACTIVE_KEY_ID", "missing"),
        ("WECHAT_API_BASE_URL", "ftp://x"),
        ("YIJING_ENV", "staging"),
        ("LOG_JSON", "maybe"),
    ],
)
def test_bad_values_are_rejected_with_the_name(name, value):
    with pytest.raises(ConfigError) as excinfo:
        Config.from_env({name: value})
    assert name.split("_")[0] in str(excinfo.value)


def test_keys_rotate_by_id():
    old, new = base64.b64encode(b"a" * 32).decode(), base64.b64encode(b"b" * 32).decode()
    config = Config.from_env({"PII_KEYS": f"old:{old},new:{new}"})
    assert config.pii_active_key_id == "new"
    assert (
        Config.from_env({"PII_KEYS": f"old:{old},new:{new}", "PII_ACTIVE_KEY_ID": "old"}).pii_active_key_id
        == "old"
    )
