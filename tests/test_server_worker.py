"""The buffered gthread worker: requests are read in the event loop, so slow and idle clients hold no thread."""
from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from kfadapter.server.worker import RequestFramer

from tests.conftest import package
from tests.support import Service, clean_env

PIPELINE = package("add_v2.yaml")


def framer() -> RequestFramer:
    return RequestFramer(max_head=65536, max_body=1000)


def feed_all(f: RequestFramer, data: bytes, step: int) -> int:
    """Feed `data` `step` bytes at a time; return how many bytes the request took."""
    used = 0
    for i in range(0, len(data), step):
        piece = data[i:i + step]
        n = f.feed(piece)
        used += n
        if n < len(piece) or f.done:
            break
    return used


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_framer_ends_each_request_exactly(step):
    get = b"GET /liveness HTTP/1.1\r\nHost: a\r\n\r\n"
    post = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    chunked = (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nTrailer: t\r\n\r\n")
    for request in (get, post, chunked):
        f = framer()
        assert feed_all(f, request + b"GET /next HTTP/1.1\r\n\r\n", step) == len(request) and f.done and f.whole


def test_framer_waits_for_the_whole_request():
    f = framer()
    f.feed(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhel")
    assert not f.done and f.expect_continue
    f = framer()
    f.feed(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    assert not f.done
    f = framer()
    f.feed(b"GET /liveness?x=1 HTTP/1.1\r\nHost: a\r\n")
    assert not f.done


def test_framer_marks_only_liveness_as_probe():
    for target, probe in ((b"/liveness", True), (b"/liveness?a=b", True), (b"/readiness", False), (b"/x", False)):
        f = framer()
        f.feed(b"GET " + target + b" HTTP/1.1\r\n\r\n")
        assert f.done and f.probe is probe


@pytest.mark.parametrize("head", [
    b"POST /x HTTP/1.1\r\nContent-Length: 5000\r\n\r\n",  # over max_body: the app refuses it unread
    b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",  # ambiguous: gunicorn answers 400
    b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
])
def test_framer_hands_over_what_it_cannot_delimit(head):
    f = framer()
    assert f.feed(head) == len(head) and f.done and not f.whole and f.error is None


@pytest.mark.parametrize(("body", "problem"), [
    (b"zz\r\n", "the chunk size 'zz' is not hexadecimal digits"),
    (b"0x0\r\n\r\n", "the chunk size '0x0' is not hexadecimal digits"),
    (b"+0\r\n\r\n", "the chunk size '+0' is not hexadecimal digits"),
    (b"2_9\r\n", "the chunk size '2_9' is not hexadecimal digits"),
    (b" 5\r\nhello\r\n", "the chunk size ' 5' is not hexadecimal digits"),
    (b"5\nhello\r\n", "a chunk-size line ends with a bare LF"),
    (b"5\r\nhelloXY", "the chunk data is not followed by CRLF (but by 'X"),
    (b"5\r\nhello\rX", "the chunk data is not followed by CRLF (but by '\\rX')"),
    (b"5;a b\r\nhello\r\n", "the chunk extension ';a b' is not token[=value] pairs"),
    (b"0\r\nX: 1\n", "the trailer section ends with a bare LF"),
    (b"0\r\nnot a field\r\n\r\n", "the trailer line 'not a field' is not name: value"),
    (b"1" * 9000, "a chunk-size line is longer than 8190 bytes"),
    (b"5\r\r\nhello\r\n", "a chunk-size line holds a bare CR"),
])
@pytest.mark.parametrize("step", [1, 1000])
def test_framer_refuses_malformed_chunked_framing_naming_the_problem(body, problem, step):
    f = framer()
    feed_all(f, b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body, step)
    assert f.done and not f.whole and f.error.startswith("the chunked request body is malformed: " + problem)


def test_framer_refuses_a_chunked_body_over_the_limit_without_reading_it():
    f = framer()
    head = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    used = f.feed(head + b"3e9\r\n" + b"a" * 100)
    assert f.done and f.body_too_large and used == len(head) + 5


def test_framer_hands_over_an_oversized_head():
    f = RequestFramer(max_head=100, max_body=1000)
    f.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 200)
    assert f.done


@pytest.fixture(scope="module")
def slow_service(sandbox_server, tmp_path_factory):
    """One worker with 2 application threads: any thread held by a slow client would show at once."""
    tmp = tmp_path_factory.mktemp("slow")
    svc = Service(clean_env(KFADAPTER_KFP_ENDPOINT=sandbox_server.url, KFADAPTER_STORE_PATH=str(tmp / "s.sqlite"),
                            KFADAPTER_WATCH="false", KFADAPTER_GUNICORN_WORKERS="1", KFADAPTER_GUNICORN_THREADS="2",
                            KFADAPTER_GUNICORN_HEADER_TIMEOUT="2", KFADAPTER_GUNICORN_BODY_TIMEOUT="30"),
                  tmp / "service.log")
    requests.post(f"{svc.url}/pipelineIds/slow-clients", files={"file": ("f.yaml", PIPELINE)},
                  timeout=30).raise_for_status()
    yield svc
    svc.stop()


def connect(svc: Service, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Read until the server closes the connection or sends a complete small answer."""
    out = b""
    while True:
        try:
            piece = sock.recv(65536)
        except socket.timeout:
            return out
        if not piece:
            return out
        out += piece
        head, sep, body = out.partition(b"\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length")]
        if sep and length and len(body) >= length[0]:
            return out


def test_slow_and_idle_clients_hold_no_thread(slow_service):
    """64 half-sent heads, 64 half-sent bodies and 300 idle connections; 2 threads still answer everything."""
    svc = slow_service
    upload_head = (b"POST /pipelineIds/slow-x HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                   b"Content-Length: 100000\r\n\r\n--b\r\n")
    crowd = [connect(svc, b"GET /liveness HTTP/1.1\r\nHost: t\r\nX-Slow: aaa") for _ in range(64)]
    crowd += [connect(svc, upload_head) for _ in range(64)]
    crowd += [connect(svc) for _ in range(300)]
    try:
        latencies = []
        for path in ["/liveness", "/pipelineIds/slow-clients"] * 5:
            started = time.perf_counter()
            resp = requests.get(f"{svc.url}{path}", timeout=(5, 5))
            latencies.append(round((time.perf_counter() - started) * 1000, 1))
            assert resp.status_code == 200, (path, resp.status_code)
        print("latencies (ms) under 428 slow or idle connections:", latencies)
    finally:
        for sock in crowd:
            sock.close()


def test_a_request_sent_in_pieces_is_answered(slow_service):
    sock = connect(slow_service)
    for piece in (b"GET /liveness HT", b"TP/1.1\r\nHost:", b" t\r\n", b"\r\n"):
        sock.sendall(piece)
        time.sleep(0.1)
    assert read_answer(sock).startswith(b"HTTP/1.1 200")
    sock.close()


def test_pipelined_requests_are_both_answered(slow_service):
    sock = connect(slow_service, b"GET /liveness HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
    sock.settimeout(3)
    data = b""
    while data.count(b"HTTP/1.1 200") < 2:
        piece = sock.recv(65536)
        assert piece, data
        data += piece
    sock.close()


def multipart(boundary: bytes) -> bytes:
    return (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="f.yaml"\r\n\r\n'
            + PIPELINE + b"\r\n--" + boundary + b"--\r\n")


def test_chunked_upload_is_read_whole(slow_service):
    body = multipart(b"chunky")
    pieces = (body[i:i + 700] for i in range(0, len(body), 700))  # a generator: requests sends it chunked
    resp = requests.post(f"{slow_service.url}/pipelineIds/chunked-upload", data=pieces, timeout=30,
                         headers={"Content-Type": "multipart/form-data; boundary=chunky"})
    assert resp.status_code == 200, resp.text
    assert requests.get(f"{slow_service.url}/pipelineIds/chunked-upload", timeout=10).status_code == 200


def test_expect_continue_gets_one_interim_answer(slow_service):
    boundary = b"b0undary"
    body = multipart(boundary)
    head = (b"POST /pipelineIds/expect-continue HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
    sock = connect(slow_service, head)
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(body)
    answer = read_answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b"100 Continue" not in answer


def test_a_head_not_finished_in_time_gets_408_and_an_idle_connection_is_closed(slow_service):
    started = time.monotonic()
    partial, idle = connect(slow_service, b"GET /liveness HTTP/1.1\r\nHost: t\r\n"), connect(slow_service)
    answer = read_answer(partial)
    assert answer.startswith(b"HTTP/1.1 408") and b'"code": "request_timeout"' in answer
    assert b"Content-Type: application/json" in answer
    assert idle.recv(100) == b""  # closed without an answer: no request was started
    assert time.monotonic() - started < 9  # KFADAPTER_GUNICORN_HEADER_TIMEOUT=2 (checked once a second)
    partial.close()
    idle.close()


def test_a_large_body_is_spooled_and_answered(slow_service):
    """5 MiB (past the in-memory spool, so through an anonymous temporary file) reaches the application whole."""
    junk = b"\xff" * (5 * 1024 * 1024)  # not UTF-8: refused at once, without parsing
    started = time.perf_counter()
    resp = requests.post(f"{slow_service.url}/pipelineIds/large-body", files={"file": ("f.yaml", junk)}, timeout=60)
    print(f"5 MiB upload answered {resp.status_code} in {time.perf_counter() - started:.2f} s")
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_package"


def test_an_oversized_head_gets_431(slow_service):
    sock = connect(slow_service, b"GET /liveness HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (70 * 1024))
    answer = read_answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431") and b'"code": "headers_too_large"' in answer


@pytest.mark.parametrize("head", [
    b"GET /liveness HTTP/1.1\r\nHost: t\r\nX-Forged: a\x01b\r\n\r\n",  # a control character in a header value
    b"GET /liveness HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n",
    b"GET /liveness HTTP/9.9\r\nHost: t\r\n\r\n",
])
def test_a_request_gunicorn_cannot_parse_gets_the_json_envelope(slow_service, head):
    sock = connect(slow_service, head)
    answer = read_answer(sock)
    sock.close()
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status_line.split()[1].startswith(b"4"), answer
    assert b"Content-Type: application/json\r\n" in headers + b"\r\n" and b"<html" not in answer.lower()
    assert json.loads(body)["code"] == "malformed_request"


def test_liveness_is_not_queued_behind_busy_application_threads(slow_service, sandbox_server):
    """Both application threads wait on a slow KFP, two more requests queue; /liveness is answered first."""
    import threading

    requests.post(f"{sandbox_server.url}/_sandbox/faults", json={"delay": 3, "times": 4,
                                                                 "path_prefix": "/apis/v2beta1/pipelines"},
                  timeout=5).raise_for_status()
    finished: list[str] = []
    try:
        slow = [threading.Thread(target=lambda: (requests.get(f"{slow_service.url}/pipelineIds/slow-clients",
                                                              timeout=30), finished.append("kfp")))
                for _ in range(4)]
        for t in slow:
            t.start()
        time.sleep(0.5)  # both threads are inside KFP calls now
        assert requests.get(f"{slow_service.url}/liveness", timeout=10).status_code == 200
        finished.append("liveness")
        for t in slow:
            t.join()
    finally:
        requests.delete(f"{sandbox_server.url}/_sandbox/faults", timeout=5)
    assert finished[0] == "liveness" and finished.count("kfp") == 4


def test_a_body_over_the_limit_is_refused_unread_and_the_connection_closed(slow_service):
    head = (b"POST /pipelineIds/too-big HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 900000000\r\n\r\n")
    sock = connect(slow_service, head)
    sock.settimeout(10)
    answer = b""
    while piece := sock.recv(65536):  # the server closes after its answer: no drain of 900 MB
        answer += piece
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer, answer[:300]
