"""GET /metrics: Prometheus text scraped over HTTP; the counts move with the requests served."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loopml.operations import create_app


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    r = httpx.get(f"{url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def rows(served) -> list[dict]:
    frame = served.holdout.head(2)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in frame.to_dict("records")]


def test_counts_move_with_requests(served, run_app, rows):
    version = str(served.version.version)
    with run_app(create_app(served.store, served.project)) as url:
        before = _scrape(url)
        assert _value(before, "loopml_model_version") == served.version.version
        assert _value(before, "loopml_inflight_requests") == 0
        assert httpx.post(f"{url}/predict", json={"rows": rows}).status_code == 200
        assert httpx.post(f"{url}/predict", json={"row": rows[0]}).status_code == 200
        assert httpx.post(f"{url}/predict", json={"row": {"age": "old"}}).status_code == 422
        assert httpx.get(f"{url}/no/such/path/{'x' * 40}").status_code == 404
        after = _scrape(url)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("loopml_requests_total", route="/predict", method="POST", status="200") == 2
    assert moved("loopml_requests_total", route="/predict", method="POST", status="422") == 1
    assert moved("loopml_request_errors_total", route="/predict", kind="bad_request") == 1
    assert moved("loopml_predicted_rows_total", model_version=version) == 3
    assert moved("loopml_request_duration_seconds_count", route="/predict") == 3
    # An unknown path counts under one label, so scanners cannot grow the metrics without bound.
    assert moved("loopml_requests_total", route="other", method="GET", status="404") == 1
    assert not any("no/such/path" in str(labels) for _, labels in after)


def test_latency_buckets_resolve_milliseconds(served, run_app, rows):
    with run_app(create_app(served.store, served.project)) as url:
        httpx.post(f"{url}/predict", json={"row": rows[0]})
        samples = _scrape(url)
    bounds = sorted(float(dict(labels)["le"]) for name, labels in samples
                    if name == "loopml_request_duration_seconds_bucket" and dict(labels)["route"] == "/predict")
    assert bounds[:4] == [0.0005, 0.001, 0.002, 0.005]
    assert bounds[-1] == float("inf")


def test_refused_requests_are_counted(served, run_app, rows):
    with run_app(create_app(served.store, served.project, max_body_bytes=100)) as url:
        assert httpx.post(f"{url}/predict", json={"rows": rows}).status_code == 413
        samples = _scrape(url)
    assert _value(samples, "loopml_requests_total", route="/predict", method="POST", status="413") == 1
    assert _value(samples, "loopml_request_errors_total", route="/predict", kind="too_large") == 1
