"""The time split: trials stop early enough for the refit and the learning curve to end within the budget."""

import importlib
import time
from types import SimpleNamespace

search_module = importlib.import_module("loopml.model.search")  # loopml.model.search is the function


def _clock(elapsed: float, budget: float, seconds: list[float]):
    runner = SimpleNamespace(trials=[SimpleNamespace(family="lightgbm", seconds=s) for s in seconds])
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
