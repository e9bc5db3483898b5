"""The request path made cheap without giving anything up: kept-alive connections to KFP (and a sandbox that
keeps them as KFP does), the JSON depth cap computed in C passes but exact, orjson with the standard library's
acceptance, and GET /runs/<id> reading the store once, and never for a run no execution started."""

from __future__ import annotations

import http.client
import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests

from kfadapter.core import jsoncodec
from kfadapter.core.errors import KfpUnavailable
from kfadapter.core.limits import json_depth
from kfadapter.kfconnect import KfConnect
from kfadapter.kfconnect.transport import json_answer, pool_size
from kfadapter.watch.intents import may_be_in_store, run_name_for
from tests.conftest import package, upload
from tests.support import clean_env, free_port, wait_for


# ---- the JSON depth cap ----------------------------------------------------------------------------------
def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# Strings full of what could fool a scan: brackets, quotes, backslashes and escapes of both.
_PIECES = ["[", "]", "{", "}", '"', "\\", "a", "é", "\n", "\u2028", '\\"', "\\\\", '"]', "\\[", "\\\\\\"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 8)))


def _value(rng: random.Random, depth: int):
    roll = rng.random()
    if depth > 14 or roll < 0.3:
        return rng.choice([_text(rng), 1, None, True, -2.5])
    if roll < 0.65:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def test_json_depth_is_the_parsed_depth_whatever_the_strings_hold():
    rng = random.Random(22)
    for _ in range(3000):
        value = _value(rng, 0)
        for text in (json.dumps(value), json.dumps(value, ensure_ascii=False), json.dumps(value, indent=1)):
            assert json_depth(text.encode()) == _depth(value), text


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b'"\\\\"', 0),  # an escaped backslash just before the closing quote
        (b'["\\"[[[", [["\\\\"]]]', 3),  # brackets behind an escaped quote are text
        (b'{"a":"","b":"[","c":[]}', 2),  # empty strings beside a string holding a bracket
        (b"[" * 150 + b"]" * 150, 150),
        (b'"[[[[', 0),  # unterminated: whatever the scan says, the parser refuses it
        (b"", 0),
    ],
)
def test_json_depth_cases(text, depth):
    assert json_depth(text) == depth


def test_a_kfp_answer_nested_past_the_cap_is_refused_and_one_at_the_cap_parsed():
    limit = 100 + 16  # KFADAPTER_MAX_JSON_DEPTH's default plus KFP's own levels
    at_cap = b'{"a":' * (limit - 1) + b"[1]" + b"}" * (limit - 1)
    assert _depth(json_answer(at_cap, 100)) == limit
    with pytest.raises(KfpUnavailable) as refused:
        json_answer(b"[" + at_cap + b"]", 100)
    assert refused.value.code == "kfp_answer_too_large" and "117 levels" in refused.value.message
    # Depth hidden in a string is not depth; depth behind escaped quotes is.
    assert json_answer(json.dumps({"s": "[" * 500}).encode(), 100) == {"s": "[" * 500}
    with pytest.raises(KfpUnavailable):
        json_answer(b'["\\"", ' * 60 + b"1" + b"]" * 60 + b"]" * 60, 100)


# ---- orjson with the standard library's acceptance ---------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [b"NaN", b'"\\ud800"', b"1e400", b"\xef\xbb\xbf{}", "{}".encode("utf-16"), b'{"a": [1, 2.5, "\\u00e9"]}'],
)
def test_kfp_answers_parse_exactly_as_the_standard_library_parses_them(text):
    mine, theirs = jsoncodec.loads_answer(text), json.loads(text)
    assert repr(mine) == repr(theirs)  # repr: NaN != NaN


def test_our_answers_are_the_same_json_values():
    when = datetime(2026, 12, 6, tzinfo=UTC)
    for value in ({"a": "é\u2028", "n": 2**70, 3: None}, {"lone": "\ud800"}, {"t": when}, [1e16, -0.0, True]):
        assert json.loads(jsoncodec.dumps(value)) == json.loads(json.dumps(value, default=str))


def test_answers_keep_the_exact_content_type(client, sandbox):
    assert upload(client, "fast-ct", package("add_v2.yaml")).status_code == 200
    for path in ("/pipelineIds/fast-ct", "/pipelines", "/pipelineIds/nope"):
        resp = client.get(path)
        assert resp.headers["Content-Type"] == "application/json" and resp.get_data().endswith(b"\n")


