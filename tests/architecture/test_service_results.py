"""One way from a service result to JSON (docs/architecture.md): a public service function returns
models, pages of them or frozen dataclasses, never a response dict that a blueprint passes on; the
few hot reads kept rendered (yijing.web.rendered) are listed with the test that holds each equal to
its schema's dump."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import yijing.services

# Public functions whose dict is not a response, and why.
NOT_RESPONSES = {
    "yijing.services.jurisdictions.read_import_file": "input: the rows of an import file for import_nodes",
    "yijing.services.sealed.release_due": "a job's result (counts by kind) for RQ and the log",
    "yijing.services.retention.enforce": "a job's result (rows removed by kind), also in the audit log",
    "yijing.services.pii_keys.rotate": "the CLI's report (rows re-encrypted per column)",
    "yijing.services.pii_keys.pending": "the CLI's report (rows left per column)",
    # Answers, but keyed by data (status → count): a dataclass would hold the same dict as a field.
    "yijing.services.outbox_admin.counts": "figures keyed by status name (the keys are data)",
    "yijing.services.account.carry_out": "a job's result (rows removed by kind) for RQ and the log",
    "yijing.services.feed.counters.flush_counters": "a job's result (counters flushed by kind)",
    "yijing.services.delivery.counts_by_status": "figures keyed by status name (the keys are data)",
    "yijing.services.outbox.row": "the values of an outbox row, inserted in bulk by the caller",
    "yijing.services.outbox.rows_of": "the values of outbox rows, inserted in bulk by the caller",
    "yijing.services.tasks.board.counts_for": "an internal map task id → Counts for the board's rows",
    "yijing.services.tasks.common.notification_data": "the data= of an outbox row, not a response",
    "yijing.services.auth.profile": "the principal's cache entry (its own format), read by authentication",
    "yijing.services.volunteers.read_pii": "the fields read in clear, keyed by field name (keys are data)",
}

# Public functions that render JSON themselves (a response body, or a piece of one kept in Redis),
# and why (one that renders without the blueprint's schema needs a test holding it equal to the dump).
RENDERED = {
    "yijing.services.feed.pages.first_page": "the feed's first page kept rendered (render= is the schema's)",
    "yijing.services.auth.me_body": (
        "GET /api/v1/me kept rendered behind the principal's cache entry (render= is MeSchema's; "
        "tests/miniprogram_api/test_me_rendered.py)"
    ),
    "yijing.services.reports.summary_json": "the dashboard's figures kept rendered (render= is the schema's)",
    "yijing.services.reports.summary_json_for_token": (
        "summary_json's bytes read in the token's round trip (tests/desk/test_summary_token_read.py: "
        "equal to SummarySchema's dump)"
    ),
    "yijing.services.tasks.signup.open_tasks": (
        "GET /api/v1/tasks from the task index: the cards kept rendered there, put together "
        "(tests/miniprogram_api/test_task_cards.py: equal to TaskCardSchema's dump)"
    ),
    "yijing.services.task_index.card_json": (
        "a task's card kept rendered in the task index, written on commit by any request or job, "
        "where the blueprint's schema is not at hand (test_task_cards.py: equal to TaskCardSchema's)"
    ),
    "yijing.services.task_index.with_reader": "a rendered card with the reader's distance and status put in",
    "yijing.services.duty.on_duty_json": (
        "the desk's on-duty search: the token and the search in one Redis script, the hits rendered "
        "from its rows (tests/desk/test_on_duty_rendered.py: equal to OnDutySchema's dump)"
    ),
    "yijing.services.duty_index.item_json": "one on-duty hit as OnDutyItemSchema dumps it (same test)",
}

RETURNS_BYTES = re.compile(r"(^|\| )bytes( \||$)")
RETURNS_A_DICT = re.compile(r"^(dict|(list|Sequence|Page|tuple|Iterable|Iterator)\[dict)\b")


def _public_functions() -> dict[str, str]:
    """``module.function`` → its return annotation, for every public function of the services."""
    found: dict[str, str] = {}
    for module_info in pkgutil.walk_packages(yijing.services.__path__, "yijing.services."):
        module = importlib.import_module(module_info.name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or function.__module__ != module.__name__:
                continue
            found[f"{module.__name__}.{name}"] = str(function.__annotations__.get("return", ""))
    return found


def test_public_service_functions_return_no_response_dicts():
    offenders = sorted(
        f"{name} -> {annotation}"
        for name, annotation in _public_functions().items()
        if RETURNS_A_DICT.match(annotation) and name not in NOT_RESPONSES
    )
    assert offenders == [], (
        "return a model, a Page of models or a frozen dataclass, and let the blueprint's schema "
        f"serialise it (docs/architecture.md, 'From service result to JSON'): {offenders}"
    )


def test_the_allow_lists_name_only_what_still_returns_a_dict():
    functions = _public_functions()
    stale = [name for name in NOT_RESPONSES if not RETURNS_A_DICT.match(functions.get(name, ""))]
    assert stale == [], f"remove these entries: {stale}"


def test_public_service_functions_that_render_json_are_listed():
    unlisted = sorted(
        f"{name} -> {annotation}"
        for name, annotation in _public_functions().items()
        if RETURNS_BYTES.search(annotation) and name not in RENDERED
    )
    assert unlisted == [], f"a rendered answer needs a reason and an equality test (RENDERED): {unlisted}"
    functions = _public_functions()
    assert [name for name in RENDERED if name not in functions] == [], "remove these entries"
