"""`loopml serve --workers 2`: two processes answer on one port, alike; metrics and the log cover both."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from loopml.errors import SpecError
from loopml.operations.serve import app_from_env, serve
from loopml.store import schema as t

_SPEC = Path(__file__).parents[2] / "examples/benefits/loopml.yaml"


@pytest.fixture(scope="module")
def spec_path(served) -> Path:
    """The example spec beside the session's store: `loopml serve` opens that store."""
    target = served.root / "loopml.yaml"
    shutil.copyfile(_SPEC, target)
    return target


def _rows(served, n: int) -> list[dict]:
    frame = served.holdout.head(n)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in frame.to_dict("records")]


def test_two_workers_answer_alike_and_log_every_prediction(served, spawn, spec_path):
    rows = _rows(served, 5)
    cli = ["-c", "from loopml.cli import main; main()", "serve", "--spec", str(spec_path), "--workers", "2"]
    key = {"X-API-Key": "workers-key"}
    with spawn(cli, {"LOOPML_API_KEY": "workers-key"}, ready_path="/health") as server:

        def predict(i: int) -> httpx.Response:
            body = {"row": rows[i % 5]} if i % 3 else {"rows": rows}
            # A new connection each time, so that both workers get requests.
            return httpx.post(f"{server.url}/predict", json=body, headers=key, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(predict, range(120)))
        refused = httpx.post(f"{server.url}/predict", json={"row": rows[0]})
        scraped = {s.name: s.value for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
                   for s in f.samples if s.name == "loopml_predicted_rows_total"}
        supervisor = server.proc.pid
    assert server.proc.returncode == 0

    assert [r.status_code for r in answers] == [200] * 120
    assert refused.status_code == 401  # every worker enforces the key
    workers = {r.headers["x-loopml-worker"] for r in answers}
    assert len(workers) == 2 and str(supervisor) not in workers
    ids = [p["id"] for r in answers for p in r.json()["predictions"]]
    assert len(ids) == len(set(ids)) == 40 * 5 + 80
    # /metrics sums the workers: whichever answered the scrape counted every row.
    assert scraped == {"loopml_predicted_rows_total": float(len(ids))}
    # Stopped gracefully, each worker wrote its whole log.
    with served.store.engine.connect() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(t.predictions)
                              .where(t.predictions.c.id.in_(ids))).scalar()
    assert logged == len(ids)


@pytest.mark.parametrize("workers", [0, -2, 1.5])
def test_serve_refuses_a_bad_worker_count(served, workers):
    with pytest.raises(SpecError) as info:
        serve(served.store, served.project, workers=workers)
    assert str(info.value) == f"workers must be a whole number of processes, at least 1; got {workers!r}"


def test_app_from_env_names_what_is_missing(monkeypatch):
    monkeypatch.delenv("LOOPML_SERVE_ROOT", raising=False)
    monkeypatch.delenv("LOOPML_SERVE_PROJECT", raising=False)
    with pytest.raises(SpecError) as info:
        app_from_env()
    assert str(info.value) == ("app_from_env: set LOOPML_SERVE_ROOT and LOOPML_SERVE_PROJECT "
                               "(the project folder and the project name)")


@pytest.mark.parametrize(("options", "message"), [
    ("{not json", "LOOPML_SERVE_OPTIONS is not valid JSON"),
    ('{"max_rows": 5, "workers": 2}', "LOOPML_SERVE_OPTIONS: unknown keys workers; allowed: max_rows, "
                                      "max_body_bytes, max_inflight, reload_interval_s"),
    ('{"max_rows": 0}', "max_rows must be a whole number of at least 1; got 0"),
])
def test_app_from_env_refuses_bad_options(served, monkeypatch, options, message):
    monkeypatch.setenv("LOOPML_SERVE_ROOT", str(served.root))
    monkeypatch.setenv("LOOPML_SERVE_PROJECT", served.project)
    monkeypatch.setenv("LOOPML_SERVE_OPTIONS", options)
    with pytest.raises(SpecError) as info:
        app_from_env()
    assert str(info.value).startswith(message)
