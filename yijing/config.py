"""Configuration read from the environment.

Every setting an operator may change is an environment variable, declared once in :data:`SETTINGS`
(name, type, default, meaning); the names are part of the contract. The README's table is generated
from the declaration (``python scripts/settings_table.py --write``) and a test keeps them equal. Demo
values make a laptop run work out of the box and are refused when ``YIJING_ENV=production``.
Code reads the running app's values through :func:`settings`.
"""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
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


def _host_ports(env: Mapping[str, str], name: str) -> tuple[tuple[str, int], ...]:
    """Comma-separated ``host:port`` pairs: ``10.0.0.5:26379,10.0.0.6:26379``; empty for none."""
    raw = env.get(name, "").strip()
    pairs = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must look like 'host:port,host:port', got {part!r}")
        pairs.append((host, int(port)))
    return tuple(pairs)


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
class Setting:
    """One setting an operator may change: the environment variable, its type, default and meaning.

    ``kind`` is how the value is read: ``text``, ``int`` (whole number, at least ``minimum``),
    ``float``, ``bool``, ``ints`` (comma-separated whole numbers), ``radii`` (comma-separated,
    positive, strictly increasing), ``choice`` (one of ``choices``), ``path`` (relative to the
    checkout unless absolute). ``default`` is the value when the variable is unset or empty (a
    callable computes it); ``shown`` is how the README shows a default that is not the value itself.
    ``demo`` marks a default that production refuses. ``attr`` is the :class:`Config` field it fills
    (default: the name in lower case); ``custom`` says :meth:`Config.from_env` reads it by hand,
    because it depends on another setting or is parsed into something else.
    """

    name: str
    kind: str
    default: Any
    meaning: str
    minimum: int | None = None
    choices: tuple[str, ...] = ()
    demo: bool = False
    shown: str | None = None
    attr: str = ""
    custom: bool = False

    @property
    def field(self) -> str:
        return self.attr or self.name.lower()

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def read(self, env: Mapping[str, str]) -> Any:
        """The typed value from ``env``; raises :class:`ConfigError` naming the setting."""
        default = self.default_value()
        if self.kind == "int":
            return _int(env, self.name, default, minimum=self.minimum if self.minimum is not None else 0)
        if self.kind == "float":
            return _float(env, self.name, default)
        if self.kind == "bool":
            return _bool(env, self.name, default)
        if self.kind == "ints":
            return _int_list(env, self.name, default)
        if self.kind == "radii":
            return _radii(env, self.name, default)
        value = _str(env, self.name, default)
        if self.kind == "choice" and value not in self.choices:
            raise ConfigError(f"{self.name} must be {', '.join(self.choices[:-1])} or {self.choices[-1]}")
        if self.kind == "path" and value and not Path(value).is_absolute():
            return str(ROOT / value)
        return value

    def readme_type(self) -> str:
        if self.kind == "int":
            return "whole number" + (f" ≥ {self.minimum}" if self.minimum else "")
        return {
            "float": "number",
            "bool": "true / false",
            "ints": "whole numbers, comma-separated",
            "radii": "metres, comma-separated, increasing",
            "choice": " / ".join(self.choices),
            "path": "path (relative: to the checkout)",
        }.get(self.kind, "text")

    def readme_default(self) -> str:
        if self.demo:
            return "*demo*"
        if self.shown is not None:
            return self.shown
        value = self.default_value()
        if value == "" or value is None:
            return "*(empty)*"
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, tuple):
            return f"`{','.join(map(str, value))}`"
        return f"`{value}`"


def _s(name: str, kind: str, default: Any, meaning: str, **options: Any) -> Setting:
    return Setting(name, kind, default, meaning, **options)


