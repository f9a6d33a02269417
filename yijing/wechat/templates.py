"""Subscribe-message templates: which WeChat template a notification kind uses and how its fields are filled.

The mapping is configuration (``WECHAT_TEMPLATES`` holding JSON, or ``WECHAT_TEMPLATES_FILE`` naming a JSON
file; the demo default is ``templates.demo.json`` next to this module). Its shape::

    {
      "templates": {
        "task.invitation": {
          "template_id": "<id from the WeChat console>",
          "page": "pages/task/detail/index",      # optional; the notification's own page wins
          "long_term": false,                      # long-term subscription: consent is not counted
          "urgent": true,                          # deliver on the dispatch queue, ahead of the rest
          "fields": {
            "thing1": ["data.task_title", "title"],            # first non-empty source wins
            "time2": {"from": ["data.starts_at", "created_at"]},
            "thing3": {"from": ["data.place"], "default": "详见小程序"},
            "phrase4": {"value": "待确认"}                      # a constant
          }
        },
        "*": { ... }                               # optional: kinds without their own template
      }
    }

A field's type is its key without the trailing digits (``thing1`` → ``thing``), as in WeChat's console.
Sources: ``title``, ``body``, ``created_at``, ``kind`` or ``data.<key>`` (``data.a.b`` for nested values).
Values are cut to the type's limit rather than refused (WeChat answers 47003 to a value that is too
long or empty); times and dates are shown in Asia/Shanghai. Kinds without a template (and no ``"*"``)
reach the in-app inbox only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from yijing.localtime import SHANGHAI

DEMO_TEMPLATES_FILE = Path(__file__).with_name("templates.demo.json")
FALLBACK_KIND = "*"

#: Characters allowed per field type (WeChat's documented limits).
FIELD_LIMITS: dict[str, int] = {
    "thing": 20,
    "phrase": 5,
    "name": 10,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "character_string": 32,
    "phone_number": 17,
    "car_number": 8,
    "amount": 32,
}
TIME_TYPES = frozenset({"time", "date"})
FIELD_TYPES = frozenset(FIELD_LIMITS) | TIME_TYPES
SOURCE_ROOTS = frozenset({"title", "body", "created_at", "kind"})

# What a type may hold; anything else is dropped before cutting (so the value still fits).
_KEEP: dict[str, re.Pattern[str]] = {
    "phrase": re.compile(r"[\u3400-\u9fff]"),  # plain Chinese characters only
    "number": re.compile(r"[0-9.\-]"),
    "letter": re.compile(r"[A-Za-z]"),
    "phone_number": re.compile(r"[0-9+\-() ]"),
    "amount": re.compile(r"[0-9.\-¥$元]"),
}
# Placeholders for a value that is empty after cleaning (WeChat refuses empty values).
_EMPTY: dict[str, str] = {
    "thing": "无",
    "phrase": "无",
    "name": "无",
    "number": "0",
    "letter": "x",
    "symbol": "-",
    "character_string": "-",
    "phone_number": "-",
    "car_number": "-",
    "amount": "0",
}
_WS = re.compile(r"\s+")


class TemplateConfigError(ValueError):
    """The template configuration is malformed; the message says where."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    sources: tuple[str, ...] = ()
    default: str | None = None
    value: str | None = None


@dataclass(frozen=True)
class Template:
    kind: str
    template_id: str
    fields: tuple[FieldSpec, ...]
    page: str | None = None
    long_term: bool = False
    urgent: bool = False

    def render(
        self, *, title: str, body: str, data: Mapping[str, Any], created_at: datetime, kind: str
    ) -> dict[str, str]:
        """The ``data`` object of the subscribe message: every field filled and cut to its limit."""
        root = {"title": title, "body": body, "data": data, "created_at": created_at, "kind": kind}
        out: dict[str, str] = {}
        for spec in self.fields:
            raw: Any = spec.value
            if raw is None:
                raw = next((v for v in (_lookup(root, s) for s in spec.sources) if _present(v)), None)
            if not _present(raw):
                raw = spec.default
            out[spec.name] = fit(spec.type, raw)
        return out


@dataclass(frozen=True)
class TemplateRegistry:
    """Templates by notification kind (plus the optional ``"*"`` fallback)."""

    templates: Mapping[str, Template] = field(default_factory=dict)
    source: str = "demo"

    @property
    def is_demo(self) -> bool:
        return self.source == "demo"

    def for_kind(self, kind: str) -> Template | None:
        return self.templates.get(kind) or self.templates.get(FALLBACK_KIND)

    def by_template_id(self) -> dict[str, list[Template]]:
        found: dict[str, list[Template]] = {}
        for template in self.templates.values():
            found.setdefault(template.template_id, []).append(template)
        return found

    def is_long_term(self, template_id: str) -> bool:
        return any(t.long_term for t in self.by_template_id().get(template_id, []))


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def _lookup(root: Mapping[str, Any], source: str) -> Any:
    current: Any = root
    for part in source.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def fit(field_type: str, value: Any) -> str:
    """``value`` as WeChat accepts it for ``field_type``: cleaned, cut to the limit, never empty."""
    if field_type in TIME_TYPES:
        moment = _as_datetime(value)
        if moment is None:
            text = _WS.sub(" ", str(value or "")).strip()
            return text[:20] or "-"
        local = moment.astimezone(SHANGHAI)
        return local.strftime("%Y年%m月%d日 %H:%M" if field_type == "time" else "%Y年%m月%d日")
    text = _WS.sub(" ", str(value if value is not None else "")).strip()
    keep = _KEEP.get(field_type)
    if keep is not None:
        text = "".join(keep.findall(text))
    limit = FIELD_LIMITS[field_type]
    if len(text) > limit:
        # A cut "thing" shows that it goes on; other types have no room for an ellipsis to mean anything.
        text = text[: limit - 1] + "…" if field_type == "thing" else text[:limit]
    return text or _EMPTY[field_type]


