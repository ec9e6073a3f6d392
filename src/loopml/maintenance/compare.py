"""Champion against challenger on the same recent labeled rows that neither was trained on.

Both models are scored on the same rows, and the difference between them is bootstrapped *paired*:
every resample draws one set of rows and scores both models on it, so the noise the two share (a hard
or easy sample of rows) cancels, and what is left is the noise of the difference itself. The
challenger is promoted only when it meets the goal and the whole interval of that difference lies on
its side of zero (``gate: beat_champion``), or when it meets the goal and is not worse beyond the
noise (``gate: meet_goal``).

>>> older, recent = split_older_recent(frame)                                       # doctest: +SKIP
>>> compare_on_recent(champion, challenger, recent, goal).promote                   # doctest: +SKIP
True
>>> paired_bootstrap(champion, challenger, recent, goal).interval                   # doctest: +SKIP
(0.012, 0.041)

A canary answers other requests than the champion, so on live traffic the two are compared each on its
own rows with an *unpaired* bootstrap (:func:`compare_canary`); a shadow scored the champion's own
requests, so :func:`compare_on_recent` applies to its rows as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopml.errors import ModelError
from loopml.model import TrainedModel, evaluate
from loopml.model._operating import COUNT_METRICS, from_counts
from loopml.model.evaluate import _encode, _weighted
from loopml.spec import GoalSpec

__all__ = ["Comparison", "PairedBootstrap", "compare_canary", "compare_on_recent", "labeled_frame",
           "paired_bootstrap", "split_older_recent", "unpaired_bootstrap"]

Gate = Literal["beat_champion", "meet_goal"]
# Resamples drawn at once: bounds the memory of the row-count matrix to about 16 MB.
_CELLS_PER_CHUNK = 2_000_000


def labeled_frame(rows: list[dict[str, Any]], target: str) -> pd.DataFrame:
    """Labeled predictions from the store as a training-shaped frame (features plus target).

    >>> labeled_frame([{"features": {"age": 41}, "label": "yes"}], "ui").to_dict("records")
    [{'age': 41, 'ui': 'yes'}]
    """
    frame = pd.DataFrame([r["features"] for r in rows])
    frame[target] = [r["label"] for r in rows]
    return frame


def split_older_recent(frame: pd.DataFrame, recent_share: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Older rows (may be trained on) and the most recent ``recent_share`` (kept for the comparison only).

    >>> older, recent = split_older_recent(pd.DataFrame({"x": range(10)}), 0.3)
    >>> recent["x"].tolist()
    [7, 8, 9]
    """
    cut = len(frame) - max(1, int(round(len(frame) * recent_share)))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


@dataclass(frozen=True)
class PairedBootstrap:
    """The challenger's gain over the champion on the same rows, with its paired bootstrap interval.

    ``gain`` is challenger minus champion for a metric where more is better (champion minus challenger
    where less is better), so a positive gain always favours the challenger. An unpaired bootstrap
    (``paired`` False: each model on its own rows) counts the challenger's rows in ``rows`` and the
    champion's in ``champion_rows``.
    """

    metric: str
    champion: float
    challenger: float
    gain: float
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    rows: int
    paired: bool = True
    champion_rows: int | None = None

    @property
    def interval(self) -> tuple[float, float]:
        return round(self.ci_low, 3), round(self.ci_high, 3)

    @property
    def better(self) -> bool:
        """The challenger is better beyond the noise: the whole interval of the gain is above zero."""
        return self.ci_low > 0

    @property
    def worse(self) -> bool:
        """The challenger is worse beyond the noise: the whole interval of the gain is below zero."""
        return self.ci_high < 0

    def describe(self) -> str:
        """The gain in words, with its interval.

        >>> PairedBootstrap("mae", 300.0, 180.0, 120.0, 95.0, 140.0, 0.95, 1000, 250).describe()
        'gain +120.000 in mae (95% paired bootstrap interval +95.000 to +140.000 over 250 rows)'
        """
        over = f"{self.rows} rows" if self.paired else \
            f"{self.rows} challenger rows and {self.champion_rows} champion rows"
        return (f"gain {self.gain:+.3f} in {self.metric} ({self.confidence:.0%} {'' if self.paired else 'un'}paired "
                f"bootstrap interval {self.ci_low:+.3f} to {self.ci_high:+.3f} over {over})")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "better": self.better, "worse": self.worse}


