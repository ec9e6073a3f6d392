"""Shadow and canary releases through maintenance: a challenger proves itself on live traffic, or is rolled back.

The shop (see conftest) is served by a real uvicorn server; predictions and labels arrive over HTTP, and
maintenance passes judge the challenger on them, as in production.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import write_spec
from operations.conftest import running, spawned

from loopml.data import frame_from_parquet
from loopml.errors import SpecError
from loopml.maintenance import compare_canary, maintain_project, unpaired_bootstrap
from loopml.model import SearchPlan, TrainedModel, search
from loopml.operations import create_app
from loopml.spec import load_spec

from .conftest import TARGET, Shop


def _gates(result):
    return [(d.gate, d.verdict, d.action) for d in result.decisions]


def _wait(condition, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _traffic(client: httpx.Client, rows: pd.DataFrame) -> list[dict]:
    """Each row as one request, then its true price as feedback; the answers."""
    answers = []
    for record in rows.drop(columns=[TARGET]).to_dict("records"):
        r = client.post("/predict", json={"row": record})
        assert r.status_code == 200, r.text
        answers.append(r.json())
    for answer, price in zip(answers, rows[TARGET], strict=True):
        prediction_id = answer["predictions"][0]["id"]
        assert client.post("/feedback", json={"prediction_id": prediction_id, "label": int(price)}).status_code == 200
    return answers


def _shuffled_challenger(shop: Shop) -> TrainedModel:
    """A challenger trained on the champion's data with the prices shuffled: it learned nothing."""
    champion = shop.store.alias("shop", "champion")
    frame = frame_from_parquet(shop.store.read_snapshot(shop.store.snapshot(champion.snapshot_id)))
    frame[TARGET] = frame[TARGET].sample(frac=1.0, random_state=0).to_numpy()
    result = search(frame, target=TARGET, task="regression", goal=load_spec(shop.root).business.goal,
                    plan=SearchPlan(families=("linear",), folds=3))
    mv = shop.store.register_model("shop", run_id=None, snapshot_id=champion.snapshot_id, input_key="shuffled",
                                   model_bytes=result.model.to_bytes(), spec_hash="test", family=result.model.family,
                                   metrics={}, operating_point=result.operating_point, lineage={})
    shop.store.set_alias("shop", "challenger", mv.version, actor="test", reason="a challenger that learned nothing")
    return result.model


def test_a_passing_challenger_goes_into_shadow_and_is_promoted_once_live_labels_show_it_meets_the_goal(shop):
    spec = shop.spec(rollout={"mode": "shadow", "min_labeled": 40})
    shop.log(shop.months(13, 16))
    started = maintain_project(spec, shop.store)
    assert (started.outcome, started.exit_code) == ("in_rollout", 0), started.explanation
    assert _gates(started)[-1] == ("rollout", "pass", "shadow")
    assert started.decisions[-1].summary.startswith("v2 passes the offline comparison and is in shadow: it scores "
                                                    "every request without answering; once 40 of its live")
    assert (shop.store.alias("shop", "champion").version, shop.store.alias("shop", "challenger").version) == (1, 2)

    waiting = maintain_project(spec, shop.store)
    assert (waiting.outcome, _gates(waiting)[0]) == ("in_rollout", ("rollout", "info", "wait"))
    assert waiting.explanation.startswith("v2 in shadow: 0 of its live predictions labeled so far; need 40 "
                                          "(maintenance.rollout.min_labeled)")

    app = create_app(shop.store, "shop", rollout=spec.maintenance.rollout, reload_interval_s=0.1)
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        answers = _traffic(client, shop.months(17, 17))
        assert {a["model_version"] for a in answers} == {1}  # in shadow the champion answers everything
        assert app.state.shadow.drain(30)
        app.state.prediction_log.flush(30)
        promoted = maintain_project(spec, shop.store)
        _wait(lambda: client.get("/ready").json() == {"status": "ready", "model_version": 2, "rollout": "shadow"},
              "the server to swap in the promoted challenger and drop its shadow")
        after = client.post("/predict", json={"row": shop.months(18, 18).drop(columns=[TARGET]).iloc[0].to_dict()})
    assert (promoted.outcome, promoted.exit_code) == ("promoted", 0), promoted.explanation
    last = promoted.decisions[-1]
    assert (last.gate, last.verdict, last.action) == ("rollout", "pass", "promote")
    assert last.summary.startswith("v2 promoted to champion after its release in shadow (was v1): challenger "
                                   "meets the goal and is not worse than the champion")
    assert last.evidence["challenger_labeled"] == len(answers) and last.evidence["comparison"]["paired"]["paired"]
    assert (shop.store.alias("shop", "champion").version, shop.store.alias("shop", "challenger")) == (2, None)
    assert after.json()["model_version"] == 2