#: Every setting, once. The README's configuration table is generated from this list
#: (``python scripts/settings_table.py --write``) and a test keeps the two equal.
SETTINGS: tuple[Setting, ...] = (
    _s(
        "YIJING_ENV",
        "choice",
        "development",
        "`development`, `test` or `production`",
        choices=("development", "test", "production"),
        attr="env",
    ),
    _s(
        "DATABASE_URL",
        "text",
        _default_database_url,
        "SQLAlchemy URL; production: `postgresql+psycopg://user@host/db`",
        shown="`sqlite:///instance/yijing.db`",
    ),
    _s(
        "REDIS_URL",
        "text",
        "redis://127.0.0.1:6379/0",
        "Redis for the GEO index, caches, counters, rate limits, RQ queues",
    ),
    _s("REDIS_PREFIX", "text", "yj:", "prefix of every key the app writes (not RQ's own keys)"),
    _s(
        "QUEUE_PREFIX",
        "text",
        "",
        "prefix of RQ queue names and job ids (to share a Redis between deployments)",
    ),
    _s(
        "SECRET_KEY",
        "text",
        DEMO_SECRET_KEY,
        "signs volunteer-card QR payloads; ≥ 32 characters in production",
        demo=True,
    ),
    _s(
        "PII_KEYS",
        "text",
        DEMO_PII_KEYS,
        "personal-information keys, `id:base64(32 bytes)[,id:…]`; AES-256-GCM",
        demo=True,
        attr="pii_keys",
        custom=True,
    ),
    _s(
        "PII_ACTIVE_KEY_ID",
        "text",
        "",
        "key new values are encrypted with (rotate: add a key, make it active, "
        "run `flask yijing rotate-pii-keys`)",
        shown="the last id in `PII_KEYS`",
        attr="pii_active_key_id",
        custom=True,
    ),
    _s(
        "PII_HASH_KEY",
        "text",
        DEMO_PII_HASH_KEY,
        "base64, ≥ 32 bytes: HMAC key of the blind indexes used for look-ups and uniqueness",
        demo=True,
        attr="pii_hash_key",
        custom=True,
    ),
    _s("WECHAT_APPID", "text", DEMO_WECHAT_APPID, "the mini-program's AppID", demo=True),
    _s("WECHAT_SECRET", "text", DEMO_WECHAT_SECRET, "the mini-program's AppSecret", demo=True),
    _s(
        "WECHAT_API_BASE_URL",
        "text",
        "http://127.0.0.1:9400",
        "root standing for `https://api.weixin.qq.com` (a fake in development and tests)",
        attr="wechat_api_base_url",
        custom=True,
    ),
    _s("WECHAT_TIMEOUT", "float", 5.0, "seconds per WeChat call", shown="`5`"),
    _s(
        "WECHAT_MINIPROGRAM_STATE",
        "choice",
        "formal",
        "`developer`, `trial` or `formal` (subscribe messages open this version)",
        choices=("developer", "trial", "formal"),
    ),
    _s(
        "USER_TOKEN_TTL",
        "int",
        30 * 24 * 3600,
        "seconds a mini-program bearer token lives",
        minimum=60,
        shown="`2592000` (30 days)",
    ),
    _s(
        "STAFF_TOKEN_TTL",
        "int",
        12 * 3600,
        "seconds a desk token lives",
        minimum=60,
        shown="`43200` (12 hours)",
    ),
    _s(
        "LOGIN_RATE_LIMIT",
        "text",
        "20/minute",
        "failed logins (4xx) per address, on both login endpoints; successful ones are not counted, so the "
        "many phones behind one carrier-NAT address are never locked out by each other's logins",
    ),
    _s(
        "STAFF_LOGIN_FAILURE_LIMIT",
        "text",
        "5/15minute",
        "failed desk logins per username before it is locked out",
    ),
    _s(
        "PROXY_HOPS",
        "int",
        0,
        "trusted reverse proxies in front (for the client address in logs and the audit log)",
    ),
    _s(
        "LOG_LEVEL",
        "text",
        "INFO",
        "level of the root logger (`DEBUG`, `INFO`, `WARNING`, …)",
        attr="log_level",
        custom=True,
    ),
    _s(
        "LOG_JSON",
        "bool",
        True,
        "structured JSON logs with `request_id` (also in the `X-Request-ID` header); "
        "`false`: plain lines (`make run`)",
    ),
    _s("MEDIA_ROOT", "path", "var/media", "local-filesystem storage of uploaded images"),
    _s("MEDIA_MAX_BYTES", "int", 10 * 1024 * 1024, "largest upload, in bytes", minimum=1024),
    _s(
        "MEDIA_MAX_PIXELS",
        "int",
        50_000_000,
        "decompression-bomb guard: most pixels an upload may decode to",
        minimum=1,
    ),
    _s("MEDIA_MAX_DIMENSION", "int", 4096, "longest side of an image after re-encoding", minimum=64),
    _s("MEDIA_RATE_LIMIT", "text", "60/hour", "uploads per user"),
    _s(
        "MEDIA_ORPHAN_HOURS",
        "int",
        24,
        "uploads attached to nothing are deleted after this many hours",
        minimum=1,
    ),
    _s(
        "WECHAT_TEMPLATES",
        "text",
        "",
        "subscribe-message templates as JSON text: per notification kind the "
        "template id, page, fields with their WeChat types, `long_term`",
        shown="*demo* (see `WECHAT_TEMPLATES_FILE`)",
        attr="wechat_templates",
        custom=True,
    ),
    _s(
        "WECHAT_TEMPLATES_FILE",
        "text",
        "",
        "the same as a JSON file; neither set: the demo file "
        "`yijing/wechat/templates.demo.json`, refused in production",
        shown="*demo*",
        attr="wechat_templates",
        custom=True,
    ),
    _s(
        "WECHAT_SEND_RATE_PER_MINUTE",
        "int",
        6000,
        "one sending rate shared by every worker (through Redis)",
        minimum=1,
    ),
    _s("NOTIFY_BATCH_SIZE", "int", 100, "outbox rows per delivery job", minimum=1),
    _s("NOTIFY_CLAIM_LEASE", "int", 300, "seconds a worker's claim on an outbox row lasts", minimum=1),
    _s("NOTIFY_MAX_ATTEMPTS", "int", 6, "attempts before an outbox row fails", minimum=1),
    _s("NOTIFY_RETRY_BACKOFF", "ints", (30, 120, 600, 1800, 3600), "seconds between retries"),
    _s(
        "NOTIFY_SWEEP_GRACE",
        "int",
        120,
        "seconds a row may stay pending before the sweeper re-enqueues it",
        minimum=1,
    ),
    _s("BROADCAST_BATCH_SIZE", "int", 500, "rows per mass-alert fan-out chunk", minimum=1),
    _s(
        "BROADCAST_RATE_PER_MINUTE",
        "int",
        3000,
        "mass-alert fan-out pace (never above `WECHAT_SEND_RATE_PER_MINUTE`)",
        minimum=1,
        attr="broadcast_rate_per_minute",
        custom=True,
    ),
    _s(
        "BROADCAST_STALL_SECONDS",
        "int",
        300,
        "a running fan-out silent for its pace plus this long (its worker died) is revived by the sweeper",
        minimum=1,
    ),
    _s("VOLUNTEER_MIN_AGE", "int", 18, "youngest applicant (age from the resident ID number)", minimum=14),
    _s("VOLUNTEER_MAX_AGE", "int", 65, "oldest applicant", minimum=14),
    _s("VOLUNTEER_PRIVACY_VERSION", "text", "2026-01", "version of the privacy terms applicants must accept"),
    _s(
        "VOLUNTEER_NUMBER_PREFIX",
        "text",
        "BTYJ",
        "volunteer numbers look like `BTYJ-2026-000123` (letters and digits)",
    ),
    _s(
        "DUTY_PING_WINDOW_SECONDS",
        "int",
        600,
        "an on-duty volunteer with no location ping for this long drops out of the search",
        minimum=30,
    ),
    _s(
        "DUTY_DB_SYNC_SECONDS",
        "int",
        240,
        "least time between two location writes to the database (Redis gets every ping)",
    ),
    _s("TASK_NEARBY_RADIUS_M", "int", 3000, "open tasks this close are shown to volunteers from elsewhere"),
    _s("TASK_GEOFENCE_TOLERANCE_M", "int", 50, "slack added to a task's geofence"),
    _s("TASK_GEOFENCE_MAX_ACCURACY_M", "int", 100, "most of the phone's reported accuracy that counts"),
    _s("TASK_CHECKIN_EARLY_MINUTES", "int", 30, "check-in opens this early"),
    _s("TASK_TRACK_SKEW_SECONDS", "int", 120, "allowed clock skew of track points"),
    _s("TASK_INVITATION_TTL_MINUTES", "int", 60, "an assigned invitation's deadline", minimum=1),
    _s("TASK_INVITATION_REMINDER_MINUTES", "int", 15, "reminder this long before an invitation's deadline"),
    _s("TASK_REMINDER_LEAD_MINUTES", "int", 60, "reminder this long before a task starts"),
    _s("TASK_CLOSE_GRACE_MINUTES", "int", 30, "tasks close this long after their window"),
    _s("TASK_RECURRENCE_HORIZON_DAYS", "int", 14, "recurring tasks are generated this far ahead", minimum=1),
    _s("DISPATCH_RING_RADII_M", "radii", (1000, 3000, 5000, 10000), "nearby dispatch: radius of each ring"),
    _s("DISPATCH_MAX_RADIUS_M", "int", 10000, "nearby dispatch: the largest radius", minimum=100),
    _s(
        "DISPATCH_RING_TIMEOUT_SECONDS",
        "int",
        120,
        "when slots are still open this long after a ring, the next ring goes out",
        minimum=5,
    ),
    _s("DISPATCH_INVITES_PER_SLOT", "int", 2, "invitations per open slot", minimum=1),
    _s("DISPATCH_MAX_INVITES_PER_RING", "int", 50, "at most this many invitations per ring", minimum=1),
    _s(
        "DISPATCH_NO_SHOW_WEIGHT",
        "float",
        2.0,
        "how much a volunteer's no-show record pushes them down the ranking (not negative)",
    ),
    _s("CLUE_RATE_LIMIT", "text", "10/hour", "clues per user"),
    _s("CLUE_TRACK_RATE_LIMIT", "text", "60/minute", "tracking-code look-ups and replies"),
    _s("CLUE_VALID_POINTS", "int", 10, "points for a clue confirmed valid"),
    _s("CLUE_DUPLICATE_RADIUS_M", "int", 300, "duplicate suggestions: same category this close", minimum=1),
    _s("CLUE_DUPLICATE_WINDOW_HOURS", "int", 72, "duplicate suggestions: this recent", minimum=1),
    _s(
        "CLUE_MAX_DISTANCE_M",
        "int",
        50_000,
        "a clue farther than this from every community is refused",
        minimum=1,
    ),
    _s("COMMENT_RATE_LIMIT", "text", "5/minute;60/day", "comments per user"),
    _s("MESSAGE_RATE_LIMIT", "text", "3/hour;10/day", "messages to the police per user"),
    _s("COMMENT_REPORT_THRESHOLD", "int", 5, "reports that send a visible comment back to review", minimum=1),
    _s("FEED_PAGE_CACHE_TTL", "int", 60, "seconds a cached feed page lives", minimum=1),
    _s("FEED_POST_CACHE_TTL", "int", 300, "seconds a cached post detail lives", minimum=1),
    _s(
        "REPORT_ROLLUP_DAYS",
        "int",
        35,
        "the rollup job recomputes this many recent days every 15 minutes; a daily job recomputes the 92 "
        "days before that; every figure counts on the day its event happened, so older days stay equal to "
        "the raw rows (check any range with `flask yijing rollup --check`, rebuild with "
        "`flask yijing rollup`)",
        minimum=1,
    ),
    _s("REPORT_MAX_DAYS", "int", 366, "longest period one report request may cover", minimum=1),
    _s(
        "COVERAGE_MIN_ACTIVE_VOLUNTEERS",
        "int",
        3,
        "a community is covered with at least this many volunteers active in the last 30 days",
        minimum=1,
    ),
    _s("REPORT_EXPORT_DIR", "path", "var/exports", "where CSV exports are written"),
    _s(
        "DATABASE_REPLICA_URL",
        "text",
        "",
        "a PostgreSQL streaming replica for the participation review and exports (read-only "
        "transactions; see `docs/deployment.md`)",
        shown="*(empty: the primary)*",
    ),
    _s(
        "REPLICA_MAX_LAG_SECONDS",
        "int",
        30,
        "a replica further behind than this (or not answering) is skipped: reads go to the primary",
        minimum=1,
    ),
    _s(
        "REDIS_SENTINELS",
        "text",
        "",
        "`host:port,…` of Redis Sentinels: the app, caches, rate limiter and RQ workers use the master "
        "they name and follow a failover; the db number and password still come from `REDIS_URL`",
        custom=True,
    ),
    _s("REDIS_SENTINEL_MASTER", "text", "yijing", "the master name the Sentinels monitor"),
    _s(
        "CRON_LEADER_TTL",
        "int",
        30,
        "seconds the periodic-jobs leader lease lasts without renewal (a standby `cron` takes over "
        "within it)",
        minimum=3,
    ),
    _s(
        "MAP_TILE_URL",
        "text",
        "",
        "the desk console's map tiles, in GCJ-02 (e.g. an AMap or Tencent tile service): a URL with `{z}`, "
        "`{x}`, `{y}` (`{s}` becomes 1–4); empty: the offline map (no request leaves the browser)",
        custom=True,
    ),
    _s(
        "ACCOUNT_CANCEL_COOLING_DAYS",
        "int",
        15,
        "cooling-off period of an account cancellation (注销); logging in during it withdraws the request",
        minimum=0,
    ),
    _s(
        "SEALED_DELAY_MIN_SECONDS",
        "int",
        60,
        "what is due to an anonymous reporter (notification, points) is released in a batch at a random "
        "moment at least this long after the event",
        minimum=0,
    ),
    _s(
        "SEALED_DELAY_MAX_SECONDS",
        "int",
        900,
        "… and at most this long after it (not less than SEALED_DELAY_MIN_SECONDS)",
        minimum=0,
    ),
    _s(
        "RETAIN_TRACK_DAYS",
        "int",
        90,
        "track points and exact check-in/out places (whereabouts, PIPL art. 28) are deleted this long "
        "after the task ended",
        minimum=1,
    ),
    _s(
        "RETAIN_CLUE_PHOTO_DAYS",
        "int",
        180,
        "photos of a clue are deleted this long after it was closed",
        minimum=1,
    ),
    _s(
        "RETAIN_CLOSED_APPLICATION_DAYS",
        "int",
        30,
        "personal information of a rejected or withdrawn application is erased after this",
        minimum=1,
    ),
    _s(
        "RETAIN_AUDIT_DAYS",
        "int",
        365,
        "audit entries are deleted after this (at least 183: the Cybersecurity Law, art. 21, wants network "
        "logs kept six months)",
        minimum=183,
    ),
    _s(
        "RETAIN_NOTIFICATION_DAYS",
        "int",
        90,
        "delivered or failed notifications are deleted after this",
        minimum=1,
    ),
    _s(
        "RETAIN_SEALED_NOTIFICATION_DAYS",
        "int",
        7,
        "an anonymous reporter's notifications are deleted this long after delivery",
        minimum=1,
    ),
    _s(
        "RETAIN_IDEMPOTENCY_HOURS",
        "int",
        48,
        "stored answers to retried POSTs are deleted after this",
        minimum=1,
    ),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def settings_table() -> str:
    """The README's configuration table, generated from :data:`SETTINGS`."""
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    rows += [f"| `{s.name}` | {s.readme_type()} | {s.readme_default()} | {s.meaning} |" for s in SETTINGS]
    return "\n".join(rows) + "\n"


def _pii_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The personal-data keys: the encryption keys by id, the active one, the blind-index key."""
    pii_keys = parse_pii_keys(SETTINGS_BY_NAME["PII_KEYS"].read(env))
    active = SETTINGS_BY_NAME["PII_ACTIVE_KEY_ID"].read(env) or next(iter(reversed(pii_keys)))
    if active not in pii_keys:
        raise ConfigError(f"PII_ACTIVE_KEY_ID {active!r} is not one of PII_KEYS")
    try:
        hash_key = base64.b64decode(SETTINGS_BY_NAME["PII_HASH_KEY"].read(env), validate=True)
    except ValueError:
        raise ConfigError("PII_HASH_KEY is not valid base64") from None
    if len(hash_key) < 32:
        raise ConfigError("PII_HASH_KEY must decode to at least 32 bytes")
    return {"pii_keys": pii_keys, "pii_active_key_id": active, "pii_hash_key": hash_key}


def _wechat_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The WeChat API's base URL and the subscribe-message templates."""
    base_url = SETTINGS_BY_NAME["WECHAT_API_BASE_URL"].read(env).rstrip("/")
    if urlparse(base_url).scheme not in {"http", "https"}:
        raise ConfigError("WECHAT_API_BASE_URL must be an http(s) URL")
    try:
        templates = load_templates(
            SETTINGS_BY_NAME["WECHAT_TEMPLATES"].read(env) or None,
            SETTINGS_BY_NAME["WECHAT_TEMPLATES_FILE"].read(env) or None,
        )
    except TemplateConfigError as exc:
        raise ConfigError(f"subscribe-message templates: {exc}") from None
    return {"wechat_api_base_url": base_url, "wechat_templates": templates}


def _broadcast_rate(env: Mapping[str, str], send_rate: int) -> int:
    """The broadcast fan-out rate: never faster than the sending rate (its default is the lower)."""
    broadcast = SETTINGS_BY_NAME["BROADCAST_RATE_PER_MINUTE"]
    return min(_int(env, broadcast.name, min(broadcast.default, send_rate), minimum=1), send_rate)


def settings() -> Config:
    """The running app's configuration: the one way services, jobs and blueprints read a setting."""
    from flask import current_app

    return current_app.config["YIJING"]


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
    report_export_dir: str = str(ROOT / "var" / "exports")
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
    broadcast_stall_seconds: int = 300
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
    # Personal information (issue 13): cancellation, anonymous reporters, the retention schedule.
    account_cancel_cooling_days: int = 15
    sealed_delay_min_seconds: int = 60
    sealed_delay_max_seconds: int = 900
    retain_track_days: int = 90
    retain_clue_photo_days: int = 180
    retain_closed_application_days: int = 30
    retain_audit_days: int = 365
    retain_notification_days: int = 90
    retain_sealed_notification_days: int = 7
    retain_idempotency_hours: int = 48
    # Several hosts (issue 17): a read replica for reports and exports, Redis through Sentinel,
    # the periodic-jobs leader lease.
    database_replica_url: str = ""
    replica_max_lag_seconds: int = 30
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "yijing"
    cron_leader_ttl: int = 30

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read every setting of :data:`SETTINGS` from ``env`` (default: the process environment).

        The plain settings are read by their declarations; the few marked ``custom`` (keys, URLs,
        templates, rates bounded by another setting) are parsed by the helpers below. Settings that
        must agree with each other are checked once all are read, and production refuses demo values.
        """
        env = os.environ if env is None else env
        values = {s.field: s.read(env) for s in SETTINGS if not s.custom}
        config = cls(
            **values,
            **_pii_settings(env),
            **_wechat_settings(env),
            log_level=SETTINGS_BY_NAME["LOG_LEVEL"].read(env).upper(),
            redis_sentinels=_host_ports(env, "REDIS_SENTINELS"),
            map_tile_url=_tile_url(env),
            broadcast_rate_per_minute=_broadcast_rate(env, values["wechat_send_rate_per_minute"]),
        )
        config.check_consistency()
        if config.is_production:
            config.check_production()
        return config

    def check_consistency(self) -> None:
        """Refuse settings that contradict each other."""
        if self.sealed_delay_min_seconds > self.sealed_delay_max_seconds:
            raise ConfigError("SEALED_DELAY_MIN_SECONDS must not exceed SEALED_DELAY_MAX_SECONDS")
        if self.volunteer_min_age > self.volunteer_max_age:
            raise ConfigError("VOLUNTEER_MIN_AGE must not exceed VOLUNTEER_MAX_AGE")
        if self.dispatch_no_show_weight < 0:
            raise ConfigError("DISPATCH_NO_SHOW_WEIGHT must not be negative")
        if not self.volunteer_number_prefix.isalnum():
            raise ConfigError("VOLUNTEER_NUMBER_PREFIX must be letters and digits only")

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
