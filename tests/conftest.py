"""Fixtures shared by every test: the bundled example data, project folders, a real PostgreSQL database."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "benefits"


@pytest.fixture(scope="session")
def benefits_csv() -> Path:
    return EXAMPLE / "benefits.csv"


def write_spec(folder: Path, **overrides) -> Path:
    """A fast, valid spec for the benefits data in ``folder``; ``overrides`` replace top-level sections."""
    doc = {
        "project": "benefits-test",
        "business": {
            "problem": "Who applies for unemployment insurance?",
            "task": "binary",
            "target": "ui",
            "positive": "yes",
            "goal": {"metric": "recall", "at_least": 0.6, "with": {"precision": 0.72}},
        },
        "data": {"sources": [{"name": "survey", "path": "benefits.csv"}], "min_rows": 200},
        "model": {"budget": "2m", "seed": 0, "folds": 3, "trials": 4},
        "maintenance": {"min_labeled": 40},
    }
    doc.update(overrides)
    path = folder / "loopml.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def project_dir(tmp_path: Path, benefits_csv: Path) -> Path:
    """A project folder holding 2,000 rows of the benefits data and a fast spec."""
    pd.read_csv(benefits_csv).head(2000).to_csv(tmp_path / "benefits.csv", index=False)
    write_spec(tmp_path)
    return tmp_path


@pytest.fixture
def full_example(tmp_path: Path) -> Path:
    """A copy of the bundled example folder, as a new user would have it."""
    target = tmp_path / "benefits"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".loopml"))
    return target


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of the PostgreSQL server on 127.0.0.1:5432; skips when none answers."""
    psycopg = pytest.importorskip("psycopg")
    try:
        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test connect_timeout=3", autocommit=True):
            pass
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers on 127.0.0.1:5432 ({str(exc).strip()[:120]})")
    return "host=127.0.0.1 port=5432 dbname=test"


@pytest.fixture
def postgres_url(postgres_server: str):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"loopml_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://127.0.0.1:5432/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
