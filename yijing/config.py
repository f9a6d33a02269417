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

from yijing.wechat.templates import TemplateConfigError, TemplateRegistry, load_templates

DEMO_SECRET_KEY = "demo-secret-key-not-for-production"
# 32-byte demo keys (base64). Marked as demo and refused in production.
DEMO_PII_KEYS = "demo1:ZGVtby1waWkta2V5LW5vdC1mb3ItcHJvZHVjdGlvbiE="
DEMO_PII_HASH_KEY = "ZGVtby1oYXNoLWtleS1ub3QtZm9yLXByb2R1Y3Rpb24="
DEMO_WECHAT_SECRET = "demo-wechat-secret"
DEMO_WECHAT_APPID = "wx-demo-appid"

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing, malformed or not allowed in this environment."""


def _tile_url(env: Mapping[str, str]) -> str:
    url = env.get("MAP_TILE_URL", "").strip()
    if url and (
        not url.startswith(("https://", "http://")) or not all(p in url for p in ("{z}", "{x}", "{y}"))
    ):
        raise ConfigError("MAP_TILE_URL must be an http(s) URL with {z}, {x} and {y}")
    return url


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


def _int_list(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated whole numbers, got {raw!r}") from None
    if not values or any(v < 0 for v in values):
        raise ConfigError(f"{name} must hold at least one number, none negative")
    return values


def _radii(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """Comma-separated radii in metres, strictly increasing: ``1000,3000,5000``."""
    radii = _int_list(env, name, default)
    if any(r <= 0 for r in radii) or any(a >= b for a, b in itertools.pairwise(radii)):
        raise ConfigError(f"{name} must be positive and strictly increasing, got {env.get(name)!r}")
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
    # Media uploads and clues (issue 5).
    media_max_bytes: int = 10 * 1024 * 1024
    media_max_pixels: int = 50_000_000
    media_max_dimension: int = 4096
    media_rate_limit: str = "60/hour"
    media_orphan_hours: int = 24
    clue_rate_limit: str = "10/hour"
    clue_track_rate_limit: str = "60/minute"
    clue_valid_points: int = 10
    clue_duplicate_radius_m: int = 300
    clue_duplicate_window_hours: int = 72
    clue_max_distance_m: int = 50_000
    # Participation review (issue 8).
    report_rollup_days: int = 35
    report_max_days: int = 366
    coverage_min_active_volunteers: int = 3
    report_export_dir: str = ""
    # The desk console's map tiles (GCJ-02, e.g. an AMap or Tencent tile service): a URL with {z}, {x}
    # and {y} (and optionally {s}); empty, the default, draws the offline map with no tiles.
    map_tile_url: str = ""
    # Notifications (issue 7): templates, delivery, retries, the sweeper, mass alerts.
    wechat_templates: TemplateRegistry = field(default_factory=TemplateRegistry)
    wechat_send_rate_per_minute: int = 6000
    notify_batch_size: int = 100
    notify_claim_lease: int = 300
    notify_max_attempts: int = 6
    notify_retry_backoff: tuple[int, ...] = (30, 120, 600, 1800, 3600)
    notify_sweep_grace: int = 120
    broadcast_batch_size: int = 500
    broadcast_rate_per_minute: int = 3000
    extra: dict[str, object] = field(default_factory=dict)
    # Volunteers (issue 3): the corps' age limits, the privacy terms' version and the duty index.
    volunteer_min_age: int = 18
    volunteer_max_age: int = 65
    volunteer_privacy_version: str = "2026-01"
    volunteer_number_prefix: str = "BTYJ"
    duty_ping_window_seconds: int = 600
    duty_db_sync_seconds: int = 240
    # Feed, comments and messages (issue 6).
    comment_rate_limit: str = "5/minute;60/day"
    message_rate_limit: str = "3/hour;10/day"
    feed_page_cache_ttl: int = 60
    feed_post_cache_ttl: int = 300
    comment_report_threshold: int = 5
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
        try:
            templates = load_templates(
                env.get("WECHAT_TEMPLATES", "").strip() or None,
                env.get("WECHAT_TEMPLATES_FILE", "").strip() or None,
            )
        except TemplateConfigError as exc:
            raise ConfigError(f"subscribe-message templates: {exc}") from None
        send_rate = _int(env, "WECHAT_SEND_RATE_PER_MINUTE", 6000, minimum=1)
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
            media_max_bytes=_int(env, "MEDIA_MAX_BYTES", 10 * 1024 * 1024, minimum=1024),
            media_max_pixels=_int(env, "MEDIA_MAX_PIXELS", 50_000_000, minimum=1),
            media_max_dimension=_int(env, "MEDIA_MAX_DIMENSION", 4096, minimum=64),
            media_rate_limit=_str(env, "MEDIA_RATE_LIMIT", "60/hour"),
            media_orphan_hours=_int(env, "MEDIA_ORPHAN_HOURS", 24, minimum=1),
            clue_rate_limit=_str(env, "CLUE_RATE_LIMIT", "10/hour"),
            clue_track_rate_limit=_str(env, "CLUE_TRACK_RATE_LIMIT", "60/minute"),
            clue_valid_points=_int(env, "CLUE_VALID_POINTS", 10),
            clue_duplicate_radius_m=_int(env, "CLUE_DUPLICATE_RADIUS_M", 300, minimum=1),
            clue_duplicate_window_hours=_int(env, "CLUE_DUPLICATE_WINDOW_HOURS", 72, minimum=1),
            clue_max_distance_m=_int(env, "CLUE_MAX_DISTANCE_M", 50_000, minimum=1),
            report_rollup_days=_int(env, "REPORT_ROLLUP_DAYS", 35, minimum=1),
            report_max_days=_int(env, "REPORT_MAX_DAYS", 366, minimum=1),
            coverage_min_active_volunteers=_int(env, "COVERAGE_MIN_ACTIVE_VOLUNTEERS", 3, minimum=1),
            report_export_dir=_str(env, "REPORT_EXPORT_DIR", str(ROOT / "var" / "exports")),
            map_tile_url=_tile_url(env),
            volunteer_min_age=_int(env, "VOLUNTEER_MIN_AGE", 18, minimum=14),
            volunteer_max_age=_int(env, "VOLUNTEER_MAX_AGE", 65, minimum=14),
            volunteer_privacy_version=_str(env, "VOLUNTEER_PRIVACY_VERSION", "2026-01"),
            volunteer_number_prefix=_str(env, "VOLUNTEER_NUMBER_PREFIX", "BTYJ"),
            duty_ping_window_seconds=_int(env, "DUTY_PING_WINDOW_SECONDS", 600, minimum=30),
            duty_db_sync_seconds=_int(env, "DUTY_DB_SYNC_SECONDS", 240, minimum=0),
            comment_rate_limit=_str(env, "COMMENT_RATE_LIMIT", "5/minute;60/day"),
            message_rate_limit=_str(env, "MESSAGE_RATE_LIMIT", "3/hour;10/day"),
            feed_page_cache_ttl=_int(env, "FEED_PAGE_CACHE_TTL", 60, minimum=1),
            feed_post_cache_ttl=_int(env, "FEED_POST_CACHE_TTL", 300, minimum=1),
            comment_report_threshold=_int(env, "COMMENT_REPORT_THRESHOLD", 5, minimum=1),
            wechat_templates=templates,
            wechat_send_rate_per_minute=send_rate,
            notify_batch_size=_int(env, "NOTIFY_BATCH_SIZE", 100, minimum=1),
            notify_claim_lease=_int(env, "NOTIFY_CLAIM_LEASE", 300, minimum=1),
            notify_max_attempts=_int(env, "NOTIFY_MAX_ATTEMPTS", 6, minimum=1),
            notify_retry_backoff=_int_list(env, "NOTIFY_RETRY_BACKOFF", (30, 120, 600, 1800, 3600)),
            notify_sweep_grace=_int(env, "NOTIFY_SWEEP_GRACE", 120, minimum=1),
            broadcast_batch_size=_int(env, "BROADCAST_BATCH_SIZE", 500, minimum=1),
            broadcast_rate_per_minute=min(
                _int(env, "BROADCAST_RATE_PER_MINUTE", min(3000, send_rate), minimum=1), send_rate
            ),
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
        if self.wechat_templates.is_demo:
            problems.append(
                "WECHAT_TEMPLATES/WECHAT_TEMPLATES_FILE are not set (demo subscribe-message templates)"
            )
        if self.database_url.startswith("sqlite"):
            problems.append("DATABASE_URL is SQLite; production runs on PostgreSQL")
        if problems:
            raise ConfigError("Refusing to start with YIJING_ENV=production: " + "; ".join(problems) + ".")
