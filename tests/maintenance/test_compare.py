"""Champion against challenger with a paired bootstrap, on real models of the benefits data."""

import pandas as pd
import pytest

from loopml.errors import ModelError
from loopml.maintenance import compare_on_recent, paired_bootstrap
from loopml.model import SearchPlan, search
from loopml.spec import GoalSpec

GOAL = GoalSpec(metric="roc_auc", at_least=0.6)


@pytest.fixture(scope="module")
def benefits(benefits_csv):
    frame = pd.read_csv(benefits_csv).drop(columns=["bluecol"])
    return frame.iloc[:2000], frame.iloc[2000:2800].reset_index(drop=True)


def _model(train, *, seed=0, shuffle=False, families=("lightgbm",)):
    if shuffle:  # a model that learned noise: the labels no longer belong to their rows
        train = train.assign(ui=train["ui"].sample(frac=1.0, random_state=seed).to_numpy())
    return search(train, target="ui", task="binary", goal=GOAL, positive="yes",
                  plan=SearchPlan(families=families, folds=3, seed=seed, n_estimators=60, ensemble=False)).model


@pytest.fixture(scope="module")
def models(benefits):
    train, _ = benefits
    return {"good": _model(train), "twin": _model(train, seed=1), "noise": _model(train, shuffle=True)}


def test_a_model_against_itself_gains_nothing(models, benefits):
    paired = paired_bootstrap(models["good"], models["good"], benefits[1], GOAL, resamples=300)
    assert paired.gain == 0 and (paired.ci_low, paired.ci_high) == (0, 0)
    assert not paired.better and not paired.worse


def test_a_better_model_beats_one_that_learned_noise_beyond_the_noise(models, benefits):
    paired = paired_bootstrap(models["noise"], models["good"], benefits[1], GOAL)
    assert paired.better and paired.ci_low > 0.05
    assert paired.ci_low <= paired.gain <= paired.ci_high
    assert paired.gain == pytest.approx(paired.challenger - paired.champion)


def test_pairing_removes_the_noise_two_similar_models_share(models, benefits):
    recent = benefits[1]
    paired = paired_bootstrap(models["good"], models["twin"], recent, GOAL)
    own = compare_on_recent(models["good"], models["twin"], recent, GOAL).champion  # one model's own interval
    assert paired.ci_high - paired.ci_low < (own["ci_high"] - own["ci_low"]) / 2


def test_a_challenger_within_the_noise_is_not_promoted(models, benefits):
    result = compare_on_recent(models["good"], models["twin"], benefits[1], GOAL)
    assert not result.promote
    assert result.reason.startswith("challenger does not beat the champion by more than the noise")
    assert result.paired["ci_low"] <= 0 <= result.paired["ci_high"]


def test_a_worse_challenger_is_never_promoted_even_when_it_meets_the_goal(models, benefits):
    lenient = GoalSpec(metric="roc_auc", at_least=0.4)
    result = compare_on_recent(models["good"], models["noise"], benefits[1], lenient)
    assert not result.promote and result.paired["worse"]
    lenient_gate = compare_on_recent(models["good"], models["noise"], benefits[1], lenient, gate="meet_goal")
    assert not lenient_gate.promote
    assert "is worse than the champion beyond the noise" in lenient_gate.reason


def test_meet_goal_promotes_an_equal_challenger(models, benefits):
    result = compare_on_recent(models["good"], models["twin"], benefits[1], GOAL, gate="meet_goal")
    assert result.promote and "is not worse than the champion" in result.reason


def test_a_better_challenger_is_promoted_with_the_numbers(models, benefits):
    result = compare_on_recent(models["noise"], models["good"], benefits[1], GOAL)
    assert result.promote
    assert "challenger meets the goal and beats the champion beyond the noise" in result.reason
    assert "95% paired bootstrap interval" in result.reason


def test_count_metrics_at_the_operating_point_are_bootstrapped_paired(models, benefits):
    recall = GoalSpec(metric="recall", at_least=0.5)
    paired = paired_bootstrap(models["noise"], models["good"], benefits[1], recall, resamples=500)
    assert paired.metric == "recall" and paired.ci_low <= paired.gain <= paired.ci_high


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"confidence": 1.0}, r"confidence must be in \[0.5, 1\); got 1.0"),
    ({"resamples": 0}, "resamples must be positive; got 0"),
])
def test_bad_settings_are_named(models, benefits, kwargs, message):
    with pytest.raises(ModelError, match=message):
        paired_bootstrap(models["good"], models["twin"], benefits[1], GOAL, **kwargs)


def test_too_few_rows_are_named(models, benefits):
    with pytest.raises(ModelError, match="a paired bootstrap needs at least 2 labeled rows; got 1"):
        paired_bootstrap(models["good"], models["twin"], benefits[1].head(1), GOAL)


def test_rows_of_one_class_say_what_to_wait_for(models, benefits):
    one_class = benefits[1][benefits[1]["ui"] == "yes"].head(50)
    with pytest.raises(ModelError, match="roc_auc is undefined on every resample of these 50 rows"):
        paired_bootstrap(models["good"], models["twin"], one_class, GOAL)


def test_an_unknown_gate_is_named(models, benefits):
    with pytest.raises(ModelError, match="gate must be 'beat_champion' or 'meet_goal'; got 'beat'"):
        compare_on_recent(models["good"], models["twin"], benefits[1], GOAL, gate="beat")
