"""Acceptance 4: property-based requests over the served OpenAPI document (schemathesis) find
no server error (5xx), no undocumented status code, and no response that violates the
document. A bounded number of examples per operation keeps the run short."""

from __future__ import annotations

import pytest
import schemathesis
from conftest import Served, push_direct, run_server
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_served(module_sqlite_backend, tmp_path_factory):
    for url in run_server(module_sqlite_backend):
        served = Served(module_sqlite_backend, url)
        tmp = tmp_path_factory.mktemp("fuzz")
        push_direct(served, tmp, "sent", 1, "--tag", "prod", "--alias", "sent@prod")
        push_direct(served, tmp, "team-b.x", 2)
        yield served


def test_api_conforms_to_its_document(fuzz_served):
    """Every operation, each with a bounded number of generated requests (valid and invalid)."""
    headers = {"Authorization": f"Bearer {fuzz_served.admin}"}
    schema = schemathesis.openapi.from_url(fuzz_served.url + "/openapi.json", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        conforms()
