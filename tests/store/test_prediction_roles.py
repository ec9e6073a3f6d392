"""Who produced each logged prediction (champion, canary, shadow), on SQLite and PostgreSQL, and the 0005 upgrade."""

import pytest

from loopml.errors import ConflictError, StoreError
from loopml.store import Store

from .old_stores import at_revision, head, version_one


def _version(store, key: str):
    snap = store.save_snapshot("p", input_key=key, data=key.encode(), data_hash="d" * 64, rows=1, columns=1,
                               contract={"columns": []}, report={})
    return store.register_model("p", run_id=None, snapshot_id=snap.id, input_key=key,
                                model_bytes=b'{"format": "%s"}' % key.encode(), spec_hash="s" * 64, family="linear",
                                metrics={}, operating_point={}, lineage={})


@pytest.fixture
def versions(store):
    champion, challenger = _version(store, "a"), _version(store, "b")
    store.set_alias("p", "champion", champion.version, actor="t", reason="first")
    return champion, challenger


def _row(i: str, **extra):
    return {"id": i, "features": {"x": 1}, "prediction": "yes", **extra}


def test_a_shadow_row_carries_the_label_of_the_prediction_it_shadows(store, versions):
    champion, challenger = versions
    store.log_predictions("p", champion.id, [_row("a1"), _row("a2")])
    store.log_predictions("p", challenger.id, [_row("s1", role="shadow", shadow_of="a1"),
                                               _row("s2", role="shadow", shadow_of="a2")])
    store.record_feedback("p", "a1", "no")
    [shadow] = store.labeled_predictions("p", roles=("shadow",), model_version_id=challenger.id)
    assert (shadow["id"], shadow["label"], shadow["shadow_of"], shadow["answered_version_id"]) == \
        ("s1", "no", "a1", champion.id)
    assert [r["id"] for r in store.labeled_predictions("p")] == ["a1"]
    assert [r["id"] for r in store.labeled_predictions("p", roles=("champion", "shadow"))] == ["a1", "s1"]


def test_canary_rows_are_answered_traffic_and_can_be_read_apart(store, versions):
    champion, challenger = versions
    store.log_predictions("p", champion.id, [_row("a1")])
    store.log_predictions("p", challenger.id, [_row("c1", role="canary")])
    store.log_predictions("p", champion.id, [_row("a2")])
    for i in ("a1", "c1", "a2"):
        store.record_feedback("p", i, "yes")
    assert [r["role"] for r in store.labeled_predictions("p")] == ["champion", "canary", "champion"]
    [canary] = store.labeled_predictions("p", roles=("canary",))
    later = store.labeled_predictions("p", roles=("champion",), from_seq=canary["seq"])
    assert [r["id"] for r in later] == ["a2"]


@pytest.mark.parametrize(("row", "message"), [
    (_row("x", role="blue"), "prediction 'x': role 'blue' is not one of champion, canary, shadow"),
    (_row("x", role="shadow"), "prediction 'x' is a shadow row without shadow_of; name the id of the answered "
                               "prediction it shadows"),
    (_row("x", shadow_of="a1"), "prediction 'x' has role 'champion' and shadow_of 'a1'; only a shadow row shadows "
                                "another: set role 'shadow' or drop shadow_of"),
])
def test_a_bad_role_is_refused_with_the_fix(store, versions, row, message):
    with pytest.raises(StoreError) as caught:
        store.log_predictions("p", versions[0].id, [row])
    assert str(caught.value) == message
    assert store.prediction_count("p") == 0


def test_reading_unknown_roles_is_refused(store):
    with pytest.raises(StoreError, match=r"roles must name some of champion, canary, shadow; got 'answered'"):
        store.labeled_predictions("p", roles=("answered",))


def test_the_challenger_alias_can_be_cleared_and_the_champion_cannot(store, versions):
    champion, challenger = versions
    store.set_alias("p", "challenger", challenger.version, actor="t", reason="release")
    assert store.clear_alias("p", "challenger", actor="t", reason="x", only_if=champion.id) is None  # it moved
    assert store.alias("p", "challenger").version == challenger.version
    assert store.clear_alias("p", "challenger", actor="t", reason="rolled back").version == challenger.version
    assert store.alias("p", "challenger") is None
    assert store.clear_alias("p", "challenger", actor="t", reason="x") is None
    with pytest.raises(ConflictError, match="the champion alias of project 'p' cannot be removed; promote or roll "
                                            "back to another version instead"):
        store.clear_alias("p", "champion", actor="t", reason="x")


# -- migration 0005: a 0004 store upgrades in place ----------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_0004_store_upgrades_and_keeps_every_prediction_and_label(dialect, tmp_path, request):
    url = request.getfixturevalue("postgres_url") if dialect == "postgresql" else f"sqlite:///{tmp_path / 'old.db'}"
    engine = at_revision(url, "0004")
    at = "2024-05-01 12:00:00"
    with engine.begin() as conn:
        for sql in (
            *version_one(at),
            # seq left to the database, as the server logs rows (PostgreSQL's sequence then moves on with them).
            "INSERT INTO predictions (id, project, model_version_id, features, prediction, created_at) VALUES "
            f"('a1', 'p', 1, '{{\"x\": 1}}', '\"yes\"', '{at}')",
            "INSERT INTO predictions (id, project, model_version_id, features, prediction, created_at) VALUES "
            f"('a2', 'p', 1, '{{\"x\": 2}}', '\"no\"', '{at}')",
            f"INSERT INTO feedback (prediction_id, project, label, created_at) VALUES ('a1', 'p', '\"no\"', '{at}')",
        ):
            conn.exec_driver_sql(sql)
    engine.dispose()
    store = Store.open(tmp_path, url=url)
    assert store.schema_version() == head()
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, role, shadow_of FROM predictions ORDER BY seq").all()
    assert [tuple(r) for r in rows] == [("a1", "champion", None), ("a2", "champion", None)]
    [labeled] = store.labeled_predictions("p")
    assert (labeled["id"], labeled["label"], labeled["features"], labeled["role"]) == ("a1", "no", {"x": 1}, "champion")
    assert len(store.logged_rows("p", first_seq=1, last_seq=2)) == 2
    store.log_predictions("p", 1, [{"id": "s2", "features": {"x": 2}, "prediction": "yes", "role": "shadow",
                                    "shadow_of": "a2"}])
    assert (store.prediction_count("p"), store.prediction_count("p", roles=("champion",))) == (3, 2)
    store.close()
