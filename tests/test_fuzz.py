"""Property-based fuzzing of every documented operation with schemathesis, against the app wired to the sandbox.

Zero 5xx answers, and every response must match the document. Bounded: a fixed number
of examples per operation, derandomized so CI runs are repeatable.
"""
from __future__ import annotations

import io

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from kfadapter.app import create_app
from kfadapter.settings import Settings

from tests.conftest import package

MAX_EXAMPLES = 60
CONFORMANCE = [schemathesis.checks.status_code_conformance, schemathesis.checks.content_type_conformance,
               schemathesis.checks.response_schema_conformance, schemathesis.checks.response_headers_conformance]


@pytest.fixture
def fuzz_app(sandbox, tmp_path):
    app = create_app(Settings(kfp_endpoint=sandbox.url, store_path=str(tmp_path / "store.sqlite"),
                              kfp_read_timeout=5.0))
    # Something to find, so not every generated lookup is a 404.
    app.test_client().post("/pipelineIds/p", data={"file": (io.BytesIO(package("add_v2.yaml")), "file")},
                           content_type="multipart/form-data")
    return app


@pytest.mark.slow
def test_api_conforms_to_its_document(fuzz_app):
    # schemathesis' own pytest plugin does not load under pytest 9, so each operation gets a hypothesis run here.
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    sent: dict[str, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @hsettings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call()
            sent[operation.label] = sent.get(operation.label, 0) + 1
            # The sandbox KFP is healthy, so any 5xx (502/504 included) is a defect somewhere.
            assert response.status_code < 500, \
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
            # Conformance of every answer; not "valid data accepted": a schema cannot say what a runnable
            # pipeline package or an existing name is, so the adapter's 400s/404s there are correct.
            case.validate_response(response, checks=CONFORMANCE)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {str(exc)[:800]}")
    print(f"schemathesis sent {sum(sent.values())} requests over {len(sent)} operations")
    assert not failures, "\n".join(failures)
    assert len(sent) >= 18