# ---- kept-alive connections --------------------------------------------------------------------------------
def _two_requests_on_one_connection(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/apis/v2beta1/healthz")
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    assert first.version == 11 and first.getheader("Connection", "").lower() != "close" and not first.will_close
    conn.request("GET", "/apis/v2beta1/pipelines")
    second = conn.getresponse()
    second.read()
    assert second.status == 200 and conn.sock is sock  # the same TCP connection answered both
    conn.request("GET", "/apis/v2beta1/healthz", headers={"Connection": "close"})
    asked = conn.getresponse()
    asked.read()
    assert asked.will_close  # closed when the client asks, as Go's net/http does
    conn.close()


def test_the_sandbox_keeps_connections_alive_like_kfp(sandbox):
    _two_requests_on_one_connection(sandbox.port)


def test_the_sandbox_command_keeps_connections_alive_like_kfp(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kfadapter.cli", "sandbox", "--port", str(port)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/apis/v2beta1/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(up, "the sandbox command")
        _two_requests_on_one_connection(port)
    finally:
        proc.terminate()
        proc.wait(10)


def _kfp_pool(kf: KfConnect):
    return kf.client._run_api.api_client.rest_client.pool_manager.connection_from_url(kf.settings.kfp_endpoint)


def test_the_adapter_keeps_one_connection_per_thread_to_kfp(settings, sandbox, monkeypatch):
    monkeypatch.setenv("KFADAPTER_GUNICORN_THREADS", "6")
    assert pool_size() == 7  # six request threads and the watcher's
    kf = KfConnect(settings)
    for _ in range(20):
        kf.list_experiments()
    pool = _kfp_pool(kf)
    assert pool.num_connections == 1 and pool.pool.maxsize == 7  # twenty calls, one TCP connection
    with ThreadPoolExecutor(6) as threads:
        list(threads.map(lambda _: [kf.list_experiments() for _ in range(10)], range(6)))
    assert pool.num_connections <= 7  # six callers at once: at most one connection each, none dropped


# ---- GET /runs/<id> and the store ------------------------------------------------------------------------
def test_run_names_of_executions_mark_the_runs_the_store_can_hold():
    assert may_be_in_store({"display_name": run_name_for("tj-1", "0123456789abcdef")})
    assert may_be_in_store({"display_name": "qoe-20261130101010-a1b2c3"})  # named by versions before intents
    for name in ("run-0001", "tj-20261130101010-A1B2C3", "tj-2026113010101-0123456789abcdef", "", None):
        assert not may_be_in_store({"display_name": name})
    assert not may_be_in_store({})


def test_get_run_reads_the_store_only_for_runs_an_execution_started(client, app, sandbox):
    assert upload(client, "fast-runs", package("add_v2.yaml")).status_code == 200
    started = client.post("/trainingjobs/tj-fast/execution", json={"pipeline_name": "fast-runs"}).json
    ref = client.get(f"/runs/{started['run_id']}").json
    other = sandbox.app.extensions["sandbox"].bulk_runs(
        1, {"pipeline_id": ref["pipeline_id"], "pipeline_version_id": ref["pipeline_version_id"]}, "", "run"
    )[0]
    assert ref["tracked"] is True and ref["trainingjob_id"] == "tj-fast"
    assert ref["notification"]["status"] == "waiting_for_run"
    untracked = client.get(f"/runs/{other}").json
    assert untracked["trainingjob_id"] is None and untracked["tracked"] is False and untracked["notification"] is None
    # With the store's tables gone, only the run an execution started needs them: the other is answered
    # without reading the store at all.
    store = app.extensions["kfadapter.store"]
    with store.db.write() as conn:
        conn.exec_driver_sql("DROP TABLE tracked_runs")
        conn.exec_driver_sql("DROP TABLE outbox")
    assert client.get(f"/runs/{other}").status_code == 200
    broken = client.get(f"/runs/{started['run_id']}")
    assert broken.status_code == 503 and broken.json["code"] == "store_unavailable"


def test_another_replica_sees_the_run_tracked(client, app, settings, sandbox):
    from kfadapter.app import create_app

    assert upload(client, "fast-replica", package("add_v2.yaml")).status_code == 200
    started = client.post("/trainingjobs/tj-replica/execution", json={"pipeline_name": "fast-replica"}).json
    other = create_app(settings).test_client()  # a second replica on the same store
    seen = other.get(f"/runs/{started['run_id']}").json
    assert seen["tracked"] is True and seen["trainingjob_id"] == "tj-replica"
