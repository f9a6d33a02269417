"""schemathesis over the whole OpenAPI document, as a resident and as a desk admin.

Every operation gets a few generated requests that fit the document (positive) and a few that do
not (negative): no answer may be a server error, every answer's status must be documented for
the operation, with the documented content type, and its body must match the documented schema
(errors: ``ErrorResponse``). The requests are drawn once and sent as each role. The number of
examples per operation and mode is bounded so both roles take 10–15 s on 2 cores (~8 s of it
drawing; measured on a loaded machine); ``YIJING_SCHEMATHESIS_EXAMPLES`` raises it for a longer hunt.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("YIJING_SCHEMATHESIS_EXAMPLES", "3"))
# A guard against a hang, not the expected time (see above).
BUDGET_SECONDS = 120 * max(1, EXAMPLES / 3)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Logging out would end the session the rest of the run uses.
SKIP = {("POST", "/api/v1/desk/auth/logout"), ("POST", "/api/v1/auth/logout")}


def _draw(operation: Any, mode: GenerationMode) -> list[Any]:
    """The operation's generated requests in ``mode`` (none where there is nothing to vary)."""
    drawn: list[Any] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def draw(case: Any) -> None:
        drawn.append(case)

    with contextlib.suppress(Unsatisfiable):  # no parameters, no body
        draw()
    return drawn


@pytest.fixture(scope="module")
def cases(app: Any) -> list[tuple[str, list[Any]]]:
    """Every operation's requests, positive and negative, drawn once for both roles: drawing them is
    most of a run's time, and (derandomized) each role's run drew the very same requests anyway."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    drawn: list[tuple[str, list[Any]]] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
            drawn.append((label, _draw(operation, mode)))
        assert time.monotonic() - started < BUDGET_SECONDS, "drawing the requests took over the budget"
    return drawn


def _run(cases: list[tuple[str, list[Any]]], headers: dict[str, str]) -> tuple[list[str], Counter]:
    failures: list[str] = []
    statuses: Counter = Counter()
    started = time.monotonic()
    for label, drawn in cases:
        seen: list[str] = []
        for case in drawn:
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as exc:  # every failure is collected and reported at the end
                seen.append(f"{label} → {response.status_code}: {str(exc)[:600]}")
        failures.extend(seen[:2])
        assert time.monotonic() - started < BUDGET_SECONDS, "schemathesis run over its time budget"
    return failures, statuses


@pytest.fixture
def admin(staff) -> dict[str, str]:
    return staff("contract-admin", "admin", "150200")


def test_schemathesis_as_a_desk_admin(cases, admin):
    failures, statuses = _run(cases, admin)
    assert not failures, "\n".join(failures)
    assert sum(n for status, n in statuses.items() if status < 300) > 30, statuses
    assert not [s for s in statuses if s >= 500], statuses


def test_schemathesis_as_a_resident(cases, tree, wechat_login):
    failures, statuses = _run(cases, wechat_login("contract-resident"))
    assert not failures, "\n".join(failures)
    assert sum(n for status, n in statuses.items() if status < 300) > 20, statuses
    assert not [s for s in statuses if s >= 500], statuses
