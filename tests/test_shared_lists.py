"""Identical concurrent KFP list calls are made once and shared (kfadapter/kfconnect/shared.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from kfadapter.core.errors import KfpUnavailable
from kfadapter.kfconnect.shared import SharedCalls

from tests.conftest import package
from tests.support import Service, clean_env


def test_callers_arriving_during_a_fetch_share_the_next_one_which_starts_after_they_asked():
    shared, started, release, fetches = SharedCalls(), threading.Event(), threading.Event(), []
    state = {"pipelines": 1}

    def fetch() -> list:
        seen = state["pipelines"]  # what KFP holds when the fetch begins
        fetches.append(seen)
        started.set()
        release.wait(5)
        return [seen]

    with ThreadPoolExecutor(20) as pool:
        first = pool.submit(shared.call, "k", fetch)
        assert started.wait(5)
        state["pipelines"] = 2  # a write that completes after the first fetch began, before the others ask
        later = [pool.submit(shared.call, "k", fetch) for _ in range(19)]
        time.sleep(0.2)
        assert fetches == [1]  # the 19 wait: none joined the fetch that began before they asked
        release.set()
        assert first.result(5) == [1]
        assert [f.result(5) for f in later] == [[2]] * 19  # one more fetch, begun after they asked, shared
    assert fetches == [1, 2]


def test_each_caller_gets_its_own_list_and_other_keys_do_not_wait():
    shared = SharedCalls()
    a, b = shared.call("a", lambda: [1]), shared.call("a", lambda: [1])
    a.append(2)
    assert b == [1] and shared.call("b", lambda: ["b"]) == ["b"]


def test_an_error_reaches_every_caller_that_shared_the_fetch():
    shared, started, release = SharedCalls(), threading.Event(), threading.Event()

    def failing() -> list:
        started.set()
        release.wait(5)
        raise KfpUnavailable("list pipelines: KFP is unreachable")

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(shared.call, "k", failing)
        assert started.wait(5)
        second, third = pool.submit(shared.call, "k", failing), pool.submit(shared.call, "k", failing)
        time.sleep(0.1)
        release.set()
        for future in (first, second, third):
            with pytest.raises(KfpUnavailable, match="unreachable"):
                future.result(5)
    assert shared.call("k", lambda: ["fine"]) == ["fine"]  # nothing left behind


def test_64_clients_listing_3000_pipelines_share_the_kfp_calls(sandbox, tmp_path):
    """64 concurrent `GET /pipelines` over 3,000 pipelines: each answer complete, a fraction of 64 x 15 KFP calls,
    and a KFP-backed request made meanwhile is answered."""
    made = requests.post(f"{sandbox.url}/_sandbox/bulk/pipelines", json={"count": 3000, "prefix": "many"}, timeout=120)
    made.raise_for_status()
    svc = Service(clean_env(KFADAPTER_KFP_ENDPOINT=sandbox.url, KFADAPTER_STORE_PATH=str(tmp_path / "s.sqlite"),
                            KFADAPTER_WATCH="false", KFADAPTER_GUNICORN_WORKERS="2", KFADAPTER_GUNICORN_THREADS="32"),
                  tmp_path / "service.log")
    try:
        requests.post(f"{svc.url}/pipelineIds/probe-me", files={"file": ("f.yaml", package("add_v2.yaml"))},
                      timeout=30).raise_for_status()
        requests.delete(f"{sandbox.url}/_sandbox/requests", timeout=5)
        probe: list[float] = []

        def probing(stop: threading.Event) -> None:
            while not stop.is_set():
                began = time.perf_counter()
                assert requests.get(f"{svc.url}/pipelineIds/probe-me", timeout=60).status_code == 200
                probe.append(round(time.perf_counter() - began, 2))
                stop.wait(0.2)

        stop = threading.Event()
        prober = threading.Thread(target=probing, args=(stop,))
        with ThreadPoolExecutor(64) as pool:
            prober.start()
            answers = list(pool.map(lambda _: requests.get(f"{svc.url}/pipelines", timeout=120), range(64)))
        stop.set()
        prober.join()
        counts = requests.get(f"{sandbox.url}/_sandbox/requests", timeout=5).json()["counts"]
    finally:
        svc.stop()
        sandbox.reset()
    assert all(a.status_code == 200 and a.json()["total_size"] == 3001 for a in answers)
    lists = counts.get("GET /apis/v2beta1/pipelines", 0)
    print(f"64 clients x 3,001 pipelines: {lists} KFP list calls (unshared: {64 * 16}); probe seconds: {probe}")
    # Per worker at most: the fetch running when a client arrives, then one shared by all who arrived meanwhile
    # (and a few more as the 64 arrive over time). Unshared, it would be 64 x 16 pages = 1,024.
    assert lists <= 6 * 2 * 16
    assert probe  # answered during the storm
