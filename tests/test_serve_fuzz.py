"""Schema-driven fuzzing of the service (schemathesis, against the app's own OpenAPI schema): whatever
it sends, in or out of the schema, the answer is never a 5xx. The number of examples is bounded for CI."""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from maskgate.models.runtime import default_model_path
from maskgate.predict import Predictor
from maskgate.serve.app import ServeSettings, create_app

app = create_app(settings=ServeSettings(max_bytes=200_000, max_pixels=2_000_000),
                 predictor=Predictor(default_model_path("onnx"), workers=1))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case):
    case.call_and_validate(checks=[not_a_server_error])


def test_the_fuzz_reaches_every_endpoint():
    paths = {res.ok().path for res in schema.get_all_operations()}
    assert {"/health", "/ready", "/v1/model", "/metrics", "/v1/predict"} <= paths


@pytest.mark.parametrize("body", [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, bytes(range(256))])
def test_raw_garbage_bodies(body):
    r = schema["/v1/predict"]["POST"].Case(body=body, media_type="application/octet-stream").call()
    assert r.status_code < 500
