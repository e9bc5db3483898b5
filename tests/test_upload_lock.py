"""Uploads to one name are serialized by a per-name lock (in-process, and in the store across workers and
replicas): 64 concurrent uploads to one name through two `kfadapter serve` (2 workers each) on one store give
64 versions with at most 70 KFP upload calls and no 409, on SQLite and on PostgreSQL."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import package
from tests.support import Service, clean_env


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_64_concurrent_uploads_to_one_name_across_two_servers(backend, sandbox, kfp_counts, tmp_path, request):
    store = (str(tmp_path / "store.sqlite") if backend == "sqlite"
             else request.getfixturevalue("postgres_server").create_database())
    env = clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_WATCH="false",
                    **({"KFADAPTER_STORE_PATH": store} if backend == "sqlite" else {"KFADAPTER_STORE_URL": store}))
    servers = [Service(env, tmp_path / f"serve-{i}.log") for i in range(2)]
    try:
        data = package("add_v2.yaml")
        kfp_counts.reset()

        def send(i: int) -> requests.Response:
            return requests.post(f"{servers[i % 2].url}/pipelineIds/race", files={"file": ("file", data)},
                                 data={"description": ""}, timeout=300)

        with ThreadPoolExecutor(max_workers=64) as pool:
            answers = list(pool.map(send, range(64)))
    finally:
        for s in servers:
            s.stop()
    assert [r.status_code for r in answers] == [200] * 64, [r.text for r in answers if r.status_code != 200][:3]
    assert sorted(int(r.json()["version_name"]) if r.json()["version_name"] != "race" else 1 for r in answers) \
        == list(range(1, 65))
    counts = kfp_counts.read()["counts"]
    uploads = {k: v for k, v in counts.items() if "upload" in k}
    calls = sum(uploads.values())
    print(f"\n{backend}: 64 uploads to one name -> 64 versions, {calls} KFP upload calls ({uploads})")
    assert calls <= 70