def test_a_worse_canary_is_rolled_back_and_serving_stops_sending_it_traffic(shop):
    spec = shop.spec(rollout={"mode": "canary", "canary_share": 0.3, "min_labeled": 40})
    _shuffled_challenger(shop)
    serve = ["-m", "loopml", "serve", "--spec", str(shop.root / "loopml.yaml"), "--reload-interval", "0.2"]
    with spawned(serve, env={}) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        answers = _traffic(client, shop.unseen_early.head(220))
        canary = sum(a["model_version"] == 2 for a in answers)
        assert 40 <= canary <= 110, canary  # 30% of 220 requests
        result = maintain_project(spec, shop.store)
        _wait(lambda: "challenger_version" not in client.get("/ready").json(), "the server to let the canary go")
        after = {client.post("/predict", json={"row": row}).json()["model_version"]
                 for row in shop.unseen_early.tail(30).drop(columns=[TARGET]).to_dict("records")}
    assert (result.outcome, result.exit_code) == ("rolled_back", 1), result.explanation
    last = result.decisions[-1]
    assert (last.gate, last.verdict, last.action) == ("rollout", "fail", "rollback")
    assert last.summary.startswith("canary v2 rolled back: the canary is worse than the champion beyond the noise: ")
    assert last.summary.endswith("the challenger alias is cleared, so serving stops sending it traffic and champion "
                                 "v1 answers every request")
    unpaired = last.evidence["comparison"]["paired"]
    assert unpaired["worse"] and not unpaired["paired"] and unpaired["rows"] == canary
    # The champion is judged over the same period: on the requests it answered from the canary's first one on.
    first = next(i for i, a in enumerate(answers) if a["model_version"] == 2)
    assert unpaired["champion_rows"] == sum(a["model_version"] == 1 for a in answers[first:])
    assert shop.store.alias("shop", "challenger") is None and shop.store.alias("shop", "champion").version == 1
    assert after == {1}
    assert maintain_project(spec, shop.store).outcome != "rolled_back"  # nothing is in canary any more


def test_while_a_challenger_is_in_release_a_breach_waits_for_its_verdict_instead_of_retraining(shop):
    spec = shop.spec(rollout={"mode": "shadow", "min_labeled": 40})
    _shuffled_challenger(shop)
    shop.log(shop.months(13, 16))  # the champion misses the goal on these: the policy wants a retrain
    result = maintain_project(spec, shop.store)
    assert (result.outcome, result.exit_code) == ("in_rollout", 0), result.explanation
    assert _gates(result) == [("rollout", "info", "wait"), ("goal_holds", "fail", "alert"),
                              ("policy", "info", "retrain"), ("rollout", "info", "hold_retrain")]
    assert result.explanation.endswith("held back: v2 is in a shadow release, and its verdict on live traffic "
                                       "comes first")
    assert [v.version for v in shop.store.model_versions("shop")] == [1, 2]


def test_a_challenger_that_fails_the_offline_comparison_never_reaches_traffic(shop):
    # As in test_maintain: the newest labeled sales look like the old ones again, so the challenger does not win.
    shop.log(shop.months(17, 19))
    shop.log(shop.unseen_early)
    share = len(shop.unseen_early) / (len(shop.months(17, 19)) + len(shop.unseen_early))
    spec = shop.spec(compare={"share": round(share, 3)}, rollout={"mode": "canary"})
    result = maintain_project(spec, shop.store)
    assert (result.outcome, result.exit_code) == ("kept_champion", 1), result.explanation
    assert [v.version for v in shop.store.model_versions("shop")] == [1, 2]
    assert shop.store.alias("shop", "challenger") is None  # in direct mode it would name v2
    assert not any(d.gate == "rollout" for d in result.decisions)


def test_a_canary_is_judged_against_the_champion_on_their_own_rows(shop):
    spec = shop.spec()
    champion = TrainedModel.from_bytes(shop.store.read_model(shop.store.alias("shop", "champion")), root=shop.root)
    worse = _shuffled_challenger(shop)
    rows = shop.unseen_early
    mine, theirs = rows.iloc[:150], rows.iloc[150:]
    same = compare_canary(champion, champion, theirs, mine, spec.business.goal)
    assert same.promote and not same.paired["worse"] and same.paired["champion_rows"] == len(theirs)
    bad = compare_canary(champion, worse, theirs, mine, spec.business.goal)
    assert not bad.promote and bad.reason.startswith("the canary is worse than the champion beyond the noise")
    assert "unpaired bootstrap interval" in bad.reason
    wide = unpaired_bootstrap(champion, champion, theirs, mine, spec.business.goal)
    assert wide.ci_low < 0 < wide.ci_high  # a model against itself on other rows: only noise


@pytest.mark.parametrize(("rollout", "problem"), [
    ({"mode": "blue"}, "maintenance.rollout.mode: found 'blue'; allowed: 'direct', 'shadow' or 'canary'"),
    ({"mode": "canary", "canary_share": 1.5}, "maintenance.rollout.canary_share: found 1.5; expected the share of "
                                              "requests the canary answers, a number between 0 and 1 exclusive "
                                              "(0.1: one request in ten)"),
    ({"min_labeled": 3}, "maintenance.rollout.min_labeled: found 3; expected the labeled live predictions of the "
                         "challenger needed before it is judged, a whole number of at least 10"),
    ({"mod": "shadow"}, "maintenance.rollout.mod: unknown key; did you mean 'mode'? allowed keys here: mode, "
                        "canary_share, min_labeled"),
])
def test_a_bad_rollout_names_the_key_and_what_would_be_right(tmp_path: Path, rollout, problem):
    write_spec(tmp_path, maintenance={"rollout": rollout})
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path, check_data=False)
    assert caught.value.problems == [problem]


def test_the_default_rollout_is_direct(project_dir):
    rollout = load_spec(project_dir).maintenance.rollout
    assert (rollout.mode, rollout.canary_share, rollout.min_labeled) == ("direct", 0.1, 100)
