"""The time split: trials stop early enough for the refit and the learning curve to end within the budget."""

import importlib
import time
from types import SimpleNamespace

search_module = importlib.import_module("loopml.model.search")  # loopml.model.search is the function


def _clock(elapsed: float, budget: float, seconds: list[float]):
    runner = SimpleNamespace(trials=[SimpleNamespace(family="lightgbm", seconds=s, score=0.7) for s in seconds],
                             selection="roc_auc")
    return search_module._Clock(time.perf_counter() - elapsed, budget, None, runner)


def test_slow_trials_keep_five_of_their_length_for_the_refit_and_learning_curve():
    # 4 s trials in a 60 s budget: the last one starts by 36 s, so 20 s are left to finish.
    assert _clock(elapsed=30, budget=60, seconds=[4.0, 4.0]).room_for("lightgbm")
    assert not _clock(elapsed=37, budget=60, seconds=[4.0, 4.0]).room_for("lightgbm")


def test_fast_trials_keep_a_tenth_of_the_budget():
    assert _clock(elapsed=52, budget=60, seconds=[0.5]).room_for("lightgbm")
    assert not _clock(elapsed=54, budget=60, seconds=[0.5]).room_for("lightgbm")


def test_a_family_not_tried_yet_is_judged_by_the_trials_so_far():
    assert not _clock(elapsed=37, budget=60, seconds=[4.0]).room_for("random_forest")


def test_fast_trials_keep_room_for_refitting_the_best_trials_so_far():
    # 0.1 s linear trials after better 4 s LightGBM ones: the ensemble refits those, so 20 s stay reserved.
    trials = [SimpleNamespace(family="lightgbm", seconds=4.0, score=0.8 + i / 100) for i in range(3)]
    trials += [SimpleNamespace(family="linear", seconds=0.1, score=0.7) for _ in range(5)]
    runner = SimpleNamespace(trials=trials, selection="roc_auc")
    assert not search_module._Clock(time.perf_counter() - 41, 60, None, runner).room_for("linear")
    assert search_module._Clock(time.perf_counter() - 38, 60, None, runner).room_for("linear")
