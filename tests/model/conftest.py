"""Shared, real data for the Model stage tests: the benefits survey and sklearn's bundled sets."""

from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris

from loopml.model import SearchPlan, search, split_holdout
from loopml.spec import GoalSpec

BENEFITS = Path(__file__).parents[2] / "examples/benefits/benefits.csv"
FAST = SearchPlan(n_estimators=100)  # the default plan, with fewer trees to keep the suite quick


@pytest.fixture(scope="session")
def benefits() -> pd.DataFrame:
    return pd.read_csv(BENEFITS)


@pytest.fixture(scope="session")
def benefits_split(benefits):
    return split_holdout(benefits, "ui", "binary", 0.2, seed=0)


@pytest.fixture(scope="session")
def operating_goal() -> GoalSpec:
    return GoalSpec.model_validate({"metric": "recall", "at_least": 0.8, "with": {"precision": 0.6}})


@pytest.fixture(scope="session")
def operating_result(benefits_split, operating_goal):
    train, _ = benefits_split
    return search(train, target="ui", task="binary", goal=operating_goal, positive="yes", plan=FAST)


@pytest.fixture(scope="session")
def iris() -> pd.DataFrame:
    frame = load_iris(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    return frame


@pytest.fixture(scope="session")
def diabetes() -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame
