"""A shop whose computer prices move with time: a real population shift to maintain a model through.

The public bench's ``computers`` table (6,259 PC sales, 1993-1995) has a ``trend`` column, the month of
the sale. Prices for the same specification fall month by month, so a model of months 1-12 misses its
goal on months 13-16 and a model that learns from those months meets it again. The champion is trained
once per session on 1,800 rows of months 1-12; each test works on its own copy of that project.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from loopml.process import run_project
from loopml.spec import ProjectSpec, load_spec
from loopml.store import Store

BENCH = Path(__file__).resolve().parents[1] / "bench_data"  # real tables, copied into the repo
TARGET = "price"


def computers_spec(folder: Path, **maintenance: Any) -> Path:
    """A fast spec for the shop in ``folder``: mean absolute error at most 200 dollars."""
    doc = {
        "project": "shop",
        "business": {"problem": "What will this PC sell for?", "task": "regression", "target": TARGET,
                     "goal": {"metric": "mae", "at_most": 200}},
        "data": {"sources": [{"name": "sales", "path": "computers.csv", "incremental": {"column": "trend"}}]},
        "model": {"budget": "2m", "seed": 0, "folds": 3, "trials": 3},
        "maintenance": {"min_labeled": 40, "retrain": {"window": "all"}, **maintenance},
    }
    path = folder / "loopml.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def computers() -> pd.DataFrame:
    path = BENCH / "computers.parquet"
    return pd.read_parquet(path)


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory, computers) -> Path:
    """A project with a champion trained on 1,800 sales of months 1-12."""
    folder = tmp_path_factory.mktemp("shop-template")
    early = computers[computers["trend"] <= 12].sample(frac=1.0, random_state=0)
    early.iloc[:1800].sort_values("trend", kind="mergesort").to_csv(folder / "computers.csv", index=False)
    computers_spec(folder)
    store = Store.open(folder)
    assert run_project(load_spec(folder), store).outcome == "registered"
    store.close()
    return folder


@dataclass
class Shop:
    """One test's copy of the shop: its folder, its store, and the sales data."""

    root: Path
    store: Store
    sales: pd.DataFrame

    @property
    def unseen_early(self) -> pd.DataFrame:
        """Sales of months 1-12 that the champion never saw (the same population)."""
        early = self.sales[self.sales["trend"] <= 12].sample(frac=1.0, random_state=0)
        return early.iloc[1800:].reset_index(drop=True)

    def months(self, first: int, last: int) -> pd.DataFrame:
        return self.sales[self.sales["trend"].between(first, last)].reset_index(drop=True)

    def spec(self, **maintenance: Any) -> ProjectSpec:
        computers_spec(self.root, **maintenance)
        return load_spec(self.root)

    def log(self, rows: pd.DataFrame, labels: pd.Series | None = None) -> None:
        """Log ``rows`` as predictions of the champion, then their true prices as feedback."""
        log_labeled(self.store, "shop", rows, TARGET, rows[TARGET] if labels is None else labels)

    def append_sales(self, rows: pd.DataFrame) -> None:
        """New sales arrive in the source file (the incremental column grows)."""
        rows.to_csv(self.root / "computers.csv", mode="a", header=False, index=False)


@pytest.fixture
def shop(tmp_path, shop_template, computers) -> Shop:
    root = tmp_path / "shop"
    shutil.copytree(shop_template, root)
    store = Store.open(root)
    yield Shop(root, store, computers)
    store.close()


def log_labeled(store: Store, project: str, rows: pd.DataFrame, target: str, labels) -> list[str]:
    """Real prediction-log rows for ``rows`` (as the server writes them) and their labels as feedback."""
    champion = store.alias(project, "champion")
    ids = [uuid.uuid4().hex for _ in range(len(rows))]
    features = rows.drop(columns=[target]).to_dict(orient="records")
    store.log_predictions(project, champion.id, [
        {"id": i, "features": f, "prediction": 0.0, "latency_ms": 1.0} for i, f in zip(ids, features, strict=True)])
    for i, label in zip(ids, labels, strict=True):
        store.record_feedback(project, i, label.item() if hasattr(label, "item") else label)
    return ids


def loopml_process(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``loopml ARGS`` as a real process in ``cwd``, its output captured."""
    return subprocess.Popen([sys.executable, "-m", "loopml", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "160", **(env or {})})