def _parse_field(kind: str, name: str, raw: Any) -> FieldSpec:
    where = f"templates[{kind!r}].fields[{name!r}]"
    field_type = name.rstrip("0123456789")
    if field_type not in FIELD_TYPES:
        raise TemplateConfigError(
            f"{where}: unknown field type {field_type!r} (expected one of {sorted(FIELD_TYPES)})"
        )
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, list):
        raw = {"from": raw}
    if not isinstance(raw, dict):
        raise TemplateConfigError(f"{where}: expected a list of sources or an object")
    unknown = set(raw) - {"from", "default", "value"}
    if unknown:
        raise TemplateConfigError(f"{where}: unknown keys {sorted(unknown)}")
    sources = raw.get("from", [])
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources):
        raise TemplateConfigError(f"{where}.from: expected a list of source names")
    for source in sources:
        head = source.split(".", 1)[0]
        if head not in SOURCE_ROOTS and not (head == "data" and "." in source):
            raise TemplateConfigError(
                f"{where}.from: {source!r} is not one of title, body, created_at, kind or data.<key>"
            )
    value = raw.get("value")
    default = raw.get("default")
    for key, item in (("value", value), ("default", default)):
        if item is not None and not isinstance(item, str):
            raise TemplateConfigError(f"{where}.{key}: expected text")
    if value is None and not sources:
        raise TemplateConfigError(f"{where}: give 'from' sources or a constant 'value'")
    return FieldSpec(name=name, type=field_type, sources=tuple(sources), default=default, value=value)


def parse_templates(config: Any, *, source: str) -> TemplateRegistry:
    """Validate the configuration object and build the registry."""
    if not isinstance(config, dict) or not isinstance(config.get("templates"), dict):
        raise TemplateConfigError('expected an object with a "templates" object')
    templates: dict[str, Template] = {}
    for kind, raw in config["templates"].items():
        where = f"templates[{kind!r}]"
        if not isinstance(raw, dict):
            raise TemplateConfigError(f"{where}: expected an object")
        unknown = set(raw) - {"template_id", "page", "long_term", "urgent", "fields"}
        if unknown:
            raise TemplateConfigError(f"{where}: unknown keys {sorted(unknown)}")
        template_id = raw.get("template_id")
        if not isinstance(template_id, str) or not template_id.strip() or len(template_id) > 64:
            raise TemplateConfigError(f"{where}.template_id: expected text of at most 64 characters")
        page = raw.get("page")
        if page is not None and (not isinstance(page, str) or len(page) > 255):
            raise TemplateConfigError(f"{where}.page: expected text of at most 255 characters")
        for flag in ("long_term", "urgent"):
            if not isinstance(raw.get(flag, False), bool):
                raise TemplateConfigError(f"{where}.{flag}: expected true or false")
        fields = raw.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise TemplateConfigError(f"{where}.fields: expected a non-empty object")
        templates[kind] = Template(
            kind=kind,
            template_id=template_id.strip(),
            fields=tuple(_parse_field(kind, name, spec) for name, spec in fields.items()),
            page=page or None,
            long_term=raw.get("long_term", False),
            urgent=raw.get("urgent", False),
        )
    registry = TemplateRegistry(templates=templates, source=source)
    for template_id, users in registry.by_template_id().items():
        if len({t.long_term for t in users}) > 1:
            raise TemplateConfigError(
                f"template {template_id!r} is long_term for some kinds and not for others"
            )
    return registry


def load_templates(json_text: str | None, file_path: str | None) -> TemplateRegistry:
    """From ``WECHAT_TEMPLATES`` (JSON) or ``WECHAT_TEMPLATES_FILE``; the demo file when neither is set."""
    if json_text and file_path:
        raise TemplateConfigError("set WECHAT_TEMPLATES or WECHAT_TEMPLATES_FILE, not both")
    if json_text:
        text, source = json_text, "WECHAT_TEMPLATES"
    else:
        path = Path(file_path) if file_path else DEMO_TEMPLATES_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateConfigError(f"cannot read {path}: {exc.strerror}") from None
        source = str(path) if file_path else "demo"
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateConfigError(f"{source} is not valid JSON: {exc}") from None
    try:
        return parse_templates(config, source=source)
    except TemplateConfigError as exc:
        raise TemplateConfigError(f"{source}: {exc}") from None
