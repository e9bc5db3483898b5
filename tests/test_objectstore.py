"""The object store of v2 artifacts: the sandbox checks S3 SigV4 like SeaweedFS/MinIO, and the adapter turns refused
credentials into a clear 502 `object_store_denied`; artifact URIs carry KFP's random segment."""
from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import re

import boto3
import pytest
import requests
from botocore.auth import SIGV4_TIMESTAMP, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from kfadapter.app import create_app

from tests.test_outputs import by_name, control, start_run

DATA = b"model weights \x00\xff" * 4
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def s3(sandbox, access_key: str, secret_key: str):
    """A real boto3 S3 client on the sandbox's object store (path style, SigV4, no retries)."""
    return boto3.session.Session().client(
        "s3", endpoint_url=sandbox.object_store_endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def s3_code(call) -> tuple[int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["ResponseMetadata"]["HTTPStatusCode"], caught.value.response["Error"]["Code"]


def signed_headers(url: str, secret: str, *, when: datetime.datetime | None = None) -> dict[str, str]:
    """SigV4 headers for GET `url` with access key `minio`, signed at `when` (botocore's signer)."""
    req = AWSRequest(method="GET", url=url, headers={"X-Amz-Content-SHA256": hashlib.sha256(b"").hexdigest()})
    stamp = (when or datetime.datetime.now(datetime.timezone.utc)).strftime(SIGV4_TIMESTAMP)
    req.headers["X-Amz-Date"] = stamp
    req.context["timestamp"] = stamp
    signer = S3SigV4Auth(Credentials("minio", secret), "s3", "us-east-1")
    signature = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
    scope = signer.credential_scope(req)
    names = ";".join(sorted(signer.headers_to_sign(req)))
    return {"X-Amz-Date": stamp, "X-Amz-Content-SHA256": req.headers["X-Amz-Content-SHA256"],
            "Authorization": f"AWS4-HMAC-SHA256 Credential=minio/{scope}, SignedHeaders={names}, Signature={signature}"}


# ---- the sandbox's object store -------------------------------------------------------------------------------------

def test_sandbox_object_store_serves_only_signed_requests_with_its_keys(sandbox):
    control(sandbox, "PUT", "/objects/mlpipeline/v2/artifacts/p/r/t/s/model", data=DATA)
    access, secret = sandbox.object_store_keys
    assert (access, secret) == ("minio", "minio123")  # KFP's mlpipeline-minio-artifact defaults
    good = s3(sandbox, access, secret)
    assert good.get_object(Bucket="mlpipeline", Key="v2/artifacts/p/r/t/s/model")["Body"].read() == DATA
    assert s3_code(lambda: good.get_object(Bucket="mlpipeline", Key="nope")) == (404, "NoSuchKey")
    wrong_secret = s3(sandbox, access, "not-the-secret")
    assert s3_code(lambda: wrong_secret.get_object(Bucket="mlpipeline", Key="v2/artifacts/p/r/t/s/model")) == \
        (403, "SignatureDoesNotMatch")
    wrong_key = s3(sandbox, "someone", secret)
    assert s3_code(lambda: wrong_key.get_object(Bucket="mlpipeline", Key="v2/artifacts/p/r/t/s/model")) == \
        (403, "InvalidAccessKeyId")


def test_sandbox_object_store_refuses_unsigned_replayed_and_stale_requests(sandbox):
    control(sandbox, "PUT", "/objects/mlpipeline/a", data=DATA)
    control(sandbox, "PUT", "/objects/mlpipeline/b", data=b"other")
    base = sandbox.object_store_endpoint
    unsigned = requests.get(f"{base}/mlpipeline/a", timeout=5)
    assert unsigned.status_code == 403 and "<Code>AccessDenied</Code>" in unsigned.text
    assert unsigned.headers["Content-Type"] == "application/xml"
    headers = signed_headers(f"{base}/mlpipeline/a", "minio123")
    assert requests.get(f"{base}/mlpipeline/a", headers=headers, timeout=5).content == DATA
    # The same signature on another object: the path is part of what was signed.
    replayed = requests.get(f"{base}/mlpipeline/b", headers=headers, timeout=5)
    assert replayed.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in replayed.text
    stale = signed_headers(f"{base}/mlpipeline/a", "minio123",
                           when=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20))
    too_old = requests.get(f"{base}/mlpipeline/a", headers=stale, timeout=5)
    assert too_old.status_code == 403 and "<Code>RequestTimeTooSkewed</Code>" in too_old.text


def test_default_artifact_uris_carry_kfps_random_segment(settings, sandbox):
    access, secret = sandbox.object_store_keys
    v2 = create_app(dataclasses.replace(settings, mlmd_endpoint=sandbox.mlmd_endpoint,
                                        object_store_endpoint=sandbox.object_store_endpoint,
                                        object_store_access_key=access, object_store_secret_key=secret)).test_client()
    run_id = start_run(v2, "qoe_train_v2.yaml")
    model = {"name": "model", "content_base64": base64.b64encode(DATA).decode()}
    control(sandbox, "PUT", f"/runs/{run_id}/mlmd", json={"tasks": [{"name": "train", "artifacts": [
        model, {"name": "model2"}]}]})
    train = by_name(v2.get(f"/runs/{run_id}/outputs").json)["train"]
    pattern = rf"minio://mlpipeline/v2/artifacts/qoe-train-v2/{run_id}/train/({UUID})/model2?$"
    first, second = (re.match(pattern, train[n]["uri"]) for n in ("model", "model2"))
    assert first and second and first.group(1) != second.group(1)  # one fresh segment per task output
    assert base64.b64decode(train["model"]["value"]) == DATA  # the adapter reads it whatever the layout
    download = v2.get(train["model"]["download"])
    assert download.status_code == 200 and download.data == DATA
    assert download.headers["Content-Disposition"] == 'attachment; filename="model"'


# ---- the adapter with wrong keys --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("access", "secret", "s3_error"), [
    ("minio", "wrong-secret", "SignatureDoesNotMatch"), ("intruder", "minio123", "InvalidAccessKeyId")],
    ids=["wrong-secret", "unknown-key"])
def test_wrong_object_store_keys_are_a_clear_502(settings, sandbox, access, secret, s3_error):
    app = create_app(dataclasses.replace(settings, mlmd_endpoint=sandbox.mlmd_endpoint,
                                         object_store_endpoint=sandbox.object_store_endpoint,
                                         object_store_access_key=access, object_store_secret_key=secret))
    v2 = app.test_client()
    run_id = start_run(v2, "qoe_train_v2.yaml")
    model = {"name": "model", "content_base64": base64.b64encode(DATA).decode()}
    doc = {"tasks": [{"name": "train", "outputs": {"acc": 0.5}, "artifacts": [model]}]}
    ids = control(sandbox, "PUT", f"/runs/{run_id}/mlmd", json=doc).json()
    for path in (f"/runs/{run_id}/outputs", f"/runs/{run_id}/nodes/{ids['executions']['train']}/artifacts/model"):
        resp = v2.get(path)
        assert resp.status_code == 502, (path, resp.json)
        assert resp.headers["Content-Type"] == "application/json"
        body = resp.json
        assert body["code"] == "object_store_denied" and body["details"]["s3_code"] == s3_error
        assert "KFADAPTER_OBJECT_STORE_ACCESS_KEY" in body["message"] and secret not in resp.text
        assert "mlpipeline-minio-artifact" in body["message"]