def paired_bootstrap(champion: TrainedModel, challenger: TrainedModel, rows: pd.DataFrame, goal: GoalSpec, *,
                     confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> PairedBootstrap:
    """Bootstrap the goal metric of both models over the same resamples of ``rows``; the interval of the gain.

    >>> paired_bootstrap(champion, champion, rows, goal).better     # doctest: +SKIP
    False
    """
    _check_bootstrap(champion, challenger, confidence, resamples)
    if len(rows) < 2:
        raise ModelError(f"a paired bootstrap needs at least 2 labeled rows; got {len(rows)}")
    scored = [_scored(model, rows) for model in (champion, challenger)]
    point = [_metric(goal.metric, model, y, s, np.ones((1, len(rows))))[0]
             for model, (y, s) in zip((champion, challenger), scored, strict=True)]
    rng = np.random.default_rng(seed)
    n, step = len(rows), max(1, _CELLS_PER_CHUNK // len(rows))
    sign = 1.0 if goal.greater_is_better else -1.0
    gains = []
    for start in range(0, resamples, step):
        W = rng.multinomial(n, np.full(n, 1.0 / n), size=min(step, resamples - start)).astype(float)
        champ, chall = (_metric(goal.metric, model, y, s, W)
                        for model, (y, s) in zip((champion, challenger), scored, strict=True))
        gains.append(sign * (chall - champ))
    low, high = _gain_interval(gains, confidence, goal.metric, f"these {n} rows")
    return PairedBootstrap(metric=goal.metric, champion=float(point[0]), challenger=float(point[1]),
                           gain=float(sign * (point[1] - point[0])), ci_low=low, ci_high=high,
                           confidence=confidence, resamples=resamples, rows=n)


def unpaired_bootstrap(champion: TrainedModel, challenger: TrainedModel, champion_rows: pd.DataFrame,
                       challenger_rows: pd.DataFrame, goal: GoalSpec, *, confidence: float = 0.95,
                       resamples: int = 1000, seed: int = 0) -> PairedBootstrap:
    """Each model on its own rows (a canary and the champion answer different requests), resampled apart.

    Every resample draws the champion's rows and the challenger's rows independently; the interval of the
    gain then holds the noise of both samples, so it is wider than a paired one on as many rows.

    >>> unpaired_bootstrap(champion, canary, champion_rows, canary_rows, goal).worse   # doctest: +SKIP
    True
    """
    _check_bootstrap(champion, challenger, confidence, resamples)
    for who, rows in (("champion", champion_rows), ("challenger", challenger_rows)):
        if len(rows) < 2:
            raise ModelError(f"an unpaired bootstrap needs at least 2 labeled rows of the {who}; got {len(rows)}")
    models = (champion, challenger)
    scored = [_scored(model, rows) for model, rows in zip(models, (champion_rows, challenger_rows), strict=True)]
    point = [_metric(goal.metric, model, y, s, np.ones((1, len(y))))[0]
             for model, (y, s) in zip(models, scored, strict=True)]
    rng = np.random.default_rng(seed)
    sign = 1.0 if goal.greater_is_better else -1.0
    sizes = [len(y) for y, _ in scored]
    step = max(1, _CELLS_PER_CHUNK // max(sizes))
    gains = []
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        champ, chall = (_metric(goal.metric, model, y, s, rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(float))
                        for model, (y, s), n in zip(models, scored, sizes, strict=True))
        gains.append(sign * (chall - champ))
    low, high = _gain_interval(gains, confidence, goal.metric, "these rows")
    return PairedBootstrap(metric=goal.metric, champion=float(point[0]), challenger=float(point[1]),
                           gain=float(sign * (point[1] - point[0])), ci_low=low, ci_high=high, confidence=confidence,
                           resamples=resamples, rows=sizes[1], paired=False, champion_rows=sizes[0])


def _gain_interval(gains: list[np.ndarray], confidence: float, metric: str, rows: str) -> tuple[float, float]:
    """The central ``confidence`` interval of the resampled gains (NaN resamples left out)."""
    gain = np.concatenate(gains)
    if np.isnan(gain).all():
        raise ModelError(f"{metric} is undefined on every resample of {rows} (one class only?); "
                         "wait for labeled rows of every class")
    tail = (1 - confidence) / 2 * 100
    low, high = (float(v) for v in np.nanpercentile(gain, [tail, 100 - tail]))
    return low, high


def _check_bootstrap(champion: TrainedModel, challenger: TrainedModel, confidence: float, resamples: int) -> None:
    if not 0.5 <= confidence < 1:
        raise ModelError(f"confidence must be in [0.5, 1); got {confidence!r}")
    if resamples < 1:
        raise ModelError(f"resamples must be positive; got {resamples!r}")
    if champion.task != challenger.task:
        raise ModelError(f"the champion is a {champion.task} model and the challenger a {challenger.task} model; "
                         "they answer different questions and cannot be compared")


def _scored(model: TrainedModel, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The labels in the model's codes and its scores: P(positive), n×k probabilities, or values."""
    if model.target not in rows.columns:
        raise ModelError(f"the comparison rows lack the target column '{model.target}'")
    y = _encode(model, rows[model.target])
    X = rows.drop(columns=[model.target])
    if model.task == "regression":
        return y, model.predict(X)
    scores = model.predict_proba(X)
    return y, scores[:, 1] if model.task == "binary" else scores


def _metric(name: str, model: TrainedModel, y: np.ndarray, scores: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Metric ``name`` per row-count vector (a row of ``W``), at the model's own threshold."""
    if model.task == "binary" and name in COUNT_METRICS:
        # Confusion counts per resample as four dot products: fast at any number of rows.
        pred = scores >= (0.5 if model.threshold is None else model.threshold)
        cells = [(pred & (y == 1)), (pred & (y == 0)), (~pred & (y == 1)), (~pred & (y == 0))]
        tp, fp, fn, tn = (W @ c.astype(float) for c in cells)
        return from_counts(name, tp, fp, fn, tn)
    return _weighted(name, model.task, y, scores, model.threshold, len(model.classes), W, model.class_costs)


@dataclass(frozen=True)
class Comparison:
    """Whether to promote, why in words, both evaluations on the recent rows, and the paired bootstrap."""

    promote: bool
    reason: str
    champion: dict[str, Any]
    challenger: dict[str, Any]
    paired: dict[str, Any] | None = None
    gate: Gate = "beat_champion"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_on_recent(champion: TrainedModel, challenger: TrainedModel, recent: pd.DataFrame, goal: GoalSpec,
                      *, seed: int = 0, gate: Gate = "beat_champion", confidence: float = 0.95,
                      resamples: int = 1000, costs: Any = None) -> Comparison:
    """Promote only a challenger that meets the goal on ``recent`` and passes ``gate`` against the champion.

    ``beat_champion``: the challenger's gain is above zero beyond the noise (paired bootstrap);
    ``meet_goal``: the challenger is not worse beyond the noise.
    """
    if gate not in ("beat_champion", "meet_goal"):
        raise ModelError(f"gate must be 'beat_champion' or 'meet_goal'; got {gate!r}")
    champ = evaluate(champion, recent, goal, seed=seed, n_boot=200, costs=costs)
    chall = evaluate(challenger, recent, goal, seed=seed, n_boot=200, costs=costs)
    paired = paired_bootstrap(champion, challenger, recent, goal, confidence=confidence, resamples=resamples,
                              seed=seed)
    scores = (f"challenger {goal.metric} {chall.value:.3f}{_constraints(chall)} vs champion {champ.value:.3f}"
              f"{_constraints(champ)} on {len(recent)} recent rows; {paired.describe()}")
    if not chall.met:
        promote, reason = False, f"challenger misses the goal {goal.describe()}: {scores}"
    elif gate == "beat_champion" and not paired.better:
        promote, reason = False, f"challenger does not beat the champion by more than the noise: {scores}"
    elif gate == "meet_goal" and paired.worse:
        promote, reason = False, f"challenger meets the goal but is worse than the champion beyond the noise: {scores}"
    elif gate == "beat_champion":
        promote, reason = True, f"challenger meets the goal and beats the champion beyond the noise: {scores}"
    else:
        promote, reason = True, f"challenger meets the goal and is not worse than the champion: {scores}"
    return Comparison(promote, reason, champ.to_dict(), chall.to_dict(), paired.to_dict(), gate)


def compare_canary(champion: TrainedModel, canary: TrainedModel, champion_rows: pd.DataFrame,
                   canary_rows: pd.DataFrame, goal: GoalSpec, *, seed: int = 0, confidence: float = 0.95,
                   resamples: int = 1000, costs: Any = None) -> Comparison:
    """Promote a canary that meets the goal on the requests it answered and is not worse than the champion
    on the requests the champion answered, beyond the noise of an unpaired bootstrap (gate ``meet_goal``).

    >>> compare_canary(champion, canary, champion_rows, canary_rows, goal).promote   # doctest: +SKIP
    False
    """
    champ = evaluate(champion, champion_rows, goal, seed=seed, n_boot=200, costs=costs)
    chall = evaluate(canary, canary_rows, goal, seed=seed, n_boot=200, costs=costs)
    unpaired = unpaired_bootstrap(champion, canary, champion_rows, canary_rows, goal, confidence=confidence,
                                  resamples=resamples, seed=seed)
    scores = (f"canary {goal.metric} {chall.value:.3f}{_constraints(chall)} on the {len(canary_rows)} requests it "
              f"answered vs champion {champ.value:.3f}{_constraints(champ)} on its {len(champion_rows)}; "
              f"{unpaired.describe()}")
    if unpaired.worse:
        promote, reason = False, f"the canary is worse than the champion beyond the noise: {scores}"
    elif not chall.met:
        promote, reason = False, f"the canary misses the goal {goal.describe()}: {scores}"
    else:
        promote, reason = True, f"the canary meets the goal and is not worse than the champion: {scores}"
    return Comparison(promote, reason, champ.to_dict(), chall.to_dict(), unpaired.to_dict(), "meet_goal")


def _constraints(evaluation) -> str:
    return "".join(f" ({k} {v['value']:.3f})" if v["value"] is not None else f" ({k} undefined)"
                   for k, v in evaluation.constraints.items())
