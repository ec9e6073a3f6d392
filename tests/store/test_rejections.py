"""Requests serving refused, in the store: written, read by seq bounds, counted per window; the 0006 upgrade."""

from datetime import UTC, datetime, timedelta

import pytest

from loopml.errors import ConflictError, StoreError
from loopml.store import Store

from .old_stores import at_revision, head, version_one

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _row(i: str, request: str, column: str | None, kind: str, *, rows: int | None = 1, request_rows: int | None = 1,
         minute: int = 0, **extra):
    return {"id": i, "request_id": request, "column": column, "kind": kind, "rows": rows,
            "request_rows": request_rows, "example": f"why {i}", "created_at": T0 + timedelta(minutes=minute), **extra}


def test_counts_group_by_column_and_kind_and_sum_each_request_once(store):
    store.log_rejections("p", [
        _row("a", "r1", "age", "type", rows=2, request_rows=5), _row("b", "r1", "sex", "unknown_category",
                                                                     request_rows=5),
        _row("c", "r2", "age", "type", minute=1), _row("d", "r3", None, "body", rows=0, request_rows=None, minute=2),
    ])
    counts = store.rejection_counts("p", after_seq=0, until=T0 + timedelta(minutes=5))
    assert (counts["after_seq"], counts["last_seq"], counts["requests"], counts["rows"], counts["unsized"]) == \
        (0, 4, 3, 6, 1)
    assert [(g["column"], g["kind"], g["requests"], g["rows"], g["example"]) for g in counts["columns"]] == [
        ("age", "type", 2, 3, "why a"), ("sex", "unknown_category", 1, 1, "why b"), (None, "body", 1, 0, "why d")]


def test_a_window_owns_the_rejections_up_to_the_last_one_logged_by_its_end(store):
    store.log_rejections("p", [_row("a", "r1", "age", "type"), _row("b", "r2", "age", "type", minute=10),
                               _row("c", "r3", "age", "type", minute=20)])
    first = store.rejection_counts("p", after_seq=0, until=T0 + timedelta(minutes=10))
    assert (first["last_seq"], first["requests"]) == (2, 2)
    second = store.rejection_counts("p", after_seq=first["last_seq"], until=T0 + timedelta(minutes=15))
    assert (second["last_seq"], second["requests"], second["columns"]) == (2, 0, [])
    assert [r["id"] for r in store.rejections("p", after_seq=1, up_to_seq=2)] == ["b"]
    assert [r["id"] for r in store.rejections("p", after_seq=2)] == ["c"]


def test_rejections_are_per_project_and_a_retried_write_adds_nothing_twice(store):
    store.log_rejections("p", [_row("a", "r1", "age", "type")])
    store.log_rejections("p", [_row("a", "r1", "age", "type"), _row("b", "r2", "age", "type")], skip_existing=True)
    store.log_rejections("q", [_row("c", "r1", "age", "type")])
    assert [r["id"] for r in store.rejections("p")] == ["a", "b"]
    with pytest.raises(ConflictError, match=r"(?s)cannot log 1 rejections for project 'p': .*every rejection id "
                                            "must be new"):
        store.log_rejections("p", [_row("a", "r1", "age", "type")])


def test_a_rejection_without_its_kind_is_refused_with_the_fix(store):
    with pytest.raises(StoreError) as caught:
        store.log_rejections("p", [{"id": "a", "request_id": "r1", "column": "age"}])
    assert str(caught.value) == ("a rejection to log lacks kind; each row needs id, request_id and kind (got keys: "
                                 "column, id, request_id)")


def test_long_column_names_and_examples_are_truncated(store):
    store.log_rejections("p", [{**_row("a", "r1", "c" * 500, "unknown_column"), "example": "x" * 1000}])
    [row] = store.rejections("p")
    assert (len(row["column"]), len(row["example"])) == (200, 300)


# -- migration 0006: a 0005 store upgrades in place ----------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_0005_store_upgrades_and_keeps_its_predictions_and_windows(dialect, tmp_path, request):
    url = request.getfixturevalue("postgres_url") if dialect == "postgresql" else f"sqlite:///{tmp_path / 'old.db'}"
    engine = at_revision(url, "0005")
    at = "2024-05-01 12:00:00"
    with engine.begin() as conn:
        for sql in (
            *version_one(at),
            "INSERT INTO predictions (id, project, model_version_id, features, prediction, created_at, role) VALUES "
            f"('a1', 'p', 1, '{{\"x\": 1}}', '\"yes\"', '{at}', 'champion')",
            "INSERT INTO monitor_windows (project, model_version_id, first_seq, last_seq, rows, metrics, created_at, "
            f"kind, window_key) VALUES ('p', 1, 1, 1, 1, '{{\"window\": {{}}}}', '{at}', 'predictions', 'seq:1')",
        ):
            conn.exec_driver_sql(sql)
    engine.dispose()
    store = Store.open(tmp_path, url=url)
    assert store.schema_version() == head()
    assert store.prediction_count("p") == 1
    [window] = store.monitor_windows("p", kind="predictions")
    assert (window["first_seq"], window["metrics"]) == (1, {"window": {}})
    assert store.rejections("p") == []
    store.log_rejections("p", [_row("e1", "r1", "x", "type", model_version_id=1)])
    assert store.rejection_counts("p", after_seq=0, until=T0)["requests"] == 1
    store.close()
