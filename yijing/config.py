"""Configuration read from the environment.

Every setting an operator may change is an environment variable; the names are part of the
contract and listed in the README. Demo values make a laptop run work out of the box and are
refused when ``YIJING_ENV=production``.
"""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

DEMO_SECRET_KEY = "demo-secret-key-not-for-production"
# 32-byte demo keys (base64). Marked as demo and refused in production.
DEMO_PII_KEYS = "demo1:ZGVtby1waWkta2V5LW5vdC1mb3ItcHJvZHVjdGlvbiE="
DEMO_PII_HASH_KEY = "ZGVtby1oYXNoLWtleS1ub3QtZm9yLXByb2R1Y3Rpb24="
DEMO_WECHAT_SECRET = "demo-wechat-secret"
DEMO_WECHAT_APPID = "wx-demo-appid"

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing, malformed or not allowed in this environment."""


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _radii(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """Comma-separated radii in metres, strictly increasing: ``1000,3000,5000``."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        radii = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{name} must be whole numbers separated by commas, got {raw!r}") from None
    if not radii or any(r <= 0 for r in radii) or any(a >= b for a, b in itertools.pairwise(radii)):
        raise ConfigError(f"{name} must be positive and strictly increasing, got {raw!r}")
    return radii


def parse_pii_keys(raw: str) -> dict[str, bytes]:
    """Parse ``id:base64key,id:base64key`` into a mapping of 32-byte AES keys."""
    keys: dict[str, bytes] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key_id, sep, encoded = part.partition(":")
        if not sep or not key_id or not key_id.isalnum():
            raise ConfigError("PII_KEYS must look like 'k1:<base64 32 bytes>,k2:<...>'")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ConfigError(f"PII_KEYS key {key_id!r} is not valid base64") from None
        if len(key) != 32:
            raise ConfigError(f"PII_KEYS key {key_id!r} must be 32 bytes, got {len(key)}")
        keys[key_id] = key
    if not keys:
        raise ConfigError("PII_KEYS holds no key")
    return keys


def _default_database_url() -> str:
    return f"sqlite:///{ROOT / 'instance' / 'yijing.db'}"


