"""Limits answered, not suffered: bodies over the byte limit get 413 and an overloaded server answers 503 at once."""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from loopml.errors import SpecError
from loopml.operations import create_app


@pytest.fixture
def good_row(served) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in served.holdout.iloc[0].to_dict().items()}


def _inflight(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("loopml_inflight_requests "):
            return float(line.split()[1])
    raise AssertionError("no loopml_inflight_requests in /metrics")


def test_a_body_over_the_limit_is_413_before_it_is_read(served, run_app, good_row):
    body = json.dumps({"rows": [good_row] * 20}).encode()
    with run_app(create_app(served.store, served.project, max_body_bytes=len(body) - 1)) as url:
        r = httpx.post(f"{url}/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 413
        (problem,) = r.json()["detail"]
        assert problem["reason"] == (
            f"the body is {len(body):,} bytes, over the limit of {len(body) - 1:,} bytes per request; "
            "send smaller batches (or Arrow/Parquet, which are smaller than JSON)")
        # Far over the limit: refused from the header alone, and the server goes on serving.
        assert httpx.post(f"{url}/predict", content=b"x" * (32 << 20)).status_code == 413
        assert httpx.post(f"{url}/predict", json={"row": good_row}).status_code == 200


def test_a_chunked_body_over_the_limit_is_413(served, run_app, good_row):
    body = json.dumps({"rows": [good_row] * 20}).encode()

    def chunks():
        for i in range(0, len(body), 100):
            yield body[i:i + 100]

    with run_app(create_app(served.store, served.project, max_body_bytes=len(body) // 2)) as url:
        r = httpx.post(f"{url}/predict", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["detail"][0]["reason"].startswith(f"the body is more than {len(body) // 2:,} bytes")


def test_a_body_at_the_limit_is_served(served, run_app, good_row):
    body = json.dumps({"rows": [good_row] * 20}).encode()
    with run_app(create_app(served.store, served.project, max_body_bytes=len(body))) as url:
        r = httpx.post(f"{url}/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text


def test_past_max_inflight_the_answer_is_an_immediate_503(served, run_app, good_row):
    body = json.dumps({"row": good_row}).encode()
    release = threading.Event()

    def slow_upload() -> httpx.Response:
        def chunks():
            yield body[:10]
            release.wait(30)  # hold the request open, as a slow client does
            yield body[10:]
        return httpx.post(url + "/predict", content=chunks(), headers={"content-type": "application/json"},
                          timeout=60)

    with run_app(create_app(served.store, served.project, max_inflight=4)) as url, \
            ThreadPoolExecutor(4) as pool:
        held = [pool.submit(slow_upload) for _ in range(4)]
        deadline = time.monotonic() + 10
        while _inflight(url) < 4:
            assert time.monotonic() < deadline, "the slow uploads did not fill the server"
            time.sleep(0.02)
        seconds = []
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(20):
                start = time.perf_counter()
                r = client.post("/predict", content=body, headers={"content-type": "application/json"})
                seconds.append(time.perf_counter() - start)
                assert r.status_code == 503
                assert r.headers["retry-after"] == "1"
                assert r.json()["detail"].startswith("the server is busy: 4 requests are in flight")
            assert client.get("/health").status_code == 200  # probes are never refused
        release.set()
        assert [f.result().status_code for f in held] == [200] * 4
    assert statistics.median(seconds) < 0.1, seconds
    assert max(seconds) < 0.5, seconds


def test_a_flood_gets_answers_not_timeouts(served, run_app, good_row):
    body = json.dumps({"rows": [good_row] * 200}).encode()
    with run_app(create_app(served.store, served.project, max_inflight=8)) as url, \
            httpx.Client(base_url=url, timeout=20,
                         # idle connections end before uvicorn's 5 s keep-alive does, so none is reset mid-request
                         limits=httpx.Limits(max_connections=64, keepalive_expiry=2.0)) as client:

        def post() -> tuple[int, float, str | None]:
            start = time.perf_counter()
            r = client.post("/predict", content=body, headers={"content-type": "application/json"})
            return r.status_code, time.perf_counter() - start, r.headers.get("retry-after")

        with ThreadPoolExecutor(48) as pool:
            answers = list(pool.map(lambda _: post(), range(300)))
    statuses = [s for s, _, _ in answers]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(200) >= 8 and statuses.count(503) >= 1, (statuses.count(200), statuses.count(503))
    assert all(retry == "1" for s, _, retry in answers if s == 503)
    refused = sorted(t for s, t, _ in answers if s == 503)
    served_times = sorted(t for s, t, _ in answers if s == 200)
    # A refusal costs a fraction of a prediction, even with 48 client threads sharing the CPU with the server.
    assert statistics.median(refused) < statistics.median(served_times), (refused[:5], served_times[:5])


@pytest.mark.parametrize(("option", "value", "message"), [
    ("max_body_bytes", 0, "max_body_bytes must be a whole number of at least 1; got 0"),
    ("max_inflight", -1, "max_inflight must be a whole number of at least 1; got -1"),
    ("max_rows", 2.5, "max_rows must be a whole number of at least 1; got 2.5"),
    ("reload_interval_s", -1, "reload_interval_s must be a number of seconds, 0 or more (0: never reload); got -1"),
])
def test_bad_limits_are_refused(served, option, value, message):
    with pytest.raises(SpecError) as info:
        create_app(served.store, served.project, **{option: value})
    assert str(info.value) == message
