"""The OpenAPI schema as a contract, checked against the real server: schemathesis generates
requests for every operation (a bounded number of examples each) and no answer may be a 5xx or
break the schema; and every route that needs the token refuses a request without it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.integration.api.conftest import ADMIN_TOKEN

MAX_EXAMPLES = 25
COVERAGE_PHASE = False
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
]  # ignored_auth: test_every_route_but_the_public_ones_needs_the_token does it for every route
PUBLIC = {("GET", "/api/webhooks/info/"), ("GET", "/healthz"), ("GET", "/readyz")}
# /readyz answers its documented 503 here: the module's webhook has a delivery due and no relay runs
NOT_READY = ("GET /readyz", 503)

calls: Counter[str] = Counter()
seconds: Counter[str] = Counter()
failures: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if calls:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        slowest = ", ".join(f"{op} {t:.1f}s" for op, t in seconds.most_common(3))
        line = (
            f"schemathesis: {sum(calls.values())} generated requests over {len(calls)} operations, "
            f"{sum(failures.values())} failures, {sum(seconds.values()):.1f}s in requests "
            f"(slowest: {slowest})"
        )
        if reporter is not None:
            reporter.write_line(f"\n{line}")


def _schema() -> Any:
    # The schema the server serves, built from the same app (no server needed to collect tests).
    from outbox.api import create_app
    from tests.integration.api.conftest import api_settings

    app = create_app(api_settings(), "dbname=unused", admin_token=ADMIN_TOKEN)
    loaded = schemathesis.openapi.from_dict(app.openapi())
    # unknown query parameters are ignored, as Label Studio does
    loaded.config.generation.update(max_examples=MAX_EXAMPLES, allow_extra_parameters=False)
    # the coverage phase's boundary cases are many (~1000 requests); run it with the CLI
    # (docs/api.md) rather than in every suite run
    loaded.config.phases.coverage.enabled = COVERAGE_PHASE
    return loaded


schema = _schema()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_answers_match_the_schema(case: Any, module_api: Any) -> None:
    started = time.perf_counter()
    operation = case.operation.label
    calls[operation] += 1
    response = case.call(base_url=module_api.url, headers={"Authorization": f"Token {ADMIN_TOKEN}"})
    seconds[operation] += time.perf_counter() - started
    checks = CHECKS
    if (operation, response.status_code) == NOT_READY:
        checks = [check for check in CHECKS if check is not not_a_server_error]
    try:
        case.validate_response(response, checks=checks)
    except Exception:
        failures[operation] += 1
        raise


def test_every_route_but_the_public_ones_needs_the_token(module_api):
    client = httpx.Client(base_url=module_api.url)
    paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, operations in paths.items():
        concrete = path.replace("{webhook_id}", "1").replace("{delivery_id}", "1")
        for method, operation in operations.items():
            public = (method.upper(), path) in PUBLIC
            assert ("security" not in operation) == public, (method, path)
            for token in (None, "wrong-token", ADMIN_TOKEN[:-1]):
                headers = {"Authorization": f"Token {token}"} if token else {}
                answer = client.request(method, concrete, headers=headers, json={})
                if public:
                    expected = answer.status_code < 400 or (f"GET {path}", answer.status_code) == NOT_READY
                    assert expected, (method, path, answer.status_code)
                else:
                    assert answer.status_code == 401, (method, path, token, answer.status_code)
                    assert answer.json()["detail"] in (
                        "Authentication credentials were not provided.",
                        "Invalid token.",
                    )
            checked += 1
    client.close()
    assert checked == sum(len(ops) for ops in paths.values()) >= 19
