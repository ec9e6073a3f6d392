"""Retraining on fresh data: incremental collection, bad data, budget, a source that is down, windows."""

import json

import numpy as np
import pandas as pd

from loopml.data import frame_from_parquet
from loopml.maintenance import maintain_project
from loopml.maintenance.retrain import collect_fresh, fresh_problems, training_windows
from loopml.spec import load_spec

from .conftest import computers_spec, loopml_process


def _decision(result, stage, gate):
    return next(d for d in result.decisions if (d.stage, d.gate) == (stage, gate))


def _drift(shop):
    shop.store.add_alert("shop", window_id=None, kind="drift", detail={"summary": "speed and ram drifted"})


def test_collect_then_retrain_reads_only_the_sales_past_the_watermark(shop):
    shop.append_sales(shop.months(13, 16))
    _drift(shop)
    spec = shop.spec(on={"drift": "collect_then_retrain"})
    result = maintain_project(spec, shop.store)
    collected = _decision(result, "data", "collect")
    new = len(shop.months(13, 16))
    assert collected.summary == f"{new:,} new rows from the sources (rows of 'sales' with trend > 12)"
    assert (result.outcome, result.action) == ("promoted", "collect_then_retrain"), result.explanation
    lineage = shop.store.alias("shop", "champion").lineage
    trained = shop.months(13, 16).iloc[: lineage["fresh_rows"]]
    assert lineage["labeled_rows"] == 0 and lineage["fresh_rows"] == len(shop.months(13, 16)) // 2
    assert lineage["watermarks"] == {"sales": int(trained["trend"].max())}

    shop.append_sales(shop.months(17, 17))
    _drift(shop)
    again = maintain_project(spec, shop.store)
    watermark = lineage["watermarks"]["sales"]
    assert f"rows of 'sales' with trend > {watermark}" in _decision(again, "data", "collect").summary
    assert _decision(again, "data", "collect").evidence["rows"] == len(shop.months(watermark + 1, 17))


def test_a_source_without_an_incremental_column_is_read_in_full_less_what_the_champion_has(shop):
    computers_spec(shop.root)
    text = (shop.root / "loopml.yaml").read_text().replace("    incremental:\n      column: trend\n", "")
    (shop.root / "loopml.yaml").write_text(text)
    spec = load_spec(shop.root)
    champion = shop.store.alias("shop", "champion")
    base = frame_from_parquet(shop.store.read_snapshot(shop.store.snapshot(champion.snapshot_id)))
    shop.append_sales(shop.months(13, 13))
    fresh = collect_fresh(spec, base=base, sources_used=["sales"], since={})
    assert len(fresh.frame) == len(shop.months(13, 13)) and set(fresh.frame["trend"]) == {13}
    assert "'sales' read in full (it has no incremental column): 1,800 of its" in fresh.how


def test_bad_fresh_data_fails_the_retrain_and_the_champion_keeps_serving(shop):
    bad = shop.months(13, 14).astype({"speed": object})
    bad.loc[bad.index[:3], "speed"] = "fast"
    shop.append_sales(bad)
    _drift(shop)
    result = maintain_project(shop.spec(on={"drift": "collect_then_retrain"}), shop.store)
    assert (result.outcome, result.exit_code) == ("retrain_failed", 1)
    collected = _decision(result, "data", "collect")
    assert (collected.verdict, collected.action) == ("fail", "stop")
    assert ("column 'speed' holds 3 values that are not a number (e.g. 'fast') where the champion's data has "
            "numbers") in collected.summary
    assert "champion v1 keeps serving" in result.decisions[-1].summary
    assert [v.version for v in shop.store.model_versions("shop")] == [1]


def test_a_budget_too_small_fails_the_retrain_with_the_fix(shop):
    shop.log(shop.months(13, 16))
    result = maintain_project(shop.spec(retrain={"window": "all", "budget": "0.01s"}), shop.store)
    assert (result.outcome, result.exit_code) == ("retrain_failed", 1)
    assert "the retrain budget of 0.01s is too small: no training window could train" in result.explanation
    assert "raise maintenance.retrain.budget" in result.explanation
    assert shop.store.alias("shop", "champion").version == 1


def test_a_source_that_is_down_is_retried_then_alerted_and_the_log_still_retrains(shop):
    shop.log(shop.months(13, 16))
    spec = shop.spec(on={"goal_breached": "collect_then_retrain"}, sources={"attempts": 2, "backoff": "0.05s"})
    (shop.root / "computers.csv").rename(shop.root / "computers.offline")  # the file share went away
    result = maintain_project(spec, shop.store)
    collected = _decision(result, "data", "collect")
    assert (collected.verdict, collected.action) == ("fail", "alert")
    assert collected.summary.startswith("the sources could not be read after 2 attempts (maintenance.sources)")
    assert collected.evidence["attempts"] == 2
    assert shop.store.alerts("shop")[-1]["kind"] == "source_down"
    assert result.outcome == "promoted" and shop.store.alias("shop", "champion").lineage["fresh_rows"] == 0


def test_an_estimated_breach_retrains_on_new_source_rows_when_the_policy_allows(shop):
    shop.append_sales(shop.months(13, 16))
    shop.store.add_alert("shop", window_id=None, kind="goal_breach_estimated", detail={"summary": "mae ~240"})
    on = {"goal_breach_estimated": "collect_then_retrain"}
    held = maintain_project(shop.spec(on=on), shop.store)
    assert (held.outcome, held.action) == ("alert_only", "alert")
    assert "breached by the estimate only" in held.explanation
    shop.store.add_alert("shop", window_id=None, kind="goal_breach_estimated", detail={"summary": "mae ~240"})
    allowed = maintain_project(shop.spec(on=on, act_on_estimate=True), shop.store)
    assert allowed.action == "collect_then_retrain" and allowed.outcome == "promoted", allowed.explanation


def test_fresh_rows_without_the_target_or_a_column_are_named():
    contract = {"columns": [{"name": "speed", "kind": "integer"}, {"name": "ram", "kind": "integer"}]}
    assert fresh_problems(pd.DataFrame({"speed": [33]}), contract, "price") == [
        "the new rows lack the target column 'price'",
        "the new rows lack column 'ram' that the champion's data has"]


def test_a_window_that_cannot_be_cut_falls_back_to_all_with_the_reason():
    pool = pd.DataFrame({"x": range(300)})
    windows, skipped = training_windows(pool, np.arange(300) >= 250, choice="recent", seed=0, min_rows=200)
    assert list(windows) == ["all"]
    assert skipped == {"recent": "50 new rows, fewer than data.min_rows 200",
                       "all": "used instead: the window asked for cannot be cut"}


def test_the_weighted_window_weighs_new_rows_as_much_as_all_older_ones():
    pool = pd.DataFrame({"x": range(1000)})
    windows, _ = training_windows(pool, np.arange(1000) >= 700, choice="weighted", seed=0, min_rows=200)
    weighted = windows["weighted"]
    assert len(weighted) == 600 and (weighted["x"] >= 700).sum() == 300


def test_the_command_runs_its_pass_while_the_source_is_down(shop):
    shop.log(shop.months(13, 16))
    shop.spec(on={"goal_breached": "collect_then_retrain"}, sources={"attempts": 1})
    (shop.root / "computers.csv").rename(shop.root / "computers.offline")
    proc = loopml_process("maintain", "--json", cwd=shop.root)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["outcome"] == "promoted"
    assert any(d["gate"] == "collect" and d["action"] == "alert" for d in report["decisions"])
