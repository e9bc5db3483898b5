"""The sandbox playing O-RAN's LeoFS (bucket from the Host header, registered endpoints only), and the adapter's
502 `object_store_misaddressed` when the endpoint's host is not one LeoFS registered."""

from __future__ import annotations

import base64
import dataclasses

import boto3
import pytest
import requests
from botocore.config import Config

from kfadapter.app import create_app
from kfadapter.core.errors import ObjectStoreMisaddressed
from kfadapter.outputs.objectstore import ObjectStore
from kfadapter.sandbox import leofs
from kfadapter.settings import Settings
from tests.test_objectstore import s3_code
from tests.test_outputs import control, start_run

DATA = b"leofs object \x00\xff" * 3
KEY = "v2/artifacts/p/r/t/s/model"


@pytest.fixture(scope="module")
def leofs_server():
    from kfadapter.sandbox import SandboxServer

    server = SandboxServer(host="127.0.0.1", port=0, object_store="leofs").start()
    yield server
    server.stop()


@pytest.fixture
def leofs_sandbox(leofs_server):
    leofs_server.reset()
    control(leofs_server, "PUT", f"/objects/mlpipeline/{KEY}", data=DATA)
    return leofs_server


def client(endpoint: str, secret: str = leofs.CREDENTIALS["leofs"]):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="leofs",
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def ip_endpoint(server) -> str:
    return f"http://127.0.0.1:{server.port}/_s3"


def test_host_rule_matches_leofs_source():
    # leo_commons src/leo_http.erl key/3: the longest registered endpoint found in the host decides.
    endpoints = leofs.ENDPOINTS
    assert leofs.locate(endpoints, "leofs.kubeflow", "/mlpipeline/a/b") == ("mlpipeline", "mlpipeline/a/b")
    assert leofs.locate(endpoints, "leofs.kubeflow.svc.cluster.local", "/mlpipeline/a") == (
        "mlpipeline",
        "mlpipeline/a",
    )
    assert leofs.locate(endpoints, "mlpipeline.leofs.kubeflow", "/a/b") == ("mlpipeline", "mlpipeline/a/b")
    assert leofs.locate(endpoints, "10.0.0.7", "/mlpipeline/a") == ("10.0.0.7", "10.0.0.7/mlpipeline/a")
    assert leofs.locate(endpoints, "leofs.traininghost", "/mlpipeline/a") == (
        "leofs.traininghost",
        "leofs.traininghost/mlpipeline/a",
    )
    assert leofs.locate(endpoints, "10.0.0.7", "/10.0.0.7/a") == ("10.0.0.7", "10.0.0.7/a")


def test_registered_host_reads_the_object(leofs_sandbox):
    assert leofs_sandbox.object_store_endpoint.startswith("http://localhost:")
    body = client(leofs_sandbox.object_store_endpoint).get_object(Bucket="mlpipeline", Key=KEY)
    assert body["Body"].read() == DATA and "LeoFS" in body["ResponseMetadata"]["HTTPHeaders"]["server"]


def test_unregistered_host_addresses_a_bucket_named_after_it(leofs_sandbox):
    s3 = client(ip_endpoint(leofs_sandbox))
    with pytest.raises(Exception) as caught:
        s3.get_object(Bucket="mlpipeline", Key=KEY)
    error = caught.value.response["Error"]
    # LeoFS answers NoSuchKey whatever was missing; the resource shows the key it built from the host.
    assert error["Code"] == "NoSuchKey" and error["Resource"] == f"127.0.0.1/mlpipeline/{KEY}"
    # The bucket is looked up before the signature: even a wrong secret gets the 404.
    assert s3_code(lambda: client(ip_endpoint(leofs_sandbox), "wrong").get_object(Bucket="mlpipeline", Key=KEY)) == (
        404,
        "NoSuchKey",
    )


def test_signature_and_unsigned_requests_are_refused(leofs_sandbox):
    wrong = client(leofs_sandbox.object_store_endpoint, "wrong-secret")
    assert s3_code(lambda: wrong.get_object(Bucket="mlpipeline", Key=KEY)) == (403, "SignatureDoesNotMatch")
    resp = requests.get(f"{leofs_sandbox.object_store_endpoint}/mlpipeline/{KEY}", timeout=5)
    assert resp.status_code == 403 and "<Code>AccessDenied</Code>" in resp.text


def test_adapter_names_the_rule_when_misaddressed(leofs_sandbox):
    store = ObjectStore(ip_endpoint(leofs_sandbox), "leofs", leofs.CREDENTIALS["leofs"], timeout=(2, 5))
    with pytest.raises(ObjectStoreMisaddressed) as caught:
        store.probe("mlpipeline")
    assert "registered in LeoFS" in caught.value.message and "leofs.kubeflow" in caught.value.message
    good = ObjectStore(leofs_sandbox.object_store_endpoint, "leofs", leofs.CREDENTIALS["leofs"], timeout=(2, 5))
    assert "bucket 'mlpipeline' found" in good.probe("mlpipeline")


def test_outputs_through_a_misaddressed_leofs_are_a_502(leofs_sandbox, tmp_path):
    settings = Settings(
        kfp_endpoint=leofs_sandbox.url,
        store_path=str(tmp_path / "s.sqlite"),
        kfp_connect_timeout=2.0,
        kfp_read_timeout=3.0,
        mlmd_endpoint=leofs_sandbox.mlmd_endpoint,
        object_store_access_key="leofs",
        object_store_secret_key=leofs.CREDENTIALS["leofs"],
    )
    answers = {}
    for name, endpoint in (("registered", leofs_sandbox.object_store_endpoint), ("ip", ip_endpoint(leofs_sandbox))):
        v2 = create_app(dataclasses.replace(settings, object_store_endpoint=endpoint)).test_client()
        run_id = start_run(v2, "qoe_train_v2.yaml", name=f"qoe-{name}")
        model = {"name": "model", "content_base64": base64.b64encode(DATA).decode()}
        control(
            leofs_sandbox,
            "PUT",
            f"/runs/{run_id}/mlmd",
            json={"tasks": [{"name": "train", "outputs": {"acc": 0.5}, "artifacts": [model]}]},
        )
        answers[name] = v2.get(f"/runs/{run_id}/outputs")
    assert answers["registered"].status_code == 200, answers["registered"].json
    resp = answers["ip"]
    assert resp.status_code == 502 and resp.headers["Content-Type"] == "application/json"
    body = resp.json
    assert body["code"] == "object_store_misaddressed" and "Host header" in body["message"], body
    assert body["details"]["bucket"] == "mlpipeline" and body["details"]["s3_resource"].startswith("127.0.0.1/")
