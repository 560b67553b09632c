"""Schemathesis against the OpenAPI document: every endpoint of every installed module, valid and invalid input.

A real app process (`live_server`) answers generated requests sent with a
valid token of every scope; each answer must be no server error, have a
documented status code and content type, and match the documented schema.
Path parameters and body ids point at real records half of the time, so the
success paths (a work order created with any text) are exercised too.
Examples per operation are few and derandomized: the test takes seconds and
finds the same thing every run.
"""

from __future__ import annotations

import asyncio

from core.rest import build_openapi, declared_routes, issue_token
from tests.api_helpers import api_estate

EXAMPLES = 12


def fuzz(base_url: str, document: dict, secret: str, real: dict) -> int:
    """Run schemathesis (synchronous, in a thread) and return how many requests it sent."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, given, settings, strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance, response_headers_conformance, response_schema_conformance, status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {secret}"}
    sent = 0

    def realistic(case) -> None:
        params = case.path_parameters
        if "project" in params:
            params["project"] = real["project"]
        if "id" in params:
            params["id"] = real["ids"].get(case.operation.path, params["id"])
        if isinstance(case.body, dict):
            for name, value in real["body_ids"].items():
                if name in case.body:
                    case.body[name] = value

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode), use_real=st.booleans())
            def check(case, use_real):
                nonlocal sent
                if use_real:
                    realistic(case)
                case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=checks)
                sent += 1

            check()
    return sent


async def test_schemathesis_finds_no_server_error_and_every_answer_matches_the_document(app, host, live_server):
    import re

    from core.rest import full_path
    from core.testing import make_record

    east = await api_estate(host, "EAST")
    # Every route that loads a record (`model=`) gets a real one of the estate to find.
    made = {"core.Customer": east.customer, "core.Unit": east.unit}
    ids = {}
    for route in declared_routes(host):
        if route.model:
            if route.model not in made:
                made[route.model] = await make_record(route.model, east.project)
            ids["/api/v1" + re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", full_path(route))] = made[route.model].pk
    scopes = sorted({r.scope.split(":")[0] + ":write" for r in declared_routes(host)})
    _token, secret = await issue_token("schemathesis", scopes, [east.project.id], rate_limit=1_000_000)
    real = {
        "project": "EAST",
        "ids": ids,
        # Ids in bodies, by field name: creates then succeed with any generated text.
        "body_ids": {"customer_id": east.customer.id, "category_id": east.category.id, "unit_id": east.unit.id},
    }
    document = build_openapi(host)
    try:
        sent = await asyncio.to_thread(fuzz, live_server.url, document, secret, real)
    except BaseException:
        print(live_server.output()[-6000:])  # the server's side of what went wrong
        raise
    assert sent >= len(document["paths"]) * 2
