"""schemathesis over the whole OpenAPI document, as a resident and as a desk admin.

Every operation gets a few generated requests that fit the document (positive) and a few that do
not (negative): no answer may be a server error, every answer's status must be documented for
the operation, with the documented content type, and its body must match the documented schema
(errors: ``ErrorResponse``). The number of examples per operation and mode is bounded so the two
runs stay around a minute on 2 cores (35–60 s for both, measured on a loaded machine);
``YIJING_SCHEMATHESIS_EXAMPLES`` raises it for a longer hunt.
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
# A guard against a hang, not the expected time (12–35 s per role measured on a loaded 2-core machine).
BUDGET_SECONDS = 120 * max(1, EXAMPLES / 3)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Logging out would end the session the rest of the run uses.
SKIP = {("POST", "/api/v1/desk/auth/logout"), ("POST", "/api/v1/auth/logout")}


def _check_operation(
    operation: Any, mode: GenerationMode, headers: dict[str, str], statuses: Counter
) -> list[str]:
    label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
    seen: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # every failure is collected and reported at the end
            seen.append(f"{label} → {response.status_code}: {str(exc)[:600]}")

    with contextlib.suppress(Unsatisfiable):  # nothing to get wrong (no parameters, no body)
        check()
    return seen[:2]


def _run(app: Any, headers: dict[str, str]) -> tuple[list[str], Counter]:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    statuses: Counter = Counter()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.extend(_check_operation(operation, mode, headers, statuses))
        assert time.monotonic() - started < BUDGET_SECONDS, "schemathesis run over its time budget"
    return failures, statuses


@pytest.fixture
def admin(staff) -> dict[str, str]:
    return staff("contract-admin", "admin", "150200")


def test_schemathesis_as_a_desk_admin(app, admin):
    failures, statuses = _run(app, admin)
    assert not failures, "\n".join(failures)
    assert sum(n for status, n in statuses.items() if status < 300) > 30, statuses
    assert not [s for s in statuses if s >= 500], statuses


def test_schemathesis_as_a_resident(app, tree, wechat_login):
    failures, statuses = _run(app, wechat_login("contract-resident"))
    assert not failures, "\n".join(failures)
    assert sum(n for status, n in statuses.items() if status < 300) > 20, statuses
    assert not [s for s in statuses if s >= 500], statuses
