"""Shadow and canary releases over real HTTP: who answers, what the log holds, and what a failing challenger costs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from loopml.errors import SpecError
from loopml.model.artifact import TrainedModel
from loopml.operations import create_app
from loopml.operations._swap import canary_routed
from loopml.operations.serve import ENV_OPTIONS, ENV_PROJECT, ENV_ROOT, app_from_env
from loopml.spec import GoalSpec, RolloutSpec
from loopml.store import ModelVersion, Store
from loopml.store import schema as t
from loopml.store.metadata import ANSWERED

PROJECT = "release"
SHADOW, CANARY = RolloutSpec(mode="shadow"), RolloutSpec(mode="canary", canary_share=0.3)


@dataclass(frozen=True)
class Versions:
    store: Store
    champion: ModelVersion
    challenger: ModelVersion
    refusing: ModelVersion  # its contract wants a column the requests never send: it fails on every record
    broken: ModelVersion  # its artifact was altered after registration: it cannot be loaded
    challenger_model: TrainedModel
    rows: list[dict]


@pytest.fixture(scope="module")
def versions(tmp_path_factory, register, toy_frame) -> Iterator[Versions]:
    store = Store.open(tmp_path_factory.mktemp("release"))
    frame = toy_frame(150).drop(columns=["kind", "amount"])
    goal = GoalSpec(metric="accuracy", at_least=0.5)
    _, _, broken = register(store, PROJECT, frame.tail(90), target="flag", task="binary", goal=goal, key="broken")
    (Path(store.artifacts.root) / broken.artifact_path).write_bytes(b'{"format": "altered"}')
    _, _, refusing = register(store, PROJECT, frame.assign(z=frame["x"] * 2), target="flag", task="binary", goal=goal,
                              key="refusing")
    model, _, challenger = register(store, PROJECT, toy_frame(150, seed=1).drop(columns=["kind", "amount"]),
                                    target="flag", task="binary", goal=goal, key="challenger")
    _, _, champion = register(store, PROJECT, frame, target="flag", task="binary", goal=goal, key="champion")
    rows = toy_frame(400, seed=7)[["x", "c"]].to_dict("records")
    yield Versions(store, champion, challenger, refusing, broken, model, rows)
    store.close()


@pytest.fixture
def release(versions) -> Iterator[Versions]:
    """The champion serves; the challenger alias points at the challenger; the log starts empty."""
    store = versions.store
    store.set_alias(PROJECT, "champion", versions.champion.version, actor="test", reason="fixture")
    store.set_alias(PROJECT, "challenger", versions.challenger.version, actor="test", reason="fixture")
    yield versions
    with store.engine.begin() as conn:
        conn.execute(t.feedback.delete())
        conn.execute(t.predictions.delete())


def _logged(store: Store) -> pd.DataFrame:
    with store.engine.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(t.predictions)).mappings().all())


def _settle(app) -> None:
    """Every shadow scored and every prediction written (what a clean stop does)."""
    assert app.state.shadow.drain(20)
    app.state.prediction_log.flush(20)


def _wait(condition, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- shadow ------------------------------------------------------------------------------------------


def test_in_shadow_the_champion_answers_and_the_log_holds_one_shadow_row_per_answer(release, run_app):
    app = create_app(release.store, PROJECT, rollout=SHADOW)
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        singles = [client.post("/predict", json={"row": row}) for row in release.rows[:30]]
        batch = client.post("/predict", json={"rows": release.rows[30:50]})
        assert client.get("/ready").json() == {"status": "ready", "model_version": release.champion.version,
                                               "rollout": "shadow", "challenger_version": release.challenger.version}
        _settle(app)
    answers = [r for r in (*singles, batch)]
    assert {(r.status_code, r.json()["model_version"], r.headers["x-loopml-role"]) for r in answers} == \
        {(200, release.champion.version, "champion")}
    answered = [p["id"] for r in answers for p in r.json()["predictions"]]
    log = _logged(release.store)
    shadows = log[log["role"] == "shadow"].set_index("shadow_of")
    assert sorted(shadows.index) == sorted(answered) and len(log) == 2 * len(answered)
    assert set(shadows["model_version_id"]) == {release.challenger.id}
    # The shadow scored exactly what the champion answered, as the challenger predicts it.
    assert [shadows.loc[i, "features"] for i in answered] == release.rows[:50]
    expected = release.challenger_model.predict(pd.DataFrame(release.rows[:50])).tolist()
    assert [shadows.loc[i, "prediction"] for i in answered] == expected
    assert app.state.shadow.failed == 0 and app.state.shadow.scored == 50


def test_feedback_on_an_answered_prediction_labels_its_shadow_row(release, run_app):
    app = create_app(release.store, PROJECT, rollout=SHADOW)
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/predict", json={"row": release.rows[0]}).json()["predictions"][0]
        _settle(app)
        assert client.post("/feedback", json={"prediction_id": answer["id"], "label": "hi"}).status_code == 200
        [shadow] = release.store.labeled_predictions(PROJECT, roles=("shadow",))
        refused = client.post("/feedback", json={"prediction_id": shadow["id"], "label": "lo"})
    assert (shadow["shadow_of"], shadow["label"], shadow["answered_version_id"]) == \
        (answer["id"], "hi", release.champion.id)
    assert [r["id"] for r in release.store.labeled_predictions(PROJECT)] == [answer["id"]]  # answered rows only
    assert refused.status_code == 409
    assert refused.json()["detail"] == (f"prediction '{shadow['id']}' is a shadow prediction, which answered no "
                                        f"request; send the label for the answered prediction '{answer['id']}' "
                                        "(it labels its shadow too)")


def test_monitoring_reads_answered_traffic_and_leaves_shadow_rows_out(release, run_app):
    app = create_app(release.store, PROJECT, rollout=SHADOW)
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.post("/predict", json={"rows": release.rows[:8]})
        _settle(app)
    store = release.store
    times = store.logged_times(PROJECT, after_seq=0)
    rows = store.logged_rows(PROJECT, first_seq=0, last_seq=10**9)
    assert len(times) == len(rows) == 8 and {r["role"] for r in rows} == {"champion"}
    assert (store.prediction_count(PROJECT), store.prediction_count(PROJECT, roles=ANSWERED)) == (16, 8)


def test_a_shadow_that_fails_on_every_record_never_fails_a_request(release, run_app):
    release.store.set_alias(PROJECT, "challenger", release.refusing.version, actor="test", reason="refuses")
    app = create_app(release.store, PROJECT, rollout=SHADOW)
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        answers = [client.post("/predict", json={"row": row}) for row in release.rows[:20]]
        answers.append(client.post("/predict", json={"rows": release.rows[20:30]}))
        _settle(app)
    assert {(r.status_code, r.json()["model_version"]) for r in answers} == {(200, release.champion.version)}
    assert (app.state.shadow.failed, app.state.shadow.scored) == (30, 0)
    assert set(_logged(release.store)["role"]) == {"champion"}


def test_a_challenger_that_cannot_load_takes_no_traffic_and_the_champion_serves(release, run_app):
    release.store.set_alias(PROJECT, "challenger", release.broken.version, actor="test", reason="broken")
    app = create_app(release.store, PROJECT, rollout=CANARY)
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        ready = client.get("/ready").json()
        answers = [client.post("/predict", json={"row": row}) for row in release.rows[:20]]
    assert ready == {"status": "ready", "model_version": release.champion.version, "rollout": "canary"}
    assert {(r.status_code, r.json()["model_version"]) for r in answers} == {(200, release.champion.version)}


# -- canary ------------------------------------------------------------------------------------------


def test_a_canary_answers_its_share_of_requests_chosen_by_the_hash_of_their_ids(release, run_app):
    app = create_app(release.store, PROJECT, rollout=CANARY)
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        answers = [client.post("/predict", json={"row": row}) for row in release.rows]
        batches = [client.post("/predict", json={"rows": release.rows[i:i + 5]}) for i in range(0, 100, 5)]
        _settle(app)
    by = {release.champion.version: "champion", release.challenger.version: "canary"}
    for r in (*answers, *batches):
        body = r.json()
        assert r.status_code == 200 and r.headers["x-loopml-model-version"] == str(body["model_version"])
        assert r.headers["x-loopml-role"] == by[body["model_version"]]
        # A request goes where its first prediction id hashes: anyone can check the log against it.
        assert canary_routed(body["predictions"][0]["id"], 0.3) == (body["model_version"] == release.challenger.version)
    share = sum(r.json()["model_version"] == release.challenger.version for r in answers) / len(answers)
    assert 0.22 <= share <= 0.38, share  # 400 requests: 0.3 ± 3.5 standard deviations
    log = _logged(release.store)
    assert len(log) == len(answers) + 100 and set(log["role"]) == {"champion", "canary"}
    version_of = {release.champion.id: "champion", release.challenger.id: "canary"}
    assert (log["model_version_id"].map(version_of) == log["role"]).all()


def test_canary_routing_is_a_stable_hash_that_keeps_its_requests_when_the_share_grows():
    ids = [uuid.UUID(int=i).hex for i in range(20_000)]
    at_10, at_30 = ({i for i in ids if canary_routed(i, share)} for share in (0.1, 0.3))
    assert abs(len(at_10) / len(ids) - 0.1) < 0.01 and abs(len(at_30) / len(ids) - 0.3) < 0.015
    assert at_10 <= at_30  # raising the share adds requests to the canary and takes none away
    assert all(canary_routed(i, 0.3) for i in at_30)  # the same id always routes the same way


def test_a_canary_that_fails_leaves_the_request_to_the_champion(release, run_app):
    release.store.set_alias(PROJECT, "challenger", release.refusing.version, actor="test", reason="refuses")
    app = create_app(release.store, PROJECT, rollout=RolloutSpec(mode="canary", canary_share=0.9))
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        answers = [client.post("/predict", json={"row": row}) for row in release.rows[:20]]
        answers.append(client.post("/predict", json={"rows": release.rows[20:30]}))
        bad = client.post("/predict", json={"row": {"x": "not a number", "c": "p"}})
    assert {(r.status_code, r.json()["model_version"]) for r in answers} == {(200, release.champion.version)}
    assert bad.status_code == 422  # the champion's contract is the API's, whoever answers


def test_removing_the_challenger_alias_ends_the_canary_without_a_restart(release, run_app):
    app = create_app(release.store, PROJECT, rollout=RolloutSpec(mode="canary", canary_share=0.5),
                     reload_interval_s=0.1)
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        before = {client.post("/predict", json={"row": row}).json()["model_version"] for row in release.rows[:40]}
        release.store.clear_alias(PROJECT, "challenger", actor="test", reason="rolled back")
        _wait(lambda: "challenger_version" not in client.get("/ready").json(), "the canary to be let go")
        after = {client.post("/predict", json={"row": row}).json()["model_version"] for row in release.rows[:40]}
        release.store.set_alias(PROJECT, "challenger", release.challenger.version, actor="test", reason="again")
        _wait(lambda: client.get("/ready").json().get("challenger_version") == release.challenger.version,
              "the next challenger")
    assert before == {release.champion.version, release.challenger.version}
    assert after == {release.champion.version}


def test_a_challenger_alias_moved_to_a_version_that_cannot_load_ends_the_canary(release, run_app):
    app = create_app(release.store, PROJECT, rollout=RolloutSpec(mode="canary", canary_share=0.5),
                     reload_interval_s=0.1)
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/ready").json()["challenger_version"] == release.challenger.version
        release.store.set_alias(PROJECT, "challenger", release.broken.version, actor="test", reason="broken")
        _wait(lambda: "challenger_version" not in client.get("/ready").json(), "the old challenger to be let go")
        after = {client.post("/predict", json={"row": row}).json()["model_version"] for row in release.rows[:40]}
    assert after == {release.champion.version}


# -- options -----------------------------------------------------------------------------------------


def test_without_a_rollout_the_challenger_alias_takes_no_traffic(release, run_app):
    app = create_app(release.store, PROJECT)
    with run_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        ready = client.get("/ready").json()
        client.post("/predict", json={"rows": release.rows[:10]})
        app.state.prediction_log.flush(20)
    assert ready == {"status": "ready", "model_version": release.champion.version}
    assert set(_logged(release.store)["role"]) == {"champion"}


@pytest.mark.parametrize(("rollout", "message"), [
    ({"mode": "blue"}, "rollout: mode: Input should be 'direct', 'shadow' or 'canary'"),
    ({"mode": "canary", "canary_share": 1}, "rollout: canary_share: found 1; expected the share of requests the "
                                            "canary answers, a number between 0 and 1 exclusive"),
    ("canary", "rollout must be the spec's maintenance.rollout (a RolloutSpec) or a mapping such as "
               "{'mode': 'canary', 'canary_share': 0.1}; got str"),
])
def test_a_bad_rollout_is_refused_with_what_would_be_right(versions, rollout, message):
    with pytest.raises(SpecError) as caught:
        create_app(versions.store, PROJECT, rollout=rollout)
    assert str(caught.value).startswith(message)


def test_each_worker_reads_the_rollout_from_its_environment(versions, monkeypatch):
    monkeypatch.setenv(ENV_ROOT, str(versions.store.root))
    monkeypatch.setenv(ENV_PROJECT, PROJECT)
    monkeypatch.setenv(ENV_OPTIONS, '{"rollout": {"mode": "canary", "canary_share": 0.25}}')
    app = app_from_env()
    assert (app.state.rollout.mode, app.state.rollout.canary_share) == ("canary", 0.25)
    assert app.state.challenger.alias == "challenger"
    app.state.holder.store.close()