@dataclass(frozen=True)
class Config:
    env: str
    secret_key: str
    database_url: str
    redis_url: str
    redis_prefix: str
    wechat_appid: str
    wechat_secret: str
    wechat_api_base_url: str
    wechat_timeout: float
    wechat_miniprogram_state: str
    pii_keys: dict[str, bytes]
    pii_active_key_id: str
    pii_hash_key: bytes
    user_token_ttl: int
    staff_token_ttl: int
    login_rate_limit: str
    staff_login_failure_limit: str
    log_level: str
    log_json: bool
    media_root: str
    queue_prefix: str
    proxy_hops: int
    extra: dict[str, object] = field(default_factory=dict)
    # Volunteers (issue 3): the corps' age limits, the privacy terms' version and the duty index.
    volunteer_min_age: int = 18
    volunteer_max_age: int = 65
    volunteer_privacy_version: str = "2026-01"
    volunteer_number_prefix: str = "BTYJ"
    duty_ping_window_seconds: int = 600
    duty_db_sync_seconds: int = 240
    # Patrol tasks and dispatch (issue 4).
    task_nearby_radius_m: int = 3000
    task_geofence_tolerance_m: int = 50
    task_geofence_max_accuracy_m: int = 100
    task_checkin_early_minutes: int = 30
    task_track_skew_seconds: int = 120
    task_invitation_ttl_minutes: int = 60
    task_invitation_reminder_minutes: int = 15
    task_reminder_lead_minutes: int = 60
    task_close_grace_minutes: int = 30
    task_recurrence_horizon_days: int = 14
    dispatch_ring_radii_m: tuple[int, ...] = (1000, 3000, 5000, 10000)
    dispatch_max_radius_m: int = 10000
    dispatch_ring_timeout_seconds: int = 120
    dispatch_invites_per_slot: int = 2
    dispatch_max_invites_per_ring: int = 50
    dispatch_no_show_weight: float = 2.0

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        yijing_env = _str(env, "YIJING_ENV", "development")
        if yijing_env not in {"development", "test", "production"}:
            raise ConfigError("YIJING_ENV must be development, test or production")
        pii_keys = parse_pii_keys(_str(env, "PII_KEYS", DEMO_PII_KEYS))
        active = _str(env, "PII_ACTIVE_KEY_ID", next(iter(reversed(pii_keys))))
        if active not in pii_keys:
            raise ConfigError(f"PII_ACTIVE_KEY_ID {active!r} is not one of PII_KEYS")
        try:
            hash_key = base64.b64decode(_str(env, "PII_HASH_KEY", DEMO_PII_HASH_KEY), validate=True)
        except ValueError:
            raise ConfigError("PII_HASH_KEY is not valid base64") from None
        if len(hash_key) < 32:
            raise ConfigError("PII_HASH_KEY must decode to at least 32 bytes")
        base_url = _str(env, "WECHAT_API_BASE_URL", "http://127.0.0.1:9400").rstrip("/")
        if urlparse(base_url).scheme not in {"http", "https"}:
            raise ConfigError("WECHAT_API_BASE_URL must be an http(s) URL")
        mp_state = _str(env, "WECHAT_MINIPROGRAM_STATE", "formal")
        if mp_state not in {"developer", "trial", "formal"}:
            raise ConfigError("WECHAT_MINIPROGRAM_STATE must be developer, trial or formal")
        config = cls(
            env=yijing_env,
            secret_key=_str(env, "SECRET_KEY", DEMO_SECRET_KEY),
            database_url=_str(env, "DATABASE_URL", _default_database_url()),
            redis_url=_str(env, "REDIS_URL", "redis://127.0.0.1:6379/0"),
            redis_prefix=_str(env, "REDIS_PREFIX", "yj:"),
            wechat_appid=_str(env, "WECHAT_APPID", DEMO_WECHAT_APPID),
            wechat_secret=_str(env, "WECHAT_SECRET", DEMO_WECHAT_SECRET),
            wechat_api_base_url=base_url,
            wechat_timeout=_float(env, "WECHAT_TIMEOUT", 5.0),
            wechat_miniprogram_state=mp_state,
            pii_keys=pii_keys,
            pii_active_key_id=active,
            pii_hash_key=hash_key,
            user_token_ttl=_int(env, "USER_TOKEN_TTL", 30 * 24 * 3600, minimum=60),
            staff_token_ttl=_int(env, "STAFF_TOKEN_TTL", 12 * 3600, minimum=60),
            login_rate_limit=_str(env, "LOGIN_RATE_LIMIT", "20/minute"),
            staff_login_failure_limit=_str(env, "STAFF_LOGIN_FAILURE_LIMIT", "5/15minute"),
            log_level=_str(env, "LOG_LEVEL", "INFO").upper(),
            log_json=_bool(env, "LOG_JSON", True),
            media_root=_str(env, "MEDIA_ROOT", str(ROOT / "var" / "media")),
            queue_prefix=_str(env, "QUEUE_PREFIX", ""),
            proxy_hops=_int(env, "PROXY_HOPS", 0),
            volunteer_min_age=_int(env, "VOLUNTEER_MIN_AGE", 18, minimum=14),
            volunteer_max_age=_int(env, "VOLUNTEER_MAX_AGE", 65, minimum=14),
            volunteer_privacy_version=_str(env, "VOLUNTEER_PRIVACY_VERSION", "2026-01"),
            volunteer_number_prefix=_str(env, "VOLUNTEER_NUMBER_PREFIX", "BTYJ"),
            duty_ping_window_seconds=_int(env, "DUTY_PING_WINDOW_SECONDS", 600, minimum=30),
            duty_db_sync_seconds=_int(env, "DUTY_DB_SYNC_SECONDS", 240, minimum=0),
            task_nearby_radius_m=_int(env, "TASK_NEARBY_RADIUS_M", 3000),
            task_geofence_tolerance_m=_int(env, "TASK_GEOFENCE_TOLERANCE_M", 50),
            task_geofence_max_accuracy_m=_int(env, "TASK_GEOFENCE_MAX_ACCURACY_M", 100),
            task_checkin_early_minutes=_int(env, "TASK_CHECKIN_EARLY_MINUTES", 30),
            task_track_skew_seconds=_int(env, "TASK_TRACK_SKEW_SECONDS", 120),
            task_invitation_ttl_minutes=_int(env, "TASK_INVITATION_TTL_MINUTES", 60, minimum=1),
            task_invitation_reminder_minutes=_int(env, "TASK_INVITATION_REMINDER_MINUTES", 15),
            task_reminder_lead_minutes=_int(env, "TASK_REMINDER_LEAD_MINUTES", 60),
            task_close_grace_minutes=_int(env, "TASK_CLOSE_GRACE_MINUTES", 30),
            task_recurrence_horizon_days=_int(env, "TASK_RECURRENCE_HORIZON_DAYS", 14, minimum=1),
            dispatch_ring_radii_m=_radii(env, "DISPATCH_RING_RADII_M", (1000, 3000, 5000, 10000)),
            dispatch_max_radius_m=_int(env, "DISPATCH_MAX_RADIUS_M", 10000, minimum=100),
            dispatch_ring_timeout_seconds=_int(env, "DISPATCH_RING_TIMEOUT_SECONDS", 120, minimum=5),
            dispatch_invites_per_slot=_int(env, "DISPATCH_INVITES_PER_SLOT", 2, minimum=1),
            dispatch_max_invites_per_ring=_int(env, "DISPATCH_MAX_INVITES_PER_RING", 50, minimum=1),
            dispatch_no_show_weight=_float(env, "DISPATCH_NO_SHOW_WEIGHT", 2.0),
        )
        if config.volunteer_min_age > config.volunteer_max_age:
            raise ConfigError("VOLUNTEER_MIN_AGE must not exceed VOLUNTEER_MAX_AGE")
        if config.dispatch_no_show_weight < 0:
            raise ConfigError("DISPATCH_NO_SHOW_WEIGHT must not be negative")
        if not config.volunteer_number_prefix.isalnum():
            raise ConfigError("VOLUNTEER_NUMBER_PREFIX must be letters and digits only")
        if config.is_production:
            config.check_production()
        return config

    def check_production(self) -> None:
        """Refuse demo secrets and a local fake WeChat in production."""
        problems = []
        if self.secret_key == DEMO_SECRET_KEY or len(self.secret_key) < 32:
            problems.append("SECRET_KEY is the demo value or shorter than 32 characters")
        demo_keys = set(parse_pii_keys(DEMO_PII_KEYS).values())
        if demo_keys & set(self.pii_keys.values()):
            problems.append("PII_KEYS holds the demo key")
        if self.pii_hash_key == base64.b64decode(DEMO_PII_HASH_KEY):
            problems.append("PII_HASH_KEY is the demo value")
        if self.wechat_secret == DEMO_WECHAT_SECRET or self.wechat_appid == DEMO_WECHAT_APPID:
            problems.append("WECHAT_APPID/WECHAT_SECRET are the demo values")
        host = urlparse(self.wechat_api_base_url).hostname or ""
        if host in {"127.0.0.1", "localhost", "::1"} or host.startswith("127."):
            problems.append("WECHAT_API_BASE_URL points at a local fake WeChat server")
        if self.database_url.startswith("sqlite"):
            problems.append("DATABASE_URL is SQLite; production runs on PostgreSQL")
        if problems:
            raise ConfigError("Refusing to start with YIJING_ENV=production: " + "; ".join(problems) + ".")
